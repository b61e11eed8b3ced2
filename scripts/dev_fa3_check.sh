#!/usr/bin/env bash
# One device call after "auto" started picking the Hopper prefill kernels
# (issue 21): the C++ tests that run prefill through "auto" (block-sparse on
# the paged kernel, fp8 paged caches on FA2 with a Hopper-shaped plan, the
# graph replays), the whole pytest suite (every Python prefill call goes
# through "auto"), then the single-prefill benchmarks (auto: fa3 where it
# serves). Run on the GPU machine from the repository root with .gpu-build
# carried (scripts/stage_gpu_build.sh); logs under $OUT. Set TESSERA_COMMIT.
export TESSERA_PREBUILT=.gpu-build TESSERA_COMMIT=22fafab
cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
export LD_LIBRARY_PATH="$PWD/.gpu-build/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT/l"
timeout 90 .gpu-build/bin/tessera_gpu_tests \
  --gtest_filter='BlockSparse.*:BatchPrefill.Fp8E5m2*:BatchPrefill.CudaGraph*:BatchPrefill.SplitKv*:SinglePrefill.*' \
  > "$OUT/l/auto_tests.log" 2>&1
echo "auto tests rc $?" >> "$OUT/l/auto_tests.log"
grep -E '^\[  FAILED|PASSED|rc ' "$OUT/l/auto_tests.log" | head -20
TESSERA_GPU_CHECK_SKIP=cpu,sanitizer,demo TESSERA_GPU_TEST_FILTER='TestHarness.*' \
  TESSERA_BENCH_ONLY=prefill timeout 180 scripts/gpu_check.sh > "$OUT/l/check.log" 2>&1
grep -E 'PASS|FAIL|passed|failed|single_prefill.*cudnn' "$OUT/l/check.log" | tail -40
tar czf "$OUT/logs.tgz" gpu_check_logs benchmarks/results
