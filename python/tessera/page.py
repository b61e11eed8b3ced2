"""Paged KV-cache maintenance (FlashInfer's ``flashinfer.page`` API) over libtessera.

A paged cache is one tensor ``[num_pages, 2, page_size, num_kv_heads, head_dim]``
(NHD; HND swaps page_size and num_kv_heads) or a ``(k_cache, v_cache)`` pair of
``[num_pages, page_size, num_kv_heads, head_dim]`` (NHD) tensors. Request ``b``
owns pages ``kv_indices[kv_indptr[b]:kv_indptr[b + 1]]``, the last of them
holding ``kv_last_page_len[b]`` tokens. Index tensors are int32 on the cache's
device. With TESSERA_VALIDATE on, every page index, batch index and position is
checked on the host before the launch. The ops' fake and real kernels run
the same structural checks (_check_*), so torch.compile rejects what the
library would.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from . import _checks, _lib
from ._options import layout_code
from ._ops import custom_op
from ._plan_args import cache_pair, paged_kv_struct
from ._tensor import current_stream, dl

_FROM_ENV = 0  # validate: TESSERA_VALIDATE decides


def _check_batch_indices_positions(append_indptr, seq_lens, batch_indices, positions) -> None:
    _checks.index_arrays(append_indptr=append_indptr, seq_lens=seq_lens,
                         batch_indices=batch_indices, positions=positions)
    _checks.size(append_indptr, 0, seq_lens.shape[0] + 1, "append_indptr",
                 "batch_size + 1 (seq_lens has batch_size)")
    _checks.size(positions, 0, batch_indices.shape[0], "positions",
                 "nnz (the length of batch_indices)")


def _check_append(append_key, append_value, batch_indices, positions, kv_cache, v_cache,
                  kv_indices, kv_indptr, kv_last_page_len, kv_layout) -> None:
    layout = layout_code(kv_layout)
    _checks.tensor(append_key, "append_key", ndim=3, dtypes=_checks.KV)
    _checks.like(append_value, "append_value", append_key, "append_key")
    nnz, num_kv_heads, head_dim = append_key.shape
    _checks.index_arrays(batch_indices=batch_indices, positions=positions,
                         kv_indices=kv_indices, kv_indptr=kv_indptr,
                         kv_last_page_len=kv_last_page_len)
    _checks.size(batch_indices, 0, nnz, "batch_indices", "nnz (tokens in append_key)")
    _checks.size(positions, 0, nnz, "positions", "nnz (tokens in append_key)")
    _checks.size(kv_indptr, 0, kv_last_page_len.shape[0] + 1, "kv_indptr",
                 "batch_size + 1 (kv_last_page_len has batch_size)")
    if v_cache is None:
        _checks.tensor(kv_cache, "paged_kv_cache", ndim=5, dtypes=_checks.KV)
        _checks.size(kv_cache, 1, 2, "paged_kv_cache", "K and V of each page")
        block = kv_cache.shape[2:]
    else:
        _checks.tensor(kv_cache, "paged_kv_cache[0]", ndim=4, dtypes=_checks.KV)
        _checks.like(v_cache, "paged_kv_cache[1]", kv_cache, "paged_kv_cache[0]")
        block = kv_cache.shape[1:]
    heads = block[1] if layout == 0 else block[0]
    if heads != num_kv_heads or block[2] != head_dim:
        _checks.fail("append_key", f"num_kv_heads {heads} and head_dim {block[2]} (the cache's)",
                     _checks.describe(append_key))
    if append_key.dtype != kv_cache.dtype and kv_cache.dtype not in _checks.FP8:
        _checks.fail("append_key", f"the cache's dtype {kv_cache.dtype} (or an fp8 cache)",
                     _checks.describe(append_key))


@custom_op("tessera::get_batch_indices_positions",
                         mutates_args=("batch_indices", "positions"), device_types="cuda")
def _get_batch_indices_positions(append_indptr: torch.Tensor, seq_lens: torch.Tensor,
                                 batch_indices: torch.Tensor, positions: torch.Tensor) -> None:
    _check_batch_indices_positions(append_indptr, seq_lens, batch_indices, positions)
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
    _check_append(append_key, append_value, batch_indices, positions, kv_cache, v_cache,
                  kv_indices, kv_indptr, kv_last_page_len, kv_layout)
    cache = paged_kv_struct(kv_cache, v_cache, layout_code(kv_layout))
    _lib.call("tessera_append_paged_kv_cache", dl(append_key), dl(append_value),
              dl(batch_indices), dl(positions), cache, dl(kv_indices), dl(kv_indptr),
              dl(kv_last_page_len), current_stream(append_key.device), _FROM_ENV)


# The ops only write tensors the caller passed: the fakes check the arguments
# and compute nothing.
_get_batch_indices_positions.register_fake(_check_batch_indices_positions)
_append_paged_kv_cache.register_fake(_check_append)


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
    _checks.tensor(append_indptr, "append_indptr")
    nnz = _checks.integer(nnz, "nnz", minimum=0)
    batch_indices = append_indptr.new_empty(nnz, dtype=torch.int32)
    positions = append_indptr.new_empty(nnz, dtype=torch.int32)
    torch.ops.tessera.get_batch_indices_positions(append_indptr, seq_lens, batch_indices,
                                                  positions)
    return batch_indices, positions


def get_seq_lens(kv_indptr: torch.Tensor, kv_last_page_len: torch.Tensor,
                 page_size: int) -> torch.Tensor:
    r"""Each request's KV length from its page table (FlashInfer 0.2's
    ``flashinfer.page.get_seq_lens``): ``max(pages - 1, 0) * page_size +
    kv_last_page_len``, pages = ``kv_indptr[b + 1] - kv_indptr[b]``.

    Parameters
    ----------
    kv_indptr : torch.Tensor
        ``[batch_size + 1]`` page offsets.
    kv_last_page_len : torch.Tensor
        ``[batch_size]`` tokens in each request's last page.
    page_size : int
        Tokens per page.

    Returns
    -------
    torch.Tensor
        ``[batch_size]``, on the inputs' device (torch operations: CPU or CUDA,
        traceable), dtype as ``kv_indptr - kv_indptr`` and ``kv_last_page_len``
        promote.
    """
    _checks.tensor(kv_indptr, "kv_indptr", ndim=1)
    _checks.tensor(kv_last_page_len, "kv_last_page_len", ndim=1)
    _checks.size(kv_indptr, 0, kv_last_page_len.shape[0] + 1, "kv_indptr",
                 "batch_size + 1 (kv_last_page_len has batch_size)")
    page_size = _checks.integer(page_size, "page_size", minimum=1)
    pages = kv_indptr[1:] - kv_indptr[:-1]
    return torch.clamp(pages - 1, min=0) * page_size + kv_last_page_len


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
        ``[nnz, num_kv_heads, head_dim]``, fp16 or bf16 (or fp8 of the cache's
        format into an fp8 cache), CUDA; last dim contiguous.
    batch_indices, positions : torch.Tensor
        ``[nnz]`` int32, as :func:`get_batch_indices_positions` returns.
    paged_kv_cache : torch.Tensor or (torch.Tensor, torch.Tensor)
        The cache (see the module docstring): the append's dtype, or fp8 e4m3fn
        / e5m2 (a saturating cast).
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
    _checks.tensors(append_key=append_key, append_value=append_value,
                    batch_indices=batch_indices, positions=positions, paged_kv_cache=kv_cache,
                    kv_indices=kv_indices, kv_indptr=kv_indptr,
                    kv_last_page_len=kv_last_page_len)
    torch.ops.tessera.append_paged_kv_cache(append_key, append_value, batch_indices, positions,
                                            kv_cache, v_cache, kv_indices, kv_indptr,
                                            kv_last_page_len, kv_layout)
