"""Argument plumbing shared by the attention wrappers (decode, prefill,
sparse): FlashInfer's paged_kv_cache forms, the C option struct, and index
arrays on the host (for plan()) and on the device (for run())."""

from __future__ import annotations

import ctypes

import torch

from . import _lib
from ._lib import TesseraArgumentError
from ._tensor import dl


def cache_pair(paged_kv_cache):
    """(kv_or_k, v_or_None) of FlashInfer's paged_kv_cache argument: one
    tensor [pages, 2, ...] or a (k_cache, v_cache) pair."""
    if isinstance(paged_kv_cache, (tuple, list)):
        if len(paged_kv_cache) != 2:
            raise TesseraArgumentError(
                "tessera: argument 'paged_kv_cache': expected one tensor or a (k_cache, v_cache) "
                f"pair, got a sequence of {len(paged_kv_cache)}")
        return paged_kv_cache[0], paged_kv_cache[1]
    return paged_kv_cache, None


def paged_kv_struct(k_cache, v_cache, kv_layout: int) -> _lib.PagedKV:
    cache = _lib.PagedKV()
    cache.first = ctypes.pointer(dl(k_cache))
    cache.v_data = ctypes.pointer(dl(v_cache)) if v_cache is not None else None
    cache.layout = kv_layout
    return cache


def attention_struct(sm_scale: float, logits_soft_cap: float, window_left: int,
                     pos_encoding_mode: int, rope_scale: float, rope_theta: float,
                     k_scale: float = 0.0, v_scale: float = 0.0,
                     jit_variant: int = 0, custom_mask=None,
                     alibi_slopes=None, prefill_backend: int = 0) -> _lib.AttentionOptions:
    """TesseraAttentionOptions from the run ops' scalars (0: the library's
    default); jit_variant is a TesseraJitVariant address or 0; custom_mask a
    packed prefill mask (uint8 tensor) or None; alibi_slopes float32
    [num_qo_heads] or None; prefill_backend single prefill's back end (0
    auto, 1 fa2, 2 fa3). The struct keeps the DLTensors alive (the tensors
    themselves are the caller's, op arguments)."""
    o = _lib.AttentionOptions()
    o.sm_scale = sm_scale
    o.logits_soft_cap = logits_soft_cap
    o.window_left = window_left
    o.pos_encoding_mode = pos_encoding_mode
    o.rope_scale = rope_scale
    o.rope_theta = rope_theta
    o.k_scale = k_scale
    o.v_scale = v_scale
    o.jit_variant = jit_variant or None
    o.prefill_backend = prefill_backend
    if custom_mask is not None:
        o.custom_mask = ctypes.pointer(dl(custom_mask))
    if alibi_slopes is not None:
        o.alibi_slopes = ctypes.pointer(dl(alibi_slopes))
    return o


_standard_slopes = {}  # (num_qo_heads, device) -> float32 tensor; read-only once made


def alibi_slopes_for(pos_encoding_mode: str, alibi_slopes, num_qo_heads: int, device):
    """The ALiBi slopes tensor a call passes: the caller's, else for a head
    count that is not a power of two FlashInfer's get_alibi_slopes (the
    library's own default covers powers of two, with the same values), else
    None. FlashInfer takes no slopes argument and always uses its own; the
    caller's slopes are Tessera's extension."""
    if alibi_slopes is not None:
        if pos_encoding_mode != "ALIBI":
            raise TesseraArgumentError(
                "tessera: argument 'alibi_slopes': expected pos_encoding_mode='ALIBI' with it, "
                f"got pos_encoding_mode={pos_encoding_mode!r}")
        return alibi_slopes
    if pos_encoding_mode != "ALIBI" or num_qo_heads & (num_qo_heads - 1) == 0:
        return None
    key = (int(num_qo_heads), torch.device(device))
    slopes = _standard_slopes.get(key)
    if slopes is None:
        from .utils import get_alibi_slopes

        slopes = get_alibi_slopes(num_qo_heads).to(device)
        if type(slopes) is torch.Tensor:  # not a fake tensor of a trace
            _standard_slopes[key] = slopes
    return slopes


def jit_handle(variant, name: str = "jit_args") -> int:
    """The C handle of a tessera.jit.Variant (0: none). FlashInfer's jit_args
    is a list describing a module to generate from FlashInfer's own variant
    source (its params and hooks); Tessera's variants have another interface
    (docs/jit.md), so the list cannot be mapped: Tessera takes the loaded
    Variant instead."""
    if variant is None:
        return 0
    from .jit import Variant

    if not isinstance(variant, Variant):
        raise NotImplementedError(
            f"tessera: argument '{name}': expected a tessera.jit.Variant (FlashInfer's list "
            "form names a FlashInfer variant source, which Tessera's JIT cannot compile; "
            f"write the variant for tessera.jit, docs/jit.md), got {type(variant).__name__}")
    return variant.handle


def host_int32(values, name: str) -> torch.Tensor:
    """A contiguous 1-D int32 CPU tensor of an index array (CUDA input: copied, a sync)."""
    if not isinstance(values, torch.Tensor):
        values = torch.tensor(list(values), dtype=torch.int32)
    if values.dim() != 1:
        raise TesseraArgumentError(f"tessera: argument '{name}': expected a 1-D index array, "
                                   f"got {values.dim()} dimensions")
    return values.to(device="cpu", dtype=torch.int32).contiguous()


def int32_pointer(tensor: torch.Tensor):
    return ctypes.cast(ctypes.c_void_p(tensor.data_ptr()), ctypes.POINTER(ctypes.c_int32))


def _int32_tensor(values) -> torch.Tensor:
    t = values if isinstance(values, torch.Tensor) else torch.tensor(list(values),
                                                                     dtype=torch.int32)
    return t if t.dtype == torch.int32 else t.to(torch.int32)


def is_host(values) -> bool:
    """An index array given on the host (a CPU tensor or a sequence)."""
    return not (isinstance(values, torch.Tensor) and values.device.type != "cpu")


def check_buffer_sizes(items) -> None:
    """on_device's size check of each (values, buffer, name), in order."""
    for values, buffer, name in items:
        n = values.numel() if isinstance(values, torch.Tensor) else len(values)
        if buffer is not None and n > buffer.numel():
            raise TesseraArgumentError(
                f"tessera: argument '{name}': expected at most {buffer.numel()} entries (its "
                f"CUDA-graph buffer), got {n}")


def on_device_many(items, device, non_blocking: bool) -> list:
    """on_device of several index arrays, (values, buffer, name) each, with
    the host ones moved in one copy: packed into one pinned buffer (torch's
    caching host allocator keeps it until the copy has read it) and copied
    to one device tensor whose views are returned, or from that buffer into
    the arrays' CUDA-graph buffers. A plan moves 2-4 arrays, and each
    pin_memory() and copy is a pinned allocation, a torch op and CUDA calls
    (the GPU machine's decode plan() took 84-121 us of host time around a
    9 us C++ plan). Errors as on_device's, in the order of `items`."""
    tensors = [_int32_tensor(values) for values, _, _ in items]
    result = [None] * len(items)
    if device.type == "cuda":
        check_buffer_sizes([(t, item[1], item[2]) for t, item in zip(tensors, items)])
        host = [i for i, t in enumerate(tensors) if not t.is_cuda]
        if len(host) > 1 and all(tensors[i].dim() == 1 for i in host):
            sizes = [tensors[i].numel() for i in host]
            staging = torch.empty(sum(sizes), dtype=torch.int32, pin_memory=non_blocking)
            torch.cat([tensors[i] for i in host], out=staging)
            if all(items[i][1] is None for i in host):
                for i, view in zip(host, staging.to(device, non_blocking=non_blocking)
                                   .split(sizes)):
                    result[i] = view
            else:
                # Host views of the staging: each goes to its buffer, or (an
                # array without one, e.g. some buffers given without
                # use_cuda_graph) to the device on its own; never a host view.
                for i, view in zip(host, staging.split(sizes)):
                    result[i] = on_device(view, items[i][1], device, non_blocking, items[i][2])
    return [r if r is not None else on_device(t, item[1], device, non_blocking, item[2])
            for r, t, item in zip(result, tensors, items)]


def _already_on(t: torch.Tensor, device: torch.device) -> bool:
    """t is on `device` (torch.device("cuda") meaning the current GPU)."""
    if t.device == device:
        return True
    return (device.type == "cuda" and device.index is None and t.is_cuda
            and t.device.index == torch.cuda.current_device())


def on_device(values, buffer, device, non_blocking: bool, name: str) -> torch.Tensor:
    """An index array as an int32 tensor on `device` for run(): a tensor
    already there as it is; host data copied (from pinned memory when
    non_blocking). With a CUDA-graph buffer the values go into its first
    entries and the whole buffer is returned, so the tensor a captured graph
    reads stays the same."""
    t = values if isinstance(values, torch.Tensor) else torch.tensor(list(values),
                                                                     dtype=torch.int32)
    if t.dtype != torch.int32:
        t = t.to(torch.int32)
    if buffer is None:
        if _already_on(t, device):
            return t
        if t.device.type != "cpu":
            return t.to(device)  # another GPU: pin_memory() takes only CPU tensors
        t = t.contiguous()
        return t.pin_memory().to(device, non_blocking=True) if non_blocking else t.to(device)
    if t.numel() > buffer.numel():
        raise TesseraArgumentError(
            f"tessera: argument '{name}': expected at most {buffer.numel()} entries (its "
            f"CUDA-graph buffer), got {t.numel()}")
    if non_blocking and t.device.type == "cpu":
        t = t.contiguous().pin_memory()
    buffer[:t.numel()].copy_(t, non_blocking=non_blocking)
    return buffer
