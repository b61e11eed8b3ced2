"""Attention-state merges (FlashInfer's flashinfer.cascade): an attention
state is (v, s) with v the normalised output and s its lse in base 2; two
states over disjoint KV sets merge exactly (tessera/api/decode.h)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _checks, _lib
from ._tensor import current_stream, dl, dl_or_none
from ._ops import custom_op

_VALUE_TYPES = _checks.HALF + (torch.float32,)


def _check_state(v, v_name: str, s, s_name: str, like=None, like_name: str = "") -> None:
    """v [rows, heads, head_dim] (fp16/bf16/fp32) and its lse s float32
    [rows, heads]; with `like`, v has like's shape and dtype."""
    if like is None:
        _checks.tensor(v, v_name, ndim=3, dtypes=_VALUE_TYPES)
    else:
        _checks.like(v, v_name, like, like_name)
    _checks.lse(_checks.tensor(s, s_name), s_name, tuple(v.shape[:2]))


def _check_merge_state(v_a, s_a, v_b, s_b, v_merged, s_merged) -> None:
    _check_state(v_a, "v_a", s_a, "s_a")
    _check_state(v_b, "v_b", s_b, "s_b", v_a, "v_a")
    _check_state(v_merged, "v_merged", s_merged, "s_merged", v_a, "v_a")


def _check_merge_state_in_place(v, s, v_other, s_other, mask) -> None:
    _check_state(v, "v", s, "s")
    _check_state(v_other, "v_other", s_other, "s_other", v, "v")
    if mask is not None:
        _checks.tensor(mask, "mask", ndim=1, dtypes=(torch.uint8,))
        _checks.size(mask, 0, v.shape[0], "mask", "rows of v")


def _check_merge_states(v, s, v_merged, s_merged) -> None:
    _checks.tensor(v, "v", ndim=4, dtypes=_VALUE_TYPES)
    _checks.lse(_checks.tensor(s, "s"), "s", tuple(v.shape[:3]))
    seq_len, _, num_heads, head_dim = v.shape
    _checks.tensor(v_merged, "v_merged", ndim=3)
    _checks.same_dtype(v_merged, "v_merged", v, "v")
    if tuple(v_merged.shape) != (seq_len, num_heads, head_dim):
        _checks.fail("v_merged", f"shape {(seq_len, num_heads, head_dim)}",
                     _checks.describe(v_merged))
    _checks.lse(_checks.tensor(s_merged, "s_merged"), "s_merged", (seq_len, num_heads))


@custom_op("tessera::merge_state", mutates_args=("v_merged", "s_merged"))
def _merge_state_op(v_a: torch.Tensor, s_a: torch.Tensor, v_b: torch.Tensor, s_b: torch.Tensor,
                    v_merged: torch.Tensor, s_merged: torch.Tensor) -> None:
    _check_merge_state(v_a, s_a, v_b, s_b, v_merged, s_merged)
    _lib.call("tessera_merge_state", dl(v_a), dl(s_a), dl(v_b), dl(s_b), dl(v_merged),
              dl(s_merged), current_stream(v_a.device))


_merge_state_op.register_fake(_check_merge_state)


@custom_op("tessera::merge_state_in_place", mutates_args=("v", "s"))
def _merge_state_in_place_op(v: torch.Tensor, s: torch.Tensor, v_other: torch.Tensor,
                             s_other: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
    _check_merge_state_in_place(v, s, v_other, s_other, mask)
    _lib.call("tessera_merge_state_in_place", dl(v), dl(s), dl(v_other), dl(s_other),
              dl_or_none(mask), current_stream(v.device))


_merge_state_in_place_op.register_fake(_check_merge_state_in_place)


@custom_op("tessera::merge_states", mutates_args=("v_merged", "s_merged"))
def _merge_states_op(v: torch.Tensor, s: torch.Tensor, v_merged: torch.Tensor,
                     s_merged: torch.Tensor) -> None:
    _check_merge_states(v, s, v_merged, s_merged)
    _lib.call("tessera_merge_states", dl(v), dl(s), dl(v_merged), dl(s_merged),
              current_stream(v.device))


_merge_states_op.register_fake(_check_merge_states)


def merge_state(v_a: torch.Tensor, s_a: torch.Tensor, v_b: torch.Tensor,
                s_b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Merges two states. v_a, v_b: [seq_len, num_heads, head_dim] (fp16/bf16/
    fp32); s_a, s_b: float32 [seq_len, num_heads]. Returns (v, s) like v_a, s_a."""
    _check_state(v_a, "v_a", s_a, "s_a")
    _checks.tensors(v_b=v_b, s_b=s_b)
    v_merged = torch.empty_like(v_a)
    s_merged = torch.empty_like(s_a, dtype=torch.float32)
    torch.ops.tessera.merge_state(v_a, s_a, v_b, s_b, v_merged, s_merged)
    return v_merged, s_merged


def merge_state_in_place(v: torch.Tensor, s: torch.Tensor, v_other: torch.Tensor,
                         s_other: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
    """Merges (v_other, s_other) into (v, s) in place; mask (bool or uint8
    [seq_len]) limits the merge to the rows where it is nonzero."""
    _checks.tensors(v=v, s=s, v_other=v_other, s_other=s_other)
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
        mask = mask.to(torch.uint8)
    torch.ops.tessera.merge_state_in_place(v, s, v_other, s_other, mask)


def merge_states(v: torch.Tensor, s: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Merges num_states states per row. v: [seq_len, num_states, num_heads,
    head_dim]; s: float32 [seq_len, num_states, num_heads]. Returns (v, s):
    [seq_len, num_heads, head_dim] in v's dtype and float32 [seq_len, num_heads]."""
    _checks.tensor(v, "v", ndim=4)
    _checks.tensors(s=s)
    seq_len, _, num_heads, head_dim = v.shape
    v_merged = torch.empty((seq_len, num_heads, head_dim), dtype=v.dtype, device=v.device)
    s_merged = torch.empty((seq_len, num_heads), dtype=torch.float32, device=v.device)
    torch.ops.tessera.merge_states(v, s, v_merged, s_merged)
    return v_merged, s_merged
