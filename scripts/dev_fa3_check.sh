#!/usr/bin/env bash
# One device call for the Hopper prefill back end (issue 21) and issue 20's
# remaining checks: the prefill GPU tests on fa3 (fa2 is unchanged since the
# last passing run), the decode and batch_prefill benchmarks with their
# torch peers, then compute-sanitizer on issue 20's new tests and two fa3
# tests, and the demos. Run on the GPU machine from the repository root
# with .gpu-build carried (scripts/stage_gpu_build.sh); logs under $OUT.
# Set TESSERA_COMMIT below.
export TESSERA_PREBUILT=.gpu-build TESSERA_COMMIT=814facd
cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
export LD_LIBRARY_PATH="$PWD/.gpu-build/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
mkdir -p "$OUT/l"
TESSERA_TEST_PREFILL_BACKENDS=fa3 timeout 150 .gpu-build/bin/tessera_gpu_tests \
  --gtest_filter='BatchPrefill.*:SinglePrefill.*' > "$OUT/l/prefill_fa3.log" 2>&1
echo "prefill fa3 rc $?" >> "$OUT/l/prefill_fa3.log"
grep -E '^\[  FAILED|PASSED|rc ' "$OUT/l/prefill_fa3.log" | head -30
TESSERA_GPU_CHECK_SKIP=cpu,python,sanitizer,demo TESSERA_GPU_TEST_FILTER='TestHarness.*' \
  TESSERA_BENCH_ONLY=decode,batch_prefill timeout 230 scripts/gpu_check.sh > "$OUT/l/bench.log" 2>&1
grep -E 'PASS|FAIL|_fa3|cudnn' "$OUT/l/bench.log" | tail -60
cp -r gpu_check_logs "$OUT/l/bench_logs"
TESSERA_GPU_CHECK_SKIP=cpu,python,bench TESSERA_GPU_TEST_FILTER='TestHarness.*' \
  TESSERA_MEMCHECK_FILTER='SinglePrefill.PositionalVariants*:DecodeKernel.Fp8E5m2KvWithVariants*:BatchPrefill.Fp8E5m2*:BatchPrefill.RaggedMixed*:BatchPrefill.PagedPageSizes*' \
  TESSERA_RACECHECK_FILTER='BatchPrefill.VariantsMatchReference:SinglePrefill.CausalShapes*' \
  timeout 190 scripts/gpu_check.sh > "$OUT/l/sanitizer.log" 2>&1
tail -30 "$OUT/l/sanitizer.log"
cp -r gpu_check_logs "$OUT/l/sanitizer_logs"
tar czf "$OUT/results.tgz" benchmarks/results
