"""Tessera: LLM-serving attention, KV-cache, RoPE, norm, activation and GEMM kernels
for PyTorch, with FlashInfer 0.2's Python API (same names, arguments and
return conventions) over libtessera's C ABI (docs/python.md).

    import tessera as flashinfer   # for the APIs docs/python.md lists

Every kernel call is a torch custom op (torch.ops.tessera.*) with a fake
implementation, so torch.compile(fullgraph=True) traces through it.
"""

from ._lib import TesseraArgumentError, TesseraError, version
from . import (activation, cascade, decode, gemm, jit, mla, norm, page, prefill, quantization,
               rope, sampling, sparse, utils)
from .activation import gelu_and_mul, gelu_tanh_and_mul, silu_and_mul
from .cascade import (BatchDecodeWithSharedPrefixPagedKVCacheWrapper,
                      BatchPrefillWithSharedPrefixPagedKVCacheWrapper,
                      MultiLevelCascadeAttentionWrapper, merge_state, merge_state_in_place,
                      merge_states)
from .decode import (BatchDecodeWithPagedKVCacheWrapper,
                     CUDAGraphBatchDecodeWithPagedKVCacheWrapper, single_decode_with_kv_cache)
from .mla import BatchDecodeMlaWithPagedKVCacheWrapper
from .gemm import SegmentGEMMWrapper, bmm_fp8
from .norm import fused_add_rmsnorm, gemma_fused_add_rmsnorm, gemma_rmsnorm, rmsnorm
from .page import append_paged_kv_cache, get_batch_indices_positions, get_seq_lens
from .quantization import packbits, segment_packbits
from .prefill import (BatchPrefillWithPagedKVCacheWrapper, BatchPrefillWithRaggedKVCacheWrapper,
                      single_prefill_with_kv_cache, single_prefill_with_kv_cache_return_lse)
from .rope import (apply_llama31_rope, apply_llama31_rope_inplace, apply_llama31_rope_pos_ids,
                   apply_llama31_rope_pos_ids_inplace, apply_rope, apply_rope_inplace,
                   apply_rope_pos_ids, apply_rope_pos_ids_inplace, apply_rope_with_cos_sin_cache,
                   apply_rope_with_cos_sin_cache_inplace)
from .sampling import (chain_speculative_sampling, min_p_sampling_from_probs, sampling_from_probs,
                       top_k_mask_logits, top_k_renorm_probs, top_k_sampling_from_probs,
                       top_k_top_p_sampling_from_logits, top_k_top_p_sampling_from_probs,
                       top_p_renorm_probs, top_p_sampling_from_probs)
from .sparse import BlockSparseAttentionWrapper

__version__ = "0.1.0"

__all__ = [
    "TesseraArgumentError", "TesseraError", "version", "activation", "cascade", "decode", "gemm",
    "jit", "mla", "BatchDecodeMlaWithPagedKVCacheWrapper", "SegmentGEMMWrapper", "bmm_fp8",
    "norm", "page", "prefill", "quantization", "rope", "sampling", "sparse", "utils", "packbits",
    "segment_packbits", "CUDAGraphBatchDecodeWithPagedKVCacheWrapper", "get_seq_lens",
    "single_prefill_with_kv_cache_return_lse",
    "gelu_and_mul", "gelu_tanh_and_mul",
    "silu_and_mul", "merge_state", "merge_state_in_place", "merge_states",
    "BatchDecodeWithPagedKVCacheWrapper", "single_decode_with_kv_cache", "fused_add_rmsnorm",
    "gemma_fused_add_rmsnorm", "gemma_rmsnorm", "rmsnorm", "append_paged_kv_cache",
    "get_batch_indices_positions", "BatchPrefillWithPagedKVCacheWrapper",
    "BatchPrefillWithRaggedKVCacheWrapper", "single_prefill_with_kv_cache", "apply_llama31_rope",
    "apply_llama31_rope_inplace", "apply_llama31_rope_pos_ids",
    "apply_llama31_rope_pos_ids_inplace", "apply_rope", "apply_rope_inplace", "apply_rope_pos_ids",
    "apply_rope_pos_ids_inplace", "apply_rope_with_cos_sin_cache",
    "apply_rope_with_cos_sin_cache_inplace", "BlockSparseAttentionWrapper",
    "MultiLevelCascadeAttentionWrapper", "BatchDecodeWithSharedPrefixPagedKVCacheWrapper",
    "BatchPrefillWithSharedPrefixPagedKVCacheWrapper",
    "chain_speculative_sampling", "min_p_sampling_from_probs", "sampling_from_probs",
    "top_k_mask_logits", "top_k_renorm_probs", "top_k_sampling_from_probs",
    "top_k_top_p_sampling_from_logits",
    "top_k_top_p_sampling_from_probs", "top_p_renorm_probs", "top_p_sampling_from_probs",
]
