#!/usr/bin/env bash
# A/B builds for the GPU machine: relinks libtessera from the staged sm90a
# build (scripts/stage_gpu_build.sh first) with ONE translation unit rebuilt
# under extra compiler flags, into .gpu-build/lib_NAME/. On the device, run
# the same binaries against it with LD_LIBRARY_PATH=.gpu-build/lib_NAME:...,
# so variants are measured in one call, on one machine, minutes apart.
#   scripts/stage_variant_lib.sh NAME SOURCE FLAGS...
#   scripts/stage_variant_lib.sh tile32 src/api/decode_kernel_launch.cu -DSOME_EXPERIMENT=1
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
(($# >= 3)) || { echo "usage: $0 NAME SOURCE FLAGS..." >&2; exit 2; }
name=$1 source=$2
shift 2
build="$TESSERA_ROOT/build-sm90a"
[[ -f "$build/build.ninja" ]] || { echo "no $build: run scripts/stage_gpu_build.sh first" >&2; exit 1; }
cd "$build"
object="CMakeFiles/tessera.dir/$source.o"
compile=$(ninja -t commands libtessera.so | grep -F -- "-o $object" | head -n 1)
link=$(ninja -t commands libtessera.so | grep -F -- "-o libtessera.so." | head -n 1)
[[ -n "$compile" && -n "$link" ]] || { echo "no compile/link command for $source" >&2; exit 1; }
work=$(mktemp -d)
variant_object="$work/variant.o"
# Same command, other output, no dependency file, the extra flags.
compile=${compile//"-o $object"/"$* -o $variant_object"}
compile=$(sed -E 's/ -MD -MT [^ ]+ -MF [^ ]+//' <<<"$compile")
eval "$compile"
dest="$TESSERA_ROOT/.gpu-build/lib_$name"
mkdir -p "$dest"
link=${link#": && "}
link=${link%" && :"}
link=${link//"$object"/"$variant_object"}
link=$(sed -E "s# -o libtessera\.so\.[0-9.]+# -o $dest/libtessera.so.0#" <<<"$link")
eval "$link"
rm -rf "$work"
ls -la "$dest"
