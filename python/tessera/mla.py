"""MLA (DeepSeek multi-head latent attention) over a paged latent cache:
FlashInfer's flashinfer.mla.BatchMLAPagedAttentionWrapper and 0.2.0's
BatchDecodeMlaWithPagedKVCacheWrapper over libtessera (tessera/api/mla.h,
docs/mla.md). The engine absorbs W_UK into q_nope and applies W_UV to the
output; the kernel attends over 576 latent values per token (ckv 512 + kpe
64) once for all heads. lse is in base 2 unless return_lse_base_on_e.
Hopper GPUs only for now.
"""

from __future__ import annotations

import ctypes
import math
from typing import Optional

import torch

from . import _checks, _lib
from ._lib import TesseraArgumentError
from ._ops import custom_op
from ._plan_args import host_int32 as _host_int32
from ._plan_args import int32_pointer as _int32_pointer
from ._plan_args import on_device as _on_device
from .prefill import _check_backend
from ._tensor import current_stream, dl, dl_or_none

_CKV = 512
_KPE = 64
# With use_cuda_graph=True: query tokens per request the plan bounds allow
# (decode 1, speculative verification a few); more raise naming qo_indptr.
_GRAPH_TOKENS_PER_REQUEST = 16


def _check_mla_run(handle, q_nope, q_pe, ckv_cache, kpe_cache, kv_indices, qo_indptr, kv_indptr,
                   kv_len, out, lse, sm_scale=0.0) -> None:
    """q_nope [tokens, heads, 512], q_pe [tokens, heads, 64], the caches
    [pages, page_size, 512 / 64] of q's dtype, out like q_nope."""
    _checks.tensor(q_nope, "q_nope", ndim=3, dtypes=_checks.HALF)
    _checks.tensor(q_pe, "q_pe", ndim=3)
    _checks.same_dtype(q_pe, "q_pe", q_nope, "q_nope")
    for name, x in (("ckv_cache", ckv_cache), ("kpe_cache", kpe_cache)):
        _checks.tensor(x, name, ndim=3)
        _checks.same_dtype(x, name, q_nope, "q_nope")
    _checks.index_arrays(kv_indices=kv_indices, qo_indptr=qo_indptr, kv_indptr=kv_indptr,
                         kv_len=kv_len)
    _checks.like(out, "out", q_nope, "q_nope")
    _checks.lse(lse, "lse", tuple(q_nope.shape[:2]))


@custom_op("tessera::batch_mla_run", mutates_args=("out", "lse"))
def _batch_mla_run_op(handle: int, q_nope: torch.Tensor, q_pe: torch.Tensor,
                      ckv_cache: torch.Tensor, kpe_cache: torch.Tensor, kv_indices: torch.Tensor,
                      qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_len: torch.Tensor,
                      out: torch.Tensor, lse: Optional[torch.Tensor], sm_scale: float) -> None:
    # The plan lives in a C++ object that travels as its address (the
    # wrapper keeps it alive).
    _check_mla_run(handle, q_nope, q_pe, ckv_cache, kpe_cache, kv_indices, qo_indptr, kv_indptr,
                   kv_len, out, lse)
    _lib.call("tessera_batch_mla_run", ctypes.c_void_p(handle), dl(q_nope), dl(q_pe),
              dl(ckv_cache), dl(kpe_cache), dl(kv_indices), dl(qo_indptr), dl(kv_indptr),
              dl(kv_len), dl(out), dl_or_none(lse), sm_scale, current_stream(q_nope.device), 0)


_batch_mla_run_op.register_fake(_check_mla_run)


def _require_none(value, name: str, why: str) -> None:
    if value is not None:
        raise NotImplementedError(f"tessera: argument '{name}': {why}; pass None")


class BatchMLAPagedAttentionWrapper:
    """MLA over a paged latent cache with FlashInfer's plan/run API.

    plan() takes the batch's index arrays (host tensors preferred: no sync)
    and writes the schedule into float_workspace_buffer; run() launches the
    kernels (CUDA-graph capturable). With use_cuda_graph=True the index
    arrays live in the caller's buffers (qo_indptr / kv_indptr [max_batch +
    1], kv_indices, kv_len_arr [max_batch]), so a graph captured around run()
    replays for later plans of at most max_batch requests and 16 query
    tokens per request on average (or the first plan's total, if larger).
    backend: "fa3" the Hopper kernel (sm_90a), "fa2" the portable mma.sync
    kernel (A100 / H100 class: 144 KB of shared memory per block), "auto"
    fa3 on sm_90a, else fa2.
    """

    def __init__(self, float_workspace_buffer: torch.Tensor, use_cuda_graph: bool = False,
                 qo_indptr: Optional[torch.Tensor] = None,
                 kv_indptr: Optional[torch.Tensor] = None,
                 kv_indices: Optional[torch.Tensor] = None,
                 kv_len_arr: Optional[torch.Tensor] = None, backend: str = "auto"):
        self._backend = _check_backend(backend)
        _checks.tensor(float_workspace_buffer, "float_workspace_buffer")
        self._float_workspace = float_workspace_buffer
        self._use_cuda_graph = use_cuda_graph
        self._buffers = dict(qo_indptr=qo_indptr, kv_indptr=kv_indptr, kv_indices=kv_indices,
                             kv_len_arr=kv_len_arr)
        if use_cuda_graph:
            for name, buffer in self._buffers.items():
                if buffer is None:
                    raise TesseraArgumentError(
                        f"tessera: argument '{name}': expected a device int32 buffer with "
                        "use_cuda_graph=True, got None")
                _checks.tensor(buffer, name, ndim=1, dtypes=_checks.INT32)
        self._handle = None
        self._handle_key = None
        self._planned = None

    def _destroy(self):
        if self._handle is not None:
            _lib.library().tessera_batch_mla_destroy(self._handle)
            self._handle = None
            self._handle_key = None

    def __del__(self):
        try:
            self._destroy()
        except Exception:  # interpreter shutdown: the library may be gone
            pass

    def _ensure_handle(self, num_heads, page_size, batch, tokens, device):
        key = (num_heads, page_size, device.index)
        if (self._handle is not None and self._handle_key[0] == key
                and batch <= self._handle_key[1] and tokens <= self._handle_key[2]):
            return
        if self._use_cuda_graph:
            if self._handle is not None:
                raise TesseraArgumentError(
                    "tessera: argument 'qo_indptr': expected a plan within the first plan's "
                    f"bounds ({self._handle_key[1]} requests, {self._handle_key[2]} query tokens) "
                    f"with use_cuda_graph=True, got {batch} requests, {tokens} tokens")
            # The bounds a captured graph keeps: the buffers' batch, and up
            # to _GRAPH_TOKENS_PER_REQUEST query tokens per request (the first
            # plan may be the smallest one captured).
            max_batch = self._buffers["qo_indptr"].numel() - 1
            max_tokens = max(tokens, 1, max_batch * _GRAPH_TOKENS_PER_REQUEST)
        else:
            previous = self._handle_key if self._handle_key is not None else (None, 0, 0)
            max_batch = max(batch, 1, 2 * previous[1] if batch > previous[1] else previous[1])
            max_tokens = max(tokens, 1, 2 * previous[2] if tokens > previous[2] else previous[2])
        self._destroy()
        workspace = self._float_workspace
        if not workspace.is_cuda:
            raise TesseraArgumentError(
                "tessera: argument 'float_workspace_buffer': expected a CUDA tensor, got one on "
                f"{workspace.device}")
        device_id = device.index if device.index is not None else torch.cuda.current_device()
        needed = ctypes.c_size_t()
        _lib.call("tessera_batch_mla_workspace_size", num_heads, _CKV, _KPE, page_size, max_batch,
                  max_tokens, 1, device_id, ctypes.byref(needed))
        available = workspace.numel() * workspace.element_size()
        if available < needed.value:
            raise TesseraArgumentError(
                f"tessera: argument 'float_workspace_buffer': expected at least {needed.value} "
                f"bytes, got {available}")
        handle = ctypes.c_void_p()
        _lib.call("tessera_batch_mla_create", num_heads, _CKV, _KPE, page_size, max_batch,
                  max_tokens, ctypes.c_void_p(workspace.data_ptr()), available, device_id,
                  self._backend, ctypes.byref(handle))
        self._handle = handle.value
        self._handle_key = (key, max_batch, max_tokens)

    def plan(self, qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
             kv_len_arr: torch.Tensor, num_heads: int, head_dim_ckv: int, head_dim_kpe: int,
             page_size: int, causal: bool, sm_scale: float, q_data_type, kv_data_type,
             use_profiler: bool = False) -> None:
        """Plans attention for the batch: qo_indptr [batch + 1] query tokens,
        kv_indptr [batch + 1] into kv_indices (page ids), kv_len_arr [batch]
        KV tokens per request; int32, host tensors preferred. The dtype
        arguments are accepted for compatibility (run() checks the tensors')."""
        del q_data_type, kv_data_type
        if use_profiler:
            raise NotImplementedError("tessera: argument 'use_profiler': not supported; pass False")
        num_heads = _checks.integer(num_heads, "num_heads", minimum=1)
        if _checks.integer(head_dim_ckv, "head_dim_ckv") != _CKV:
            _checks.fail("head_dim_ckv", str(_CKV), str(head_dim_ckv))
        if _checks.integer(head_dim_kpe, "head_dim_kpe") != _KPE:
            _checks.fail("head_dim_kpe", str(_KPE), str(head_dim_kpe))
        page_size = _checks.integer(page_size, "page_size", minimum=1)
        sm_scale = _checks.real(sm_scale, "sm_scale", positive=True)
        device = self._float_workspace.device
        qo_host = _host_int32(qo_indptr, "qo_indptr")
        kv_host = _host_int32(kv_indptr, "kv_indptr")
        len_host = _host_int32(kv_len_arr, "kv_len_arr")
        batch = len_host.numel()
        for name, t in (("qo_indptr", qo_host), ("kv_indptr", kv_host)):
            if t.numel() != batch + 1:
                raise TesseraArgumentError(
                    f"tessera: argument '{name}': expected batch_size + 1 = {batch + 1} entries "
                    f"(kv_len_arr has {batch}), got {t.numel()}")
        tokens = int(qo_host[-1])
        self._ensure_handle(num_heads, page_size, batch, tokens, device)
        _lib.call("tessera_batch_mla_plan", ctypes.c_void_p(self._handle),
                  _int32_pointer(qo_host), qo_host.numel(), _int32_pointer(kv_host),
                  kv_host.numel(), _int32_pointer(len_host), batch, int(bool(causal)),
                  current_stream(device))
        b = self._buffers if self._use_cuda_graph else dict.fromkeys(self._buffers)
        self._qo_indptr = _on_device(qo_indptr, b["qo_indptr"], device, True, "qo_indptr")
        self._kv_indptr = _on_device(kv_indptr, b["kv_indptr"], device, True, "kv_indptr")
        self._kv_indices = _on_device(kv_indices, b["kv_indices"], device, True, "kv_indices")
        self._kv_len = _on_device(kv_len_arr, b["kv_len_arr"], device, True, "kv_len_arr")
        self._planned = dict(tokens=tokens, num_heads=num_heads, sm_scale=sm_scale)

    def run(self, q_nope: torch.Tensor, q_pe: torch.Tensor, ckv_cache: torch.Tensor,
            kpe_cache: torch.Tensor, out: Optional[torch.Tensor] = None,
            lse: Optional[torch.Tensor] = None, return_lse: bool = False,
            profiler_buffer: Optional[torch.Tensor] = None, kv_len: Optional[torch.Tensor] = None,
            page_table: Optional[torch.Tensor] = None, return_lse_base_on_e: bool = False):
        """out [tokens, heads, 512] (and lse [tokens, heads] float32 with
        return_lse) for the planned batch; q_nope / q_pe and the caches may
        be strided views (e.g. slices of one [pages, page_size, 576] cache)."""
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'plan': expected plan() before run()")
        _require_none(profiler_buffer, "profiler_buffer", "profiling is not supported")
        _require_none(kv_len, "kv_len", "the sm100 back end's argument")
        _require_none(page_table, "page_table", "the sm100 back end's argument")
        _checks.tensors(q_nope=q_nope, q_pe=q_pe, ckv_cache=ckv_cache, kpe_cache=kpe_cache)
        if out is None:
            out = torch.empty(q_nope.shape[0], q_nope.shape[1], _CKV, dtype=q_nope.dtype,
                              device=q_nope.device)
        want_lse = return_lse or lse is not None
        if want_lse and lse is None:
            lse = torch.empty(q_nope.shape[0], q_nope.shape[1], dtype=torch.float32,
                              device=q_nope.device)
        _batch_mla_run_op(self._handle, q_nope, q_pe, ckv_cache, kpe_cache, self._kv_indices,
                          self._qo_indptr, self._kv_indptr, self._kv_len, out,
                          lse if want_lse else None, self._planned["sm_scale"])
        if not return_lse:
            return out
        return out, (lse * math.log(2.0) if return_lse_base_on_e else lse)


class BatchDecodeMlaWithPagedKVCacheWrapper:
    """FlashInfer 0.2.0's MLA decode wrapper: one query token per request,
    the page table as (indptr, indices, last_page_len). q_pe and kpe arrive
    rotated (0.2.0's kernel also rotated them itself, a bug 0.2.1 removed):
    rope_scale / rope_theta are accepted and unused."""

    def __init__(self, float_workspace_buffer: torch.Tensor, use_cuda_graph: bool = False,
                 paged_kv_indptr_buffer: Optional[torch.Tensor] = None,
                 paged_kv_indices_buffer: Optional[torch.Tensor] = None,
                 paged_kv_last_page_len_buffer: Optional[torch.Tensor] = None):
        # With use_cuda_graph the kv_len buffer and qo_indptr buffer are the
        # wrapper's own (sized from the caller's last_page_len buffer).
        qo = kv_len = None
        if use_cuda_graph:
            _checks.tensor(paged_kv_last_page_len_buffer, "paged_kv_last_page_len_buffer",
                           ndim=1, dtypes=_checks.INT32)
            batch = paged_kv_last_page_len_buffer.numel()
            device = paged_kv_last_page_len_buffer.device
            qo = torch.empty(batch + 1, dtype=torch.int32, device=device)
            kv_len = torch.empty(batch, dtype=torch.int32, device=device)
        self._inner = BatchMLAPagedAttentionWrapper(
            float_workspace_buffer, use_cuda_graph, qo, paged_kv_indptr_buffer,
            paged_kv_indices_buffer, kv_len)

    def plan(self, indptr: torch.Tensor, indices: torch.Tensor, last_page_len: torch.Tensor,
             num_qo_heads: int, head_dim_compressed_kv: int, page_size: int, sm_scale: float,
             window_left: int = -1, logits_soft_cap: Optional[float] = None,
             data_type="float16", q_data_type=None, rope_scale: Optional[float] = None,
             rope_theta: Optional[float] = None) -> None:
        del rope_scale, rope_theta
        if _checks.integer(window_left, "window_left", minimum=-1) >= 0:
            raise NotImplementedError("tessera: argument 'window_left': MLA runs no sliding "
                                      "window; pass -1")
        if logits_soft_cap not in (None, 0, 0.0):
            raise NotImplementedError("tessera: argument 'logits_soft_cap': MLA runs no soft "
                                      "cap; pass None")
        page_size = _checks.integer(page_size, "page_size", minimum=1)
        indptr_host = _host_int32(indptr, "indptr")
        last_host = _host_int32(last_page_len, "last_page_len")
        batch = last_host.numel()
        if indptr_host.numel() != batch + 1:
            raise TesseraArgumentError(
                f"tessera: argument 'indptr': expected batch_size + 1 = {batch + 1} entries "
                f"(last_page_len has {batch}), got {indptr_host.numel()}")
        pages = indptr_host[1:] - indptr_host[:-1]
        kv_len = torch.where(pages > 0, (pages - 1) * page_size + last_host,
                             torch.zeros_like(pages)).to(torch.int32)
        qo_indptr = torch.arange(batch + 1, dtype=torch.int32)
        self._inner.plan(qo_indptr, indptr, indices, kv_len, num_qo_heads,
                         head_dim_compressed_kv, _KPE, page_size, False, sm_scale, q_data_type,
                         data_type)

    begin_forward = plan

    def run(self, q_nope: torch.Tensor, q_pe: torch.Tensor, paged_ckv_cache: torch.Tensor,
            paged_kpe_cache: torch.Tensor, q_scale: Optional[float] = None,
            k_scale: Optional[float] = None, v_scale: Optional[float] = None,
            out: Optional[torch.Tensor] = None, lse: Optional[torch.Tensor] = None,
            return_lse: bool = False):
        """o [batch, heads, 512] (and lse [batch, heads], base 2, with
        return_lse); q_scale x k_scale scale the logits, v_scale the output."""
        planned = self._inner._planned
        if planned is None:
            raise TesseraArgumentError("tessera: argument 'plan': expected plan() before run()")
        scale = (_checks.optional_real(q_scale, "q_scale", 1.0) *
                 _checks.optional_real(k_scale, "k_scale", 1.0))
        sm_scale = planned["sm_scale"]
        planned["sm_scale"] = sm_scale * scale
        try:
            result = self._inner.run(q_nope, q_pe, paged_ckv_cache, paged_kpe_cache, out=out,
                                     lse=lse, return_lse=return_lse)
        finally:
            planned["sm_scale"] = sm_scale
        if v_scale is not None and v_scale != 1.0:
            o = result[0] if return_lse else result
            o.mul_(_checks.real(v_scale, "v_scale"))
        return result
