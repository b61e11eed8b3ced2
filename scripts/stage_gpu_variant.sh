#!/usr/bin/env bash
# Stages the current checkout's sm_90a build as .gpu-variants/NAME.tar.xz
# (tessera_gpu_tests, tessera_bench, libtessera, the headers the JIT reads,
# the Python package with its tests and the benchmark scripts;
# ~6 MB compressed against ~50 MB for .gpu-build), so several branches fit
# one device call's carry and compare in one run (scripts/dev_fa3_check.sh).
# Usage: scripts/stage_gpu_variant.sh NAME   (after checking out the branch)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
name=${1:?usage: stage_gpu_variant.sh NAME}
export TESSERA_BUILD_DIR="$TESSERA_ROOT/build-sm90a"
export TESSERA_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90a-real"
tessera_build tessera_gpu_tests tessera_bench
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
cp "$TESSERA_BUILD_DIR"/tests/tessera_gpu_tests "$TESSERA_BUILD_DIR"/benchmarks/tessera_bench "$stage/bin/"
cp -P "$TESSERA_BUILD_DIR"/libtessera.so* "$stage/lib/"
cp -r "$TESSERA_ROOT/include" "$stage/include"
# The checkout's Python side too (package, its tests, the peers / report
# scripts, the examples), so a variant's pytest and peers run what was built.
mkdir -p "$stage/tests" "$stage/benchmarks" "$stage/examples"
cp -r "$TESSERA_ROOT/python" "$stage/python"
cp -r "$TESSERA_ROOT/tests/python" "$stage/tests/python"
cp "$TESSERA_ROOT"/benchmarks/*.py "$stage/benchmarks/"
cp -r "$TESSERA_ROOT/examples/python" "$TESSERA_ROOT/examples/jit" "$stage/examples/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
echo "$name $(git -C "$TESSERA_ROOT" rev-parse HEAD)$(git -C "$TESSERA_ROOT" diff --quiet || echo +dirty)" \
  > "$stage/COMMIT"
mkdir -p "$TESSERA_ROOT/.gpu-variants"
tar cf - -C "$stage" . | xz -T"$TESSERA_JOBS" -6 > "$TESSERA_ROOT/.gpu-variants/$name.tar.xz"
ls -la "$TESSERA_ROOT/.gpu-variants/$name.tar.xz"
