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

from . import _checks, _flat, _lib
from ._lib import TesseraArgumentError
from ._options import layout_code, pos_encoding_code
from ._tensor import current_stream, dl, dl_or_none
from ._ops import custom_op
from ._plan_args import alibi_slopes_for as _alibi_slopes_for
from ._plan_args import attention_struct as _options
from ._plan_args import cache_pair as _cache_pair
from ._plan_args import host_int32 as _host_int32
from ._plan_args import jit_handle as _jit_handle
from ._plan_args import int32_pointer as _int32_pointer
from ._plan_args import is_host as _is_host
from ._plan_args import on_device_many as _on_device_many
from ._plan_args import paged_kv_struct as _paged_kv_struct
from .mla import BatchDecodeMlaWithPagedKVCacheWrapper  # noqa: F401  (FlashInfer 0.2.0's place)


# ---- argument checks: run by each op's fake and real kernel alike (_checks.py)


def _check_single_decode(q, k, v, out, lse, kv_layout, sm_scale=0.0, logits_soft_cap=0.0,
                         window_left=-1, pos_encoding_mode=0, rope_scale=0.0, rope_theta=0.0,
                         k_scale=0.0, v_scale=0.0, jit_variant=0, alibi_slopes=None) -> None:
    """q [num_qo_heads, head_dim]; k, v [kv_len, num_kv_heads, head_dim] (NHD)
    or [num_kv_heads, kv_len, head_dim] (HND), 16-bit like q or fp8."""
    _checks.tensor(q, "q", ndim=2, dtypes=_checks.HALF)
    _checks.tensor(k, "k", ndim=3, dtypes=_checks.KV)
    _checks.kv_dtype(k, "k", q)
    _checks.like(v, "v", k, "k")
    _checks.size(k, 2, q.shape[1], "k", "head_dim of q")
    _checks.heads_divide(q.shape[0], k.shape[1 if kv_layout == 0 else 0], "k")
    _checks.like(out, "out", q, "q")
    _checks.lse(lse, "lse", (q.shape[0],))
    _checks.alibi_slopes(alibi_slopes, q.shape[0])


def _check_batch_decode_run(handle, q, k_cache, v_cache, kv_layout, kv_indices, kv_indptr,
                            kv_last_page_len, out, lse, sm_scale=0.0, logits_soft_cap=0.0,
                            window_left=-1, pos_encoding_mode=0, rope_scale=0.0,
                            rope_theta=0.0, k_scale=0.0, v_scale=0.0, jit_variant=0,
                            alibi_slopes=None) -> None:
    """q [batch, num_qo_heads, head_dim] against a paged cache."""
    _checks.tensor(q, "q", ndim=3, dtypes=_checks.HALF)
    _checks.paged_cache(k_cache, v_cache, kv_layout, q)
    _checks.index_arrays(kv_indices=kv_indices, kv_indptr=kv_indptr,
                         kv_last_page_len=kv_last_page_len)
    _checks.like(out, "out", q, "q")
    _checks.lse(lse, "lse", tuple(q.shape[:2]))
    _checks.alibi_slopes(alibi_slopes, q.shape[1])


# ---- torch custom ops: out-parameter style (the public functions allocate).


@custom_op("tessera::single_decode", mutates_args=("out", "lse"))
def _single_decode_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                      lse: Optional[torch.Tensor], kv_layout: int, sm_scale: float,
                      logits_soft_cap: float, window_left: int, pos_encoding_mode: int,
                      rope_scale: float, rope_theta: float, k_scale: float,
                      v_scale: float, jit_variant: int,
                      alibi_slopes: Optional[torch.Tensor] = None) -> None:
    _check_single_decode(q, k, v, out, lse, kv_layout, alibi_slopes=alibi_slopes)
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, k_scale, v_scale, jit_variant, alibi_slopes=alibi_slopes)
    _lib.call("tessera_single_decode_with_kv_cache", dl(q), dl(k), dl(v), dl(out),
              dl_or_none(lse), kv_layout, options, 0, current_stream(q.device))


_single_decode_op.register_fake(_check_single_decode)


@custom_op("tessera::batch_decode_run", mutates_args=("out", "lse"))
def _batch_decode_run_op(handle: int, q: torch.Tensor, k_cache: torch.Tensor,
                         v_cache: Optional[torch.Tensor], kv_layout: int,
                         kv_indices: torch.Tensor, kv_indptr: torch.Tensor,
                         kv_last_page_len: torch.Tensor, out: torch.Tensor,
                         lse: Optional[torch.Tensor], sm_scale: float, logits_soft_cap: float,
                         window_left: int, pos_encoding_mode: int, rope_scale: float,
                         rope_theta: float, k_scale: float, v_scale: float,
                         jit_variant: int, alibi_slopes: Optional[torch.Tensor] = None) -> None:
    # The plan (and a JIT variant) live in C++ objects; ops take tensors and
    # scalars only, so the objects travel as their addresses (the wrapper
    # keeps them alive).
    _check_batch_decode_run(handle, q, k_cache, v_cache, kv_layout, kv_indices, kv_indptr,
                            kv_last_page_len, out, lse, alibi_slopes=alibi_slopes)
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, k_scale, v_scale, jit_variant, alibi_slopes=alibi_slopes)
    _lib.call("tessera_batch_decode_run", ctypes.c_void_p(handle), dl(q),
              _paged_kv_struct(k_cache, v_cache, kv_layout), dl(kv_indices), dl(kv_indptr),
              dl(kv_last_page_len), dl(out), dl_or_none(lse), options, current_stream(q.device),
              0)


_batch_decode_run_op.register_fake(_check_batch_decode_run)


def _scales(q_scale, sm_scale, head_dim):
    """FlashInfer folds q_scale into the softmax scale; k_scale and v_scale go
    to the kernel as AttentionOptions (the fp8 dequantisation scales)."""
    scale = _checks.optional_real(sm_scale, "sm_scale", head_dim ** -0.5)
    if q_scale is not None:
        scale *= _checks.real(q_scale, "q_scale")
    return scale


def single_decode_with_kv_cache(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                kv_layout: str = "NHD", pos_encoding_mode: str = "NONE",
                                use_tensor_cores: bool = False, q_scale: Optional[float] = None,
                                k_scale: Optional[float] = None, v_scale: Optional[float] = None,
                                window_left: int = -1, logits_soft_cap: Optional[float] = None,
                                sm_scale: Optional[float] = None,
                                rope_scale: Optional[float] = None,
                                rope_theta: Optional[float] = None, return_lse: bool = False,
                                jit_variant=None, alibi_slopes: Optional[torch.Tensor] = None):
    """Decode attention of one request against a contiguous KV cache.

    q: [num_qo_heads, head_dim]; k, v: [kv_len, num_kv_heads, head_dim] (NHD)
    or [num_kv_heads, kv_len, head_dim] (HND), fp16/bf16 or fp8.
    Returns out [num_qo_heads, head_dim] in q's dtype, and with return_lse the
    float32 lse [num_qo_heads] (base 2). Tessera's extensions: jit_variant, a
    tessera.jit.Variant compiled for the batch_decode kernel; alibi_slopes,
    float32 [num_qo_heads] on q's device with pos_encoding_mode="ALIBI"
    (logits += slope_h * (kv_pos - q_pos); without it FlashInfer's
    get_alibi_slopes(num_qo_heads), as FlashInfer).
    """
    del use_tensor_cores  # the library chooses by shape; results do not change
    _checks.tensors(q=q, k=k, v=v)
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device) if return_lse else None
    torch.ops.tessera.single_decode(
        q, k, v, out, lse, layout_code(kv_layout), _scales(q_scale, sm_scale, q.shape[-1]),
        _checks.optional_real(logits_soft_cap, "logits_soft_cap"),
        _checks.integer(window_left, "window_left", minimum=-1),
        pos_encoding_code(pos_encoding_mode), _checks.optional_real(rope_scale, "rope_scale"),
        _checks.optional_real(rope_theta, "rope_theta"),
        _checks.optional_real(k_scale, "k_scale"), _checks.optional_real(v_scale, "v_scale"),
        _jit_handle(jit_variant),
        _alibi_slopes_for(pos_encoding_mode, alibi_slopes, q.shape[0], q.device))
    return (out, lse) if return_lse else out


_BACKENDS = ("auto", "fa2", "fa3", "trtllm-gen")
_Tensor = torch.Tensor


def _check_backend(backend) -> None:
    # One kernel family serves every FlashInfer decode back-end name.
    if backend not in _BACKENDS:
        raise TesseraArgumentError(
            f"tessera: argument 'backend': expected one of {_BACKENDS}, got {backend!r}")


def _positional_run_args(args: tuple, q_scale, k_scale, v_scale, return_lse: bool, jit):
    """FlashInfer 0.2.0's run(q, paged_kv_cache, q_scale, k_scale, v_scale,
    return_lse) passes these positionally; later versions take the scales by
    keyword and give positional arguments to a JIT module's extra
    parameters, which a tessera.jit.Variant takes by name (Variant.set)."""
    if not args:
        return q_scale, k_scale, v_scale, return_lse
    if jit is not None:
        raise TesseraArgumentError(
            "tessera: argument 'args': expected no positional arguments after paged_kv_cache "
            "with a tessera.jit.Variant (set its parameters with Variant.set), got "
            f"{len(args)}")
    if len(args) > 4:
        raise TesseraArgumentError(
            "tessera: argument 'args': expected at most 4 positional arguments after "
            "paged_kv_cache (FlashInfer 0.2.0's q_scale, k_scale, v_scale, return_lse), got "
            f"{len(args)}")
    given = dict(zip(("q_scale", "k_scale", "v_scale", "return_lse"), args))
    return (given.get("q_scale", q_scale), given.get("k_scale", k_scale),
            given.get("v_scale", v_scale), bool(given.get("return_lse", return_lse)))


class BatchDecodeWithPagedKVCacheWrapper:
    """Batch decode over a paged KV cache with FlashInfer's plan/run API.

    plan() takes the batch's page table (host tensors preferred: no sync) and
    writes the schedule into float_workspace_buffer with one non-blocking copy;
    run() launches the kernels, once per layer. With use_cuda_graph=True the
    index arrays live in the caller's fixed buffers (paged_kv_indptr_buffer
    [max_batch + 1], paged_kv_indices_buffer, paged_kv_last_page_len_buffer
    [max_batch]), so a graph captured around run() replays for any later plan
    of at most max_batch requests. backend: FlashInfer's names ("auto",
    "fa2", "fa3", "trtllm-gen") are accepted and run the same kernels.
    """

    def __init__(self, float_workspace_buffer: torch.Tensor, kv_layout: str = "NHD",
                 use_cuda_graph: bool = False, use_tensor_cores: bool = False,
                 paged_kv_indptr_buffer: Optional[torch.Tensor] = None,
                 paged_kv_indices_buffer: Optional[torch.Tensor] = None,
                 paged_kv_last_page_len_buffer: Optional[torch.Tensor] = None,
                 backend: str = "auto", jit_args=None):
        _check_backend(backend)
        _checks.tensor(float_workspace_buffer, "float_workspace_buffer")
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
                _checks.tensor(buffer, name, ndim=1, dtypes=_checks.INT32)
            self._max_batch = paged_kv_indptr_buffer.numel() - 1
        else:
            self._max_batch = 0
        self._indptr_buffer = paged_kv_indptr_buffer
        self._indices_buffer = paged_kv_indices_buffer
        self._last_page_len_buffer = paged_kv_last_page_len_buffer
        self._handle = None
        self._handle_key = None
        self._planned = None
        self._flat = None  # run()'s eager fast path for the current plan (_flat.py)

    # FlashInfer 0.2 keeps a separate int workspace; Tessera's schedule lives in
    # the float workspace, so the second buffer is accepted and unused.
    def reset_workspace_buffer(self, float_workspace_buffer: torch.Tensor,
                               int_workspace_buffer: Optional[torch.Tensor] = None) -> None:
        _checks.tensor(float_workspace_buffer, "float_workspace_buffer")
        self._float_workspace = float_workspace_buffer
        self._destroy()

    @property
    def is_cuda_graph_enabled(self) -> bool:
        return self._use_cuda_graph

    @property
    def use_tensor_cores(self) -> bool:
        """False: Tessera picks the tensor-core kernel by shape (module docstring)."""
        return False

    def _destroy(self):
        self._flat = None  # it holds the handle
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
        if not workspace.is_cuda:
            raise TesseraArgumentError(
                "tessera: argument 'float_workspace_buffer': expected a CUDA tensor, got one on "
                f"{workspace.device}")
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
             rope_theta: Optional[float] = None, non_blocking: bool = True, *,
             alibi_slopes: Optional[torch.Tensor] = None) -> None:
        """Plans decode for the batch described by the page table.

        indptr [batch + 1], indices [indptr[-1]], last_page_len [batch]: int32
        (host tensors preferred; CUDA tensors are copied to the host, a sync).
        The dtype arguments are accepted for compatibility: run() checks q's
        and the cache's dtypes. alibi_slopes (Tessera's extension): float32
        [num_qo_heads] on the workspace's device, with pos_encoding_mode
        "ALIBI"; without it FlashInfer's get_alibi_slopes(num_qo_heads).
        """
        del q_data_type, kv_data_type, data_type
        self._flat = None
        num_qo_heads = _checks.integer(num_qo_heads, "num_qo_heads", minimum=1)
        num_kv_heads = _checks.integer(num_kv_heads, "num_kv_heads", minimum=1)
        head_dim = _checks.integer(head_dim, "head_dim", minimum=1)
        page_size = _checks.integer(page_size, "page_size", minimum=1)
        _checks.alibi_slopes(alibi_slopes, num_qo_heads)
        pos_encoding = pos_encoding_code(pos_encoding_mode)
        device = self._float_workspace.device
        indptr_host = _host_int32(indptr, "indptr")
        last_host = _host_int32(last_page_len, "last_page_len")
        batch = last_host.numel()
        if indptr_host.numel() != batch + 1:
            raise TesseraArgumentError(
                f"tessera: argument 'indptr': expected batch_size + 1 = {batch + 1} entries "
                f"(last_page_len has {batch}), got {indptr_host.numel()}")
        self._ensure_handle(num_qo_heads, num_kv_heads, head_dim, page_size, batch, device)
        _lib.call("tessera_batch_decode_plan", ctypes.c_void_p(self._handle),
                  _int32_pointer(indptr_host), indptr_host.numel(), _int32_pointer(last_host),
                  batch, 0, 0, current_stream(device))

        # run() reads the page table from the device.
        self._indptr, self._indices, self._last_page_len = _on_device_many(
            ((indptr_host if _is_host(indptr) else indptr, self._indptr_buffer, "indptr"),
             (indices, self._indices_buffer, "indices"),
             (last_host if _is_host(last_page_len) else last_page_len,
              self._last_page_len_buffer, "last_page_len")), device, non_blocking)
        self._planned = dict(
            batch=batch, num_qo_heads=num_qo_heads, head_dim=head_dim,
            pos_encoding_mode=pos_encoding,
            window_left=_checks.integer(window_left, "window_left", minimum=-1),
            logits_soft_cap=_checks.optional_real(logits_soft_cap, "logits_soft_cap"),
            sm_scale=None if sm_scale is None else _checks.real(sm_scale, "sm_scale"),
            rope_scale=_checks.optional_real(rope_scale, "rope_scale"),
            rope_theta=_checks.optional_real(rope_theta, "rope_theta"),
            alibi_slopes=_alibi_slopes_for(pos_encoding_mode, alibi_slopes, num_qo_heads,
                                           device),
            caller_alibi_slopes=alibi_slopes)

    begin_forward = plan

    def run(self, q: torch.Tensor, paged_kv_cache, *args, q_scale: Optional[float] = None,
            k_scale: Optional[float] = None, v_scale: Optional[float] = None,
            out: Optional[torch.Tensor] = None, lse: Optional[torch.Tensor] = None,
            return_lse: bool = False, enable_pdl: Optional[bool] = None):
        """Decode attention for the planned batch.

        q: [batch, num_qo_heads, head_dim]; paged_kv_cache: [pages, 2, page_size,
        num_kv_heads, head_dim] (NHD; HND swaps the middle two) or a (k_cache,
        v_cache) pair of [pages, ...]. Returns out (like q) and, with
        return_lse, lse float32 [batch, num_qo_heads] (base 2). FlashInfer
        0.2.0's positional form run(q, paged_kv_cache, q_scale, k_scale,
        v_scale, return_lse) works too; enable_pdl is accepted and ignored.
        """
        if self._planned is not None and not args and _flat.eager():
            # The eager fast path: one C call, the checks only for new shapes.
            k_cache, v_cache = _cache_pair(paged_kv_cache)
            if type(q) is _Tensor and type(k_cache) is _Tensor and _flat.plain(v_cache, out, lse):
                if out is None:
                    out = torch.empty_like(q)
                if lse is None and return_lse:
                    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
                flat = self._flat if self._flat is not None else self._new_flat()
                entry = flat.options.get((q_scale, k_scale, v_scale))
                if entry is None:
                    entry = self._flat_options(flat, q_scale, k_scale, v_scale)
                flat((q, k_cache, v_cache, out, lse), entry[1])
                return (out, lse) if return_lse else out
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'self': expected plan() before run(), "
                                       "got no plan")
        q_scale, k_scale, v_scale, return_lse = _positional_run_args(
            args, q_scale, k_scale, v_scale, return_lse, self._jit)
        p = self._planned
        k_cache, v_cache = _cache_pair(paged_kv_cache)
        _checks.tensors(q=q, paged_kv_cache=k_cache)
        if out is None:
            out = torch.empty_like(q)
        if lse is None and return_lse:
            lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        torch.ops.tessera.batch_decode_run(
            self._handle, q, k_cache, v_cache, self._kv_layout, self._indices, self._indptr,
            self._last_page_len, out, lse, _scales(q_scale, p["sm_scale"], p["head_dim"]),
            p["logits_soft_cap"], p["window_left"], p["pos_encoding_mode"], p["rope_scale"],
            p["rope_theta"], float(k_scale or 0.0), float(v_scale or 0.0),
            _jit_handle(self._jit), p["alibi_slopes"])
        return (out, lse) if return_lse else out

    def _new_flat(self) -> _flat.FlatRun:
        """The current plan's eager run() calls (_flat.py)."""
        def check(q, k_cache, v_cache, out, lse):
            _check_batch_decode_run(self._handle, q, k_cache, v_cache, self._kv_layout,
                                    self._indices, self._indptr, self._last_page_len, out, lse,
                                    alibi_slopes=self._planned["alibi_slopes"])

        self._flat = _flat.FlatRun(
            "tessera_batch_decode_run_flat", self._handle,
            (self._indices, self._indptr, self._last_page_len), 5, check, self._kv_layout)
        return self._flat

    def _flat_options(self, flat: _flat.FlatRun, q_scale, k_scale, v_scale) -> tuple:
        """The AttentionOptions of run()'s scales (what the op path passes),
        kept for later calls with the same scales."""
        p = self._planned
        options = _options(_scales(q_scale, p["sm_scale"], p["head_dim"]), p["logits_soft_cap"],
                           p["window_left"], p["pos_encoding_mode"], p["rope_scale"],
                           p["rope_theta"], float(k_scale or 0.0), float(v_scale or 0.0),
                           _jit_handle(self._jit), alibi_slopes=p["alibi_slopes"])
        entry = _flat.options_entry(options)
        if len(flat.options) < 64:  # scales are a handful of constants in practice
            try:
                flat.options[(q_scale, k_scale, v_scale)] = entry
            except TypeError:  # unhashable scales: built per call
                pass
        return entry

    def run_return_lse(self, q, paged_kv_cache, *args, **kwargs):
        """run() with return_lse=True: (out, lse)."""
        kwargs["return_lse"] = True
        return self.run(q, paged_kv_cache, *args, **kwargs)

    def forward(self, q: torch.Tensor, paged_kv_cache, pos_encoding_mode: str = "NONE",
                q_scale: Optional[float] = None, k_scale: Optional[float] = None,
                v_scale: Optional[float] = None, window_left: int = -1,
                logits_soft_cap: Optional[float] = None, sm_scale: Optional[float] = None,
                rope_scale: Optional[float] = None, rope_theta: Optional[float] = None,
                return_lse: bool = False):
        """FlashInfer 0.2.0's deprecated forward(q, paged_kv_cache,
        pos_encoding_mode, ...): this call's attention options replace the
        plan's and stay for later run() calls, as in FlashInfer (decode's
        schedule does not depend on them, so nothing is re-planned)."""
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'self': expected plan() before "
                                       "forward(), got no plan")
        p = self._planned
        # The plan's own slopes (Tessera's extension) stay with ALiBi.
        slopes = p["caller_alibi_slopes"] if pos_encoding_mode == "ALIBI" else None
        p.update(
            pos_encoding_mode=pos_encoding_code(pos_encoding_mode),
            window_left=_checks.integer(window_left, "window_left", minimum=-1),
            logits_soft_cap=_checks.optional_real(logits_soft_cap, "logits_soft_cap"),
            sm_scale=None if sm_scale is None else _checks.real(sm_scale, "sm_scale"),
            rope_scale=_checks.optional_real(rope_scale, "rope_scale"),
            rope_theta=_checks.optional_real(rope_theta, "rope_theta"),
            alibi_slopes=_alibi_slopes_for(pos_encoding_mode, slopes, p["num_qo_heads"],
                                           self._float_workspace.device))
        self._flat = None  # its options and checks read the plan's
        return self.run(q, paged_kv_cache, q_scale=q_scale, k_scale=k_scale, v_scale=v_scale,
                        return_lse=return_lse)

    def forward_return_lse(self, q: torch.Tensor, paged_kv_cache, *args, **kwargs):
        """forward() with return_lse=True: (out, lse)."""
        kwargs["return_lse"] = True
        return self.forward(q, paged_kv_cache, *args, **kwargs)

    def end_forward(self) -> None:
        """FlashInfer 0.1's no-op."""


class CUDAGraphBatchDecodeWithPagedKVCacheWrapper(BatchDecodeWithPagedKVCacheWrapper):
    """FlashInfer 0.2's CUDA-graph decode wrapper: BatchDecodeWithPagedKVCacheWrapper
    with use_cuda_graph=True over the caller's buffers (indptr_buffer
    [max_batch + 1], indices_buffer [max pages], last_page_len_buffer
    [max_batch], int32 CUDA). plan() is not capturable; run() is, and a graph
    captured once replays for any later plan within the buffers. Tessera's
    kernel choice is the same as the plain wrapper's (FlashInfer's note that
    this wrapper may be slower does not apply).
    """

    def __init__(self, workspace_buffer: torch.Tensor, indptr_buffer: torch.Tensor,
                 indices_buffer: torch.Tensor, last_page_len_buffer: torch.Tensor,
                 kv_layout: str = "NHD", use_tensor_cores: bool = False) -> None:
        _checks.tensor(workspace_buffer, "workspace_buffer")
        for name, buffer in (("indptr_buffer", indptr_buffer), ("indices_buffer", indices_buffer),
                             ("last_page_len_buffer", last_page_len_buffer)):
            _checks.tensor(buffer, name, ndim=1, dtypes=_checks.INT32)
        super().__init__(workspace_buffer, kv_layout, use_cuda_graph=True,
                         use_tensor_cores=use_tensor_cores, paged_kv_indptr_buffer=indptr_buffer,
                         paged_kv_indices_buffer=indices_buffer,
                         paged_kv_last_page_len_buffer=last_page_len_buffer)
