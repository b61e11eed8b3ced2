#!/usr/bin/env bash
# One device call for the Hopper prefill back end's first run (issue 21) and
# issue 20's pytest re-run: the prefill GPU tests on fa2 and fa3 (with
# timeouts, so a hung barrier cannot eat the call), then gpu_check's pytest
# and batch_prefill benchmarks (fa3 rows beside FA2 and the torch peers).
# Run on the GPU machine from the repository root with .gpu-build carried
# (scripts/stage_gpu_build.sh); logs under $OUT. Set TESSERA_COMMIT below.
export TESSERA_PREBUILT=.gpu-build TESSERA_COMMIT=ffeaa0c
cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
export LD_LIBRARY_PATH="$PWD/.gpu-build/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
mkdir -p $OUT/l
timeout 60 .gpu-build/bin/tessera_gpu_tests --gtest_filter='BatchPrefill.RaggedMixed*' > $OUT/l/first.log 2>&1; echo "first rc $?" >> $OUT/l/first.log
tail -30 $OUT/l/first.log
timeout 200 .gpu-build/bin/tessera_gpu_tests --gtest_filter='BatchPrefill.*:SinglePrefill.*:BlockSparse*' > $OUT/l/prefill.log 2>&1; echo "prefill rc $?" >> $OUT/l/prefill.log
grep -E '^\[  FAILED|PASSED|rc ' $OUT/l/prefill.log | head -30
TESSERA_GPU_CHECK_SKIP=cpu,sanitizer,demo TESSERA_GPU_TEST_FILTER='TestHarness.*' TESSERA_BENCH_ONLY=batch_prefill timeout 280 scripts/gpu_check.sh > $OUT/l/check.log 2>&1
tail -40 $OUT/l/check.log
tar czf $OUT/logs.tgz gpu_check_logs benchmarks/results
