#!/usr/bin/env bash
# A/B against another revision: builds libtessera from REV's include/ and
# src/ in the staged sm90a build tree (scripts/stage_gpu_build.sh first),
# copies it to .gpu-build/lib_NAME, then restores the working tree's files
# and rebuilds. On the device, scripts/gpu_ab.sh FAMILY CASE ROUNDS NAME
# times the staged binaries against both libraries. Only for revisions whose
# public API (include/tessera/api, the C ABI) matches the staged binaries'.
# REV's include/ goes beside the library (lib_NAME/include): the JIT kernels
# that library builds must see its own device headers (the kernel parameter
# structs), else they read the launch's parameters with another layout (the
# ninth session's A/B failed with a misaligned address that way).
# Several REV NAME pairs build one after another before the single restore
# (one rebuild of the working tree's library, not one per revision).
#   scripts/stage_revision_lib.sh 261be9c old
#   scripts/stage_revision_lib.sh cd03c8b old 15a3d56 barrier
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
(($# >= 2 && $# % 2 == 0)) || { echo "usage: $0 REV NAME [REV NAME]..." >&2; exit 2; }
cd "$TESSERA_ROOT"
build="$TESSERA_ROOT/build-sm90a"
[[ -f "$build/build.ninja" ]] || { echo "no $build: run scripts/stage_gpu_build.sh first" >&2; exit 1; }
[[ -z "$(git status --porcelain -- include src)" ]] || { echo "include/ or src/ has uncommitted or untracked files" >&2; exit 1; }
restore() { git checkout -q HEAD -- include src && git clean -qfd -- include src; }
trap restore EXIT
while (($# > 0)); do
  rev=$1 name=$2
  shift 2
  git checkout -q "$rev" -- include src
  # Files REV lacks (HEAD's or the previous revision's) must not stay.
  comm -23 <(git ls-files -- include src | sort) \
    <(git ls-tree -r --name-only "$rev" -- include src | sort) | xargs -r rm -f
  ninja -C "$build" tessera >/dev/null
  rm -rf .gpu-build/lib_"$name" && mkdir -p .gpu-build/lib_"$name"
  cp "$build"/libtessera.so.0.*.* .gpu-build/lib_"$name"/libtessera.so.0
  git archive "$rev" include | tar -x -C .gpu-build/lib_"$name"
  ls -la .gpu-build/lib_"$name"
done
restore
trap - EXIT
ninja -C "$build" tessera >/dev/null
cp "$build"/libtessera.so.0.*.* .gpu-build/lib/
