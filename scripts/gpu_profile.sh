#!/usr/bin/env bash
# Nsight Compute profiles of chosen benchmark cases, for tuning on the GPU
# machine after scripts/gpu_check.sh (same prebuilt tree). Each argument is
# FAMILY:CASE_SUBSTRING:KERNEL_REGEX, e.g.
#   scripts/gpu_profile.sh 'decode:B=1,L=32768,page=16,:decode_kernel|merge'
# and profiles the first two launches of matching kernels in that case
# (warm-up launches: inputs are already in place). Reports go to
# $OUT/ncu_<n>.txt (or gpu_check_logs/). Clocks are left alone
# (--clock-control none, as the device notes ask); TESSERA_NCU_ARGS adds
# options, e.g. '--kernel-name-base demangled' to match template arguments
# (a JIT variant's type) in KERNEL_REGEX, or '--launch-skip 4'.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$TESSERA_ROOT"
prebuilt="${TESSERA_PREBUILT:-.gpu-build}"
[[ "$prebuilt" == /* ]] || prebuilt="$TESSERA_ROOT/$prebuilt"
cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
export LD_LIBRARY_PATH="$prebuilt/lib:$cuda_lib:${LD_LIBRARY_PATH:-}"
dest="${OUT:-$TESSERA_ROOT/gpu_check_logs}"
mkdir -p "$dest"
n=0
for spec in "$@"; do
  IFS=: read -r family case_filter kernels <<<"$spec"
  n=$((n + 1))
  echo "== $spec" | tee "$dest/ncu_$n.txt"
  # The sections, plus the tensor pipe's utilisation and the per-reason stall
  # breakdown as text (the sections show those only as charts). A metric this
  # ncu does not know fails the whole run, so on failure it runs again
  # without them.
  sections=(--section SpeedOfLight --section Occupancy --section LaunchStats
    --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats
    --section ComputeWorkloadAnalysis --section InstructionStats)
  metrics=sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_tensor_op_hmma.avg.pct_of_peak_sustained_active,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio
  bench=("$prebuilt/bin/tessera_bench" --quick --only "$family" --case "$case_filter")
  read -r -a extra <<<"${TESSERA_NCU_ARGS:-}"
  ncu_args=(--clock-control none --launch-count 2 "${extra[@]}" -k "regex:$kernels")
  if ! timeout 240 ncu "${ncu_args[@]}" "${sections[@]}" --metrics "$metrics" \
    "${bench[@]}" >>"$dest/ncu_$n.txt" 2>&1; then
    echo "(again without the extra metrics)" >>"$dest/ncu_$n.txt"
    timeout 240 ncu "${ncu_args[@]}" "${sections[@]}" "${bench[@]}" >>"$dest/ncu_$n.txt" 2>&1
  fi
  echo "exit $?" >>"$dest/ncu_$n.txt"
done
