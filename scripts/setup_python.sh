#!/usr/bin/env bash
# Installs what the Python package's tests need (torch, pytest) from PyPI, and
# nothing when both import already. PyPI's Linux torch wheel is the CUDA build
# (about 3 GB with its NVIDIA libraries, ~3 minutes here); without a GPU it
# still imports, traces and runs the fake kernels the CPU tests use.
set -euo pipefail
python=${PYTHON:-python3}
if "$python" -c "import torch, pytest" >/dev/null 2>&1; then
  exit 0
fi
echo "setup: installing torch and pytest for the Python package tests (pip)"
"$python" -m pip install --quiet --disable-pip-version-check "torch>=2.4" pytest
