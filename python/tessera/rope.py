"""Rotary position embedding (FlashInfer's ``flashinfer.rope`` API) over libtessera.

Pair ``j`` of a head (``0 <= j < rotary_dim / 2``) rotates by ``pos * freq_j``
with ``freq_j = 1 / (rope_scale * rope_theta ** (2 j / rotary_dim))``: NeoX
pairs ``(j, j + rotary_dim / 2)``, or interleaved (GPT-J) pairs ``(2 j, 2 j + 1)``.
Dimensions past ``rotary_dim`` are copied unchanged. The Llama 3.1 variants
blend ``freq_j`` and ``freq_j * rope_scale`` by wavelength, as Llama 3.1 does.
Angles and products are computed in float32.

The library rotates in place when the output is the input tensor, so the
``*_inplace`` functions pass the inputs as outputs (their own custom ops,
which declare the inputs mutated). Index tensors are int32 on q's device;
indptr (and, for the cos/sin cache, positions) are validated against the
token count only when TESSERA_VALIDATE asks for it (a device-to-host copy).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _lib
from ._lib import RopeOptions
from ._tensor import current_stream, dl
from ._ops import custom_op

_FROM_ENV = 0  # validate: TESSERA_VALIDATE decides


def _options(rotary_dim: int, interleave: bool, rope_scale: float, rope_theta: float,
             llama31: bool, low_freq_factor: float, high_freq_factor: float,
             old_context_len: float) -> RopeOptions:
    o = RopeOptions()
    o.rotary_dim = rotary_dim
    o.interleave = int(interleave)
    o.rope_scale = rope_scale
    o.rope_theta = rope_theta
    o.llama31 = int(llama31)
    o.low_freq_factor = low_freq_factor
    o.high_freq_factor = high_freq_factor
    o.old_context_len = old_context_len
    return o


@custom_op("tessera::apply_rope", mutates_args=("q_rope", "k_rope"),
                         device_types="cuda")
def _apply_rope(q: torch.Tensor, k: torch.Tensor, q_rope: torch.Tensor, k_rope: torch.Tensor,
                indptr: torch.Tensor, offsets: torch.Tensor, rotary_dim: int, interleave: bool,
                rope_scale: float, rope_theta: float, llama31: bool, low_freq_factor: float,
                high_freq_factor: float, old_context_len: float) -> None:
    options = _options(rotary_dim, interleave, rope_scale, rope_theta, llama31, low_freq_factor,
                       high_freq_factor, old_context_len)
    _lib.call("tessera_apply_rope", dl(q), dl(k), dl(q_rope), dl(k_rope), dl(indptr),
              dl(offsets), options, current_stream(q.device), _FROM_ENV)


@custom_op("tessera::apply_rope_inplace", mutates_args=("q", "k"),
                         device_types="cuda")
def _apply_rope_inplace(q: torch.Tensor, k: torch.Tensor, indptr: torch.Tensor,
                        offsets: torch.Tensor, rotary_dim: int, interleave: bool,
                        rope_scale: float, rope_theta: float, llama31: bool,
                        low_freq_factor: float, high_freq_factor: float,
                        old_context_len: float) -> None:
    options = _options(rotary_dim, interleave, rope_scale, rope_theta, llama31, low_freq_factor,
                       high_freq_factor, old_context_len)
    q_view, k_view = dl(q), dl(k)
    _lib.call("tessera_apply_rope", q_view, k_view, q_view, k_view, dl(indptr), dl(offsets),
              options, current_stream(q.device), _FROM_ENV)


@custom_op("tessera::apply_rope_pos_ids", mutates_args=("q_rope", "k_rope"),
                         device_types="cuda")
def _apply_rope_pos_ids(q: torch.Tensor, k: torch.Tensor, q_rope: torch.Tensor,
                        k_rope: torch.Tensor, pos_ids: torch.Tensor, rotary_dim: int,
                        interleave: bool, rope_scale: float, rope_theta: float, llama31: bool,
                        low_freq_factor: float, high_freq_factor: float,
                        old_context_len: float) -> None:
    options = _options(rotary_dim, interleave, rope_scale, rope_theta, llama31, low_freq_factor,
                       high_freq_factor, old_context_len)
    _lib.call("tessera_apply_rope_pos_ids", dl(q), dl(k), dl(q_rope), dl(k_rope), dl(pos_ids),
              options, current_stream(q.device))


@custom_op("tessera::apply_rope_pos_ids_inplace", mutates_args=("q", "k"),
                         device_types="cuda")
def _apply_rope_pos_ids_inplace(q: torch.Tensor, k: torch.Tensor, pos_ids: torch.Tensor,
                                rotary_dim: int, interleave: bool, rope_scale: float,
                                rope_theta: float, llama31: bool, low_freq_factor: float,
                                high_freq_factor: float, old_context_len: float) -> None:
    options = _options(rotary_dim, interleave, rope_scale, rope_theta, llama31, low_freq_factor,
                       high_freq_factor, old_context_len)
    q_view, k_view = dl(q), dl(k)
    _lib.call("tessera_apply_rope_pos_ids", q_view, k_view, q_view, k_view, dl(pos_ids), options,
              current_stream(q.device))


@custom_op("tessera::apply_rope_with_cos_sin_cache",
                         mutates_args=("query_out", "key_out"), device_types="cuda")
def _apply_rope_with_cos_sin_cache(positions: torch.Tensor, query: torch.Tensor,
                                   key: torch.Tensor, query_out: torch.Tensor,
                                   key_out: torch.Tensor, head_size: int,
                                   cos_sin_cache: torch.Tensor, is_neox: bool) -> None:
    _lib.call("tessera_apply_rope_with_cos_sin_cache", dl(positions), dl(query), dl(key),
              dl(query_out), dl(key_out), head_size, dl(cos_sin_cache), int(is_neox),
              current_stream(query.device), _FROM_ENV)


@custom_op("tessera::apply_rope_with_cos_sin_cache_inplace",
                         mutates_args=("query", "key"), device_types="cuda")
def _apply_rope_with_cos_sin_cache_inplace(positions: torch.Tensor, query: torch.Tensor,
                                           key: torch.Tensor, head_size: int,
                                           cos_sin_cache: torch.Tensor, is_neox: bool) -> None:
    query_view, key_view = dl(query), dl(key)
    _lib.call("tessera_apply_rope_with_cos_sin_cache", dl(positions), query_view, key_view,
              query_view, key_view, head_size, dl(cos_sin_cache), int(is_neox),
              current_stream(query.device), _FROM_ENV)


# The ops only write tensors the caller passed: the fakes have nothing to compute.
_apply_rope.register_fake(lambda q, k, q_rope, k_rope, indptr, offsets, *options: None)
_apply_rope_inplace.register_fake(lambda q, k, indptr, offsets, *options: None)
_apply_rope_pos_ids.register_fake(lambda q, k, q_rope, k_rope, pos_ids, *options: None)
_apply_rope_pos_ids_inplace.register_fake(lambda q, k, pos_ids, *options: None)
_apply_rope_with_cos_sin_cache.register_fake(
    lambda positions, query, key, query_out, key_out, head_size, cos_sin_cache, is_neox: None)
_apply_rope_with_cos_sin_cache_inplace.register_fake(
    lambda positions, query, key, head_size, cos_sin_cache, is_neox: None)


def _rope_args(rotary_dim: Optional[int], interleave: bool, rope_scale: float,
               rope_theta: float) -> tuple:
    """The ops' trailing options without Llama 3.1 scaling (rotary_dim 0: head_dim)."""
    return (0 if rotary_dim is None else int(rotary_dim), bool(interleave), float(rope_scale),
            float(rope_theta), False, 0.0, 0.0, 0.0)


def _llama31_args(rotary_dim: Optional[int], interleave: bool, rope_scale: float,
                  rope_theta: float, low_freq_factor: float, high_freq_factor: float,
                  old_context_len: float) -> tuple:
    return (0 if rotary_dim is None else int(rotary_dim), bool(interleave), float(rope_scale),
            float(rope_theta), True, float(low_freq_factor), float(high_freq_factor),
            float(old_context_len))


def apply_rope(q: torch.Tensor, k: torch.Tensor, indptr: torch.Tensor, offsets: torch.Tensor,
               rotary_dim: Optional[int] = None, interleave: bool = False,
               rope_scale: float = 1, rope_theta: float = 1e4
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""RoPE on a ragged batch: token ``i`` of request ``b`` (``indptr[b] <= i <
    indptr[b + 1]``) sits at position ``offsets[b] + i - indptr[b]``.

    Parameters
    ----------
    q : torch.Tensor
        ``[nnz, num_qo_heads, head_dim]``, fp16 or bf16, CUDA; last dim contiguous.
    k : torch.Tensor
        ``[nnz, num_kv_heads, head_dim]``, same dtype.
    indptr : torch.Tensor
        ``[batch_size + 1]`` int32.
    offsets : torch.Tensor
        ``[batch_size]`` int32, the position of each request's first token.
    rotary_dim : Optional[int]
        Even, at most head_dim; None means head_dim.
    interleave : bool
        False: NeoX pairs ``(j, j + rotary_dim / 2)``; True: pairs ``(2 j, 2 j + 1)``.
    rope_scale, rope_theta : float
        Frequency scale and base.

    Returns
    -------
    (q_rope, k_rope) : Tuple[torch.Tensor, torch.Tensor]
        Shapes and dtypes of q and k.
    """
    q_rope, k_rope = torch.empty_like(q), torch.empty_like(k)
    torch.ops.tessera.apply_rope(q, k, q_rope, k_rope, indptr, offsets,
                                 *_rope_args(rotary_dim, interleave, rope_scale, rope_theta))
    return q_rope, k_rope


def apply_rope_inplace(q: torch.Tensor, k: torch.Tensor, indptr: torch.Tensor,
                       offsets: torch.Tensor, rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 1,
                       rope_theta: float = 1e4) -> None:
    r""":func:`apply_rope` writing the result into ``q`` and ``k``."""
    torch.ops.tessera.apply_rope_inplace(q, k, indptr, offsets,
                                         *_rope_args(rotary_dim, interleave, rope_scale,
                                                     rope_theta))


def apply_rope_pos_ids(q: torch.Tensor, k: torch.Tensor, pos_ids: torch.Tensor,
                       rotary_dim: Optional[int] = None, interleave: bool = False,
                       rope_scale: float = 1, rope_theta: float = 1e4
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""RoPE with one position per token: ``pos_ids`` ``[nnz]`` int32 or int64.

    Other arguments and the result as :func:`apply_rope`.
    """
    q_rope, k_rope = torch.empty_like(q), torch.empty_like(k)
    torch.ops.tessera.apply_rope_pos_ids(q, k, q_rope, k_rope, pos_ids,
                                         *_rope_args(rotary_dim, interleave, rope_scale,
                                                     rope_theta))
    return q_rope, k_rope


def apply_rope_pos_ids_inplace(q: torch.Tensor, k: torch.Tensor, pos_ids: torch.Tensor,
                               rotary_dim: Optional[int] = None, interleave: bool = False,
                               rope_scale: float = 1, rope_theta: float = 1e4) -> None:
    r""":func:`apply_rope_pos_ids` writing the result into ``q`` and ``k``."""
    torch.ops.tessera.apply_rope_pos_ids_inplace(q, k, pos_ids,
                                                 *_rope_args(rotary_dim, interleave, rope_scale,
                                                             rope_theta))


def apply_llama31_rope(q: torch.Tensor, k: torch.Tensor, indptr: torch.Tensor,
                       offsets: torch.Tensor, rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 8,
                       rope_theta: float = 5e5, low_freq_factor: float = 1,
                       high_freq_factor: float = 4, old_context_len: int = 8192
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    r""":func:`apply_rope` with Llama 3.1 frequency scaling.

    With ``base_j = rope_theta ** (-2 j / rotary_dim)`` and ``smooth_j =
    clamp((old_context_len * base_j / (2 pi) - low_freq_factor) / (high_freq_factor -
    low_freq_factor), 0, 1)``: ``freq_j = (1 - smooth_j) * base_j / rope_scale +
    smooth_j * base_j``.
    """
    q_rope, k_rope = torch.empty_like(q), torch.empty_like(k)
    torch.ops.tessera.apply_rope(q, k, q_rope, k_rope, indptr, offsets,
                                 *_llama31_args(rotary_dim, interleave, rope_scale, rope_theta,
                                                low_freq_factor, high_freq_factor,
                                                old_context_len))
    return q_rope, k_rope


def apply_llama31_rope_inplace(q: torch.Tensor, k: torch.Tensor, indptr: torch.Tensor,
                               offsets: torch.Tensor, rotary_dim: Optional[int] = None,
                               interleave: bool = False, rope_scale: float = 8,
                               rope_theta: float = 5e5, low_freq_factor: float = 1,
                               high_freq_factor: float = 4, old_context_len: int = 8192) -> None:
    r""":func:`apply_llama31_rope` writing the result into ``q`` and ``k``."""
    torch.ops.tessera.apply_rope_inplace(q, k, indptr, offsets,
                                         *_llama31_args(rotary_dim, interleave, rope_scale,
                                                        rope_theta, low_freq_factor,
                                                        high_freq_factor, old_context_len))


def apply_llama31_rope_pos_ids(q: torch.Tensor, k: torch.Tensor, pos_ids: torch.Tensor,
                               rotary_dim: Optional[int] = None, interleave: bool = False,
                               rope_scale: float = 8, rope_theta: float = 5e5,
                               low_freq_factor: float = 1, high_freq_factor: float = 4,
                               old_context_len: int = 8192
                               ) -> Tuple[torch.Tensor, torch.Tensor]:
    r""":func:`apply_rope_pos_ids` with Llama 3.1 frequency scaling (see
    :func:`apply_llama31_rope`)."""
    q_rope, k_rope = torch.empty_like(q), torch.empty_like(k)
    torch.ops.tessera.apply_rope_pos_ids(q, k, q_rope, k_rope, pos_ids,
                                         *_llama31_args(rotary_dim, interleave, rope_scale,
                                                        rope_theta, low_freq_factor,
                                                        high_freq_factor, old_context_len))
    return q_rope, k_rope


def apply_llama31_rope_pos_ids_inplace(q: torch.Tensor, k: torch.Tensor, pos_ids: torch.Tensor,
                                       rotary_dim: Optional[int] = None,
                                       interleave: bool = False, rope_scale: float = 8,
                                       rope_theta: float = 5e5, low_freq_factor: float = 1,
                                       high_freq_factor: float = 4,
                                       old_context_len: int = 8192) -> None:
    r""":func:`apply_llama31_rope_pos_ids` writing the result into ``q`` and ``k``."""
    torch.ops.tessera.apply_rope_pos_ids_inplace(q, k, pos_ids,
                                                 *_llama31_args(rotary_dim, interleave,
                                                                rope_scale, rope_theta,
                                                                low_freq_factor,
                                                                high_freq_factor,
                                                                old_context_len))


def apply_rope_with_cos_sin_cache(positions: torch.Tensor, query: torch.Tensor,
                                  key: torch.Tensor, head_size: int,
                                  cos_sin_cache: torch.Tensor, is_neox: bool = True
                                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""vLLM-style RoPE from a precomputed cos/sin table.

    Parameters
    ----------
    positions : torch.Tensor
        ``[nnz]`` int32 or int64, each token's row of ``cos_sin_cache``.
    query : torch.Tensor
        ``[nnz, num_q_heads * head_size]`` (or ``[nnz, num_q_heads, head_size]``),
        fp16 or bf16, CUDA.
    key : torch.Tensor
        ``[nnz, num_k_heads * head_size]`` (or 3-D), same dtype.
    head_size : int
        Size of one head.
    cos_sin_cache : torch.Tensor
        ``[max_position, rotary_dim]`` float32: cos in the first half of each row,
        sin in the second.
    is_neox : bool
        True: NeoX pairs; False: interleaved pairs.

    Returns
    -------
    (query_out, key_out) : Tuple[torch.Tensor, torch.Tensor]
        Shapes and dtypes of query and key.
    """
    query_out, key_out = torch.empty_like(query), torch.empty_like(key)
    torch.ops.tessera.apply_rope_with_cos_sin_cache(positions, query, key, query_out, key_out,
                                                    int(head_size), cos_sin_cache,
                                                    bool(is_neox))
    return query_out, key_out


def apply_rope_with_cos_sin_cache_inplace(positions: torch.Tensor, query: torch.Tensor,
                                          key: torch.Tensor, head_size: int,
                                          cos_sin_cache: torch.Tensor,
                                          is_neox: bool = True) -> None:
    r""":func:`apply_rope_with_cos_sin_cache` writing the result into ``query`` and ``key``."""
    torch.ops.tessera.apply_rope_with_cos_sin_cache_inplace(positions, query, key,
                                                            int(head_size), cos_sin_cache,
                                                            bool(is_neox))
