#!/usr/bin/env bash
# The main job: builds tessera-demo and runs a synthetic Llama-shaped serving
# step on the GPU (see examples/demo/), then, where PyTorch is installed, the
# Python demo: a small random-initialised Llama-style model served through
# the tessera package and checked against the same model on torch SDPA
# (examples/python/llama_demo.py), and a DeepSeek-shaped MLA layer decoding
# through the paged latent cache against its un-absorbed float64 form
# (examples/python/mla_demo.py). Exits non-zero without a GPU.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$TESSERA_ROOT/scripts/setup.sh"
tessera_build tessera-demo
"$TESSERA_BUILD_DIR/examples/demo/tessera-demo" "$@"
if python3 -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1; then
  TESSERA_LIBRARY="$TESSERA_BUILD_DIR/libtessera.so" \
    python3 "$TESSERA_ROOT/examples/python/llama_demo.py"
  TESSERA_LIBRARY="$TESSERA_BUILD_DIR/libtessera.so" \
    python3 "$TESSERA_ROOT/examples/python/mla_demo.py"
else
  echo "demo: Python demo skipped (needs PyTorch with a CUDA GPU)"
fi
