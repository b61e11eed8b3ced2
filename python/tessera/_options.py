"""FlashInfer's string and optional arguments as the C ABI's ints and structs."""

from __future__ import annotations

import ctypes
import math

from ._lib import AttentionOptions

_LAYOUTS = {"NHD": 0, "HND": 1}
_POS_ENCODINGS = {"NONE": 0, "ROPE_LLAMA": 1, "ALIBI": 2}


def layout_code(kv_layout: str) -> int:
    try:
        return _LAYOUTS[kv_layout]
    except KeyError:
        raise ValueError(f"tessera: argument 'kv_layout': expected 'NHD' or 'HND', "
                         f"got {kv_layout!r}") from None


def pos_encoding_code(pos_encoding_mode: str) -> int:
    try:
        return _POS_ENCODINGS[pos_encoding_mode]
    except KeyError:
        raise ValueError("tessera: argument 'pos_encoding_mode': expected 'NONE', 'ROPE_LLAMA' "
                         f"or 'ALIBI', got {pos_encoding_mode!r}") from None


def attention_options(*, sm_scale=None, logits_soft_cap=None, window_left=-1,
                      pos_encoding_mode="NONE", rope_scale=None, rope_theta=None,
                      k_scale=None, v_scale=None, alibi_slopes=None,
                      custom_mask=None) -> AttentionOptions:
    """TesseraAttentionOptions; None means the library's default. alibi_slopes
    and custom_mask (prefill's packed mask) are DLTensors (kept alive by the
    struct) or None."""
    o = AttentionOptions()
    o.sm_scale = float(sm_scale) if sm_scale is not None else 0.0
    o.logits_soft_cap = float(logits_soft_cap) if logits_soft_cap else 0.0
    o.window_left = int(window_left) if window_left is not None else -1
    o.pos_encoding_mode = pos_encoding_code(pos_encoding_mode)
    o.rope_scale = float(rope_scale) if rope_scale is not None else 0.0
    o.rope_theta = float(rope_theta) if rope_theta is not None else 0.0
    o.k_scale = float(k_scale) if k_scale is not None else 0.0
    o.v_scale = float(v_scale) if v_scale is not None else 0.0
    if alibi_slopes is not None:
        o.alibi_slopes = ctypes.pointer(alibi_slopes)
    if custom_mask is not None:
        o.custom_mask = ctypes.pointer(custom_mask)
    return o


def default_sm_scale(head_dim: int, sm_scale=None) -> float:
    return float(sm_scale) if sm_scale is not None else 1.0 / math.sqrt(head_dim)
