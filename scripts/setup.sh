#!/usr/bin/env bash
# Installs what Tessera needs to build and test, and nothing when it is all
# present: CMake, Ninja, a C++ compiler, GoogleTest, Google Benchmark and the
# DLPack headers from Debian's packages. The CUDA Toolkit (nvcc 12.4+, 13
# preferred) must already be installed; this script only checks for it.
set -euo pipefail

packages=(cmake ninja-build g++ libgtest-dev libbenchmark-dev libdlpack-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done

if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v nvcc >/dev/null 2>&1; then
  if [[ -x /usr/local/cuda/bin/nvcc ]]; then
    echo "setup: nvcc is at /usr/local/cuda/bin; add it to PATH (scripts do this themselves)"
  else
    echo "setup: the CUDA Toolkit (nvcc) is required and was not found" >&2
    exit 1
  fi
fi
