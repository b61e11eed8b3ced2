"""FlashInfer's flashinfer.cascade: attention-state merges and cascade
(shared-prefix) attention.

An attention state is (v, s) with v the normalised output and s its lse in
base 2; two states over disjoint KV sets merge exactly (tessera/api/decode.h).

Cascade attention splits each query token's KV into levels: a prefix shared
by many requests, then (optionally) prefixes shared by fewer, then the
request's own tokens. Every level runs as one batch prefill whose requests
are the groups of query tokens sharing that level's KV, so the query rows of
all requests that share a prefix go through one pass over it: the prefix is
read once per step instead of once per request, which is where cascade
decoding gains on plain batch decode. The levels' states are then merged.
The result equals attention over each token's levels concatenated in order;
causal applies to the last level only (FlashInfer's rule: every earlier
level precedes the tokens' own), which is causal attention over the
concatenation.

MultiLevelCascadeAttentionWrapper is FlashInfer's: one
BatchPrefillWithPagedKVCacheWrapper per level over one paged cache, run last
level first, then each earlier level merged in with merge_state_in_place.
BatchDecodeWithSharedPrefixPagedKVCacheWrapper and
BatchPrefillWithSharedPrefixPagedKVCacheWrapper (FlashInfer's older form)
take the shared prefix as contiguous k_shared / v_shared and run it as one
ragged prefill of every query row against it (non-causal), then the unique
part through the decode / paged prefill wrapper, merged. Tessera's plan
objects keep their schedule in the float workspace, so the wrappers give
each inner wrapper its own slice of float_workspace_buffer (FlashInfer's
share one buffer: their schedules live in a separate int workspace).

Position encodings applied in the kernel ("ROPE_LLAMA", "ALIBI") and sliding
windows need a token's position, which the shared levels do not know (a
level's rows belong to many requests): the cascade wrappers raise naming
pos_encoding_mode / window_left (apply RoPE to q and k before the call).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from . import _checks, _lib
from ._lib import TesseraArgumentError
from ._plan_args import host_int32 as _host_int32
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


# ---- cascade attention


def _workspace_slices(float_workspace_buffer, parts: int) -> List[torch.Tensor]:
    """float_workspace_buffer cut into `parts` uint8 slices of equal size,
    each starting on a 256-byte boundary (the plan objects' alignment) when
    the buffer does."""
    _checks.tensor(float_workspace_buffer, "float_workspace_buffer")
    if not float_workspace_buffer.is_contiguous():
        _checks.fail("float_workspace_buffer", "a contiguous tensor",
                     _checks.describe(float_workspace_buffer))
    raw = float_workspace_buffer.reshape(-1).view(torch.uint8)
    share = raw.numel() // parts // 256 * 256
    return [raw[i * share:(i + 1) * share] for i in range(parts)]


def _check_cascade_variant(pos_encoding_mode, window_left) -> None:
    """What the levels cannot serve: a position encoding in the kernel or a
    window (module docstring)."""
    if pos_encoding_mode != "NONE":
        _checks.fail("pos_encoding_mode",
                     "'NONE' (a token's position differs per cascade level: apply RoPE to q "
                     "and k before the call)", repr(pos_encoding_mode))
    if window_left is not None and window_left != -1:
        _checks.fail("window_left",
                     "-1 (a window needs the token's position, which differs per cascade level)",
                     repr(window_left))


def _level_list(values, name: str, num_levels: int) -> list:
    if not isinstance(values, (list, tuple)):
        _checks.fail(name, f"a list of {num_levels} tensors (one per level)",
                     _checks.describe(values))
    if len(values) != num_levels:
        _checks.fail(name, f"{num_levels} entries (num_levels)", f"{len(values)} entries")
    return list(values)


class MultiLevelCascadeAttentionWrapper:
    """FlashInfer 0.2's multi-level cascade attention over one paged KV cache
    (module docstring): level i has its own page table, and its qo_indptr
    groups the query tokens that share level i's KV (level 0 typically one
    shared prefix for the batch: qo_indptr [0, total_tokens]; the last level
    each request's own pages: the batch's qo_indptr).

    float_workspace_buffer is cut into num_levels equal slices, one per
    level's BatchPrefillWithPagedKVCacheWrapper (FlashInfer recommends 128
    MB; each slice must hold that wrapper's schedule, and whatever it holds
    beyond becomes split-KV room). Without CUDA graphs, a last level of one
    query token per request (a decode step) runs on
    BatchDecodeWithPagedKVCacheWrapper in the last slice instead (the
    prefill kernel would pad each request's row to a tile). With
    use_cuda_graph=True the four *_buf_arr lists (num_levels int32 CUDA
    buffers each, as the paged prefill wrapper's *_buf arguments) hold the
    arrays run() reads, so a graph captured around run() replays after later
    plans within them. backend (Tessera's
    extension, keyword): the prefill back end of every level ("auto", "fa2",
    "fa3").
    """

    def __init__(self, num_levels: int, float_workspace_buffer: torch.Tensor,
                 kv_layout: str = "NHD", use_cuda_graph: bool = False,
                 qo_indptr_buf_arr: Optional[Sequence[torch.Tensor]] = None,
                 paged_kv_indptr_buf_arr: Optional[Sequence[torch.Tensor]] = None,
                 paged_kv_indices_buf_arr: Optional[Sequence[torch.Tensor]] = None,
                 paged_kv_last_page_len_buf_arr: Optional[Sequence[torch.Tensor]] = None,
                 *, backend: str = "auto") -> None:
        from .prefill import BatchPrefillWithPagedKVCacheWrapper

        self._num_levels = _checks.integer(num_levels, "num_levels", minimum=1)
        self._kv_layout = kv_layout
        self._use_cuda_graph = bool(use_cuda_graph)
        slices = _workspace_slices(float_workspace_buffer, self._num_levels)
        if self._use_cuda_graph:
            buffers = [_level_list(arr, name, self._num_levels) for name, arr in (
                ("qo_indptr_buf_arr", qo_indptr_buf_arr),
                ("paged_kv_indptr_buf_arr", paged_kv_indptr_buf_arr),
                ("paged_kv_indices_buf_arr", paged_kv_indices_buf_arr),
                ("paged_kv_last_page_len_buf_arr", paged_kv_last_page_len_buf_arr))]
            self._batch_prefill_wrappers = [
                BatchPrefillWithPagedKVCacheWrapper(
                    slices[i], kv_layout, use_cuda_graph=True, qo_indptr_buf=buffers[0][i],
                    paged_kv_indptr_buf=buffers[1][i], paged_kv_indices_buf=buffers[2][i],
                    paged_kv_last_page_len_buf=buffers[3][i], backend=backend)
                for i in range(self._num_levels)]
        else:
            self._batch_prefill_wrappers = [
                BatchPrefillWithPagedKVCacheWrapper(slices[i], kv_layout, backend=backend)
                for i in range(self._num_levels)]
        # The last level's decode path: made at the first decode-step plan.
        self._last_decode = None
        self._last_slice = slices[-1]
        self._decode_tokens = None  # the planned tokens while the decode path is planned
        self._planned = False

    @property
    def is_cuda_graph_enabled(self) -> bool:
        return self._use_cuda_graph

    def reset_workspace_buffer(self, float_workspace_buffer: torch.Tensor,
                               int_workspace_buffers: Optional[Sequence[torch.Tensor]] = None
                               ) -> None:
        """A new float workspace (cut as the constructor's); FlashInfer's int
        workspaces are accepted and unused. The next plan() makes the levels'
        plan objects on it."""
        del int_workspace_buffers
        slices = _workspace_slices(float_workspace_buffer, self._num_levels)
        for wrapper, piece in zip(self._batch_prefill_wrappers, slices):
            wrapper.reset_workspace_buffer(piece)
        self._last_slice = slices[-1]
        if self._last_decode is not None:
            self._last_decode.reset_workspace_buffer(self._last_slice)
        self._decode_tokens = None
        self._planned = False

    def plan(self, qo_indptr_arr: Sequence, paged_kv_indptr_arr: Sequence,
             paged_kv_indices_arr: Sequence, paged_kv_last_page_len: Sequence,
             num_qo_heads: int, num_kv_heads: int, head_dim: int, page_size: int,
             causal: bool = False, pos_encoding_mode: str = "NONE",
             use_fp16_qk_reduction: bool = False, sm_scale: Optional[float] = None,
             window_left: int = -1, logits_soft_cap: Optional[float] = None,
             rope_scale: Optional[float] = None, rope_theta: Optional[float] = None,
             q_data_type="float16", kv_data_type=None, *, non_blocking: bool = True) -> None:
        """Plans every level: qo_indptr_arr, paged_kv_indptr_arr,
        paged_kv_indices_arr, paged_kv_last_page_len are lists with one int32
        array per level (as the paged prefill wrapper's plan() takes them;
        host arrays preferred), every level's qo_indptr ending at the same
        token count. causal applies to the last level only. use_fp16_qk_reduction
        and the dtype arguments are accepted and ignored (float32 accumulation;
        run() checks the tensors); rope_scale / rope_theta have nothing to
        scale (no position encoding in the kernel)."""
        del use_fp16_qk_reduction, q_data_type, kv_data_type
        n = self._num_levels
        qo_arr = _level_list(qo_indptr_arr, "qo_indptr_arr", n)
        kv_arr = _level_list(paged_kv_indptr_arr, "paged_kv_indptr_arr", n)
        indices_arr = _level_list(paged_kv_indices_arr, "paged_kv_indices_arr", n)
        last_arr = _level_list(paged_kv_last_page_len, "paged_kv_last_page_len", n)
        _check_cascade_variant(pos_encoding_mode, window_left)
        qo_host = [_host_int32(qo, f"qo_indptr_arr[{i}]") for i, qo in enumerate(qo_arr)]
        for i, qo in enumerate(qo_host):
            if qo.numel() < 1:
                _checks.fail(f"qo_indptr_arr[{i}]", "batch_size + 1 >= 1 entries",
                             "an empty array")
            if int(qo[-1]) != int(qo_host[0][-1]):
                _checks.fail(f"qo_indptr_arr[{i}]",
                             f"a last value of {int(qo_host[0][-1])} (qo_indptr_arr[0]'s query "
                             "tokens: every level covers every token)", str(int(qo[-1])))
        self._planned = False
        self._decode_tokens = None
        tokens = int(qo_host[0][-1])
        if (not self._use_cuda_graph and tokens > 0
                and torch.equal(qo_host[-1], torch.arange(tokens + 1, dtype=torch.int32))
                and self._plan_last_level_on_decode(
                    kv_arr[-1], indices_arr[-1], last_arr[-1], num_qo_heads, num_kv_heads,
                    head_dim, page_size, sm_scale, logits_soft_cap, non_blocking)):
            self._decode_tokens = tokens
        for i, wrapper in enumerate(self._batch_prefill_wrappers):
            if i == n - 1 and self._decode_tokens is not None:
                break  # the decode wrapper shares this level's slice
            try:
                wrapper.plan(qo_host[i], kv_arr[i], indices_arr[i], last_arr[i], num_qo_heads,
                             num_kv_heads, head_dim, page_size,
                             causal=bool(causal) and i == n - 1, sm_scale=sm_scale,
                             logits_soft_cap=logits_soft_cap, rope_scale=rope_scale,
                             rope_theta=rope_theta, non_blocking=non_blocking)
            except TesseraArgumentError as error:
                raise TesseraArgumentError(f"{error} (cascade level {i})") from None
        self._planned = True

    begin_forward = plan

    def _plan_last_level_on_decode(self, kv_indptr, kv_indices, kv_last_page_len, num_qo_heads,
                                   num_kv_heads, head_dim, page_size, sm_scale, logits_soft_cap,
                                   non_blocking) -> bool:
        """Plans the last level on the decode wrapper; False where it cannot
        serve it (then the level's prefill plan names any bad argument)."""
        from .decode import BatchDecodeWithPagedKVCacheWrapper

        if self._last_decode is None:
            self._last_decode = BatchDecodeWithPagedKVCacheWrapper(self._last_slice,
                                                                   self._kv_layout)
        try:
            self._last_decode.plan(kv_indptr, kv_indices, kv_last_page_len, num_qo_heads,
                                   num_kv_heads, head_dim, page_size, sm_scale=sm_scale,
                                   logits_soft_cap=logits_soft_cap, non_blocking=non_blocking)
        except (TesseraArgumentError, TypeError, ValueError):
            # e.g. a slice too small for decode's schedule: the prefill plan
            # serves the level (and names what it cannot take).
            return False
        return True

    def run(self, q: torch.Tensor, paged_kv_cache, *, k_scale: Optional[float] = None,
            v_scale: Optional[float] = None, out: Optional[torch.Tensor] = None,
            lse: Optional[torch.Tensor] = None, return_lse: bool = False):
        """Cascade attention of q [tokens, num_qo_heads, head_dim] against the
        paged cache holding every level's pages ([pages, 2, page_size,
        num_kv_heads, head_dim] for NHD, or a (k_cache, v_cache) pair).
        Returns out like q (and, with return_lse, lse float32 [tokens,
        num_qo_heads] in base 2; Tessera's extension, as are out=, lse= and
        the fp8 scales). As FlashInfer's, the merges cover every row of q:
        rows past the planned tokens hold unspecified values."""
        if not self._planned:
            raise TesseraArgumentError("tessera: argument 'self': expected plan() before run(), "
                                       "got no plan")
        tokens = self._decode_tokens
        if tokens is not None:
            _checks.tensors(q=q)
            if q.dim() != 3 or q.shape[0] < tokens:
                _checks.fail("q", f"[tokens >= {tokens}, num_qo_heads, head_dim]",
                             _checks.describe(q))
            if out is None:
                out = torch.empty_like(q)
            if lse is None:
                lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
            self._last_decode.run(q[:tokens], paged_kv_cache, k_scale=k_scale, v_scale=v_scale,
                                  out=out[:tokens], lse=lse[:tokens], return_lse=True)
        else:
            out, lse = self._batch_prefill_wrappers[-1].run(
                q, paged_kv_cache, k_scale=k_scale, v_scale=v_scale, out=out, lse=lse,
                return_lse=True)
        for wrapper in self._batch_prefill_wrappers[:-1]:
            level_out, level_lse = wrapper.run(q, paged_kv_cache, k_scale=k_scale,
                                               v_scale=v_scale, return_lse=True)
            merge_state_in_place(out, lse, level_out, level_lse)
        return (out, lse) if return_lse else out

    forward = run

    def end_forward(self) -> None:
        """FlashInfer 0.1's no-op."""


def _shared_len(k_shared, v_shared, kv_layout: str, q) -> int:
    """The shared prefix's tokens of k_shared / v_shared ([len, heads, dim]
    NHD or [heads, len, dim] HND, q's dtype or fp8, like each other)."""
    _checks.tensor(q, "q", ndim=3, dtypes=_checks.HALF)
    _checks.tensor(k_shared, "k_shared", ndim=3, dtypes=_checks.KV)
    _checks.like(v_shared, "v_shared", k_shared, "k_shared")
    _checks.size(k_shared, 2, q.shape[2], "k_shared", "head_dim of q")
    return int(k_shared.shape[1 if kv_layout == "HND" else 0])


class _SharedPrefix:
    """The shared part of the shared-prefix wrappers: every query row
    against k_shared / v_shared as one non-causal ragged prefill request,
    planned when the rows, the prefix length or the options change (the
    first call of a step; later layers reuse the plan)."""

    def __init__(self, workspace: torch.Tensor, kv_layout: str):
        from .prefill import BatchPrefillWithRaggedKVCacheWrapper

        self._wrapper = BatchPrefillWithRaggedKVCacheWrapper(workspace, kv_layout)
        self._kv_layout = kv_layout
        self._key = None

    def reset_workspace_buffer(self, workspace: torch.Tensor) -> None:
        self._wrapper.reset_workspace_buffer(workspace)
        self._key = None

    def run(self, q, k_shared, v_shared, rows: int, num_qo_heads: int, num_kv_heads: int,
            sm_scale, logits_soft_cap):
        shared_len = _shared_len(k_shared, v_shared, self._kv_layout, q)
        key = (rows, shared_len, num_qo_heads, num_kv_heads, q.shape[2], sm_scale,
               logits_soft_cap)
        if key != self._key:
            self._key = None
            self._wrapper.plan(torch.tensor([0, rows], dtype=torch.int32),
                               torch.tensor([0, shared_len], dtype=torch.int32), num_qo_heads,
                               num_kv_heads, q.shape[2], causal=False, sm_scale=sm_scale,
                               logits_soft_cap=logits_soft_cap)
            self._key = key
        return self._wrapper.run(q, k_shared, v_shared, return_lse=True)


class BatchDecodeWithSharedPrefixPagedKVCacheWrapper:
    """FlashInfer 0.2's shared-prefix batch decode: the prefix every request
    shares as contiguous k_shared / v_shared ([shared_len, num_kv_heads,
    head_dim] NHD or [num_kv_heads, shared_len, head_dim] HND), each request's
    own tokens in a paged cache. forward() runs all requests' queries against
    the prefix as one non-causal prefill (read once), the unique pages through
    BatchDecodeWithPagedKVCacheWrapper, and merges the two states. The float
    workspace is cut in two (decode's and the prefix prefill's). FlashInfer
    marks this API for deprecation in favour of
    MultiLevelCascadeAttentionWrapper."""

    def __init__(self, float_workspace_buffer: torch.Tensor, kv_layout: str = "NHD") -> None:
        from .decode import BatchDecodeWithPagedKVCacheWrapper

        decode_slice, shared_slice = _workspace_slices(float_workspace_buffer, 2)
        self._batch_decode_wrapper = BatchDecodeWithPagedKVCacheWrapper(decode_slice, kv_layout)
        self._shared = _SharedPrefix(shared_slice, kv_layout)
        self._kv_layout = kv_layout
        self._planned = None

    def reset_workspace_buffer(self, float_workspace_buffer: torch.Tensor,
                               int_workspace_buffer: Optional[torch.Tensor] = None) -> None:
        """A new float workspace; FlashInfer's int workspace is accepted and unused."""
        del int_workspace_buffer
        decode_slice, shared_slice = _workspace_slices(float_workspace_buffer, 2)
        self._batch_decode_wrapper.reset_workspace_buffer(decode_slice)
        self._shared.reset_workspace_buffer(shared_slice)
        self._planned = None

    def begin_forward(self, unique_kv_indptr, unique_kv_indices, unique_kv_last_page_len,
                      num_qo_heads: int, num_kv_heads: int, head_dim: int, page_size: int,
                      data_type="float16", *, sm_scale: Optional[float] = None,
                      logits_soft_cap: Optional[float] = None) -> None:
        """Plans the unique part: unique_kv_indptr [batch + 1], unique_kv_indices,
        unique_kv_last_page_len [batch] (int32, as the decode wrapper's plan()).
        data_type is accepted and ignored; sm_scale and logits_soft_cap
        (Tessera's extension, keyword) apply to both parts."""
        del data_type
        self._planned = None
        self._batch_decode_wrapper.plan(unique_kv_indptr, unique_kv_indices,
                                        unique_kv_last_page_len, num_qo_heads, num_kv_heads,
                                        head_dim, page_size, sm_scale=sm_scale,
                                        logits_soft_cap=logits_soft_cap)
        self._planned = (int(num_qo_heads), int(num_kv_heads), sm_scale, logits_soft_cap)

    plan = begin_forward

    def forward(self, q: torch.Tensor, k_shared: torch.Tensor, v_shared: torch.Tensor,
                unique_kv_cache, allow_fp16_qk_reduction: bool = False,
                sm_scale: Optional[float] = None, rope_scale: Optional[float] = None,
                rope_theta: Optional[float] = None) -> torch.Tensor:
        """q [batch, num_qo_heads, head_dim]; k_shared, v_shared the prefix
        (class docstring); unique_kv_cache the paged cache of the requests'
        own tokens (one tensor or a (k_cache, v_cache) pair). FlashInfer's
        signature: sm_scale (None: begin_forward()'s, else 1/sqrt(head_dim))
        applies to both parts; allow_fp16_qk_reduction, rope_scale and
        rope_theta are accepted and unused (float32 accumulation; no position
        encoding in the kernel). Returns the attention output like q."""
        del allow_fp16_qk_reduction, rope_scale, rope_theta
        _shared_len(k_shared, v_shared, self._kv_layout, q)
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'self': expected begin_forward() "
                                       "before forward(), got no plan")
        num_qo_heads, num_kv_heads, planned_scale, soft_cap = self._planned
        if sm_scale is None:
            sm_scale = planned_scale
        out, lse = self._shared.run(q, k_shared, v_shared, q.shape[0], num_qo_heads,
                                    num_kv_heads, sm_scale, soft_cap)
        if sm_scale == planned_scale:
            unique_out, unique_lse = self._batch_decode_wrapper.run(q, unique_kv_cache,
                                                                    return_lse=True)
        else:  # FlashInfer's forward-time sm_scale: the decode options follow it
            unique_out, unique_lse = self._batch_decode_wrapper.forward_return_lse(
                q, unique_kv_cache, sm_scale=sm_scale, logits_soft_cap=soft_cap)
            self._planned = (num_qo_heads, num_kv_heads, sm_scale, soft_cap)
        merge_state_in_place(out, lse, unique_out, unique_lse)
        return out

    run = forward

    def end_forward(self) -> None:
        """FlashInfer 0.1's no-op."""


class BatchPrefillWithSharedPrefixPagedKVCacheWrapper:
    """FlashInfer 0.2's shared-prefix batch prefill / append: the prefix every
    request shares as contiguous k_shared / v_shared (as the decode form),
    each request's own tokens in a paged cache. forward() runs every query
    row against the prefix as one non-causal prefill, the unique pages
    through BatchPrefillWithPagedKVCacheWrapper (causal as asked: the prefix
    precedes every query), and merges the two states. The float workspace is
    cut in two. FlashInfer marks this API for deprecation in favour of
    MultiLevelCascadeAttentionWrapper."""

    def __init__(self, float_workspace_buffer: torch.Tensor, kv_layout: str = "NHD") -> None:
        from .prefill import BatchPrefillWithPagedKVCacheWrapper

        prefill_slice, shared_slice = _workspace_slices(float_workspace_buffer, 2)
        self._batch_prefill_wrapper = BatchPrefillWithPagedKVCacheWrapper(prefill_slice,
                                                                          kv_layout)
        self._shared = _SharedPrefix(shared_slice, kv_layout)
        self._kv_layout = kv_layout
        self._planned = None

    def reset_workspace_buffer(self, float_workspace_buffer: torch.Tensor,
                               int_workspace_buffer: Optional[torch.Tensor] = None) -> None:
        """A new float workspace; FlashInfer's int workspace is accepted and unused."""
        del int_workspace_buffer
        prefill_slice, shared_slice = _workspace_slices(float_workspace_buffer, 2)
        self._batch_prefill_wrapper.reset_workspace_buffer(prefill_slice)
        self._shared.reset_workspace_buffer(shared_slice)
        self._planned = None

    def begin_forward(self, qo_indptr, paged_kv_indptr, paged_kv_indices,
                      paged_kv_last_page_len, num_qo_heads: int, num_kv_heads: int,
                      head_dim: int, page_size: int) -> None:
        """Plans the unique part: qo_indptr [batch + 1] token offsets,
        paged_kv_indptr [batch + 1], paged_kv_indices, paged_kv_last_page_len
        [batch] (int32, as the paged prefill wrapper's plan())."""
        self._planned = None
        qo_host = _host_int32(qo_indptr, "qo_indptr")
        self._batch_prefill_wrapper.plan(qo_host, paged_kv_indptr, paged_kv_indices,
                                         paged_kv_last_page_len, num_qo_heads, num_kv_heads,
                                         head_dim, page_size)
        self._planned = (int(qo_host[-1]) if qo_host.numel() else 0, int(num_qo_heads),
                         int(num_kv_heads))

    plan = begin_forward

    def forward(self, q: torch.Tensor, k_shared: torch.Tensor, v_shared: torch.Tensor,
                unique_kv_cache, causal: bool = True, allow_fp16_qk_reduction: bool = False,
                sm_scale: Optional[float] = None, rope_scale: Optional[float] = None,
                rope_theta: Optional[float] = None, *,
                logits_soft_cap: Optional[float] = None) -> torch.Tensor:
        """q [qo_indptr[-1], num_qo_heads, head_dim]; k_shared, v_shared the
        prefix; unique_kv_cache the paged cache of the requests' own tokens.
        causal (FlashInfer's default True) masks within each request's own
        tokens (bottom-right aligned); allow_fp16_qk_reduction, rope_scale and
        rope_theta are accepted and unused (float32 accumulation; no position
        encoding in the kernel); logits_soft_cap is Tessera's extension.
        Returns the output like q."""
        del allow_fp16_qk_reduction
        _shared_len(k_shared, v_shared, self._kv_layout, q)
        if self._planned is None:
            raise TesseraArgumentError("tessera: argument 'self': expected begin_forward() "
                                       "before forward(), got no plan")
        tokens, num_qo_heads, num_kv_heads = self._planned
        out, lse = self._shared.run(q, k_shared, v_shared, tokens, num_qo_heads, num_kv_heads,
                                    sm_scale, logits_soft_cap)
        unique_out, unique_lse = self._batch_prefill_wrapper.forward_return_lse(
            q, unique_kv_cache, causal=bool(causal), sm_scale=sm_scale,
            logits_soft_cap=logits_soft_cap, rope_scale=rope_scale, rope_theta=rope_theta)
        merge_state_in_place(out, lse, unique_out, unique_lse)
        return out

    run = forward

    def end_forward(self) -> None:
        """FlashInfer 0.1's no-op."""
