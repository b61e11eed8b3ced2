#!/usr/bin/env bash
# Builds everything (every .cu file compiles, so compile errors in any kernel
# show here) and runs every test through CTest. Without a GPU the GPU tests
# report themselves skipped, with the count.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$TESSERA_ROOT/scripts/setup.sh"
tessera_build

log="$TESSERA_BUILD_DIR/ctest.log"
status=0
ctest --test-dir "$TESSERA_BUILD_DIR" --output-on-failure -j "$TESSERA_JOBS" 2>&1 | tee "$log" ||
  status=$?

# One plain summary line: how many passed, failed and were skipped.
# ctest marks results as "   Passed", "***Skipped", "***Failed", "***Exception",
# "***Timeout" or "***Not Run" at the end of each "Test #N:" line.
passed=$(grep -cE 'Test +#[0-9]+: .* Passed +[0-9.]+ sec' "$log" || true)
failed=$(grep -cE 'Test +#[0-9]+: .*\*\*\*(Failed|Exception|Timeout|Not Run)' "$log" || true)
skipped=$(grep -cE 'Test +#[0-9]+: .*\*\*\*Skipped' "$log" || true)
if ((skipped > 0)); then
  echo "note: $skipped GPU tests skipped (no CUDA device here); scripts/gpu_check.sh runs them on a GPU"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$status"
