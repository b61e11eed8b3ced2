#!/usr/bin/env bash
# The next device call for the Hopper prefill back end (issue 21): checks
# what main changed since its last GPU run (the gather's zero-tile deadlock
# fix, the ragged V tail zeroing, the producer __syncwarp) with the two new
# tests first and a timeout (a hang shows as rc 124), then every prefill
# gtest on fa3, compute-sanitizer on the new tests, and the batch_prefill
# benchmarks with their peers. Run on the GPU machine from the repository
# root with .gpu-build carried (scripts/stage_gpu_build.sh); logs under
# $OUT. Set TESSERA_COMMIT below.
export TESSERA_PREBUILT=.gpu-build TESSERA_COMMIT=COMMIT
cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
export LD_LIBRARY_PATH="$PWD/.gpu-build/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT/l"
new_tests='BatchPrefill.PagedUnitsWithoutKeysAmongMany*:BatchPrefill.RaggedNanRowsAfterTheKeys*'
timeout 60 .gpu-build/bin/tessera_gpu_tests --gtest_filter="$new_tests" > "$OUT/l/new.log" 2>&1
echo "new tests rc $?" >> "$OUT/l/new.log"
grep -E '^\[  FAILED|^\[       OK|PASSED|rc ' "$OUT/l/new.log"
TESSERA_TEST_PREFILL_BACKENDS=fa3 timeout 150 .gpu-build/bin/tessera_gpu_tests \
  --gtest_filter='BatchPrefill.*:SinglePrefill.*:BlockSparse.*' > "$OUT/l/prefill_fa3.log" 2>&1
echo "prefill fa3 rc $?" >> "$OUT/l/prefill_fa3.log"
grep -E '^\[  FAILED|PASSED|rc ' "$OUT/l/prefill_fa3.log"
TESSERA_GPU_CHECK_SKIP=cpu,python,demo,bench TESSERA_GPU_TEST_FILTER='TestHarness.*' \
  TESSERA_MEMCHECK_FILTER="$new_tests" TESSERA_RACECHECK_FILTER="$new_tests" \
  timeout 150 scripts/gpu_check.sh > "$OUT/l/sanitizer.log" 2>&1
grep -E 'PASS|FAIL|SUMMARY' "$OUT/l/sanitizer.log"
TESSERA_GPU_CHECK_SKIP=cpu,python,sanitizer,demo TESSERA_GPU_TEST_FILTER='TestHarness.*' \
  TESSERA_BENCH_ONLY=batch_prefill timeout 200 scripts/gpu_check.sh > "$OUT/l/bench.log" 2>&1
grep -E 'PASS|FAIL|_fa3|cudnn' "$OUT/l/bench.log" | grep -E 'PASS|FAIL|D=128,causal=1' | tail -40
tar czf "$OUT/logs.tgz" gpu_check_logs benchmarks/results "$OUT/l" 2>/dev/null
