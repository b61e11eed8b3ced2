#!/usr/bin/env bash
# Builds for Hopper only (sm_90a) and stages the binaries and libtessera in
# .gpu-build/, small enough to carry to the GPU machine, which has no network
# (so no GoogleTest or DLPack to build with). Run here, then on the GPU
# machine: TESSERA_PREBUILT=.gpu-build scripts/gpu_check.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$TESSERA_ROOT/scripts/setup.sh"
export TESSERA_BUILD_DIR="$TESSERA_ROOT/build-sm90a"
export TESSERA_CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90a-real"
tessera_build tessera_gpu_tests tessera_cpu_tests tessera_bench tessera_jit_bench tessera_plan_bench \
  tessera-demo
stage="$TESSERA_ROOT/.gpu-build"
rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/lib"
cp "$TESSERA_BUILD_DIR"/tests/tessera_gpu_tests "$TESSERA_BUILD_DIR"/tests/tessera_cpu_tests \
   "$TESSERA_BUILD_DIR"/benchmarks/tessera_bench "$TESSERA_BUILD_DIR"/benchmarks/tessera_jit_bench \
   "$TESSERA_BUILD_DIR"/benchmarks/tessera_plan_bench \
   "$TESSERA_BUILD_DIR"/examples/demo/tessera-demo \
   "$stage/bin/"
cp -P "$TESSERA_BUILD_DIR"/libtessera.so* "$stage/lib/"
du -sh "$stage"
