"""Block-sparse attention: FlashInfer 0.2's BlockSparseAttentionWrapper over
libtessera's BlockSparseAttention (tessera/api/prefill.h).

q [M, num_qo_heads, head_dim] is cut into block rows of R queries and k, v
[N, num_kv_heads, head_dim] into block columns of C keys; block row i attends
to every key of the block columns indices[indptr[i] .. indptr[i + 1]) (BSR).
Within the blocks, plan()'s mask (bool [indptr[-1], R, C], FlashInfer's BSR
layout: mask[p, r, c] for block p = the p-th entry of indices) or packed_mask
(FlashInfer's packed form) masks single elements, as FlashInfer: block row i
is prefill request i, R queries against its blocks' keys in indices order,
and its [R, blocks * C] mask is packed with segment_packbits (bitorder
"little"). causal is FlashInfer's: block row i's keys are its blocks' keys
in indices order (kv_len = blocks * C) and query r sees key j <= kv_len - R +
r (bottom-right aligned; with sorted columns ending at the diagonal block and
R = C, the dense causal mask); a mask replaces causal, as FlashInfer. RoPE on
the fly raises (the library's error naming "options"). A
block row with no blocks, and a query whose every key is masked, get out 0 and
lse -inf; lse is float32 in base 2.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import _lib
from ._lib import TesseraArgumentError
from ._tensor import current_stream, dl, dl_or_none
from ._ops import custom_op
from . import _checks
from .prefill import (_PlanHandle, _check_attention_outputs, _check_backend,
                      _check_contiguous_kv, _host_int32, _int32_pointer, _on_device, _options,
                      _outputs, _plan_mask, _variant_scalars)


def _check_block_sparse_run(handle, q, k, v, indptr, indices, out, lse, sm_scale,
                            logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                            rope_theta, custom_mask=None) -> None:
    """What the fake and the real kernel both check first (_checks.py)."""
    _checks.tensor(q, "q", ndim=3, dtypes=_checks.HALF)
    _check_contiguous_kv(q, k, v, 1)
    _checks.index_arrays(indptr=indptr, indices=indices)
    _check_attention_outputs(q, out, lse, custom_mask, None)


@custom_op("tessera::block_sparse_run", mutates_args=("out", "lse"),
                         device_types="cuda")
def _block_sparse_run_op(handle: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         indptr: torch.Tensor, indices: torch.Tensor, out: torch.Tensor,
                         lse: Optional[torch.Tensor], sm_scale: float, logits_soft_cap: float,
                         window_left: int, pos_encoding_mode: int, rope_scale: float,
                         rope_theta: float, custom_mask: Optional[torch.Tensor] = None) -> None:
    # handle: the C++ plan object's address (no op argument type holds one).
    _check_block_sparse_run(handle, q, k, v, indptr, indices, out, lse, sm_scale,
                            logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                            rope_theta, custom_mask)
    options = _options(sm_scale, logits_soft_cap, window_left, pos_encoding_mode, rope_scale,
                       rope_theta, custom_mask=custom_mask)
    _lib.call("tessera_block_sparse_run", ctypes.c_void_p(handle), dl(q), dl(k), dl(v),
              dl(indptr), dl(indices), dl(out), dl_or_none(lse), options,
              current_stream(q.device), 0)


_block_sparse_run_op.register_fake(_check_block_sparse_run)


def _rows_mask(mask: torch.Tensor, blocks_per_row: torch.Tensor, R: int, C: int) -> torch.Tensor:
    """FlashInfer's convert_bsr_mask_layout, vectorised: mask [nnz, R, C] (BSR
    block order) as each block row's [R, blocks * C] mask, flattened and
    concatenated (bool, on mask's device)."""
    nnz = mask.shape[0]
    row = torch.repeat_interleave(torch.arange(blocks_per_row.numel()), blocks_per_row)
    first = torch.zeros(blocks_per_row.numel() + 1, dtype=torch.int64)
    first[1:] = torch.cumsum(blocks_per_row, 0)
    start = first[:-1][row]  # [nnz] the row's first block
    row_keys = blocks_per_row[row] * C  # [nnz] the row's kv_len
    # Block p = start + j of its row: element (r, c) goes to start * R * C +
    # r * row_keys + j * C + c.
    base = start * R * C + (torch.arange(nnz) - start) * C
    dest = (base[:, None, None] + torch.arange(R)[None, :, None] * row_keys[:, None, None]
            + torch.arange(C)[None, None, :])
    bits = mask if mask.dtype == torch.bool else mask != 0
    flat = torch.empty(nnz * R * C, dtype=torch.bool, device=mask.device)
    flat[dest.reshape(-1).to(mask.device)] = bits.reshape(-1)
    return flat


class BlockSparseAttentionWrapper:
    """Block-sparse attention with FlashInfer's plan/run API: plan once per
    pattern, run once per layer. plan() makes the C++ plan object (again when
    the shape changes or a pattern has more block rows than it was made for;
    the bound grows geometrically) on float_workspace_buffer.
    """

    _prefix = "tessera_block_sparse"

    def __init__(self, float_workspace_buffer: torch.Tensor, backend: str = "auto"):
        # backend: "auto", "fa2" or "fa3", as the prefill wrappers' (the
        # paged kernels underneath run the pattern).
        self._backend = _check_backend(backend)
        _checks.tensor(float_workspace_buffer, "float_workspace_buffer")
        self._float_workspace = float_workspace_buffer
        self._handle = _PlanHandle(self._prefix, float_workspace_buffer, fixed=False,
                                   backend=self._backend)
        self._planned = None

    def reset_workspace_buffer(self, float_workspace_buffer: torch.Tensor,
                               int_workspace_buffer: Optional[torch.Tensor] = None) -> None:
        """FlashInfer's int workspace is accepted and unused."""
        del int_workspace_buffer
        self._handle.destroy()
        self._float_workspace = float_workspace_buffer
        self._handle = _PlanHandle(self._prefix, float_workspace_buffer, fixed=False,
                                   backend=self._backend)
        self._planned = None

    def plan(self, indptr, indices, M: int, N: int, R: int, C: int, num_qo_heads: int,
             num_kv_heads: int, head_dim: int, mask: Optional[torch.Tensor] = None,
             packed_mask: Optional[torch.Tensor] = None, causal: bool = False,
             pos_encoding_mode: str = "NONE", use_fp16_qk_reduction: bool = False,
             logits_soft_cap: Optional[float] = None, sm_scale: Optional[float] = None,
             rope_scale: Optional[float] = None, rope_theta: Optional[float] = None,
             q_data_type="float16", kv_data_type=None, non_blocking: bool = True, *,
             allow_fp16_qk_reduction: Optional[bool] = None) -> None:
        """Plans the pattern: indptr [M / R + 1] and indices [indptr[-1]] (block
        column ids < N / C), int32 (host tensors preferred; CUDA tensors are
        copied to the host, a sync). mask: bool [indptr[-1], R, C], the
        elements kept within each block (module docstring); packed_mask: its
        packed form (used when both are given). The dtype arguments and
        use_fp16_qk_reduction (0.2.0: allow_fp16_qk_reduction) are accepted
        for compatibility (accumulation is float32)."""
        del use_fp16_qk_reduction, allow_fp16_qk_reduction, q_data_type, kv_data_type
        M, N, R, C = int(M), int(N), int(R), int(C)
        for name, total, block in (("M", M, R), ("N", N, C)):
            if block < 1 or total % block != 0:
                raise TesseraArgumentError(
                    f"tessera: argument '{name}': expected a multiple of the block size "
                    f"{block}, got {total}")
        scalars = _variant_scalars(pos_encoding_mode, sm_scale, -1, logits_soft_cap, rope_scale,
                                   rope_theta)
        indptr_host = _host_int32(indptr, "indptr")
        indices_host = _host_int32(indices, "indices")
        block_rows = M // R
        if indptr_host.numel() != block_rows + 1:
            raise TesseraArgumentError(
                f"tessera: argument 'indptr': expected M / R + 1 = {block_rows + 1} entries, "
                f"got {indptr_host.numel()}")
        nnz = int(indptr_host[-1])
        if packed_mask is None and mask is not None and (
                not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (nnz, R, C)):
            raise TesseraArgumentError(
                f"tessera: argument 'mask': expected a bool tensor of shape (indptr[-1], R, C) "
                f"= {(nnz, R, C)}, got "
                + (f"{tuple(mask.shape)}" if isinstance(mask, torch.Tensor)
                   else type(mask).__name__))
        shape = (int(num_qo_heads), int(num_kv_heads), int(head_dim), R, C)
        handle = self._handle.ensure(shape, (block_rows,), ("block rows",))
        device = self._float_workspace.device
        self._planned = None
        _lib.call(self._prefix + "_plan", ctypes.c_void_p(handle), _int32_pointer(indptr_host),
                  indptr_host.numel(), _int32_pointer(indices_host), indices_host.numel(),
                  int(bool(causal) and mask is None and packed_mask is None),
                  current_stream(device))
        packed = None
        if mask is not None or packed_mask is not None:
            blocks = (indptr_host[1:] - indptr_host[:-1]).to(torch.int64)
            if packed_mask is None:
                mask = _rows_mask(mask, blocks, R, C)
            packed, _ = _plan_mask(mask, packed_mask, torch.full_like(blocks, R), blocks * C,
                                   "mask", "packed_mask")
            if packed.device != device:
                packed = packed.to(device)
        self._indptr = _on_device(indptr_host, None, device, non_blocking, "indptr")
        self._indices = _on_device(indices_host, None, device, non_blocking, "indices")
        self._planned = (handle, shape[0], scalars, packed)

    begin_forward = plan

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            out: Optional[torch.Tensor] = None, lse: Optional[torch.Tensor] = None,
            return_lse: bool = False, enable_pdl: Optional[bool] = None):
        """Attention for the planned pattern: q [M, num_qo_heads, head_dim], k, v
        [N, num_kv_heads, head_dim]. Returns out (like q) and, with return_lse,
        lse float32 [M, num_qo_heads] (base 2). enable_pdl is accepted and
        ignored."""
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'self': expected plan() before run(), "
                                       "got no plan")
        handle, num_qo_heads, scalars, mask = self._planned
        _checks.tensors(q=q, k=k, v=v)
        out, lse = _outputs(q, num_qo_heads, out, lse, return_lse)
        torch.ops.tessera.block_sparse_run(handle, q, k, v, self._indptr, self._indices, out, lse,
                                           *scalars, mask)
        return (out, lse) if return_lse else out

    forward = run

    def end_forward(self) -> None:
        """FlashInfer 0.1's no-op."""
