"""Paged KV-cache maintenance (FlashInfer's ``flashinfer.page`` API) over libtessera.

A paged cache is one tensor ``[num_pages, 2, page_size, num_kv_heads, head_dim]``
(NHD; HND swaps page_size and num_kv_heads) or a ``(k_cache, v_cache)`` pair of
``[num_pages, page_size, num_kv_heads, head_dim]`` (NHD) tensors. Request ``b``
owns pages ``kv_indices[kv_indptr[b]:kv_indptr[b + 1]]``, the last of them
holding ``kv_last_page_len[b]`` tokens. Index tensors are int32 on the cache's
device. With TESSERA_VALIDATE on, every page index, batch index and position is
checked on the host before the launch.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from . import _lib
from ._options import layout_code
from ._ops import custom_op
from ._plan_args import cache_pair, paged_kv_struct
from ._tensor import current_stream, dl

_FROM_ENV = 0  # validate: TESSERA_VALIDATE decides


@custom_op("tessera::get_batch_indices_positions",
                         mutates_args=("batch_indices", "positions"), device_types="cuda")
def _get_batch_indices_positions(append_indptr: torch.Tensor, seq_lens: torch.Tensor,
                                 batch_indices: torch.Tensor, positions: torch.Tensor) -> None:
    _lib.call("tessera_get_batch_indices_positions", dl(append_indptr), dl(seq_lens),
              dl(batch_indices), dl(positions), current_stream(append_indptr.device))


@custom_op("tessera::append_paged_kv_cache", mutates_args=("kv_cache", "v_cache"),
                         device_types="cuda")
def _append_paged_kv_cache(append_key: torch.Tensor, append_value: torch.Tensor,
                           batch_indices: torch.Tensor, positions: torch.Tensor,
                           kv_cache: torch.Tensor, v_cache: Optional[torch.Tensor],
                           kv_indices: torch.Tensor, kv_indptr: torch.Tensor,
                           kv_last_page_len: torch.Tensor, kv_layout: str) -> None:
    # kv_cache: the combined [pages, 2, ...] tensor (v_cache None) or the K cache.
    cache = paged_kv_struct(kv_cache, v_cache, layout_code(kv_layout))
    _lib.call("tessera_append_paged_kv_cache", dl(append_key), dl(append_value),
              dl(batch_indices), dl(positions), cache, dl(kv_indices), dl(kv_indptr),
              dl(kv_last_page_len), current_stream(append_key.device), _FROM_ENV)


# The ops only write tensors the caller passed: the fakes have nothing to compute.
_get_batch_indices_positions.register_fake(
    lambda append_indptr, seq_lens, batch_indices, positions: None)
_append_paged_kv_cache.register_fake(lambda *arguments: None)


def get_batch_indices_positions(append_indptr: torch.Tensor, seq_lens: torch.Tensor,
                                nnz: int) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""Each appended token's request and position after the append.

    Request ``b`` appends tokens ``[append_indptr[b], append_indptr[b + 1])`` and then
    holds ``seq_lens[b]`` tokens; token ``i`` gets ``batch_indices[i] = b`` and
    ``positions[i] = seq_lens[b] - (append_indptr[b + 1] - append_indptr[b]) + i -
    append_indptr[b]``.

    Parameters
    ----------
    append_indptr : torch.Tensor
        ``[batch_size + 1]`` int32, CUDA.
    seq_lens : torch.Tensor
        ``[batch_size]`` int32, the lengths after the append.
    nnz : int
        Appended tokens in all (``append_indptr[-1]``).

    Returns
    -------
    (batch_indices, positions) : Tuple[torch.Tensor, torch.Tensor]
        ``[nnz]`` int32 each, on append_indptr's device.
    """
    batch_indices = append_indptr.new_empty(nnz, dtype=torch.int32)
    positions = append_indptr.new_empty(nnz, dtype=torch.int32)
    torch.ops.tessera.get_batch_indices_positions(append_indptr, seq_lens, batch_indices,
                                                  positions)
    return batch_indices, positions


def append_paged_kv_cache(append_key: torch.Tensor, append_value: torch.Tensor,
                          batch_indices: torch.Tensor, positions: torch.Tensor,
                          paged_kv_cache: Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]],
                          kv_indices: torch.Tensor, kv_indptr: torch.Tensor,
                          kv_last_page_len: torch.Tensor, kv_layout: str = "NHD") -> None:
    r"""Writes appended keys and values into a paged KV cache, in place.

    Token ``i`` of request ``b = batch_indices[i]`` goes to page
    ``kv_indices[kv_indptr[b] + positions[i] // page_size]``, slot
    ``positions[i] % page_size``.

    Parameters
    ----------
    append_key, append_value : torch.Tensor
        ``[nnz, num_kv_heads, head_dim]``, fp16 or bf16 (or fp8 e4m3 into an fp8
        cache), CUDA; last dim contiguous.
    batch_indices, positions : torch.Tensor
        ``[nnz]`` int32, as :func:`get_batch_indices_positions` returns.
    paged_kv_cache : torch.Tensor or (torch.Tensor, torch.Tensor)
        The cache (see the module docstring): the append's dtype, or fp8 e4m3
        (a saturating cast).
    kv_indices : torch.Tensor
        ``[kv_indptr[-1]]`` int32 page indices.
    kv_indptr : torch.Tensor
        ``[batch_size + 1]`` int32.
    kv_last_page_len : torch.Tensor
        ``[batch_size]`` int32.
    kv_layout : str
        ``"NHD"`` or ``"HND"``.
    """
    layout_code(kv_layout)  # an unknown layout fails here, before the op is dispatched
    kv_cache, v_cache = cache_pair(paged_kv_cache)
    torch.ops.tessera.append_paged_kv_cache(append_key, append_value, batch_indices, positions,
                                            kv_cache, v_cache, kv_indices, kv_indptr,
                                            kv_last_page_len, kv_layout)
