#!/usr/bin/env bash
# One device call for the Hopper prefill back end (issue 21): compares
# staged builds of main and of branches in the same run. Each build is
# .gpu-variants/<name>.tar.xz (bin/tessera_gpu_tests, bin/tessera_bench,
# lib/, include/ for the JIT, COMMIT), made here by scripts/stage_gpu_variant.sh;
# carry [".gpu-variants"]. Usage on the GPU machine, from the repository root:
#   bash scripts/dev_fa3_check.sh "main b@FILTER@CASES@LIMIT@BACKENDS@FAMILY ..." [budget s]
# Per spec: gtests (FILTER, default the prefill ones, "none" for none; on
# BACKENDS, default fa3 or DEV_BACKENDS; LIMIT s, default 150, a hang shows
# as rc 124), then FAMILY's bench rows (default batch_prefill; CASES: --case
# substrings joined by "+", default the causal head_dim 128 and 64 ones,
# "none" for no rows). A build may appear in several specs (its bench rows
# append to one log). The first build then runs DEV_FULL_SUITE=1's whole
# GPU gtest suite and compute-sanitizer on DEV_SANITIZE's tests while the
# budget lasts; DEV_PEERS=1 times the PyTorch
# peers of the first build's rows and writes benchmarks/results/<gpu>.*
# (under $OUT/l/results, with commit DEV_PEERS_COMMIT); DEV_PROFILE="SPEC
# ..." runs scripts/gpu_profile.sh's specs (FAMILY:CASE:KERNEL_REGEX) on
# each of DEV_PROFILE_BUILDS (default the first build). Logs under $OUT/l.
set -u
builds=($1)
budget=${2:-560}
nvcc_dir="$(dirname "$(readlink -f "$(command -v nvcc)")")"
cuda_include="$nvcc_dir/../include"
mkdir -p "$OUT/l"
summary="$OUT/l/summary.txt"
say() { echo "$*" | tee -a "$summary"; }
left() { echo $((budget - SECONDS)); }
use() {
  local dir=/tmp/dev_builds/$1
  if [[ ! -d $dir ]]; then
    mkdir -p "$dir"
    python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
      ".gpu-variants/$1.tar.xz" | tar x -C "$dir"
  fi
  export LD_LIBRARY_PATH="$dir/lib:$nvcc_dir/../lib64"
  export TESSERA_JIT_INCLUDE_PATH="$dir/include:$cuda_include:$cuda_include/cccl"
  bin=$dir/bin
}
gtests() {  # name filter timeout [env...]
  local name=$1 filter=$2 limit=$3
  shift 3
  env "$@" timeout "$limit" "$bin/tessera_gpu_tests" --gtest_filter="$filter" > "$OUT/l/$name.log" 2>&1
  local rc=$?
  say "$name: rc $rc $(grep -cE '^\[       OK' "$OUT/l/$name.log") ok, $(grep -E '^\[  FAILED .*\.' "$OUT/l/$name.log" | sort -u | wc -l) failed ($SECONDS s)"
  grep -E '^\[  FAILED .*\.' "$OUT/l/$name.log" | sort -u | head -20 | tee -a "$summary"
}
bench() {  # name [family]
  local name=$1 family=${2:-batch_prefill}
  local c
  for c in ${DEV_BENCH_CASES:-D=128,causal=1 D=64,causal=1}; do
    timeout 150 "$bin/tessera_bench" --only "$family" --case "$c" >> "$OUT/l/bench_$name.log" 2>&1
    say "bench $name $c: rc $? ($SECONDS s)"
  done
}
n=0
for spec in "${builds[@]}"; do
  # name[@gtest filter[@bench cases, "+" between[@test limit s[@backends, "," between
  # [@bench family, default batch_prefill]]]]]
  IFS=@ read -r b filter cases limit backends family <<< "$spec"
  filter=${filter:-BatchPrefill.*:BlockSparse.*:SinglePrefill.*}
  n=$((n + 1))
  use "$b"
  say "== $b $(cat /tmp/dev_builds/$b/COMMIT)"
  if (( $(left) < 120 )); then say "out of budget"; break; fi
  [[ "$filter" == none ]] || gtests "tests_${n}_$b" "$filter" "${limit:-150}" \
    TESSERA_TEST_PREFILL_BACKENDS="${backends:-${DEV_BACKENDS:-fa3}}"
  if (( $(left) < 100 )); then say "out of budget"; break; fi
  [[ "$cases" == none ]] || DEV_BENCH_CASES="${cases//+/ }" bench "$b" "$family"
done
first=${builds[0]%%@*}
use "$first"
if [[ -n "${DEV_FULL_SUITE:-}" ]] && (( $(left) > 60 )); then
  gtests "full_$first" '*' $(( $(left) - 30 ))
fi
if [[ -n "${DEV_SANITIZE:-}" ]] && (( $(left) > 60 )); then
  for tool in memcheck racecheck; do
    timeout $(( $(left) / 2 )) compute-sanitizer --tool $tool --error-exitcode 1 \
      "$bin/tessera_gpu_tests" --gtest_filter="$DEV_SANITIZE" > "$OUT/l/$tool.log" 2>&1
    say "$tool: rc $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/l/$tool.log" | tail -1) ($SECONDS s)"
  done
fi
if [[ -n "${DEV_PEERS:-}" ]] && (( $(left) > 90 )); then
  # The build's own peers / report scripts where it carries them.
  scripts_dir=/tmp/dev_builds/$first/benchmarks
  [[ -f $scripts_dir/peers_torch.py ]] || scripts_dir=benchmarks
  timeout $(( $(left) - 20 )) python3 "$scripts_dir/peers_torch.py" "$OUT/l/bench_$first.log" \
    > "$OUT/l/peers_$first.log" 2>&1
  say "peers $first: rc $? ($SECONDS s)"
  cp -r benchmarks/results "$OUT/l/results"
  python3 "$scripts_dir/report.py" "$OUT/l/bench_$first.log" "$OUT/l/peers_$first.log" \
    "${DEV_PEERS_COMMIT:-unknown}" "$OUT/l/results" > "$OUT/l/report_$first.log" 2>&1
  say "report $first: rc $?"
  grep -E 'batch_prefill' "$OUT/l/report_$first.log" >> "$summary"
fi
if [[ -n "${DEV_PROFILE:-}" ]]; then
  for b in ${DEV_PROFILE_BUILDS:-$first}; do
    (( $(left) > 90 )) || { say "profile $b: out of budget"; break; }
    use "$b"
    # shellcheck disable=SC2086  # specs are space-separated words
    OUT="$OUT/l/ncu_$b" TESSERA_PREBUILT="/tmp/dev_builds/$b" timeout $(( $(left) - 30 )) \
      scripts/gpu_profile.sh $DEV_PROFILE > /dev/null 2>&1
    say "profile $b: rc $? ($SECONDS s)"
    grep -hE "^== |Duration|Registers Per|Issued Ipc Active|hmma|issue_stalled" \
      "$OUT/l/ncu_$b"/ncu_*.txt | sed 's/^/  /' >> "$summary"
  done
fi
for f in "$OUT"/l/bench_*.log; do
  echo "-- $f"; grep -E '^result,batch_prefill_(ragged|paged)(_fa3)?,' "$f" | sed 's/^result,//; s/,dtype=bf16//'
done >> "$summary"
cat "$summary"
# Few files come back from the machine: the summary and one archive.
cp "$summary" "$OUT/summary.txt"
tar czf "$OUT/logs.tgz" -C "$OUT" l && rm -rf "$OUT/l"
