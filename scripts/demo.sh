#!/usr/bin/env bash
# The main job: builds tessera-demo and runs a synthetic Llama-shaped serving
# step on the GPU (see examples/demo/). Exits non-zero without a GPU.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$TESSERA_ROOT/scripts/setup.sh"
tessera_build tessera-demo
exec "$TESSERA_BUILD_DIR/examples/demo/tessera-demo" "$@"
