#!/usr/bin/env bash
# A/B of library builds on the GPU machine, minutes apart in one call: runs
# tessera_bench (the staged binaries) against the staged libtessera ("base")
# and against each .gpu-build/lib_NAME made by scripts/stage_variant_lib.sh,
# in interleaved rounds (base, A, B, base, A, B, ...) so clock or thermal
# drift hits every build alike, then prints each case's median per build.
#   scripts/gpu_ab.sh FAMILY CASE_FILTER ROUNDS NAME...
#   scripts/gpu_ab.sh batch_prefill 'D=128,causal=1,dtype' 2 fold skip both
# Variant libraries may travel packed as .gpu-build/variants.tgz (the carry
# limit is 64 MiB; each library is ~21 MB); it is unpacked here first.
# Logs: $OUT/ab_<round>_<name>.log (or gpu_check_logs/).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$TESSERA_ROOT"
(($# >= 4)) || { echo "usage: $0 FAMILY CASE_FILTER ROUNDS NAME..." >&2; exit 2; }
family=$1 case_filter=$2 rounds=$3
shift 3
prebuilt="${TESSERA_PREBUILT:-.gpu-build}"
[[ -f "$prebuilt/variants.tgz" ]] && tar -xzf "$prebuilt/variants.tgz" -C "$prebuilt"
cuda_lib="$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64"
cuda_include="$(dirname "$(readlink -f "$(command -v nvcc)")")/../include"
dest="${OUT:-$TESSERA_ROOT/gpu_check_logs}"
mkdir -p "$dest"
for name in "$@"; do
  [[ -f "$prebuilt/lib_$name/libtessera.so.0" ]] || { echo "no $prebuilt/lib_$name" >&2; exit 1; }
done
for ((round = 1; round <= rounds; ++round)); do
  for name in base "$@"; do
    libdir="$TESSERA_ROOT/$prebuilt/lib_$name"
    [[ $name == base ]] && libdir="$TESSERA_ROOT/$prebuilt/lib"
    # A library staged from another revision JIT-compiles from that
    # revision's device headers (stage_revision_lib.sh puts them beside it).
    headers="$TESSERA_ROOT/include"
    [[ -d "$libdir/include/tessera" ]] && headers="$libdir/include"
    TESSERA_JIT_INCLUDE_PATH="$headers:$cuda_include:$cuda_include/cccl" \
      LD_LIBRARY_PATH="$libdir:$cuda_lib:${LD_LIBRARY_PATH:-}" "$prebuilt/bin/tessera_bench" \
      --only "$family" --case "$case_filter" >"$dest/ab_${round}_$name.log" 2>&1 ||
      echo "round $round, $name: tessera_bench failed (see ab_${round}_$name.log)"
  done
done
# result,<kernel>,<case>,<unit>,<value> lines -> one row per kernel and case,
# one column per build (median over rounds).
python3 - "$dest" "$rounds" base "$@" <<'EOF'
import csv, statistics, sys
dest, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
values = {}
for name in names:
    for r in range(1, rounds + 1):
        with open(f"{dest}/ab_{r}_{name}.log") as f:
            for row in csv.reader(f):
                if row and row[0] == "result" and len(row) >= 5:
                    values.setdefault((row[1], row[2]), {}).setdefault(name, []).append(float(row[4]))
print("kernel | case | " + " | ".join(names) + " | " + " | ".join(f"{n}/base" for n in names[1:]))
for (kernel, case), per in values.items():
    med = {n: statistics.median(per[n]) if n in per else float("nan") for n in names}
    ratios = [med[n] / med["base"] if med["base"] else float("nan") for n in names[1:]]
    print(f"{kernel} | {case} | " + " | ".join(f"{med[n]:.1f}" for n in names) + " | " +
          " | ".join(f"{x:.3f}" for x in ratios))
EOF
