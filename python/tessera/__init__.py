"""Tessera: LLM-serving attention, KV-cache, RoPE, norm and activation kernels
for PyTorch, with FlashInfer 0.2's Python API (same names, arguments and
return conventions) over libtessera's C ABI.

    import tessera as flashinfer   # for the APIs listed in docs/python.md

Every op is a torch custom op (namespace torch.ops.tessera) with a fake
implementation, so torch.compile(fullgraph=True) traces through it.
"""

from ._lib import TesseraArgumentError, TesseraError, version
from . import cascade, decode
from .cascade import merge_state, merge_state_in_place, merge_states
from .decode import BatchDecodeWithPagedKVCacheWrapper, single_decode_with_kv_cache

__version__ = "0.1.0"
