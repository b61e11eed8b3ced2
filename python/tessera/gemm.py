"""GEMMs (FlashInfer 0.2's ``flashinfer.gemm``: ``SegmentGEMMWrapper``,
``bmm_fp8``) over libtessera.

``SegmentGEMMWrapper.run`` multiplies each segment of consecutive rows of
``x`` by its own weight matrix in one grouped kernel that reads the segment
bounds on the GPU (no host sync: CUDA-graph capturable with lengths that
change between replays). ``bmm_fp8`` is a batched fp8 GEMM through cuBLASLt.
Both are torch custom ops writing an output the wrapper allocates; their
fakes run the same structural checks as the real kernels.
"""

from __future__ import annotations

import threading
from typing import Optional

import torch

from . import _checks, _lib
from ._ops import custom_op
from ._tensor import current_stream, dl, dl_or_none

INDEX = (torch.int32, torch.int64)
# c_api.h: tessera_segment_gemm's backend codes.
_BACKENDS = {"auto": 0, "sm80": 1, "sm90": 2}
_BACKEND_NAMES = "'auto', 'sm80' or 'sm90'"
# cuBLASLt's workspace for bmm_fp8: what its fastest Hopper kernels ask for.
_BMM_FP8_WORKSPACE_BYTES = 32 << 20

_workspaces = {}
_workspace_lock = threading.Lock()


def _bmm_fp8_workspace(device: torch.device):
    """One cuBLASLt workspace per CUDA device, allocated on first use and
    kept (so calls allocate nothing and can be captured in a CUDA graph)."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    with _workspace_lock:
        buffer = _workspaces.get(index)
        if buffer is None:
            buffer = torch.empty(_BMM_FP8_WORKSPACE_BYTES, dtype=torch.uint8,
                                 device=torch.device("cuda", index))
            _workspaces[index] = buffer
    return buffer


# ---- bmm_fp8


def _check_bmm_fp8(A, B, A_scale, B_scale, out) -> None:
    _checks.tensor(A, "A", ndim=3, dtypes=_checks.FP8)
    _checks.tensor(B, "B", ndim=3, dtypes=_checks.FP8)
    if A.dtype == B.dtype and A.dtype == getattr(torch, "float8_e5m2", None):
        _checks.fail("B", "float8_e4m3fn when A is float8_e5m2 (cuBLASLt has no e5m2 x e5m2 "
                     "GEMM)", _checks.describe(B))
    _checks.size(B, 0, A.shape[0], "B", "the batch size of A")
    _checks.size(B, 1, A.shape[2], "B", "k (dim 2) of A")
    if A.shape[2] % 16 != 0 or A.shape[2] == 0:
        _checks.fail("A", "k (dim 2) a positive multiple of 16 (cuBLASLt's FP8 kernels)",
                     _checks.describe(A))
    for scale, name in ((A_scale, "A_scale"), (B_scale, "B_scale")):
        _checks.tensor(scale, name, dtypes=(torch.float32,))
        if scale.numel() != 1:
            _checks.fail(name, "one float32 element (a per-tensor scale)",
                         _checks.describe(scale))
    _checks.tensor(out, "out", ndim=3, dtypes=_checks.HALF)
    expected = (A.shape[0], A.shape[1], B.shape[2])
    if tuple(out.shape) != expected:
        _checks.fail("out", f"shape {expected} ([b, m] of A, n of B)", _checks.describe(out))


@custom_op("tessera::bmm_fp8", mutates_args=("out",), device_types="cuda")
def _bmm_fp8(A: torch.Tensor, B: torch.Tensor, A_scale: torch.Tensor, B_scale: torch.Tensor,
             out: torch.Tensor) -> None:
    _check_bmm_fp8(A, B, A_scale, B_scale, out)
    _lib.call("tessera_bmm_fp8", dl(A), dl(B), dl(A_scale), dl(B_scale), dl(out),
              dl_or_none(_bmm_fp8_workspace(A.device)), current_stream(A.device))


_bmm_fp8.register_fake(_check_bmm_fp8)


def bmm_fp8(A: torch.Tensor, B: torch.Tensor, A_scale: torch.Tensor, B_scale: torch.Tensor,
            dtype: torch.dtype, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Batched fp8 GEMM: ``out[b] = (A[b] * A_scale) @ (B[b] * B_scale)`` (cuBLASLt).

    Parameters
    ----------
    A : torch.Tensor
        ``(b, m, k)``, fp8 e4m3 or fp8 e5m2, k contiguous; k a multiple of 16.
    B : torch.Tensor
        ``(b, k, n)``, column major (the transpose of a row-major ``(b, n, k)``), fp8
        e4m3 or fp8 e5m2 (not e5m2 when A is e5m2).
    A_scale : torch.Tensor
        Scale of A, float32, one element, on the GPU.
    B_scale : torch.Tensor
        Scale of B, float32, one element, on the GPU.
    dtype : torch.dtype
        Output dtype, ``torch.bfloat16`` or ``torch.float16``.
    out : Optional[torch.Tensor]
        ``(b, m, n)`` output of ``dtype``; allocated when None.

    Returns
    -------
    torch.Tensor
        ``out``. Needs a GPU of compute capability 8.9 or newer; cuBLASLt runs with fast
        accumulation, as FlashInfer configures it.
    """
    if dtype not in _checks.HALF:
        _checks.fail("dtype", "torch.bfloat16 or torch.float16", str(dtype))
    _checks.tensor(A, "A", ndim=3)
    _checks.tensor(B, "B", ndim=3)
    _checks.tensors(A_scale=A_scale, B_scale=B_scale)
    if out is None:
        out = torch.empty((A.shape[0], A.shape[1], B.shape[2]), dtype=dtype, device=A.device)
    else:
        _checks.tensors(out=out)
        if out.dtype != dtype:
            _checks.fail("out", f"dtype {dtype} (as the dtype argument)", _checks.describe(out))
    torch.ops.tessera.bmm_fp8(A, B, A_scale, B_scale, out)
    return out


# ---- segment GEMM


def _check_segment_gemm(x, weights, y, batch_size, weight_column_major, seg_lens, seg_indptr,
                        weight_indices, backend) -> None:
    _checks.tensor(x, "x", ndim=2, dtypes=_checks.HALF)
    _checks.tensor(weights, "weights", ndim=3)
    _checks.same_dtype(weights, "weights", x, "x")
    d_in = x.shape[1]
    if d_in == 0 or d_in % 8 != 0:
        _checks.fail("x", "d_in (dim 1) a positive multiple of 8", _checks.describe(x))
    in_dim, out_dim = (2, 1) if weight_column_major else (1, 2)
    _checks.size(weights, in_dim, d_in, "weights", "d_in of x")
    d_out = weights.shape[out_dim]
    if d_out % 8 != 0:
        _checks.fail("weights", f"d_out (dim {out_dim}) a multiple of 8",
                     _checks.describe(weights))
    batch_size = _checks.integer(batch_size, "batch_size", minimum=0)
    if seg_indptr is not None:
        _checks.tensor(seg_indptr, "seg_indptr", ndim=1, dtypes=INDEX)
        _checks.size(seg_indptr, 0, batch_size + 1, "seg_indptr", "batch_size + 1")
    elif seg_lens is not None:
        _checks.tensor(seg_lens, "seg_lens", ndim=1, dtypes=INDEX)
        _checks.size(seg_lens, 0, batch_size, "seg_lens", "batch_size")
    else:
        _checks.fail("seg_lens", "seg_lens or seg_indptr (a tensor)", "neither")
    if weight_indices is not None:
        _checks.tensor(weight_indices, "weight_indices", ndim=1, dtypes=INDEX)
        _checks.size(weight_indices, 0, batch_size, "weight_indices", "batch_size")
    elif weights.shape[0] < batch_size:
        _checks.fail("weights", f"at least batch_size = {batch_size} weight matrices (dim 0; "
                     "segment i uses W[i] without weight_indices)", _checks.describe(weights))
    _checks.tensor(y, "y", ndim=2)
    _checks.same_dtype(y, "y", x, "x")
    if tuple(y.shape) != (x.shape[0], d_out):
        _checks.fail("y", f"shape {(x.shape[0], d_out)} (rows of x, d_out of weights)",
                     _checks.describe(y))
    if backend not in _BACKENDS.values():
        _checks.fail("backend", _BACKEND_NAMES, str(backend))


@custom_op("tessera::segment_gemm", mutates_args=("y",), device_types="cuda")
def _segment_gemm(x: torch.Tensor, weights: torch.Tensor, y: torch.Tensor, batch_size: int,
                  weight_column_major: bool, seg_lens: Optional[torch.Tensor],
                  seg_indptr: Optional[torch.Tensor], weight_indices: Optional[torch.Tensor],
                  backend: int) -> None:
    _check_segment_gemm(x, weights, y, batch_size, weight_column_major, seg_lens, seg_indptr,
                        weight_indices, backend)
    _lib.call("tessera_segment_gemm", dl(x), dl(weights), dl(y), batch_size,
              int(weight_column_major), dl_or_none(seg_lens), dl_or_none(seg_indptr),
              dl_or_none(weight_indices), backend, current_stream(x.device), 0)


_segment_gemm.register_fake(_check_segment_gemm)


def _backend_code(backend) -> int:
    code = _BACKENDS.get(backend) if isinstance(backend, str) else None
    if code is None:
        _checks.fail("backend", _BACKEND_NAMES, repr(backend))
    return code


def _on_device(index, device):
    """An index tensor on x's device (FlashInfer moves host index tensors too)."""
    if isinstance(index, torch.Tensor) and index.device != device:
        return index.to(device, non_blocking=True)
    return index


class SegmentGEMMWrapper:
    r"""Segment (grouped) GEMM: ``y[i] = x[i] @ W[i]`` (or ``W[weight_indices[i]]``) for
    the segments ``x[i]`` of consecutive rows of ``x``.

    Example
    -------
    >>> workspace = torch.empty(1 << 20, dtype=torch.int8, device="cuda")
    >>> segment_gemm = tessera.SegmentGEMMWrapper(workspace)
    >>> seg_lens = torch.tensor([1, 2, 3, 4], dtype=torch.int64, device="cuda")
    >>> x = torch.randn(10, 128, device="cuda", dtype=torch.float16)
    >>> weights = torch.randn(4, 256, 128, device="cuda", dtype=torch.float16)
    >>> y = segment_gemm.run(x, weights, 4, True, seg_lens=seg_lens)   # [10, 256]
    """

    def __init__(self, workspace_buffer: torch.Tensor, backend: str = "auto") -> None:
        r"""Parameters
        ----------
        workspace_buffer : torch.Tensor
            FlashInfer's metadata workspace. The sm80 kernel reads the segment arrays
            directly and needs none; the buffer is kept for API compatibility.
        backend : str
            ``"sm80"``: Tessera's mma.sync grouped kernel (sm80 and newer). ``"sm90"``: the
            Hopper grouped kernel (TMA + wgmma); on a GPU other than compute capability
            9.0, ``run`` raises ``TesseraArgumentError`` naming ``backend``. ``"auto"``
            (default): sm90 on Hopper where its 128 x 256 tiles fit (segments longer than
            64 rows on average, d_out above 64), else sm80.
        """
        self._workspace_buffer = _checks.tensor(workspace_buffer, "workspace_buffer")
        self._backend = _backend_code(backend)

    def reset_workspace_buffer(self, new_workspace_buffer: torch.Tensor) -> None:
        """Replaces the (unused) workspace buffer."""
        self._workspace_buffer = _checks.tensor(new_workspace_buffer, "new_workspace_buffer")

    def run(self, x: torch.Tensor, weights: torch.Tensor, batch_size: int,
            weight_column_major: bool, seg_lens: Optional[torch.Tensor] = None,
            seg_indptr: Optional[torch.Tensor] = None,
            weight_indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        r"""Runs the segment GEMM.

        Parameters
        ----------
        x : torch.Tensor
            ``(sum(seg_lens), d_in)``, fp16 or bf16; d_in a multiple of 8.
        weights : torch.Tensor
            ``(num_weights, d_in, d_out)``, or ``(num_weights, d_out, d_in)`` when
            ``weight_column_major``; x's dtype; d_out a multiple of 8.
        batch_size : int
            The number of segments.
        weight_column_major : bool
            Whether each weight matrix is stored ``(d_out, d_in)``.
        seg_lens : Optional[torch.Tensor]
            ``(batch_size,)`` segment lengths, int64 (or int32).
        seg_indptr : Optional[torch.Tensor]
            ``(batch_size + 1,)`` segment offsets (``seg_indptr[0] = 0``), int64 (or int32);
            used instead of ``seg_lens`` when given.
        weight_indices : Optional[torch.Tensor]
            ``(batch_size,)`` index of each segment's weight matrix, int64 (or int32).

        Returns
        -------
        torch.Tensor
            ``y``, ``(x.shape[0], d_out)``. The index tensors are read on the GPU (host
            tensors are copied there first), so the call is CUDA-graph capturable with
            device-side lengths. Rows past the last segment come back zero.
        """
        _checks.tensor(x, "x", ndim=2)
        _checks.tensor(weights, "weights", ndim=3)
        if seg_lens is None and seg_indptr is None:
            _checks.fail("seg_lens", "seg_lens or seg_indptr (a tensor)", "neither")
        d_out = weights.shape[1] if weight_column_major else weights.shape[-1]
        y = torch.empty((x.shape[0], d_out), dtype=x.dtype, device=x.device)
        torch.ops.tessera.segment_gemm(
            x, weights, y, _checks.integer(batch_size, "batch_size", minimum=0),
            bool(weight_column_major), _on_device(seg_lens, x.device),
            _on_device(seg_indptr, x.device), _on_device(weight_indices, x.device),
            self._backend)
        return y

    forward = run
