"""Decode attention: FlashInfer's single_decode_with_kv_cache and
BatchDecodeWithPagedKVCacheWrapper over libtessera (tessera/api/decode.h).

Kernel choice: Tessera picks the tensor-core kernel (GQA groups of 4-16, 16-bit
KV, head_dim 64/128) or the CUDA-core one by shape; FlashInfer's
use_tensor_cores is accepted and does not change results. lse is in base 2,
as FlashInfer's.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import _lib
from ._lib import TesseraArgumentError
from ._options import layout_code, pos_encoding_code
from ._tensor import current_stream, dl, dl_or_none
from ._ops import custom_op
from ._plan_args import attention_struct as _options
from ._plan_args import cache_pair as _cache_pair
from ._plan_args import host_int32 as _host_int32
from ._plan_args import int32_pointer as _int32_pointer
from ._plan_args import on_device as _on_device
from ._plan_args import paged_kv_struct as _paged_kv_struct


# ---- torch custom ops: out-parameter style (the public functions allocate).


@custom_op("tessera::single_decode", mutates_args=("out", "lse"))
def _single_decode_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                      lse: Optional[torch.Tensor], kv_layout: int, sm_scale: float,
                      logits_soft_cap: float, window_left: int, pos_encoding_mode: int,
                      rope_scale: float, rope_theta: float, k_scale: float,
                      v_scale: float, jit_variant: int) -> None:
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, k_scale, v_scale, jit_variant)
    _lib.call("tessera_single_decode_with_kv_cache", dl(q), dl(k), dl(v), dl(out),
              dl_or_none(lse), kv_layout, options, 0, current_stream(q.device))


@_single_decode_op.register_fake
def _(q, k, v, out, lse, kv_layout, sm_scale, logits_soft_cap, window_left, pos_encoding_mode,
      rope_scale, rope_theta, k_scale, v_scale, jit_variant):
    return None


@custom_op("tessera::batch_decode_run", mutates_args=("out", "lse"))
def _batch_decode_run_op(handle: int, q: torch.Tensor, k_cache: torch.Tensor,
                         v_cache: Optional[torch.Tensor], kv_layout: int,
                         kv_indices: torch.Tensor, kv_indptr: torch.Tensor,
                         kv_last_page_len: torch.Tensor, out: torch.Tensor,
                         lse: Optional[torch.Tensor], sm_scale: float, logits_soft_cap: float,
                         window_left: int, pos_encoding_mode: int, rope_scale: float,
                         rope_theta: float, k_scale: float, v_scale: float,
                         jit_variant: int) -> None:
    # The plan (and a JIT variant) live in C++ objects; ops take tensors and
    # scalars only, so the objects travel as their addresses (the wrapper
    # keeps them alive).
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, k_scale, v_scale, jit_variant)
    _lib.call("tessera_batch_decode_run", ctypes.c_void_p(handle), dl(q),
              _paged_kv_struct(k_cache, v_cache, kv_layout), dl(kv_indices), dl(kv_indptr),
              dl(kv_last_page_len), dl(out), dl_or_none(lse), options, current_stream(q.device),
              0)


@_batch_decode_run_op.register_fake
def _(handle, q, k_cache, v_cache, kv_layout, kv_indices, kv_indptr, kv_last_page_len, out, lse,
      sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale, rope_theta, k_scale,
      v_scale, jit_variant):
    return None


def _jit_handle(variant) -> int:
    """The C handle of a tessera.jit.Variant (0: none). FlashInfer's list form
    of jit_args describes a module to generate; Tessera takes the loaded
    variant instead."""
    if variant is None:
        return 0
    from .jit import Variant

    if not isinstance(variant, Variant):
        raise NotImplementedError(
            "tessera: argument 'jit_args': expected a tessera.jit.Variant (FlashInfer's list "
            f"form is not supported), got {type(variant).__name__}")
    return variant.handle


def _scales(q_scale, sm_scale, head_dim):
    """FlashInfer folds q_scale into the softmax scale; k_scale and v_scale go
    to the kernel as AttentionOptions (the fp8 dequantisation scales)."""
    scale = float(sm_scale) if sm_scale is not None else head_dim ** -0.5
    if q_scale is not None:
        scale *= float(q_scale)
    return scale


def single_decode_with_kv_cache(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                kv_layout: str = "NHD", pos_encoding_mode: str = "NONE",
                                use_tensor_cores: bool = False, q_scale: Optional[float] = None,
                                k_scale: Optional[float] = None, v_scale: Optional[float] = None,
                                window_left: int = -1, logits_soft_cap: Optional[float] = None,
                                sm_scale: Optional[float] = None,
                                rope_scale: Optional[float] = None,
                                rope_theta: Optional[float] = None, return_lse: bool = False,
                                jit_variant=None):
    """Decode attention of one request against a contiguous KV cache.

    q: [num_qo_heads, head_dim]; k, v: [kv_len, num_kv_heads, head_dim] (NHD)
    or [num_kv_heads, kv_len, head_dim] (HND), fp16/bf16 or float8_e4m3fn.
    Returns out [num_qo_heads, head_dim] in q's dtype, and with return_lse the
    float32 lse [num_qo_heads] (base 2). jit_variant (Tessera's): a
    tessera.jit.Variant compiled for the batch_decode kernel.
    """
    del use_tensor_cores  # the library chooses by shape; results do not change
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device) if return_lse else None
    torch.ops.tessera.single_decode(
        q, k, v, out, lse, layout_code(kv_layout), _scales(q_scale, sm_scale, q.shape[-1]),
        float(logits_soft_cap or 0.0), int(window_left), pos_encoding_code(pos_encoding_mode),
        float(rope_scale or 0.0), float(rope_theta or 0.0), float(k_scale or 0.0),
        float(v_scale or 0.0), _jit_handle(jit_variant))
    return (out, lse) if return_lse else out


class BatchDecodeWithPagedKVCacheWrapper:
    """Batch decode over a paged KV cache with FlashInfer's plan/run API.

    plan() takes the batch's page table (host tensors preferred: no sync) and
    writes the schedule into float_workspace_buffer with one non-blocking copy;
    run() launches the kernels, once per layer. With use_cuda_graph=True the
    index arrays live in the caller's fixed buffers (paged_kv_indptr_buffer
    [max_batch + 1], paged_kv_indices_buffer, paged_kv_last_page_len_buffer
    [max_batch]), so a graph captured around run() replays for any later plan
    of at most max_batch requests.
    """

    def __init__(self, float_workspace_buffer: torch.Tensor, kv_layout: str = "NHD",
                 use_cuda_graph: bool = False, use_tensor_cores: bool = False,
                 paged_kv_indptr_buffer: Optional[torch.Tensor] = None,
                 paged_kv_indices_buffer: Optional[torch.Tensor] = None,
                 paged_kv_last_page_len_buffer: Optional[torch.Tensor] = None,
                 backend: str = "auto", jit_args=None):
        self._jit = jit_args
        _jit_handle(jit_args)  # checks the type now, not at the first run
        self._kv_layout = layout_code(kv_layout)
        self._kv_layout_name = kv_layout
        self._use_cuda_graph = use_cuda_graph
        self._float_workspace = float_workspace_buffer
        if use_cuda_graph:
            for name, buffer in (("paged_kv_indptr_buffer", paged_kv_indptr_buffer),
                                 ("paged_kv_indices_buffer", paged_kv_indices_buffer),
                                 ("paged_kv_last_page_len_buffer", paged_kv_last_page_len_buffer)):
                if buffer is None:
                    raise TesseraArgumentError(
                        f"tessera: argument '{name}': expected a device int32 buffer with "
                        "use_cuda_graph=True, got None")
            self._max_batch = paged_kv_indptr_buffer.numel() - 1
        else:
            self._max_batch = 0
        self._indptr_buffer = paged_kv_indptr_buffer
        self._indices_buffer = paged_kv_indices_buffer
        self._last_page_len_buffer = paged_kv_last_page_len_buffer
        self._handle = None
        self._handle_key = None
        self._planned = None

    # FlashInfer 0.2 keeps a separate int workspace; Tessera's schedule lives in
    # the float workspace, so the second buffer is accepted and unused.
    def reset_workspace_buffer(self, float_workspace_buffer: torch.Tensor,
                               int_workspace_buffer: Optional[torch.Tensor] = None) -> None:
        self._float_workspace = float_workspace_buffer
        self._destroy()

    @property
    def is_cuda_graph_enabled(self) -> bool:
        return self._use_cuda_graph

    def _destroy(self):
        if self._handle is not None:
            _lib.library().tessera_batch_decode_destroy(self._handle)
            self._handle = None
            self._handle_key = None

    def __del__(self):
        try:
            self._destroy()
        except Exception:  # interpreter shutdown: the library may be gone
            pass

    def _ensure_handle(self, num_qo_heads, num_kv_heads, head_dim, page_size, batch, device):
        max_batch = self._max_batch if self._use_cuda_graph else batch
        if self._use_cuda_graph and batch > max_batch:
            raise TesseraArgumentError(
                f"tessera: argument 'indptr': expected at most {max_batch} requests (the size of "
                f"paged_kv_indptr_buffer), got {batch}")
        key = (num_qo_heads, num_kv_heads, head_dim, page_size, device.index)
        if (self._handle is not None and self._handle_key[0] == key
                and batch <= self._handle_key[1]):
            return
        if not self._use_cuda_graph:
            # Grow geometrically so a batch growing by one does not re-create.
            previous = self._handle_key[1] if self._handle_key is not None else 0
            max_batch = max(batch, 1, 2 * previous if batch > previous else previous)
        self._destroy()
        workspace = self._float_workspace
        device_id = device.index if device.index is not None else torch.cuda.current_device()
        needed = ctypes.c_size_t()
        _lib.call("tessera_batch_decode_workspace_size", num_qo_heads, num_kv_heads, head_dim,
                  page_size, max_batch, 0, device_id, ctypes.byref(needed))
        available = workspace.numel() * workspace.element_size()
        if available < needed.value:
            raise TesseraArgumentError(
                f"tessera: argument 'float_workspace_buffer': expected at least {needed.value} "
                f"bytes for {max_batch} requests, got {available}")
        handle = ctypes.c_void_p()
        _lib.call("tessera_batch_decode_create", num_qo_heads, num_kv_heads, head_dim, page_size,
                  max_batch, 0, ctypes.c_void_p(workspace.data_ptr()), available, device_id,
                  ctypes.byref(handle))
        self._handle = handle.value
        self._handle_key = (key, max_batch)

    def plan(self, indptr: torch.Tensor, indices: torch.Tensor, last_page_len: torch.Tensor,
             num_qo_heads: int, num_kv_heads: int, head_dim: int, page_size: int,
             pos_encoding_mode: str = "NONE", window_left: int = -1,
             logits_soft_cap: Optional[float] = None, q_data_type="float16", kv_data_type=None,
             data_type=None, sm_scale: Optional[float] = None, rope_scale: Optional[float] = None,
             rope_theta: Optional[float] = None, non_blocking: bool = True) -> None:
        """Plans decode for the batch described by the page table.

        indptr [batch + 1], indices [indptr[-1]], last_page_len [batch]: int32
        (host tensors preferred; CUDA tensors are copied to the host, a sync).
        The dtype arguments are accepted for compatibility: run() checks q's
        and the cache's dtypes.
        """
        del q_data_type, kv_data_type, data_type
        device = self._float_workspace.device
        indptr_host = _host_int32(indptr, "indptr")
        last_host = _host_int32(last_page_len, "last_page_len")
        batch = last_host.numel()
        self._ensure_handle(int(num_qo_heads), int(num_kv_heads), int(head_dim), int(page_size),
                            batch, device)
        _lib.call("tessera_batch_decode_plan", ctypes.c_void_p(self._handle),
                  _int32_pointer(indptr_host), indptr_host.numel(), _int32_pointer(last_host),
                  batch, 0, 0, current_stream(device))

        # run() reads the page table from the device.
        self._indptr = _on_device(indptr, self._indptr_buffer, device, non_blocking, "indptr")
        self._indices = _on_device(indices, self._indices_buffer, device, non_blocking, "indices")
        self._last_page_len = _on_device(last_page_len, self._last_page_len_buffer, device,
                                         non_blocking, "last_page_len")
        self._planned = dict(
            batch=batch, num_qo_heads=int(num_qo_heads), head_dim=int(head_dim),
            pos_encoding_mode=pos_encoding_code(pos_encoding_mode),
            window_left=int(window_left), logits_soft_cap=float(logits_soft_cap or 0.0),
            sm_scale=sm_scale, rope_scale=float(rope_scale or 0.0),
            rope_theta=float(rope_theta or 0.0))

    begin_forward = plan

    def run(self, q: torch.Tensor, paged_kv_cache, *args, q_scale: Optional[float] = None,
            k_scale: Optional[float] = None, v_scale: Optional[float] = None,
            out: Optional[torch.Tensor] = None, lse: Optional[torch.Tensor] = None,
            return_lse: bool = False):
        """Decode attention for the planned batch.

        q: [batch, num_qo_heads, head_dim]; paged_kv_cache: [pages, 2, page_size,
        num_kv_heads, head_dim] (NHD; HND swaps the middle two) or a (k_cache,
        v_cache) pair of [pages, ...]. Returns out (like q) and, with
        return_lse, lse float32 [batch, num_qo_heads] (base 2).
        """
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'self': expected plan() before run(), "
                                       "got no plan")
        p = self._planned
        k_cache, v_cache = _cache_pair(paged_kv_cache)
        if out is None:
            out = torch.empty_like(q)
        if lse is None and return_lse:
            lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        torch.ops.tessera.batch_decode_run(
            self._handle, q, k_cache, v_cache, self._kv_layout, self._indices, self._indptr,
            self._last_page_len, out, lse, _scales(q_scale, p["sm_scale"], p["head_dim"]),
            p["logits_soft_cap"], p["window_left"], p["pos_encoding_mode"], p["rope_scale"],
            p["rope_theta"], float(k_scale or 0.0), float(v_scale or 0.0),
            _jit_handle(self._jit))
        return (out, lse) if return_lse else out

    forward = run

    def run_return_lse(self, q, paged_kv_cache, *args, **kwargs):
        kwargs["return_lse"] = True
        return self.run(q, paged_kv_cache, *args, **kwargs)

    def end_forward(self) -> None:
        """FlashInfer 0.1's no-op."""
