"""Prefill attention: FlashInfer 0.2's single_prefill_with_kv_cache,
BatchPrefillWithRaggedKVCacheWrapper and BatchPrefillWithPagedKVCacheWrapper
over libtessera (tessera/api/prefill.h).

Semantics are FlashInfer's: query i of a request sits at KV position
kv_len - qo_len + i, causal masks the KV positions after it (any qo_len and
kv_len: with qo_len > kv_len the first qo_len - kv_len queries see no key and
get out 0, lse -inf), lse is float32 in base 2 (log2 of the sum of exp of the
scaled logits). Tessera builds head_dim 64, 80, 96, 112, 128 and 256 (80 / 96 /
112 / 256 JIT-compiled on first use; 80 / 96 / 112 on the fa2 back end only), and
q/k head dim 192 with v/o head dim 128 (DeepSeek-style prefill: FA2, JIT-compiled;
single prefill and the ragged wrapper, plan(head_dim_qk=192, head_dim_vo=128);
out has v's head dim), fp16/bf16 q (paged caches also float8_e4m3fn or float8_e5m2 at
head_dim 128, with k_scale / v_scale), and every combination of a position
encoding (none, "ALIBI", "ROPE_LLAMA" on the fly) with a soft cap and / or a
sliding window; kernels off the library's AOT list are JIT-compiled on first
use (docs/jit.md).

Custom masks, as FlashInfer: custom_mask is bool (nonzero: attend), request
b's [qo_len, kv_len] mask row-major (single prefill: [qo_len, kv_len]; the
wrappers' plan(): every request's flattened mask, concatenated), packed here
with segment_packbits(..., bitorder="little") (quantization.py);
packed_custom_mask is that packed form (uint8; request b's bits start at byte
sum over earlier requests of ceil(qo_len * kv_len / 8)). Either one replaces
causal (FlashInfer's mask mode "custom": causal is ignored; mask the future
keys in the mask itself); windows, soft cap and ALiBi still apply. A query
whose every key is masked gets out 0 and lse -inf. With both given,
packed_custom_mask is used (as FlashInfer). plan() keeps the packed mask on the
device and passes it to every run(); with use_cuda_graph=True and a
custom_mask_buf, plan() copies it into that buffer, so a captured graph reads
later plans' masks (without one the plan's own tensor is kept: a graph
captured then reads that tensor, not later plans' masks). A captured graph
keeps the mask or no-mask of its capture.

How FlashInfer's wrappers map onto Tessera's plan/run objects: the C++ object
needs the plan shape (heads, head_dim, page size) and bounds (most requests,
most query tokens) when it is made, and takes its workspace from
float_workspace_buffer; FlashInfer's constructor knows neither, so plan()
makes the object, and makes it again when the shape changes or a plan
outgrows its bounds (bounds grow geometrically so a growing batch does not
re-create every step). With use_cuda_graph=True the object is made once and
never again, because a captured graph holds its workspace addresses: the
batch bound is qo_indptr_buf's length - 1 and the query-token bound is the
first plan's qo_indptr[-1] (FlashInfer's rule: later plans may not exceed the
rows of the first); a plan beyond them raises.

Index arrays: plan() reads host int32 arrays (CPU tensors preferred; CUDA
tensors are copied to the host, a sync; lists work) and copies them to the
device for run() (from pinned memory when non_blocking=True; in CUDA-graph mode
into the caller's *_buf tensors, so a captured graph reads the new values).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Optional

import torch

from . import _checks, _flat, _lib
from ._lib import TesseraArgumentError
from ._options import layout_code, pos_encoding_code
from .quantization import packbits, segment_packbits
from ._tensor import current_stream, dl, dl_or_none
from ._ops import custom_op
from ._plan_args import alibi_slopes_for as _alibi_slopes_for
from ._plan_args import attention_struct as _options
from ._plan_args import jit_handle as _jit_handle
from ._plan_args import cache_pair as _cache_pair
from ._plan_args import host_int32 as _host_int32
from ._plan_args import int32_pointer as _int32_pointer
from ._plan_args import check_buffer_sizes as _check_buffer_sizes
from ._plan_args import is_host as _is_host
from ._plan_args import on_device as _on_device
from ._plan_args import on_device_many as _on_device_many
from ._plan_args import paged_kv_struct as _paged_kv_struct

_BACKENDS = ("auto", "fa2", "fa3")
_Tensor = torch.Tensor


# ---- argument helpers


def _check_packed_mask(mask, name: str, needed_bytes: int) -> None:
    """A caller's packed mask: a 1-D uint8 tensor of at least needed_bytes
    (the library checks device and contiguity, naming "custom_mask")."""
    if not isinstance(mask, torch.Tensor):
        raise TesseraArgumentError(f"tessera: argument '{name}': expected a uint8 tensor, got "
                                   f"{type(mask).__name__}")
    if mask.dtype != torch.uint8 or mask.dim() != 1:
        raise TesseraArgumentError(
            f"tessera: argument '{name}': expected a 1-D uint8 tensor (packbits(..., "
            f"bitorder='little')), got {mask.dim()}-D {mask.dtype}")
    if mask.numel() < needed_bytes:
        raise TesseraArgumentError(
            f"tessera: argument '{name}': expected at least {needed_bytes} bytes (sum of "
            f"ceil(qo_len * kv_len / 8) over the requests), got {mask.numel()}")


def _check_mask_elements(mask, name: str, elements: int) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TesseraArgumentError(f"tessera: argument '{name}': expected a bool tensor, got "
                                   f"{type(mask).__name__}")
    if mask.numel() != elements:
        raise TesseraArgumentError(
            f"tessera: argument '{name}': expected {elements} elements (sum of qo_len * kv_len "
            f"over the requests), got {mask.numel()} (shape {tuple(mask.shape)})")


def _plan_mask(custom_mask, packed_custom_mask, qo_lengths: torch.Tensor,
               kv_lengths: torch.Tensor, mask_name: str = "custom_mask",
               packed_name: str = "packed_custom_mask"):
    """The packed mask of a plan (on the caller's device) and its byte
    offsets per request (int32 host [batch + 1]), or (None, None) without a
    mask. qo_lengths, kv_lengths: host int64 per request."""
    if custom_mask is None and packed_custom_mask is None:
        return None, None
    elements = qo_lengths * kv_lengths
    byte_indptr = torch.zeros(elements.numel() + 1, dtype=torch.int64)
    byte_indptr[1:] = torch.cumsum((elements + 7) // 8, 0)
    if packed_custom_mask is not None:
        _check_packed_mask(packed_custom_mask, packed_name, int(byte_indptr[-1]))
        return packed_custom_mask, byte_indptr.to(torch.int32)
    element_indptr = torch.zeros(elements.numel() + 1, dtype=torch.int64)
    element_indptr[1:] = torch.cumsum(elements, 0)
    _check_mask_elements(custom_mask, mask_name, int(element_indptr[-1]))
    packed, byte_indptr = segment_packbits(custom_mask.reshape(-1), element_indptr,
                                           bitorder="little")
    return packed, byte_indptr


def _check_backend(backend: str) -> int:
    """FlashInfer's backend name as the C ABI's int (0 auto, 1 fa2, 2 fa3):
    "fa2" the FA2-style kernels, "fa3" the Hopper kernels (an sm_90 GPU and
    the cases docs/python.md lists; elsewhere run() raises naming backend),
    "auto" the Hopper kernels where they serve the call, else fa2."""
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise TesseraArgumentError(
            f"tessera: argument 'backend': expected one of {_BACKENDS}, got {backend!r}")
    return _BACKENDS.index(backend)


def _mask_indptr_buf(mask_indptr_buf, qk_indptr_buf):
    """FlashInfer 0.2.0 named mask_indptr_buf qk_indptr_buf (same position)."""
    if qk_indptr_buf is not None and mask_indptr_buf is not None:
        raise TesseraArgumentError(
            "tessera: argument 'qk_indptr_buf': expected it or mask_indptr_buf (0.2.0's and "
            "later FlashInfer's names for one buffer), got both")
    return mask_indptr_buf if mask_indptr_buf is not None else qk_indptr_buf


def _jit_args(jit_args, jit_kwargs):
    """jit_args: a tessera.jit.Variant (FlashInfer's list form raises, naming
    it); jit_kwargs, later FlashInfer's keyword form of a generated module's
    options, has no Tessera counterpart."""
    if jit_kwargs is not None:
        raise NotImplementedError(
            "tessera: argument 'jit_kwargs': expected None (pass a tessera.jit.Variant as "
            f"jit_args), got {type(jit_kwargs).__name__}")
    return jit_args


# The one q/k, v/o head-dim pair that differs (DeepSeek-style prefill;
# include/tessera/attention/head_dims.h: kSplitHeadDimQk, kSplitHeadDimVo).
_SPLIT_HEAD_DIM_QK, _SPLIT_HEAD_DIM_VO = 192, 128


def _head_dim_vo_of(head_dim_qk: int) -> int:
    """v's and out's head dim beside q/k's head_dim_qk: 128 at q/k 192 (the
    only head dim 192 kernel), else head_dim_qk."""
    return _SPLIT_HEAD_DIM_VO if head_dim_qk == _SPLIT_HEAD_DIM_QK else head_dim_qk


def _check_head_dim_vo(head_dim_qk: int, head_dim_vo, paged: bool) -> int:
    """plan()'s head_dim_vo (None: head_dim_qk, as FlashInfer): head_dim_qk,
    or 128 beside head_dim_qk 192 (ragged only: the paged wrapper does not
    take the pair yet). Returns it."""
    if head_dim_vo is None:
        return head_dim_qk
    head_dim_vo = _checks.integer(head_dim_vo, "head_dim_vo", minimum=1)
    if head_dim_vo == head_dim_qk:
        return head_dim_vo
    split = (head_dim_qk, head_dim_vo) == (_SPLIT_HEAD_DIM_QK, _SPLIT_HEAD_DIM_VO)
    if split and paged:
        raise NotImplementedError(
            f"tessera: argument 'head_dim_vo': expected head_dim_qk ({head_dim_qk}) with a "
            f"paged KV cache (head_dim_qk {_SPLIT_HEAD_DIM_QK} with head_dim_vo "
            f"{_SPLIT_HEAD_DIM_VO} is not yet supported for paged caches: use "
            f"BatchPrefillWithRaggedKVCacheWrapper), got {head_dim_vo}")
    if not split:
        raise NotImplementedError(
            f"tessera: argument 'head_dim_vo': expected head_dim_qk ({head_dim_qk}), or "
            f"{_SPLIT_HEAD_DIM_VO} with head_dim_qk {_SPLIT_HEAD_DIM_QK} (the one distinct "
            f"pair), got {head_dim_vo}")
    return head_dim_vo


def _resolve_head_dim(head_dim_qk, head_dim, head_dim_vo) -> int:
    """head_dim_qk, or FlashInfer 0.2.0's name for it, head_dim."""
    if isinstance(head_dim_vo, torch.Tensor):
        # 0.2.0's plan() has custom_mask where later versions put head_dim_vo.
        raise TesseraArgumentError(
            "tessera: argument 'head_dim_vo': expected an integer or None, got a tensor "
            "(FlashInfer 0.2.0's plan() took custom_mask in this position: pass custom_mask= "
            "by keyword)")
    if head_dim is not None:
        head_dim = _checks.integer(head_dim, "head_dim", minimum=1)
        if head_dim_qk is not None and _checks.integer(head_dim_qk, "head_dim_qk") != head_dim:
            _checks.fail("head_dim", f"head_dim_qk's value {head_dim_qk} (both name the q/k "
                         "head size; give one)", str(head_dim))
        return head_dim
    if head_dim_qk is None:
        _checks.fail("head_dim_qk", "an integer (or FlashInfer 0.2.0's head_dim=)", "None")
    return _checks.integer(head_dim_qk, "head_dim_qk", minimum=1)


def _positional_run_args(args: tuple, names: tuple, values: dict, jit) -> dict:
    """FlashInfer 0.2.0's run() took `names` positionally after the inputs;
    later versions give positional arguments to a JIT module's extra
    parameters, which a tessera.jit.Variant takes by name (Variant.set)."""
    if not args:
        return values
    if jit is not None:
        raise TesseraArgumentError(
            "tessera: argument 'args': expected no positional arguments after the inputs with "
            f"a tessera.jit.Variant (set its parameters with Variant.set), got {len(args)}")
    if len(args) > len(names):
        raise TesseraArgumentError(
            f"tessera: argument 'args': expected at most {len(names)} positional arguments "
            f"after the inputs (FlashInfer 0.2.0's {', '.join(names)}), got {len(args)}")
    return {**values, **dict(zip(names, args))}


def _fold_q_scale(scalars: tuple, q_scale, head_dim: int) -> tuple:
    """FlashInfer folds q_scale into the softmax scale (scalars[0]: sm_scale,
    0 for the default 1/sqrt(head_dim))."""
    if q_scale is None:
        return scalars
    sm_scale = scalars[0] if scalars[0] else head_dim ** -0.5
    return (sm_scale * float(q_scale),) + scalars[1:]


def _indptr_pair(first, first_name: str, second, second_name: str):
    """Two indptr arrays of one batch as host tensors, and the batch size."""
    a = _host_int32(first, first_name)
    b = _host_int32(second, second_name)
    if a.numel() < 1:
        raise TesseraArgumentError(f"tessera: argument '{first_name}': expected batch_size + 1 "
                                   ">= 1 entries, got an empty array")
    if b.numel() != a.numel():
        raise TesseraArgumentError(
            f"tessera: argument '{second_name}': expected {a.numel()} entries (as "
            f"{first_name}), got {b.numel()}")
    return a, b, a.numel() - 1


def _device_id(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _variant_scalars(pos_encoding_mode="NONE", sm_scale=None, window_left=-1,
                     logits_soft_cap=None, rope_scale=None, rope_theta=None) -> tuple:
    """The attention options a plan fixes, as the run ops' scalar arguments
    sm_scale .. rope_theta (0 means the library default: sm_scale
    1/sqrt(head_dim), no soft cap, rope_scale 1, rope_theta 1e4). A plain
    tuple, so torch.compile reads it as constants."""
    return (_checks.optional_real(sm_scale, "sm_scale"),
            _checks.optional_real(logits_soft_cap, "logits_soft_cap"),
            _checks.integer(window_left, "window_left", minimum=-1)
            if window_left is not None else -1,
            pos_encoding_code(pos_encoding_mode), _checks.optional_real(rope_scale, "rope_scale"),
            _checks.optional_real(rope_theta, "rope_theta"))


def _outputs(q: torch.Tensor, num_qo_heads: int, out, lse, return_lse: bool,
             head_dim_vo: Optional[int] = None):
    """out (like q, its last dim head_dim_vo where given) and lse, allocated
    where the caller passed none."""
    if out is None:
        if head_dim_vo is None or head_dim_vo == q.shape[-1]:
            out = torch.empty_like(q)
        else:
            out = q.new_empty(tuple(q.shape[:-1]) + (head_dim_vo,))
    if lse is None and return_lse:
        lse = torch.empty((q.shape[0], num_qo_heads), dtype=torch.float32, device=q.device)
    return out, lse


def _create_call(prefix: str, backend: Optional[int], shape: tuple,
                 head_dim_vo: Optional[int]) -> tuple:
    """The C function that makes a plan object, its shape arguments and its
    backend argument: *_create (no backend choice), *_create_with_backend, or
    for a distinct v/o head dim (ragged) *_create_with_head_dims, which takes
    head_dim_vo after head_dim_qk. Equal head dims keep the older entry points,
    so a library without *_create_with_head_dims serves them."""
    if head_dim_vo is not None and head_dim_vo != shape[2]:
        return (prefix + "_create_with_head_dims", shape[:3] + (head_dim_vo,) + shape[3:],
                (backend or 0,))
    if backend is None:
        return prefix + "_create", shape, ()
    return prefix + "_create_with_backend", shape, (backend,)


def _min_workspace_call(prefix: str, shape: tuple, head_dim_vo: Optional[int]) -> tuple:
    """The C function that sizes a plan object's minimum workspace and its
    shape arguments (head_dim_vo after head_dim_qk where they differ, as
    _create_call)."""
    if head_dim_vo is not None and head_dim_vo != shape[2]:
        return (prefix + "_min_workspace_size_with_head_dims",
                shape[:3] + (head_dim_vo,) + shape[3:])
    return prefix + "_min_workspace_size", shape


def _shape_text(shape: tuple, head_dim_vo: Optional[int]) -> str:
    return str(shape) if head_dim_vo is None else f"{shape} with head_dim_vo {head_dim_vo}"


class _PlanHandle:
    """One C plan/run object (prefix: its C functions' common prefix) over the
    caller's workspace. ensure() returns its address, making it again when the
    shape changes or the needed bounds exceed its own; with fixed=True (CUDA
    graphs) it is made once and a later mismatch raises."""

    def __init__(self, prefix: str, workspace: torch.Tensor, fixed: bool,
                 backend: Optional[int] = None):
        self._prefix = prefix
        self._workspace = workspace
        self._fixed = fixed
        self._backend = backend  # None: the plain *_create (no backend choice)
        self.address = None
        self._shape = None
        self._head_dim_vo = None
        self.bounds = None

    def ensure(self, shape: tuple, needed: tuple, bound_names: tuple,
               head_dim_vo: Optional[int] = None) -> int:
        """shape: the C *_create's leading shape arguments (num_qo_heads,
        num_kv_heads, head_dim[, page size]); head_dim_vo: v's and out's head
        dim where it differs from head_dim (ragged only), else None."""
        same_shape = shape == self._shape and head_dim_vo == self._head_dim_vo
        if self.address is not None:
            if same_shape and all(n <= b for n, b in zip(needed, self.bounds)):
                return self.address
            if self._fixed:
                if not same_shape:
                    raise TesseraArgumentError(
                        "tessera: argument 'num_qo_heads': expected the plan shape (heads, "
                        f"head_dim[, page size]) {_shape_text(self._shape, self._head_dim_vo)} "
                        "of the first plan (use_cuda_graph=True fixes it), got "
                        f"{_shape_text(shape, head_dim_vo)}")
                for name, n, b in zip(bound_names, needed, self.bounds):
                    if n > b:
                        raise TesseraArgumentError(
                            f"tessera: argument 'qo_indptr': expected at most {b} {name} "
                            f"(fixed by the CUDA-graph buffers and the first plan), got {n}")
        bounds = tuple(max(n, 1) for n in needed)
        if self.address is not None and same_shape:
            # Grow geometrically so a batch growing by one does not re-create.
            bounds = tuple(max(n, 2 * b) if n > b else b for n, b in zip(bounds, self.bounds))
        self.destroy()
        workspace = self._workspace
        if not workspace.is_cuda:
            raise TesseraArgumentError(
                "tessera: argument 'float_workspace_buffer': expected a CUDA tensor, got one on "
                f"{workspace.device}")
        device_id = _device_id(workspace.device)
        # The minimum is the schedule alone (well under 1 MB for FlashInfer's
        # usual bounds); whatever the buffer holds beyond it becomes split-KV
        # room, up to the full size (prefill.h).
        needed_bytes = ctypes.c_size_t()
        size_function, size_shape = _min_workspace_call(self._prefix, shape, head_dim_vo)
        _lib.call(size_function, *size_shape, *bounds, device_id, ctypes.byref(needed_bytes))
        available = workspace.numel() * workspace.element_size()
        if available < needed_bytes.value:
            raise TesseraArgumentError(
                f"tessera: argument 'float_workspace_buffer': expected at least "
                f"{needed_bytes.value} bytes for {dict(zip(bound_names, bounds))}, "
                f"got {available}")
        handle = ctypes.c_void_p()
        create, shape_arguments, backend = _create_call(self._prefix, self._backend, shape,
                                                        head_dim_vo)
        _lib.call(create, *shape_arguments, *bounds, ctypes.c_void_p(workspace.data_ptr()),
                  available, device_id, *backend, ctypes.byref(handle))
        self.address, self._shape, self.bounds = handle.value, shape, bounds
        self._head_dim_vo = head_dim_vo
        return self.address

    def destroy(self) -> None:
        if self.address is not None:
            getattr(_lib.library(), self._prefix + "_destroy")(ctypes.c_void_p(self.address))
            self.address = None

    def __del__(self):
        try:
            self.destroy()
        except Exception:  # interpreter shutdown: the library may be gone
            pass


# ---- torch custom ops, out-parameter style: the public functions allocate
# out / lse, the ops fill them. A plan lives in a C++ object that no op
# argument type can hold, so the run ops take its address as an int (the
# wrapper keeps the object alive; torch.compile sees a constant).


def _check_attention_outputs(q, out, lse, custom_mask, alibi_slopes) -> None:
    head_dim_vo = _head_dim_vo_of(q.shape[-1])
    if head_dim_vo == q.shape[-1]:
        _checks.like(out, "out", q, "q")
    else:
        _check_narrower_rows(out, "out", q, "q", head_dim_vo)
    _checks.lse(lse, "lse", tuple(q.shape[:2]))
    _checks.optional_tensor(custom_mask, "custom_mask", ndim=1, dtypes=(torch.uint8,))
    _checks.alibi_slopes(alibi_slopes, q.shape[1])


def _check_narrower_rows(x, name: str, like_tensor: torch.Tensor, like_name: str,
                         head_dim_vo: int) -> None:
    """x like like_tensor but its last dim head_dim_vo (v beside k, out
    beside q at q/k 192, v/o 128)."""
    _checks.tensor(x, name, ndim=like_tensor.dim())
    _checks.same_dtype(x, name, like_tensor, like_name)
    want = tuple(like_tensor.shape[:-1]) + (head_dim_vo,)
    if tuple(x.shape) != want:
        _checks.fail(name, f"shape {want} ({like_name}'s, its last dim head_dim_vo "
                     f"{head_dim_vo})", _checks.describe(x))


def _check_contiguous_kv(q, k, v, heads_dim: int) -> None:
    """k [.., .., head_dim], v [.., .., head_dim_vo] with their heads in dim
    heads_dim, 16-bit like q or fp8 (head_dim_vo: head_dim, or 128 at 192)."""
    _checks.tensor(k, "k", ndim=3, dtypes=_checks.KV)
    _checks.kv_dtype(k, "k", q)
    head_dim_vo = _head_dim_vo_of(q.shape[2])
    if head_dim_vo == q.shape[2]:
        _checks.like(v, "v", k, "k")
    else:
        _check_narrower_rows(v, "v", k, "k", head_dim_vo)
    _checks.size(k, 2, q.shape[2], "k", "head_dim of q")
    _checks.heads_divide(q.shape[1], k.shape[heads_dim], "k")


def _check_single_prefill(q, k, v, out, lse, kv_layout, causal, sm_scale, logits_soft_cap,
                          window_left, pos_encoding_mode, rope_scale, rope_theta,
                          custom_mask=None, alibi_slopes=None, jit_variant=0,
                          backend=0) -> None:
    _checks.tensor(q, "q", ndim=3, dtypes=_checks.HALF)
    _check_contiguous_kv(q, k, v, 1 if kv_layout == 0 else 0)
    _check_attention_outputs(q, out, lse, custom_mask, alibi_slopes)


def _check_ragged_run(handle, q, k, v, qo_indptr, kv_indptr, out, lse, sm_scale,
                      logits_soft_cap, window_left, pos_encoding_mode, rope_scale, rope_theta,
                      k_scale, v_scale, custom_mask=None, alibi_slopes=None,
                      jit_variant=0) -> None:
    # k, v arrive as [tokens, heads, dim] views whatever the layout (run()
    # transposes HND).
    _checks.tensor(q, "q", ndim=3, dtypes=_checks.HALF)
    _check_contiguous_kv(q, k, v, 1)
    _checks.index_arrays(qo_indptr=qo_indptr, kv_indptr=kv_indptr)
    _checks.size(kv_indptr, 0, qo_indptr.shape[0], "kv_indptr", "the length of qo_indptr")
    _check_attention_outputs(q, out, lse, custom_mask, alibi_slopes)


def _check_paged_run(handle, q, k_cache, v_cache, kv_layout, kv_indices, qo_indptr, kv_indptr,
                     kv_last_page_len, out, lse, sm_scale, logits_soft_cap, window_left,
                     pos_encoding_mode, rope_scale, rope_theta, k_scale, v_scale,
                     custom_mask=None, alibi_slopes=None, jit_variant=0) -> None:
    _checks.tensor(q, "q", ndim=3, dtypes=_checks.HALF)
    _checks.paged_cache(k_cache, v_cache, kv_layout, q)
    _checks.index_arrays(kv_indices=kv_indices, qo_indptr=qo_indptr, kv_indptr=kv_indptr,
                         kv_last_page_len=kv_last_page_len)
    _check_attention_outputs(q, out, lse, custom_mask, alibi_slopes)


@custom_op("tessera::single_prefill", mutates_args=("out", "lse"),
                         device_types="cuda")
def _single_prefill_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                       lse: Optional[torch.Tensor], kv_layout: int, causal: bool,
                       sm_scale: float, logits_soft_cap: float, window_left: int,
                       pos_encoding_mode: int, rope_scale: float, rope_theta: float,
                       custom_mask: Optional[torch.Tensor] = None,
                       alibi_slopes: Optional[torch.Tensor] = None,
                       jit_variant: int = 0, backend: int = 0) -> None:
    _check_single_prefill(q, k, v, out, lse, kv_layout, causal, sm_scale, logits_soft_cap,
                          window_left, pos_encoding_mode, rope_scale, rope_theta, custom_mask,
                          alibi_slopes, jit_variant, backend)
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, jit_variant=jit_variant, custom_mask=custom_mask,
                       alibi_slopes=alibi_slopes, prefill_backend=backend)
    _lib.call("tessera_single_prefill_with_kv_cache", dl(q), dl(k), dl(v), dl(out),
              dl_or_none(lse), kv_layout, int(causal), options, current_stream(q.device))


_single_prefill_op.register_fake(_check_single_prefill)


@custom_op("tessera::batch_prefill_ragged_run", mutates_args=("out", "lse"),
                         device_types="cuda")
def _ragged_run_op(handle: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, out: torch.Tensor,
                   lse: Optional[torch.Tensor], sm_scale: float, logits_soft_cap: float,
                   window_left: int, pos_encoding_mode: int, rope_scale: float,
                   rope_theta: float, k_scale: float, v_scale: float,
                   custom_mask: Optional[torch.Tensor] = None,
                   alibi_slopes: Optional[torch.Tensor] = None, jit_variant: int = 0) -> None:
    _check_ragged_run(handle, q, k, v, qo_indptr, kv_indptr, out, lse, sm_scale,
                      logits_soft_cap, window_left, pos_encoding_mode, rope_scale, rope_theta,
                      k_scale, v_scale, custom_mask, alibi_slopes, jit_variant)
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, k_scale, v_scale, jit_variant, custom_mask=custom_mask,
                       alibi_slopes=alibi_slopes)
    _lib.call("tessera_batch_prefill_ragged_run", ctypes.c_void_p(handle), dl(q), dl(k), dl(v),
              dl(qo_indptr), dl(kv_indptr), dl(out), dl_or_none(lse), options,
              current_stream(q.device), 0)


_ragged_run_op.register_fake(_check_ragged_run)


@custom_op("tessera::batch_prefill_paged_run", mutates_args=("out", "lse"),
                         device_types="cuda")
def _paged_run_op(handle: int, q: torch.Tensor, k_cache: torch.Tensor,
                  v_cache: Optional[torch.Tensor], kv_layout: int, kv_indices: torch.Tensor,
                  qo_indptr: torch.Tensor, kv_indptr: torch.Tensor,
                  kv_last_page_len: torch.Tensor, out: torch.Tensor,
                  lse: Optional[torch.Tensor], sm_scale: float, logits_soft_cap: float,
                  window_left: int, pos_encoding_mode: int, rope_scale: float,
                  rope_theta: float, k_scale: float, v_scale: float,
                  custom_mask: Optional[torch.Tensor] = None,
                  alibi_slopes: Optional[torch.Tensor] = None, jit_variant: int = 0) -> None:
    _check_paged_run(handle, q, k_cache, v_cache, kv_layout, kv_indices, qo_indptr, kv_indptr,
                     kv_last_page_len, out, lse, sm_scale, logits_soft_cap, window_left,
                     pos_encoding_mode, rope_scale, rope_theta, k_scale, v_scale, custom_mask,
                     alibi_slopes, jit_variant)
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, k_scale, v_scale, jit_variant, custom_mask=custom_mask,
                       alibi_slopes=alibi_slopes)
    _lib.call("tessera_batch_prefill_paged_run", ctypes.c_void_p(handle), dl(q),
              _paged_kv_struct(k_cache, v_cache, kv_layout), dl(kv_indices), dl(qo_indptr),
              dl(kv_indptr), dl(kv_last_page_len), dl(out), dl_or_none(lse), options,
              current_stream(q.device), 0)


_paged_run_op.register_fake(_check_paged_run)


# ---- single request


def single_prefill_with_kv_cache(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 custom_mask: Optional[torch.Tensor] = None,
                                 packed_custom_mask: Optional[torch.Tensor] = None,
                                 causal: bool = False, kv_layout: str = "NHD",
                                 pos_encoding_mode: str = "NONE",
                                 use_fp16_qk_reduction: bool = False,
                                 sm_scale: Optional[float] = None, window_left: int = -1,
                                 logits_soft_cap: Optional[float] = None,
                                 rope_scale: Optional[float] = None,
                                 rope_theta: Optional[float] = None, return_lse: bool = False,
                                 backend: str = "auto", *,
                                 allow_fp16_qk_reduction: Optional[bool] = None,
                                 alibi_slopes: Optional[torch.Tensor] = None, jit_variant=None):
    """Prefill/append attention of one request against its K/V.

    q: [qo_len, num_qo_heads, head_dim]; k, v: [kv_len, num_kv_heads, head_dim]
    (NHD) or [num_kv_heads, kv_len, head_dim] (HND), fp16/bf16 of q's dtype;
    at q/k head_dim 192, v's head dim is 128 (and out's: [qo_len,
    num_qo_heads, 128]).
    causal with qo_len > kv_len: the first qo_len - kv_len queries see no key
    (out 0, lse -inf). custom_mask: bool [qo_len, kv_len]
    (True: query i attends to key j; any dtype, nonzero is True), packed here
    with packbits(..., bitorder="little") and moved to q's device;
    packed_custom_mask: that packed uint8 form ((qo_len * kv_len + 7) // 8
    bytes, on q's device), used when both are given. A mask replaces causal
    (FlashInfer's mask mode "custom": causal is ignored). use_fp16_qk_reduction
    (0.2.0: allow_fp16_qk_reduction) is accepted and ignored (Tessera always
    accumulates q.k in float32); backend: FlashInfer's names, "fa2" the
    FA2-style kernels, "fa3" the Hopper kernels (raises naming backend where
    they do not serve the call: docs/python.md), "auto" the Hopper kernels
    where they serve it, else fa2. Tessera's extensions: alibi_slopes, float32
    [num_qo_heads] on q's device with pos_encoding_mode="ALIBI" (without it
    FlashInfer's get_alibi_slopes(num_qo_heads)); jit_variant, a
    tessera.jit.Variant compiled for the single_prefill kernel.
    Returns out like q and, with return_lse, lse float32 [qo_len, num_qo_heads]
    (base 2); a query with every key masked gets out 0 and lse -inf.
    """
    del use_fp16_qk_reduction, allow_fp16_qk_reduction
    backend_code = _check_backend(backend)
    _checks.tensors(q=q, k=k, v=v)
    layout = layout_code(kv_layout)
    scalars = _variant_scalars(pos_encoding_mode, sm_scale, window_left, logits_soft_cap,
                               rope_scale, rope_theta)
    mask = None
    if custom_mask is not None or packed_custom_mask is not None:
        qo_len, kv_len = q.shape[0], k.shape[1 if layout == 1 else 0]
        if packed_custom_mask is not None:
            _check_packed_mask(packed_custom_mask, "packed_custom_mask",
                               (qo_len * kv_len + 7) // 8)
            mask = packed_custom_mask
        else:
            _check_mask_elements(custom_mask, "custom_mask", qo_len * kv_len)
            mask = packbits(custom_mask.reshape(-1), bitorder="little")
            if mask.device != q.device:
                mask = mask.to(q.device)
        causal = False  # FlashInfer: the mask replaces causal
    out, lse = _outputs(q, q.shape[1], None, None, return_lse, _head_dim_vo_of(q.shape[-1]))
    torch.ops.tessera.single_prefill(
        q, k, v, out, lse, layout, bool(causal), *scalars, mask,
        _alibi_slopes_for(pos_encoding_mode, alibi_slopes, q.shape[1], q.device),
        _jit_handle(jit_variant, "jit_variant"), backend_code)
    return (out, lse) if return_lse else out


# FlashInfer defines it so (a partial), and so its signature reads the same.
single_prefill_with_kv_cache_return_lse = functools.partial(single_prefill_with_kv_cache,
                                                            return_lse=True)


# ---- batch wrappers


def _device_indices(values, buffer, device, non_blocking: bool, name: str):
    """An index array that only run() reads (paged_kv_indices): a CUDA tensor
    is used as it is (or copied device to device into its CUDA-graph buffer),
    host data goes through _on_device."""
    if not (isinstance(values, torch.Tensor) and values.is_cuda):
        return _on_device(_host_int32(values, name), buffer, device, non_blocking, name)
    values = values.to(torch.int32)
    if buffer is None:
        return values
    if values.numel() > buffer.numel():
        raise TesseraArgumentError(
            f"tessera: argument '{name}': expected at most {buffer.numel()} entries (its "
            f"CUDA-graph buffer), got {values.numel()}")
    buffer[:values.numel()].copy_(values, non_blocking=True)
    return buffer


class _BatchPrefillWrapperBase:
    """What the ragged and paged wrappers share: the plan object and its
    bounds, the CUDA-graph buffers, the plan state run() reads."""

    _prefix = ""  # the C functions' common prefix

    def __init__(self, float_workspace_buffer: torch.Tensor, kv_layout: str,
                 use_cuda_graph: bool, buffers: dict, custom_mask_buf, mask_indptr_buf,
                 backend: str, jit_args):
        self._jit = jit_args
        self._jit_handle = _jit_handle(jit_args)  # a list form raises here, naming jit_args
        self._backend = _check_backend(backend)  # the plan object's, fixed at construction
        _checks.tensor(float_workspace_buffer, "float_workspace_buffer")
        self._kv_layout = layout_code(kv_layout)
        self._use_cuda_graph = bool(use_cuda_graph)
        if self._use_cuda_graph:
            for name, buffer in buffers.items():
                if buffer is None:
                    raise TesseraArgumentError(
                        f"tessera: argument '{name}': expected an int32 CUDA buffer with "
                        "use_cuda_graph=True, got None")
            self._max_batch = buffers["qo_indptr_buf"].numel() - 1
            for name, buffer, dtype in (("custom_mask_buf", custom_mask_buf, torch.uint8),
                                        ("mask_indptr_buf", mask_indptr_buf, torch.int32)):
                if buffer is not None and (not isinstance(buffer, torch.Tensor)
                                           or buffer.dtype != dtype or buffer.dim() != 1):
                    raise TesseraArgumentError(
                        f"tessera: argument '{name}': expected a 1-D {dtype} CUDA buffer, got "
                        + (f"{buffer.dim()}-D {buffer.dtype}" if isinstance(buffer, torch.Tensor)
                           else type(buffer).__name__))
        else:
            # As FlashInfer: the buffers only matter with use_cuda_graph=True.
            buffers = {name: None for name in buffers}
            custom_mask_buf = mask_indptr_buf = None
            self._max_batch = None
        self._buffers = buffers
        self._custom_mask_buf = custom_mask_buf
        self._mask_indptr_buf = mask_indptr_buf
        self._float_workspace = float_workspace_buffer
        self._handle = _PlanHandle(self._prefix, float_workspace_buffer, self._use_cuda_graph,
                                   self._backend)
        self._planned = None
        self._head_dim_vo = None  # plan()'s (the ragged wrapper's head_dim_vo)
        self._flat = None  # run()'s eager fast path for the current plan (_flat.py)

    @property
    def is_cuda_graph_enabled(self) -> bool:
        return self._use_cuda_graph

    def reset_workspace_buffer(self, float_workspace_buffer: torch.Tensor,
                               int_workspace_buffer: Optional[torch.Tensor] = None) -> None:
        """FlashInfer's second (int) workspace is accepted and unused: Tessera's
        schedule lives in the float workspace. The next plan() makes a new plan
        object on the new buffer."""
        del int_workspace_buffer
        self._flat = None
        self._handle.destroy()
        self._float_workspace = float_workspace_buffer
        self._handle = _PlanHandle(self._prefix, float_workspace_buffer, self._use_cuda_graph,
                                   self._backend)
        self._planned = None

    def _ensure(self, shape: tuple, batch: int, total_qo: int,
                head_dim_vo: Optional[int] = None) -> int:
        """The plan object's address for a plan of `batch` requests and
        `total_qo` query tokens. Bounds: the plan's own (grown geometrically);
        in CUDA-graph mode (max_batch from qo_indptr_buf, the first plan's
        query tokens), fixed."""
        if self._use_cuda_graph:
            if batch > self._max_batch:
                raise TesseraArgumentError(
                    f"tessera: argument 'qo_indptr': expected at most {self._max_batch} requests "
                    f"(the length of qo_indptr_buf - 1), got {batch}")
            # The first plan makes the object with these; later ones must fit.
            needed = (self._max_batch, total_qo)
        else:
            needed = (batch, total_qo)
        if head_dim_vo is None or head_dim_vo == shape[2]:
            return self._handle.ensure(shape, needed, ("requests", "query tokens"))
        return self._handle.ensure(shape, needed, ("requests", "query tokens"), head_dim_vo)

    def _plan_prologue(self, qo_indptr, kv_indptr, kv_indptr_name, num_qo_heads, num_kv_heads,
                       head_dim_qk, head_dim, head_dim_vo, pos_encoding_mode, sm_scale,
                       window_left, logits_soft_cap, rope_scale, rope_theta, alibi_slopes):
        """The checks every plan() makes before touching the GPU; returns the
        host indptr arrays, the batch size, the plan shape (num_qo_heads,
        num_kv_heads, head_dim), the variant scalars and head_dim_vo."""
        head_dim_qk = _resolve_head_dim(head_dim_qk, head_dim, head_dim_vo)
        head_dim_vo = _check_head_dim_vo(head_dim_qk, head_dim_vo,
                                         paged=self._prefix == "tessera_batch_prefill_paged")
        shape = (_checks.integer(num_qo_heads, "num_qo_heads", minimum=1),
                 _checks.integer(num_kv_heads, "num_kv_heads", minimum=1), head_dim_qk)
        _checks.alibi_slopes(alibi_slopes, shape[0])
        scalars = _variant_scalars(pos_encoding_mode, sm_scale, window_left, logits_soft_cap,
                                   rope_scale, rope_theta)
        qo_host, kv_host, batch = _indptr_pair(qo_indptr, "qo_indptr", kv_indptr, kv_indptr_name)
        return qo_host, kv_host, batch, shape, scalars, head_dim_vo

    def _flat_options(self, flat: _flat.FlatRun, q_scale, k_scale, v_scale) -> tuple:
        """The AttentionOptions of run()'s scales (what the op path passes),
        kept for later calls with the same scales."""
        handle, num_qo_heads, scalars, mask, alibi = self._planned
        options = _options(*_fold_q_scale(scalars, q_scale, self._head_dim),
                           float(k_scale or 0.0), float(v_scale or 0.0), self._jit_handle,
                           custom_mask=mask, alibi_slopes=alibi)
        entry = _flat.options_entry(options)
        if len(flat.options) < 64:  # scales are a handful of constants in practice
            try:
                flat.options[(q_scale, k_scale, v_scale)] = entry
            except TypeError:  # unhashable scales: built per call
                pass
        return entry

    def _run_flat(self, q, k, v, out, lse, q_scale, k_scale, v_scale, return_lse):
        """run()'s eager fast path (_flat.py): one C call, the Python checks
        only for tensors unlike the last call's."""
        out, lse = _outputs(q, self._planned[1], out, lse, return_lse, self._head_dim_vo)
        flat = self._flat if self._flat is not None else self._new_flat()
        entry = flat.options.get((q_scale, k_scale, v_scale))
        if entry is None:
            entry = self._flat_options(flat, q_scale, k_scale, v_scale)
        flat((q, k, v, out, lse), entry[1])
        return (out, lse) if return_lse else out

    def run_return_lse(self, *args, **kwargs):
        """run() with return_lse=True: (out, lse)."""
        kwargs["return_lse"] = True
        return self.run(*args, **kwargs)

    def forward(self, q: torch.Tensor, *kv, causal: bool = False,
                pos_encoding_mode: str = "NONE", allow_fp16_qk_reduction: bool = False,
                k_scale: Optional[float] = None, v_scale: Optional[float] = None,
                window_left: int = -1, logits_soft_cap: Optional[float] = None,
                sm_scale: Optional[float] = None, rope_scale: Optional[float] = None,
                rope_theta: Optional[float] = None, return_lse: bool = False):
        """FlashInfer 0.2.0's deprecated forward(q, k, v | paged_kv_cache,
        causal=..., ...): this call's attention options replace the plan's and
        stay for later run() calls, as in FlashInfer. Tessera's plan depends on
        causal and the variant (the schedule, the variant's scalars), so a
        change re-plans with the last plan()'s arrays; the same options cost
        nothing more than run()."""
        del allow_fp16_qk_reduction  # float32 accumulation always
        self._require_plan()
        wanted = dict(causal=bool(causal), pos_encoding_mode=pos_encoding_mode,
                      window_left=window_left, logits_soft_cap=logits_soft_cap,
                      sm_scale=sm_scale, rope_scale=rope_scale, rope_theta=rope_theta)
        planned = self._plan_arguments
        if any(planned[name] != value for name, value in wanted.items()):
            self.plan(**{**planned, **wanted})
        return self.run(q, *kv, k_scale=k_scale, v_scale=v_scale, return_lse=return_lse)

    def forward_return_lse(self, q: torch.Tensor, *kv, **options):
        """forward() with return_lse=True: (out, lse)."""
        options["return_lse"] = True
        return self.forward(q, *kv, **options)

    def _device_mask(self, custom_mask, packed_custom_mask, qo_host: torch.Tensor,
                     kv_lengths, device, non_blocking: bool):
        """The plan's packed mask on `device` for run() (None without a mask):
        with use_cuda_graph=True and a custom_mask_buf, copied into that
        buffer (and the byte offsets into mask_indptr_buf, as FlashInfer),
        else the packed tensor itself (copied to `device` if elsewhere)."""
        packed, byte_indptr = _plan_mask(custom_mask, packed_custom_mask,
                                         (qo_host[1:] - qo_host[:-1]).to(torch.int64),
                                         kv_lengths)
        if packed is None:
            return None
        if self._mask_indptr_buf is not None:
            _on_device(byte_indptr, self._mask_indptr_buf, device, non_blocking,
                       "mask_indptr_buf")
        buffer = self._custom_mask_buf
        if buffer is not None:
            if packed.numel() > buffer.numel():
                raise TesseraArgumentError(
                    f"tessera: argument 'custom_mask_buf': expected at least {packed.numel()} "
                    f"bytes (this plan's packed mask), got {buffer.numel()}")
            buffer[:packed.numel()].copy_(packed, non_blocking=non_blocking)
            return buffer
        if packed.device == device:
            return packed
        if non_blocking and packed.device.type == "cpu":
            return packed.contiguous().pin_memory().to(device, non_blocking=True)
        return packed.to(device)

    def _require_plan(self):
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'self': expected plan() before run(), "
                                       "got no plan")
        return self._planned

    def end_forward(self) -> None:
        """FlashInfer 0.1's no-op."""


class BatchPrefillWithRaggedKVCacheWrapper(_BatchPrefillWrapperBase):
    """Batch prefill/append attention over ragged (contiguous) K/V, FlashInfer's
    plan/run API: plan once per batch, run once per layer.

    q [qo_indptr[-1], num_qo_heads, head_dim]; k, v [kv_indptr[-1],
    num_kv_heads, head_dim] (NHD) or [num_kv_heads, kv_indptr[-1], head_dim]
    (HND). With use_cuda_graph=True, qo_indptr_buf and kv_indptr_buf (int32
    CUDA, [max_batch + 1]) hold the index arrays run() reads, so a graph
    captured around run() replays for later plans within the bounds (module
    docstring); custom_mask_buf (uint8 CUDA, at least the largest packed mask)
    receives plan()'s packed mask and mask_indptr_buf (int32 CUDA, [max_batch +
    1]) its byte offsets, so a captured graph reads later masks (both are
    ignored without use_cuda_graph, as in FlashInfer; qk_indptr_buf is
    FlashInfer 0.2.0's name for mask_indptr_buf). jit_args: a tessera.jit.Variant
    compiled for this wrapper's kernel (batch_prefill_ragged /
    batch_prefill_paged); FlashInfer's list form raises. backend, as
    single_prefill_with_kv_cache's ("auto", "fa2", "fa3"), is fixed for the
    wrapper's plans; "fa3" where the Hopper kernels do not serve a run()
    raises there, naming backend.
    """

    _prefix = "tessera_batch_prefill_ragged"

    def __init__(self, float_workspace_buffer: torch.Tensor, kv_layout: str = "NHD",
                 use_cuda_graph: bool = False, qo_indptr_buf: Optional[torch.Tensor] = None,
                 kv_indptr_buf: Optional[torch.Tensor] = None,
                 custom_mask_buf: Optional[torch.Tensor] = None,
                 mask_indptr_buf: Optional[torch.Tensor] = None, backend: str = "auto",
                 jit_args=None, jit_kwargs=None, *, qk_indptr_buf: Optional[torch.Tensor] = None):
        super().__init__(float_workspace_buffer, kv_layout, use_cuda_graph,
                         dict(qo_indptr_buf=qo_indptr_buf, kv_indptr_buf=kv_indptr_buf),
                         custom_mask_buf, _mask_indptr_buf(mask_indptr_buf, qk_indptr_buf),
                         backend, _jit_args(jit_args, jit_kwargs))

    def plan(self, qo_indptr, kv_indptr, num_qo_heads: int, num_kv_heads: int,
             head_dim_qk: Optional[int] = None, head_dim_vo: Optional[int] = None, custom_mask: Optional[torch.Tensor] = None,
             packed_custom_mask: Optional[torch.Tensor] = None, causal: bool = False,
             pos_encoding_mode: str = "NONE", use_fp16_qk_reduction: bool = False,
             sm_scale: Optional[float] = None, window_left: int = -1,
             logits_soft_cap: Optional[float] = None, rope_scale: Optional[float] = None,
             rope_theta: Optional[float] = None, q_data_type="float16", kv_data_type=None,
             non_blocking: bool = True, *, head_dim: Optional[int] = None,
             allow_fp16_qk_reduction: Optional[bool] = None,
             alibi_slopes: Optional[torch.Tensor] = None) -> None:
        """Plans the batch: qo_indptr, kv_indptr [batch + 1] int32 token offsets.

        custom_mask: bool, every request's [qo_len, kv_len] mask flattened and
        concatenated (sum of qo_len * kv_len elements; packed here with
        segment_packbits); packed_custom_mask: the packed uint8 form (module
        docstring). A mask replaces causal (FlashInfer: causal is ignored).
        The dtype arguments and use_fp16_qk_reduction (0.2.0:
        allow_fp16_qk_reduction) are accepted for compatibility (run() checks
        the tensors' dtypes; accumulation is float32). head_dim: FlashInfer
        0.2.0's name for head_dim_qk. head_dim_vo: v's and out's head dim
        (None: head_dim_qk); 128 with head_dim_qk 192 is the one distinct pair
        (run() then takes v [.., 128] and returns out [q rows, num_qo_heads,
        128]). alibi_slopes (Tessera's extension): float32 [num_qo_heads] on
        the workspace's device, with pos_encoding_mode "ALIBI" (without it
        FlashInfer's get_alibi_slopes).
        """
        plan_arguments = dict(locals())  # first: only the parameters (forward() re-plans)
        del plan_arguments["self"]
        del use_fp16_qk_reduction, allow_fp16_qk_reduction, q_data_type, kv_data_type
        self._flat = None
        qo_host, kv_host, batch, shape, scalars, head_dim_vo = self._plan_prologue(
            qo_indptr, kv_indptr, "kv_indptr", num_qo_heads, num_kv_heads, head_dim_qk, head_dim,
            head_dim_vo, pos_encoding_mode, sm_scale, window_left, logits_soft_cap, rope_scale,
            rope_theta, alibi_slopes)
        has_mask = custom_mask is not None or packed_custom_mask is not None
        device = self._float_workspace.device
        handle = self._ensure(shape, batch, int(qo_host[-1]), head_dim_vo)
        self._planned = None
        _lib.call(self._prefix + "_plan", ctypes.c_void_p(handle), _int32_pointer(qo_host),
                  qo_host.numel(), _int32_pointer(kv_host), kv_host.numel(),
                  int(bool(causal) and not has_mask), current_stream(device))
        mask = self._device_mask(custom_mask, packed_custom_mask, qo_host,
                                 (kv_host[1:] - kv_host[:-1]).to(torch.int64), device,
                                 non_blocking) if has_mask else None
        b = self._buffers
        self._qo_indptr, self._kv_indptr = _on_device_many(
            ((qo_host, b["qo_indptr_buf"], "qo_indptr"),
             (kv_host, b["kv_indptr_buf"], "kv_indptr")), device, non_blocking)
        self._planned = (handle, shape[0], scalars, mask,
                         _alibi_slopes_for(pos_encoding_mode, alibi_slopes, shape[0], device))
        self._plan_arguments = plan_arguments
        self._head_dim = shape[2]
        self._head_dim_vo = head_dim_vo

    begin_forward = plan

    def _new_flat(self) -> _flat.FlatRun:
        handle, _, scalars, mask, alibi = self._planned

        def check(q, k, v, out, lse):
            _check_ragged_run(handle, q, k, v, self._qo_indptr, self._kv_indptr, out, lse,
                              *scalars, 0.0, 0.0, mask, alibi, self._jit_handle)

        self._flat = _flat.FlatRun("tessera_batch_prefill_ragged_run_flat", handle,
                                   (self._qo_indptr, self._kv_indptr), 5, check)
        return self._flat

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args,
            q_scale: Optional[float] = None, k_scale: Optional[float] = None,
            v_scale: Optional[float] = None, out: Optional[torch.Tensor] = None,
            lse: Optional[torch.Tensor] = None, return_lse: bool = False,
            enable_pdl: Optional[bool] = None):
        """Attention for the planned batch. Returns out (like q; rows past
        qo_indptr[-1] are left alone) and, with return_lse, lse float32
        [q rows, num_qo_heads] (base 2). FlashInfer 0.2.0's run(q, k, v,
        return_lse) works too; q_scale folds into the softmax scale, as
        FlashInfer's; enable_pdl is accepted and ignored."""
        if (self._planned is not None and not args and _flat.eager()
                and type(q) is _Tensor and type(k) is _Tensor and type(v) is _Tensor
                and _flat.plain(out, lse)):
            if self._kv_layout == 1:  # HND [heads, tokens, dim]: the kernel takes strides
                k, v = k.transpose(0, 1), v.transpose(0, 1)
            return self._run_flat(q, k, v, out, lse, q_scale, k_scale, v_scale, return_lse)
        handle, num_qo_heads, scalars, mask, alibi = self._require_plan()
        return_lse = _positional_run_args(args, ("return_lse",), dict(return_lse=return_lse),
                                          self._jit)["return_lse"]
        _checks.tensors(q=q, k=k, v=v)
        if self._kv_layout == 1:  # HND [heads, tokens, dim]: the kernel takes strides
            k, v = k.transpose(0, 1), v.transpose(0, 1)
        out, lse = _outputs(q, num_qo_heads, out, lse, return_lse, self._head_dim_vo)
        torch.ops.tessera.batch_prefill_ragged_run(
            handle, q, k, v, self._qo_indptr, self._kv_indptr, out, lse,
            *_fold_q_scale(scalars, q_scale, q.shape[-1]), float(k_scale or 0.0),
            float(v_scale or 0.0), mask, alibi, self._jit_handle)
        return (out, lse) if return_lse else out


class BatchPrefillWithPagedKVCacheWrapper(_BatchPrefillWrapperBase):
    """Batch prefill/append attention over a paged KV cache, FlashInfer's
    plan/run API: plan once per batch, run once per layer.

    Pages of request b: paged_kv_indices[paged_kv_indptr[b] ..
    paged_kv_indptr[b + 1]), the last holding paged_kv_last_page_len[b] tokens;
    any page size >= 1. With use_cuda_graph=True the four *_buf tensors (int32
    CUDA: qo_indptr_buf and paged_kv_indptr_buf [max_batch + 1],
    paged_kv_indices_buf [max pages], paged_kv_last_page_len_buf [max_batch])
    hold the arrays run() reads (module docstring for the bounds), and the
    optional custom_mask_buf / mask_indptr_buf the packed custom mask and its
    byte offsets (as the ragged wrapper).
    """

    _prefix = "tessera_batch_prefill_paged"

    def __init__(self, float_workspace_buffer: torch.Tensor, kv_layout: str = "NHD",
                 use_cuda_graph: bool = False, qo_indptr_buf: Optional[torch.Tensor] = None,
                 paged_kv_indptr_buf: Optional[torch.Tensor] = None,
                 paged_kv_indices_buf: Optional[torch.Tensor] = None,
                 paged_kv_last_page_len_buf: Optional[torch.Tensor] = None,
                 custom_mask_buf: Optional[torch.Tensor] = None,
                 mask_indptr_buf: Optional[torch.Tensor] = None, backend: str = "auto",
                 jit_args=None, jit_kwargs=None, *, qk_indptr_buf: Optional[torch.Tensor] = None):
        super().__init__(
            float_workspace_buffer, kv_layout, use_cuda_graph,
            dict(qo_indptr_buf=qo_indptr_buf, paged_kv_indptr_buf=paged_kv_indptr_buf,
                 paged_kv_indices_buf=paged_kv_indices_buf,
                 paged_kv_last_page_len_buf=paged_kv_last_page_len_buf),
            custom_mask_buf, _mask_indptr_buf(mask_indptr_buf, qk_indptr_buf), backend,
            _jit_args(jit_args, jit_kwargs))

    def plan(self, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len,
             num_qo_heads: int, num_kv_heads: int, head_dim_qk: Optional[int] = None,
             page_size: Optional[int] = None, head_dim_vo: Optional[int] = None, custom_mask: Optional[torch.Tensor] = None,
             packed_custom_mask: Optional[torch.Tensor] = None, causal: bool = False,
             pos_encoding_mode: str = "NONE", use_fp16_qk_reduction: bool = False,
             sm_scale: Optional[float] = None, window_left: int = -1,
             logits_soft_cap: Optional[float] = None, rope_scale: Optional[float] = None,
             rope_theta: Optional[float] = None, q_data_type="float16", kv_data_type=None,
             non_blocking: bool = True, *, head_dim: Optional[int] = None,
             allow_fp16_qk_reduction: Optional[bool] = None,
             alibi_slopes: Optional[torch.Tensor] = None) -> None:
        """Plans the batch: qo_indptr [batch + 1] token offsets, paged_kv_indptr
        [batch + 1] page offsets, paged_kv_indices [paged_kv_indptr[-1]] page ids
        (read by run() only: a CUDA tensor is used as it is),
        paged_kv_last_page_len [batch], all int32.

        custom_mask: bool, every request's [qo_len, kv_len] mask flattened and
        concatenated (kv_len: the request's tokens in its pages; packed here with
        segment_packbits); packed_custom_mask: the packed uint8 form (module
        docstring). A mask replaces causal (FlashInfer: causal is ignored).
        The dtype arguments and use_fp16_qk_reduction (0.2.0:
        allow_fp16_qk_reduction) are accepted for compatibility (run() checks
        the tensors' dtypes; accumulation is float32). head_dim: FlashInfer
        0.2.0's name for head_dim_qk. head_dim_vo: head_dim_qk or None (the
        q/k 192, v/o 128 pair raises NotImplementedError naming head_dim_vo:
        not yet for paged caches). alibi_slopes (Tessera's extension):
        float32 [num_qo_heads] on the workspace's device, with
        pos_encoding_mode "ALIBI" (without it FlashInfer's get_alibi_slopes).
        """
        plan_arguments = dict(locals())  # first: only the parameters (forward() re-plans)
        del plan_arguments["self"]
        del use_fp16_qk_reduction, allow_fp16_qk_reduction, q_data_type, kv_data_type
        self._flat = None
        qo_host, kv_host, batch, shape, scalars, _ = self._plan_prologue(
            qo_indptr, paged_kv_indptr, "paged_kv_indptr", num_qo_heads, num_kv_heads,
            head_dim_qk, head_dim, head_dim_vo, pos_encoding_mode, sm_scale, window_left,
            logits_soft_cap, rope_scale, rope_theta, alibi_slopes)
        if page_size is None:
            _checks.fail("page_size", "an integer", "None")
        shape = shape + (_checks.integer(page_size, "page_size", minimum=1),)
        has_mask = custom_mask is not None or packed_custom_mask is not None
        last_host = _host_int32(paged_kv_last_page_len, "paged_kv_last_page_len")
        if last_host.numel() != batch:
            raise TesseraArgumentError(
                f"tessera: argument 'paged_kv_last_page_len': expected {batch} entries (the "
                f"batch size of qo_indptr), got {last_host.numel()}")
        device = self._float_workspace.device
        handle = self._ensure(shape, batch, int(qo_host[-1]))
        self._planned = None
        _lib.call(self._prefix + "_plan", ctypes.c_void_p(handle), _int32_pointer(qo_host),
                  qo_host.numel(), _int32_pointer(kv_host), kv_host.numel(),
                  _int32_pointer(last_host), batch, int(bool(causal) and not has_mask),
                  current_stream(device))
        mask = None
        if has_mask:
            # The library's KV lengths: (pages - 1) * page_size + last, 0 without pages.
            pages = (kv_host[1:] - kv_host[:-1]).to(torch.int64)
            kv_lengths = torch.where(pages > 0, (pages - 1) * shape[3] + last_host.to(torch.int64),
                                     torch.zeros_like(pages))
            mask = self._device_mask(custom_mask, packed_custom_mask, qo_host, kv_lengths,
                                     device, non_blocking)
        b = self._buffers
        items = [(qo_host, b["qo_indptr_buf"], "qo_indptr"),
                 (kv_host, b["paged_kv_indptr_buf"], "paged_kv_indptr"),
                 (last_host, b["paged_kv_last_page_len_buf"], "paged_kv_last_page_len")]
        host_indices = _is_host(paged_kv_indices)
        if host_indices:  # moved with the others (their errors first, as before)
            _check_buffer_sizes(items)
            items.append((_host_int32(paged_kv_indices, "paged_kv_indices"),
                          b["paged_kv_indices_buf"], "paged_kv_indices"))
        moved = _on_device_many(items, device, non_blocking)
        self._qo_indptr, self._kv_indptr, self._kv_last_page_len = moved[:3]
        self._kv_indices = moved[3] if host_indices else _device_indices(
            paged_kv_indices, b["paged_kv_indices_buf"], device, non_blocking,
            "paged_kv_indices")
        self._planned = (handle, shape[0], scalars, mask,
                         _alibi_slopes_for(pos_encoding_mode, alibi_slopes, shape[0], device))
        self._plan_arguments = plan_arguments
        self._head_dim = shape[2]

    begin_forward = plan

    def _new_flat(self) -> _flat.FlatRun:
        handle, _, scalars, mask, alibi = self._planned

        def check(q, k_cache, v_cache, out, lse):
            _check_paged_run(handle, q, k_cache, v_cache, self._kv_layout, self._kv_indices,
                             self._qo_indptr, self._kv_indptr, self._kv_last_page_len, out, lse,
                             *scalars, 0.0, 0.0, mask, alibi, self._jit_handle)

        self._flat = _flat.FlatRun(
            "tessera_batch_prefill_paged_run_flat", handle,
            (self._kv_indices, self._qo_indptr, self._kv_indptr, self._kv_last_page_len), 5,
            check, self._kv_layout)
        return self._flat

    def run(self, q: torch.Tensor, paged_kv_cache, *args, q_scale: Optional[float] = None,
            k_scale: Optional[float] = None, v_scale: Optional[float] = None,
            out: Optional[torch.Tensor] = None, lse: Optional[torch.Tensor] = None,
            return_lse: bool = False, enable_pdl: Optional[bool] = None):
        """Attention for the planned batch. paged_kv_cache: [pages, 2, page_size,
        num_kv_heads, head_dim] (NHD; HND swaps the middle two) or a (k_cache,
        v_cache) pair of [pages, ...]. Returns out (like q; rows past
        qo_indptr[-1] are left alone) and, with return_lse, lse float32
        [q rows, num_qo_heads] (base 2). FlashInfer 0.2.0's run(q,
        paged_kv_cache, k_scale, v_scale, return_lse) works too; q_scale folds
        into the softmax scale, as FlashInfer's; enable_pdl is accepted and
        ignored."""
        if self._planned is not None and not args and _flat.eager():
            k_cache, v_cache = _cache_pair(paged_kv_cache)
            if type(q) is _Tensor and type(k_cache) is _Tensor and _flat.plain(v_cache, out, lse):
                return self._run_flat(q, k_cache, v_cache, out, lse, q_scale, k_scale, v_scale,
                                      return_lse)
        handle, num_qo_heads, scalars, mask, alibi = self._require_plan()
        given = _positional_run_args(args, ("k_scale", "v_scale", "return_lse"),
                                     dict(k_scale=k_scale, v_scale=v_scale,
                                          return_lse=return_lse), self._jit)
        k_scale, v_scale, return_lse = given["k_scale"], given["v_scale"], given["return_lse"]
        k_cache, v_cache = _cache_pair(paged_kv_cache)
        _checks.tensors(q=q, paged_kv_cache=k_cache)
        out, lse = _outputs(q, num_qo_heads, out, lse, return_lse)
        torch.ops.tessera.batch_prefill_paged_run(
            handle, q, k_cache, v_cache, self._kv_layout, self._kv_indices, self._qo_indptr,
            self._kv_indptr, self._kv_last_page_len, out, lse,
            *_fold_q_scale(scalars, q_scale, q.shape[-1]), float(k_scale or 0.0),
            float(v_scale or 0.0), mask, alibi, self._jit_handle)
        return (out, lse) if return_lse else out
