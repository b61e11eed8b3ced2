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
Each op's fake and real kernel run the same structural checks (_check_*:
ranks, dtypes, matching sizes, rotary_dim), so torch.compile rejects what
the library would.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _checks, _lib
from ._lib import RopeOptions, TesseraArgumentError
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


def _check_qk(q, k, q_rope, k_rope, rotary_dim, rope_scale, rope_theta) -> None:
    """q [nnz, num_qo_heads, head_dim], k [nnz, num_kv_heads, head_dim] of one
    16-bit dtype, outputs like them, the rotation options."""
    _checks.tensor(q, "q", ndim=3, dtypes=_checks.HALF)
    _checks.tensor(k, "k", ndim=3)
    _checks.same_dtype(k, "k", q, "q")
    _checks.size(k, 0, q.shape[0], "k", "the token count of q")
    _checks.size(k, 2, q.shape[2], "k", "head_dim of q")
    _checks.like(q_rope, "q_rope", q, "q")
    _checks.like(k_rope, "k_rope", k, "k")
    rotary_dim = _checks.integer(rotary_dim, "rotary_dim", minimum=0)
    if rotary_dim != 0:  # 0: head_dim
        _check_rotary_dim(rotary_dim, q.shape[2], "rotary_dim")
    _checks.real(rope_scale, "rope_scale", positive=True)
    _checks.real(rope_theta, "rope_theta", positive=True)


def _check_rotary_dim(rotary_dim, head_dim, name: str) -> None:
    if rotary_dim <= 0 or rotary_dim % 2 != 0 or rotary_dim > head_dim:
        _checks.fail(name, f"an even rotary_dim in (0, head_dim {head_dim}]", str(rotary_dim))


def _check_apply_rope(q, k, q_rope, k_rope, indptr, offsets, rotary_dim, interleave, rope_scale,
                      rope_theta, *llama31) -> None:
    _check_qk(q, k, q_rope, k_rope, rotary_dim, rope_scale, rope_theta)
    _checks.index_arrays(indptr=indptr, offsets=offsets)
    _checks.size(indptr, 0, offsets.shape[0] + 1, "indptr",
                 "batch_size + 1 (offsets has batch_size)")


def _check_apply_rope_inplace(q, k, indptr, offsets, *options) -> None:
    _check_apply_rope(q, k, q, k, indptr, offsets, *options)


def _check_apply_rope_pos_ids(q, k, q_rope, k_rope, pos_ids, rotary_dim, interleave, rope_scale,
                              rope_theta, *llama31) -> None:
    _check_qk(q, k, q_rope, k_rope, rotary_dim, rope_scale, rope_theta)
    _checks.tensor(pos_ids, "pos_ids", ndim=1, dtypes=_checks.POSITIONS)
    _checks.size(pos_ids, 0, q.shape[0], "pos_ids", "the token count of q")


def _check_apply_rope_pos_ids_inplace(q, k, pos_ids, *options) -> None:
    _check_apply_rope_pos_ids(q, k, q, k, pos_ids, *options)


def _check_heads(x, name: str, head_size: int) -> None:
    """query / key: [nnz, heads, head_size] or [nnz, heads * head_size]."""
    _checks.tensor(x, name, ndim=(2, 3), dtypes=_checks.HALF)
    if x.dim() == 3:
        _checks.size(x, 2, head_size, name, "head_size")
    elif x.shape[1] % head_size != 0:
        _checks.fail(name, f"a last dim that is a multiple of head_size {head_size}",
                     _checks.describe(x))


def _check_cos_sin_cache(positions, query, key, query_out, key_out, head_size, cos_sin_cache,
                         is_neox) -> None:
    head_size = _checks.integer(head_size, "head_size", minimum=1)
    _check_heads(query, "query", head_size)
    _check_heads(key, "key", head_size)
    _checks.same_dtype(key, "key", query, "query")
    _checks.size(key, 0, query.shape[0], "key", "the token count of query")
    _checks.like(query_out, "query_out", query, "query")
    _checks.like(key_out, "key_out", key, "key")
    _checks.tensor(positions, "positions", ndim=1, dtypes=_checks.POSITIONS)
    _checks.size(positions, 0, query.shape[0], "positions", "the token count of query")
    _checks.tensor(cos_sin_cache, "cos_sin_cache", ndim=2, dtypes=(torch.float32,))
    _check_rotary_dim(cos_sin_cache.shape[1], head_size, "cos_sin_cache")


def _check_cos_sin_cache_inplace(positions, query, key, head_size, cos_sin_cache,
                                 is_neox) -> None:
    _check_cos_sin_cache(positions, query, key, query, key, head_size, cos_sin_cache, is_neox)


@custom_op("tessera::apply_rope", mutates_args=("q_rope", "k_rope"),
                         device_types="cuda")
def _apply_rope(q: torch.Tensor, k: torch.Tensor, q_rope: torch.Tensor, k_rope: torch.Tensor,
                indptr: torch.Tensor, offsets: torch.Tensor, rotary_dim: int, interleave: bool,
                rope_scale: float, rope_theta: float, llama31: bool, low_freq_factor: float,
                high_freq_factor: float, old_context_len: float) -> None:
    _check_apply_rope(q, k, q_rope, k_rope, indptr, offsets, rotary_dim, interleave, rope_scale,
                      rope_theta)
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
    _check_apply_rope_inplace(q, k, indptr, offsets, rotary_dim, interleave, rope_scale,
                              rope_theta)
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
    _check_apply_rope_pos_ids(q, k, q_rope, k_rope, pos_ids, rotary_dim, interleave, rope_scale,
                              rope_theta)
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
    _check_apply_rope_pos_ids_inplace(q, k, pos_ids, rotary_dim, interleave, rope_scale,
                                      rope_theta)
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
    _check_cos_sin_cache(positions, query, key, query_out, key_out, head_size, cos_sin_cache,
                         is_neox)
    _lib.call("tessera_apply_rope_with_cos_sin_cache", dl(positions), dl(query), dl(key),
              dl(query_out), dl(key_out), head_size, dl(cos_sin_cache), int(is_neox),
              current_stream(query.device), _FROM_ENV)


@custom_op("tessera::apply_rope_with_cos_sin_cache_inplace",
                         mutates_args=("query", "key"), device_types="cuda")
def _apply_rope_with_cos_sin_cache_inplace(positions: torch.Tensor, query: torch.Tensor,
                                           key: torch.Tensor, head_size: int,
                                           cos_sin_cache: torch.Tensor, is_neox: bool) -> None:
    _check_cos_sin_cache_inplace(positions, query, key, head_size, cos_sin_cache, is_neox)
    query_view, key_view = dl(query), dl(key)
    _lib.call("tessera_apply_rope_with_cos_sin_cache", dl(positions), query_view, key_view,
              query_view, key_view, head_size, dl(cos_sin_cache), int(is_neox),
              current_stream(query.device), _FROM_ENV)


# The ops only write tensors the caller passed: the fakes check the arguments
# and compute nothing.
_apply_rope.register_fake(_check_apply_rope)
_apply_rope_inplace.register_fake(_check_apply_rope_inplace)
_apply_rope_pos_ids.register_fake(_check_apply_rope_pos_ids)
_apply_rope_pos_ids_inplace.register_fake(_check_apply_rope_pos_ids_inplace)
_apply_rope_with_cos_sin_cache.register_fake(_check_cos_sin_cache)
_apply_rope_with_cos_sin_cache_inplace.register_fake(_check_cos_sin_cache_inplace)


def _new_like(x, name: str) -> torch.Tensor:
    return torch.empty_like(_checks.tensor(x, name))


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
    q_rope, k_rope = _new_like(q, "q"), _new_like(k, "k")
    _checks.tensors(indptr=indptr, offsets=offsets)
    torch.ops.tessera.apply_rope(q, k, q_rope, k_rope, indptr, offsets,
                                 *_rope_args(rotary_dim, interleave, rope_scale, rope_theta))
    return q_rope, k_rope


def apply_rope_inplace(q: torch.Tensor, k: torch.Tensor, indptr: torch.Tensor,
                       offsets: torch.Tensor, rotary_dim: Optional[int] = None,
                       interleave: bool = False, rope_scale: float = 1,
                       rope_theta: float = 1e4) -> None:
    r""":func:`apply_rope` writing the result into ``q`` and ``k``."""
    _checks.tensors(q=q, k=k, indptr=indptr, offsets=offsets)
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
    q_rope, k_rope = _new_like(q, "q"), _new_like(k, "k")
    _checks.tensors(pos_ids=pos_ids)
    torch.ops.tessera.apply_rope_pos_ids(q, k, q_rope, k_rope, pos_ids,
                                         *_rope_args(rotary_dim, interleave, rope_scale,
                                                     rope_theta))
    return q_rope, k_rope


def apply_rope_pos_ids_inplace(q: torch.Tensor, k: torch.Tensor, pos_ids: torch.Tensor,
                               rotary_dim: Optional[int] = None, interleave: bool = False,
                               rope_scale: float = 1, rope_theta: float = 1e4) -> None:
    r""":func:`apply_rope_pos_ids` writing the result into ``q`` and ``k``."""
    _checks.tensors(q=q, k=k, pos_ids=pos_ids)
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
    q_rope, k_rope = _new_like(q, "q"), _new_like(k, "k")
    _checks.tensors(indptr=indptr, offsets=offsets)
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
    _checks.tensors(q=q, k=k, indptr=indptr, offsets=offsets)
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
    q_rope, k_rope = _new_like(q, "q"), _new_like(k, "k")
    _checks.tensors(pos_ids=pos_ids)
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
    _checks.tensors(q=q, k=k, pos_ids=pos_ids)
    torch.ops.tessera.apply_rope_pos_ids_inplace(q, k, pos_ids,
                                                 *_llama31_args(rotary_dim, interleave,
                                                                rope_scale, rope_theta,
                                                                low_freq_factor,
                                                                high_freq_factor,
                                                                old_context_len))


# FlashInfer has two apply_rope_with_cos_sin_cache forms under one name: 0.2.0's
# (q, k, cos_cache, sin_cache, pos_ids, interleave) and the later vLLM-style
# (positions, query, key, head_size, cos_sin_cache, is_neox). Both are served;
# the call's keywords, else its fourth argument (a tensor: sin_cache; an int:
# head_size), else its first (floating: q; integer: positions) tell them apart.
_FORM_020 = ("q", "k", "cos_cache", "sin_cache", "pos_ids", "interleave")
_FORM_VLLM = ("positions", "query", "key", "head_size", "cos_sin_cache", "is_neox")


def _is_form_020(function: str, args: tuple, kwargs: dict) -> bool:
    old = [name for name in _FORM_020 if name in kwargs]
    new = [name for name in _FORM_VLLM if name in kwargs]
    if old and new:
        raise TesseraArgumentError(
            f"tessera: argument '{old[0]}': expected the arguments of one form of {function}, "
            f"FlashInfer 0.2.0's {_FORM_020} or the later {_FORM_VLLM}, got '{old[0]}' together "
            f"with '{new[0]}'")
    if old or new:
        return bool(old)
    if len(args) >= 4:
        return isinstance(args[3], torch.Tensor)
    if args and isinstance(args[0], torch.Tensor):
        return args[0].dtype.is_floating_point
    return False


def _rows_cache(q, cos_cache, sin_cache, pos_ids, interleave: bool):
    """FlashInfer 0.2.0's cos_cache / sin_cache [max_seq_len, rotary_dim]
    (float32, one value per rotated element) as the kernel's table: one row
    per token (the rows of pos_ids, so the copy is nnz x rotary_dim, not the
    whole cache) holding [cos of each pair, sin of each pair], and positions
    0 .. nnz - 1 into it. A pair's angle is read from its first element
    (column j of the NeoX pair (j, j + rotary_dim / 2), column 2 j of the
    interleaved pair (2 j, 2 j + 1)): every cache that rotates by an angle per
    pair holds it at both elements."""
    _checks.tensor(cos_cache, "cos_cache", ndim=2, dtypes=(torch.float32,))
    _checks.tensor(sin_cache, "sin_cache", ndim=2, dtypes=(torch.float32,))
    _checks.same_shape(sin_cache, "sin_cache", cos_cache, "cos_cache")
    _checks.tensor(q, "q", ndim=3)
    _checks.tensor(pos_ids, "pos_ids", ndim=1, dtypes=_checks.POSITIONS)
    _check_rotary_dim(cos_cache.shape[1], q.shape[2], "cos_cache")
    half = cos_cache.shape[1] // 2
    pairs = slice(0, None, 2) if interleave else slice(0, half)
    rows = pos_ids.to(torch.int64)
    table = torch.cat([cos_cache[:, pairs].index_select(0, rows),
                       sin_cache[:, pairs].index_select(0, rows)], dim=-1)
    positions = torch.arange(pos_ids.shape[0], dtype=torch.int32, device=pos_ids.device)
    return positions, table


def _cos_sin_cache_020(q: torch.Tensor, k: torch.Tensor, cos_cache: torch.Tensor,
                       sin_cache: torch.Tensor, pos_ids: torch.Tensor, interleave: bool = False):
    positions, table = _rows_cache(q, cos_cache, sin_cache, pos_ids, interleave)
    q_rope, k_rope = _new_like(q, "q"), _new_like(k, "k")
    torch.ops.tessera.apply_rope_with_cos_sin_cache(positions, q, k, q_rope, k_rope, q.shape[-1],
                                                    table, not bool(interleave))
    return q_rope, k_rope


def _cos_sin_cache_020_inplace(q: torch.Tensor, k: torch.Tensor, cos_cache: torch.Tensor,
                               sin_cache: torch.Tensor, pos_ids: torch.Tensor,
                               interleave: bool = False) -> None:
    positions, table = _rows_cache(q, cos_cache, sin_cache, pos_ids, interleave)
    _checks.tensors(k=k)
    torch.ops.tessera.apply_rope_with_cos_sin_cache_inplace(positions, q, k, q.shape[-1], table,
                                                            not bool(interleave))


def _cos_sin_cache_vllm(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                        head_size: int, cos_sin_cache: torch.Tensor, is_neox: bool = True):
    head_size = _checks.integer(head_size, "head_size", minimum=1)
    query_out, key_out = _new_like(query, "query"), _new_like(key, "key")
    _checks.tensors(positions=positions, cos_sin_cache=cos_sin_cache)
    torch.ops.tessera.apply_rope_with_cos_sin_cache(positions, query, key, query_out, key_out,
                                                    head_size, cos_sin_cache, bool(is_neox))
    return query_out, key_out


def _cos_sin_cache_vllm_inplace(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                                head_size: int, cos_sin_cache: torch.Tensor,
                                is_neox: bool = True) -> None:
    head_size = _checks.integer(head_size, "head_size", minimum=1)
    _checks.tensors(positions=positions, query=query, key=key, cos_sin_cache=cos_sin_cache)
    torch.ops.tessera.apply_rope_with_cos_sin_cache_inplace(positions, query, key, head_size,
                                                            cos_sin_cache, bool(is_neox))


def apply_rope_with_cos_sin_cache(*args, **kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""RoPE from a precomputed cos/sin table, in either of FlashInfer's forms.

    ``apply_rope_with_cos_sin_cache(positions, query, key, head_size, cos_sin_cache,
    is_neox=True)`` (FlashInfer 0.2.1 and later, vLLM's):

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

    Returns ``(query_out, key_out)``, shapes and dtypes of query and key.

    ``apply_rope_with_cos_sin_cache(q, k, cos_cache, sin_cache, pos_ids,
    interleave=False)`` (FlashInfer 0.2.0):

    q, k : torch.Tensor
        ``[nnz, num_q_heads, head_dim]`` and ``[nnz, num_k_heads, head_dim]``,
        fp16 or bf16, CUDA.
    cos_cache, sin_cache : torch.Tensor
        ``[max_seq_len, rotary_dim]`` float32, the cos and sin of each rotated
        element's angle. Tessera takes a pair's angle from its first element
        (column ``j`` of the NeoX pair ``(j, j + rotary_dim / 2)``, column ``2 j``
        of the interleaved pair), which every per-pair cache holds at both.
    pos_ids : torch.Tensor
        ``[nnz]`` int32 or int64 rows of the caches.
    interleave : bool
        False: NeoX pairs; True: interleaved pairs.

    Returns ``(q_rope, k_rope)``.

    The form is told by the keywords used, else by the fourth argument (a
    tensor: ``sin_cache``; an integer: ``head_size``); keywords of both forms
    in one call raise :class:`tessera.TesseraArgumentError` naming one.
    """
    if _is_form_020("apply_rope_with_cos_sin_cache", args, kwargs):
        return _cos_sin_cache_020(*args, **kwargs)
    return _cos_sin_cache_vllm(*args, **kwargs)


def apply_rope_with_cos_sin_cache_inplace(*args, **kwargs) -> None:
    r""":func:`apply_rope_with_cos_sin_cache` writing the result into its inputs
    (``query`` and ``key``, or 0.2.0's ``q`` and ``k``); either form."""
    if _is_form_020("apply_rope_with_cos_sin_cache_inplace", args, kwargs):
        _cos_sin_cache_020_inplace(*args, **kwargs)
    else:
        _cos_sin_cache_vllm_inplace(*args, **kwargs)
