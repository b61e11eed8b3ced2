"""Tessera as an attention implementation of Hugging Face transformers (5.x).

    import tessera.integrations.transformers as tessera_hf
    tessera_hf.register()
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="tessera",
                                                 dtype=torch.bfloat16).cuda()

register() puts two functions into transformers' registries under one name:
attention_forward in AttentionInterface (what every decoder layer calls with
its q, k, v) and transformers' own sdpa_mask in AttentionMaskInterface (what
builds the mask the layers pass in). The mask function matters: a name
missing from AttentionMaskInterface gets attention_mask=None in every layer,
padding included (masking_utils._preprocess_mask_arguments), so left-padded
batches would silently attend to their padding.

The contract (transformers 5.x, integrations/sdpa_attention.py is the model):
query [B, Hq, S, D], key / value [B, Hkv, S_kv, D] after the KV-cache update,
attention_mask None or bool [B, 1, S, S_kv] (True: attend); returns
(out [B, S, Hq, D], None). With sdpa_mask the mask is None exactly when it is
plain causal (no padding; S == 1, S == S_kv, or an empty static cache whose
keys past S are unused) and, for sliding-window layers, S_kv < window; every
other case (padding, decoding against a window, packed sequences, a model's
own mask overlays) comes as the full boolean mask, which already holds the
causal part and the window.

How each call maps onto Tessera (FlashInfer semantics, prefill.py):
- mask None: single_prefill_with_kv_cache per sequence with causal=True (query
  i at key position S_kv - S + i, FlashInfer's bottom-right alignment, the
  same as HF's mask whenever it is skipped), window_left = sliding_window - 1
  (HF keeps key j for query i when j > i - sliding_window, i.e.
  i - j <= sliding_window - 1; FlashInfer keeps j >= i - window_left; HF's
  flash-attention path passes window_size = sliding_window - 1 likewise).
  As sdpa does, an empty static cache (S > 1, S_kv > S) uses its first S keys.
- a mask: the same call with the mask packed in FlashInfer's layout
  (packbits, little bit order) as packed_custom_mask; the mask replaces causal
  and window (it holds both). A query whose every key is masked (left
  padding) gets 0, as torch's SDPA gives.
- scaling -> sm_scale, softcap (Gemma 2's attn_logit_softcapping) ->
  logits_soft_cap (both: cap * tanh(scaled logit / cap)), GQA natively
  (Hkv divides Hq), fp16 / bf16.

What it does not do, by a TesseraArgumentError naming the argument rather
than a silent fallback: head dims without a Tessera kernel (HEAD_DIMS),
dropout > 0 (inference only), float32 q, v's head dim other than q's,
attention sinks (s_aux) and position biases. Limits: one kernel launch per
sequence of the batch (K/V read in place from HF's [B, Hkv, S_kv, D] cache,
no copies); "paged|tessera" (continuous batching) is not registered.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._checks import describe, fail
from ..prefill import single_prefill_with_kv_cache as _single_prefill
from ..quantization import packbits

# Head dims Tessera's prefill kernels serve (src/api/single_prefill.cu checks
# the same list). Add one here when its kernel lands.
HEAD_DIMS = (64, 80, 96, 112, 128, 256)

NAME = "tessera"

# The packed form of a boolean mask, cached on the mask tensor itself: HF
# builds one mask per forward and passes the same tensor to every layer, so
# it is packed once per forward and freed with the mask.
_PACKED_ATTRIBUTE = "_tessera_packed_mask"


def register(name: str = NAME) -> str:
    """Registers Tessera as attn_implementation=name in transformers'
    AttentionInterface, with transformers' sdpa_mask as its mask function in
    AttentionMaskInterface. Idempotent; returns name."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError as error:
        raise ImportError("tessera.integrations.transformers.register() needs Hugging Face "
                          "transformers 5.x (pip install transformers)") from error
    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


def check_arguments(query, key, value, dropout: float = 0.0) -> None:
    """The checks attention_forward makes before anything touches a device:
    TesseraArgumentError naming the argument."""
    for arg_name, x in (("query", query), ("key", key), ("value", value)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            fail(arg_name, "a 4-D tensor [batch, heads, tokens, head_dim]", describe(x))
    if dropout:
        fail("dropout", "0.0 (Tessera's attention is for inference; call model.eval())",
             repr(dropout))
    head_dim = query.shape[-1]
    if head_dim not in HEAD_DIMS:
        fail("head_dim", "one of " + ", ".join(map(str, HEAD_DIMS)) +
             " (Tessera has no prefill kernel for other head dims yet; use "
             "attn_implementation='sdpa' for this model)", str(head_dim))
    if key.shape[-1] != head_dim or value.shape[-1] != head_dim:
        fail("head_dim", f"key and value head_dim equal to query's ({head_dim})",
             f"key {key.shape[-1]}, value {value.shape[-1]}")
    if query.dtype not in (torch.float16, torch.bfloat16):
        fail("query", "dtype float16 or bfloat16 (load the model with dtype=torch.bfloat16 "
             "or torch.float16)", str(query.dtype))
    if key.dtype != query.dtype or value.dtype != query.dtype:
        fail("key", f"key and value of query's dtype {query.dtype}",
             f"key {key.dtype}, value {value.dtype}")
    if key.shape[:3] != value.shape[:3] or key.shape[0] != query.shape[0]:
        fail("value", f"key's shape {tuple(key.shape)} and query's batch {query.shape[0]}",
             f"value {tuple(value.shape)}")


def _boolean_mask(attention_mask: torch.Tensor, batch: int, q_len: int,
                  kv_len: int) -> torch.Tensor:
    """HF's 4-D mask as bool [batch, q_len, kv_len] (True: attend). A float
    mask (a caller's own, eager-style) is accepted when it only holds 0 and
    large negatives; a bias would need a kernel variant Tessera has no
    bridge for."""
    if attention_mask.dim() != 4 or attention_mask.shape[-2:] != (q_len, kv_len):
        fail("attention_mask", f"None or a 4-D mask [batch, 1, {q_len}, {kv_len}]",
             describe(attention_mask))
    if attention_mask.shape[1] != 1:
        fail("attention_mask", "one mask for all heads (dim 1 of size 1)",
             describe(attention_mask))
    mask = attention_mask[:, 0]
    if mask.dtype != torch.bool:
        if not mask.is_floating_point():
            fail("attention_mask", "dtype bool or a float additive mask", describe(mask))
        attend = mask == 0
        if not bool(((mask == 0) | (mask <= torch.finfo(mask.dtype).min / 2)).all()):
            fail("attention_mask", "a float mask of only 0 and large negative values "
                 "(Tessera takes boolean masks; additive biases are not supported)",
                 "other values")
        mask = attend
    return mask.expand(batch, q_len, kv_len)


def _packed_masks(attention_mask: torch.Tensor, batch: int, q_len: int,
                  kv_len: int) -> list:
    """Each sequence's mask packed as FlashInfer's packed_custom_mask
    (row-major [q_len, kv_len] bits, little bit order), cached on the mask."""
    cached = getattr(attention_mask, _PACKED_ATTRIBUTE, None)
    if cached is not None and cached[0] == (batch, q_len, kv_len):
        return cached[1]
    mask = _boolean_mask(attention_mask, batch, q_len, kv_len).reshape(batch, q_len * kv_len)
    padded_bits = -(-(q_len * kv_len) // 8) * 8  # each sequence starts at a byte
    mask = torch.nn.functional.pad(mask, (0, padded_bits - q_len * kv_len))
    packed = packbits(mask.reshape(-1), bitorder="little").view(batch, padded_bits // 8)
    packed = list(packed.unbind(0))
    setattr(attention_mask, _PACKED_ATTRIBUTE, ((batch, q_len, kv_len), packed))
    return packed


def attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, attention_mask: Optional[torch.Tensor],
                      dropout: float = 0.0, scaling: Optional[float] = None,
                      sliding_window: Optional[int] = None, softcap: Optional[float] = None,
                      is_causal: Optional[bool] = None, **kwargs):
    """transformers' attention-function contract on Tessera's prefill kernels
    (module docstring). query [B, Hq, S, D]; key, value [B, Hkv, S_kv, D];
    attention_mask None or bool [B, 1, S, S_kv]; scaling defaults to
    D ** -0.5. Returns (out [B, S, Hq, D] contiguous, None)."""
    check_arguments(query, key, value, dropout)
    for unsupported in ("s_aux", "sinks", "position_bias"):
        if kwargs.get(unsupported) is not None:
            fail(unsupported, "None (Tessera's HF bridge has no attention sinks or "
                 "position biases)", describe(kwargs[unsupported]))
    batch, _, q_len, head_dim = query.shape
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    window_left = -1
    packed = None
    if attention_mask is None:
        if is_causal and q_len > 1 and key.shape[2] > q_len:
            # An empty static cache: HF skips the mask because keys past q_len
            # are unused (top-left causal); bottom-right would read them.
            key, value = key[:, :, :q_len], value[:, :, :q_len]
        if is_causal and sliding_window:
            window_left = int(sliding_window) - 1
    else:
        packed = _packed_masks(attention_mask, batch, q_len, key.shape[2])
    q = query.transpose(1, 2).contiguous()  # [B, S, Hq, D]: usually a view already
    outputs = []
    for b in range(batch):
        outputs.append(_single_prefill(
            q[b], _rows_contiguous(key[b]), _rows_contiguous(value[b]),
            packed_custom_mask=None if packed is None else packed[b],
            causal=bool(is_causal) and packed is None, kv_layout="HND", sm_scale=scaling,
            window_left=window_left, logits_soft_cap=softcap or None))
    out = outputs[0].unsqueeze(0) if batch == 1 else torch.stack(outputs)
    return out, None


def _rows_contiguous(x: torch.Tensor) -> torch.Tensor:
    """[Hkv, S_kv, D] with unit stride in D and k's strides equal to v's
    (HF caches are contiguous; a strided view is copied)."""
    return x if x.is_contiguous() else x.contiguous()
