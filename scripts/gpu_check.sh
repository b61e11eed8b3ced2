#!/usr/bin/env bash
# The one command for the GPU machine: build (or use a prebuilt tree), run all
# GPU tests, run them again under compute-sanitizer (memcheck on all, racecheck
# on the kernels that use shared memory), run the demo and the benchmarks with
# their PyTorch peers, and write benchmarks/results/<gpu>.{csv,md,png} into the
# tree and, with logs, under $OUT when set.
#
#   scripts/gpu_check.sh                      builds in build/ first
#   TESSERA_PREBUILT=.gpu-build scripts/gpu_check.sh
#       uses binaries staged by scripts/stage_gpu_build.sh on another machine
#       (the GPU machine has no network, so no GoogleTest/DLPack to build with)
#   TESSERA_COMMIT=<sha>                      commit recorded in the results
#   TESSERA_GPU_CHECK_SKIP=cpu,python,demo,bench,sanitizer skip steps (quick reruns)
#   TESSERA_PYTEST_FILTER=<expr>               pytest -k for the Python tests
#   TESSERA_GPU_TEST_FILTER=<gtest filter>     only these GPU tests (plain,
#                                              memcheck and racecheck)
#   TESSERA_BENCH_ONLY=<family>[,<family>...]  only these benchmark families (norm,
#                                              activation, rope, append, decode, prefill,
#                                              batch_prefill, cascade; python: bench_python.py)
#   TESSERA_MEMCHECK_FILTER=<gtest filter>     memcheck only these (default: the
#                                              GPU test filter, else all)
#   TESSERA_RACECHECK_FILTER=<gtest filter>    racecheck these instead of the default set
#   TESSERA_PROFILE="<spec> ..."               scripts/gpu_profile.sh specs, run last
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$TESSERA_ROOT"

logs="$TESSERA_ROOT/gpu_check_logs"
rm -rf "$logs" && mkdir -p "$logs"
summary="$logs/summary.txt"
: >"$summary"
skip="${TESSERA_GPU_CHECK_SKIP:-}"
failures=0
note() { echo "$*" | tee -a "$summary"; }
step() {  # step NAME LOGFILE COMMAND...: runs, logs, records pass/fail
  local name=$1 log=$2
  shift 2
  local start=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  if ((rc == 0)); then note "PASS  $name ($((SECONDS - start)) s)"; else
    note "FAIL  $name (exit $rc, $((SECONDS - start)) s): see $(basename "$log")"
    tail -n 30 "$log" | sed 's/^/      /' | tee -a "$summary"
    failures=$((failures + 1))
  fi
  return $rc
}

commit="${TESSERA_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
note "tessera gpu_check, commit $commit, $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader \
  2>&1 | sed 's/^/gpu: /' | tee -a "$summary"

if [[ -n "${TESSERA_PREBUILT:-}" ]]; then
  bin="$TESSERA_ROOT/$TESSERA_PREBUILT/bin"
  cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
  export LD_LIBRARY_PATH="$TESSERA_ROOT/$TESSERA_PREBUILT/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
  note "using prebuilt binaries from $TESSERA_PREBUILT"
  # The JIT's NVRTC reads the device headers from this tree, not from the
  # path the binaries were built at.
  cuda_include="$(dirname "$(readlink -f "$(command -v nvcc)")")/../include"
  export TESSERA_JIT_INCLUDE_PATH="$TESSERA_ROOT/include:$cuda_include:$cuda_include/cccl"
else
  step "build" "$logs/build.log" tessera_build || exit 1
  bin="$TESSERA_BUILD_DIR/bin"
  mkdir -p "$bin"
  for exe in tests/tessera_gpu_tests tests/tessera_cpu_tests benchmarks/tessera_bench \
             benchmarks/tessera_jit_bench examples/demo/tessera-demo; do
    [[ -x "$TESSERA_BUILD_DIR/$exe" ]] && ln -sf "$TESSERA_BUILD_DIR/$exe" "$bin/"
  done
fi

if [[ ",$skip," != *",cpu,"* ]]; then
  step "cpu tests" "$logs/cpu_tests.log" "$bin/tessera_cpu_tests"
fi
test_filter="${TESSERA_GPU_TEST_FILTER:-}"
if [[ -n "$test_filter" ]]; then
  step "gpu tests ($test_filter)" "$logs/gpu_tests.log" "$bin/tessera_gpu_tests" \
    --gtest_filter="$test_filter"
  grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|tests? from .* ran|^\[  FAILED  \] [A-Za-z]' \
    "$logs/gpu_tests.log" | tail -n 30 | sed 's/^/      /' | tee -a "$summary"
else
  # Prefill and the GEMMs (the newest kernels) run in their own processes, so
  # a sticky CUDA error there cannot fail every other test.
  step "gpu tests" "$logs/gpu_tests.log" "$bin/tessera_gpu_tests" \
    --gtest_filter='-*Prefill*:BlockSparse*:*SegmentGemm*:*BmmFp8*'
  grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|tests? from .* ran' "$logs/gpu_tests.log" | tail -n 4 |
    sed 's/^/      /' | tee -a "$summary"
  step "gpu tests (prefill)" "$logs/gpu_tests_prefill.log" "$bin/tessera_gpu_tests" \
    --gtest_filter='*Prefill*:BlockSparse*'
  grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|tests? from .* ran|^\[  FAILED  \] [A-Za-z]' \
    "$logs/gpu_tests_prefill.log" | tail -n 30 | sed 's/^/      /' | tee -a "$summary"
  step "gpu tests (segment gemm, bmm_fp8)" "$logs/gpu_tests_gemm.log" \
    "$bin/tessera_gpu_tests" --gtest_filter='*SegmentGemm*:*BmmFp8*'
  grep -E '^\[  (PASSED|FAILED|SKIPPED) \]|tests? from .* ran|^\[  FAILED  \] [A-Za-z]' \
    "$logs/gpu_tests_gemm.log" | tail -n 30 | sed 's/^/      /' | tee -a "$summary"
fi

# The libtessera the Python package loads (tests and demo).
if [[ -n "${TESSERA_PREBUILT:-}" ]]; then
  pylib="$TESSERA_ROOT/$TESSERA_PREBUILT/lib/libtessera.so.0"
else
  pylib="$TESSERA_BUILD_DIR/libtessera.so"
fi
if [[ ",$skip," != *",python,"* ]]; then
  # The Python package against this build's libtessera (its GPU tests run
  # here). TESSERA_PYTEST_FILTER: a pytest -k expression.
  step "python tests (pytest)" "$logs/pytest.log" env TESSERA_LIBRARY="$pylib" \
    PYTHONUNBUFFERED=1 python3 -m pytest "$TESSERA_ROOT/tests/python" -q -rs \
    -p no:cacheprovider ${TESSERA_PYTEST_FILTER:+-k "$TESSERA_PYTEST_FILTER"}
  grep -E '(passed|failed|error).* in [0-9.]+s|^FAILED' "$logs/pytest.log" | tail -n 20 |
    sed 's/^/      /' | tee -a "$summary"
fi

if [[ ",$skip," != *",sanitizer,"* ]]; then
  # By default all but the statistical sampling tests (thousands of full-row
  # draws each: hours under memcheck); SamplingRows / SamplingRenorm run the
  # same kernels on every path.
  memcheck_filter="${TESSERA_MEMCHECK_FILTER:-${test_filter:--*SamplingDistribution*:SamplingEdge.*}}"
  step "compute-sanitizer memcheck (${memcheck_filter:-all gpu tests})" "$logs/memcheck.log" \
    timeout 400 compute-sanitizer --tool memcheck --error-exitcode 3 --leak-check full \
    "$bin/tessera_gpu_tests" ${memcheck_filter:+--gtest_filter="$memcheck_filter"}
  grep -E 'ERROR SUMMARY' "$logs/memcheck.log" | tail -n 1 | sed 's/^/      /' | tee -a "$summary"
  racecheck_default='*Norm*:*Rope*:Merge*:DecodeKernel.HndLayoutMatchesReference:BatchDecode.GqaRatiosOneFourEightMatchReference:BatchPrefill.VariantsMatchReference:Issue23/SegmentGemmGrid.MatchesReference/B5_*:SegmentGemm.StridedRowsOfXAndY'
  racecheck_default+=':Cascade.RunWithoutLseMatchesConcatenatedAttention'
  racecheck_default+=':SamplingRows.CheckNanFlagsRowsWithNaN:SamplingRows.PerRequestTopKAndTopPApplyToTheirOwnRow'
  # The kernels that use shared memory: the norms (reduction), RoPE (staging),
  # sampling (CUB block reductions and scans), prefill (tiles, output staging),
  # the segment GEMM (cp.async ring, output staging; its small-dim cases),
  # decode (KV pipeline, cross-lane merge) and the merges (cascade: prefill
  # levels and their merge); decode on a subset of its tests, racecheck being slow.
  step "compute-sanitizer racecheck (shared-memory kernels)" "$logs/racecheck.log" \
    timeout 240 compute-sanitizer --tool racecheck --error-exitcode 3 "$bin/tessera_gpu_tests" \
    --gtest_filter="${TESSERA_RACECHECK_FILTER:-$racecheck_default}"
  grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$logs/racecheck.log" | tail -n 1 | sed 's/^/      /' |
    tee -a "$summary"
fi

if [[ ",$skip," != *",demo,"* ]]; then
  step "demo" "$logs/demo.log" "$bin/tessera-demo"
  tail -n 12 "$logs/demo.log" | sed 's/^/      /' | tee -a "$summary"
  step "python demo" "$logs/python_demo.log" env TESSERA_LIBRARY="$pylib" PYTHONUNBUFFERED=1 \
    python3 "$TESSERA_ROOT/examples/python/llama_demo.py"
  tail -n 5 "$logs/python_demo.log" | sed 's/^/      /' | tee -a "$summary"
fi

if [[ ",$skip," != *",bench,"* ]]; then
  step "benchmarks" "$logs/bench.log" "$bin/tessera_bench" \
    ${TESSERA_BENCH_ONLY:+--only "$TESSERA_BENCH_ONLY"}
  step "peers (torch)" "$logs/peers.log" env PYTHONUNBUFFERED=1 \
    python3 "$TESSERA_ROOT/benchmarks/peers_torch.py" "$logs/bench.log"
  step "report" "$logs/report.log" python3 "$TESSERA_ROOT/benchmarks/report.py" \
    "$logs/bench.log" "$logs/peers.log" "$commit" "$TESSERA_ROOT/benchmarks/results"
  cat "$logs/report.log" | tee -a "$summary"
  # The same kernels through the Python package, and its per-call overhead
  # (py_* rows, with the same peers).
  if [[ -z "${TESSERA_BENCH_ONLY:-}" || "${TESSERA_BENCH_ONLY}" == python ]]; then
    step "python benchmarks" "$logs/bench_python.log" env TESSERA_LIBRARY="$pylib" \
      PYTHONUNBUFFERED=1 python3 "$TESSERA_ROOT/benchmarks/bench_python.py"
    step "python peers (torch)" "$logs/peers_python.log" env PYTHONUNBUFFERED=1 \
      python3 "$TESSERA_ROOT/benchmarks/peers_torch.py" "$logs/bench_python.log"
    step "python report" "$logs/report_python.log" python3 "$TESSERA_ROOT/benchmarks/report.py" \
      "$logs/bench_python.log" "$logs/peers_python.log" "$commit" "$TESSERA_ROOT/benchmarks/results"
    cat "$logs/report_python.log" | tee -a "$summary"
  fi
  # JIT compile and load times on this machine's CPUs (appended; the case
  # names the CPU count).
  [[ -z "${TESSERA_BENCH_ONLY:-}" ]] &&
  step "jit bench (CPU)" "$logs/jit_bench.log" env TESSERA_COMMIT="$commit" \
    "$bin/tessera_jit_bench" "$TESSERA_ROOT/benchmarks/results/jit_compile.csv"
fi

if [[ -n "${TESSERA_PROFILE:-}" ]]; then
  # shellcheck disable=SC2086  # specs are space-separated words
  OUT="$logs" step "ncu profiles" "$logs/profile.log" "$TESSERA_ROOT/scripts/gpu_profile.sh" \
    $TESSERA_PROFILE
  grep -hE "^== |Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Issued Ipc Active|hmma|issue_stalled|again without" \
    "$logs"/ncu_*.txt | sed 's/^/      /' | tee -a "$summary"
fi

note "gpu_check: $failures step(s) failed"
if [[ -n "${OUT:-}" ]]; then
  cp "$summary" "$OUT/"
  tar -czf "$OUT/gpu_check_logs.tar.gz" -C "$TESSERA_ROOT" gpu_check_logs benchmarks/results
fi
exit $((failures > 0))
