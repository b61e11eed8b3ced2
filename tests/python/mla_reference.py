"""Float64 references for MLA (DeepSeek multi-head latent attention), issue 22.

What the MLA kernels compute (docs/mla.md), per request b with qo_len query
tokens and kv_len cached latent rows, for every query token i and head h:

    s_j  = (q_nope[i, h] . ckv[j] + q_pe[i, h] . kpe[j]) * sm_scale
    out  = sum_j softmax(s)_j * ckv[j]                      ([512])
    lse  = log2(sum_j exp(s_j))                             (base 2)

over the keys j the token sees: all of [0, kv_len), or with causal=True
j <= kv_len - qo_len + i (FlashInfer's bottom-right alignment). A token that
sees no key gets out 0 and lse -inf.

The cache is paged as FlashInfer's BatchMLAPagedAttentionWrapper takes it:
ckv_cache [num_pages, page_size, 512] and kpe_cache [num_pages, page_size,
64] (any strides: serving engines pass slices of one [.., 576] buffer);
request b's token j lives on page kv_indices[kv_indptr[b] + j // page_size]
at slot j % page_size, and kv_len_arr[b] says how many of its pages' slots
hold tokens. Queries are ragged: q_nope [nnz_q, heads, 512], q_pe [nnz_q,
heads, 64], request b's tokens at rows qo_indptr[b] .. qo_indptr[b + 1].

`mla_unabsorbed_reference` computes the same attention the way the model is
written (per-head keys and values decompressed from the latent with W_UK /
W_UV); `absorb_query` and `unabsorb_output` map between the two forms.

Everything runs in float64 on whatever device the inputs are on (CPU or
CUDA), one request at a time: slow and plain, as a reference should be.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

LN2 = math.log(2.0)


def _as_list(values, name: str) -> list[int]:
    if isinstance(values, torch.Tensor):
        if values.dim() != 1:
            raise ValueError(f"{name}: expected a 1-D index array, got shape {tuple(values.shape)}")
        return [int(v) for v in values.tolist()]
    return [int(v) for v in values]


def visible_keys(qo_len: int, kv_len: int, causal: bool, device=None) -> torch.Tensor:
    """bool [qo_len, kv_len]: whether query token i sees key j.

    causal: j <= kv_len - qo_len + i (the query tokens are the request's
    last qo_len positions); with qo_len > kv_len the first qo_len - kv_len
    tokens see nothing."""
    if not causal:
        return torch.ones(qo_len, kv_len, dtype=torch.bool, device=device)
    i = torch.arange(qo_len, device=device).unsqueeze(1)
    j = torch.arange(kv_len, device=device).unsqueeze(0)
    return j <= kv_len - qo_len + i


def kv_lengths_from_last_page_len(kv_indptr, kv_last_page_len, page_size: int) -> list[int]:
    """FlashInfer 0.2.0's decode form (pages per request + tokens on the last
    page) -> tokens per request, as BatchDecodeMlaWithPagedKVCacheWrapper's
    arguments map onto BatchMLAPagedAttentionWrapper's kv_len_arr. A request
    with no pages has length 0 whatever its last_page_len says."""
    indptr = _as_list(kv_indptr, "kv_indptr")
    last = _as_list(kv_last_page_len, "kv_last_page_len")
    if len(last) != len(indptr) - 1:
        raise ValueError(f"kv_last_page_len: expected {len(indptr) - 1} values, got {len(last)}")
    lengths = []
    for b, tail in enumerate(last):
        pages = indptr[b + 1] - indptr[b]
        if pages < 0:
            raise ValueError(f"kv_indptr: expected non-decreasing values, got {indptr}")
        if pages == 0:
            lengths.append(0)
            continue
        if not 1 <= tail <= page_size:
            raise ValueError(f"kv_last_page_len[{b}]: expected 1..{page_size}, got {tail}")
        lengths.append((pages - 1) * page_size + tail)
    return lengths


def decode_qo_indptr(batch_size: int) -> list[int]:
    """The qo_indptr of a decode step: one query token per request."""
    return list(range(batch_size + 1))


def gather_latent(ckv_cache: torch.Tensor, kpe_cache: torch.Tensor, kv_indptr: Sequence[int],
                  kv_indices: Sequence[int], kv_len_arr: Sequence[int], page_size: int,
                  request: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Request `request`'s latent rows in position order: ckv [kv_len, D_ckv],
    kpe [kv_len, D_kpe], float64. Reads only the slots that hold tokens."""
    kv_len = kv_len_arr[request]
    first_page = kv_indptr[request]
    positions = torch.arange(kv_len)
    pages = torch.tensor([kv_indices[first_page + j // page_size] for j in range(kv_len)],
                         dtype=torch.long)
    slots = positions % page_size
    device = ckv_cache.device
    pages, slots = pages.to(device), slots.to(device)
    return ckv_cache[pages, slots].double(), kpe_cache[pages, slots].double()


def _check_paged_args(q_nope, q_pe, ckv_cache, kpe_cache, qo, kv_indptr, kv_indices, kv_len,
                      page_size):
    if q_nope.dim() != 3 or q_pe.dim() != 3 or q_nope.shape[:2] != q_pe.shape[:2]:
        raise ValueError(f"q_nope / q_pe: expected [nnz_q, heads, D] with one nnz_q and heads, "
                         f"got {tuple(q_nope.shape)} and {tuple(q_pe.shape)}")
    if ckv_cache.dim() != 3 or kpe_cache.dim() != 3 or ckv_cache.shape[:2] != kpe_cache.shape[:2]:
        raise ValueError(f"ckv_cache / kpe_cache: expected [pages, page_size, D] of one page "
                         f"count and size, got {tuple(ckv_cache.shape)} and "
                         f"{tuple(kpe_cache.shape)}")
    if ckv_cache.shape[1] != page_size:
        raise ValueError(f"ckv_cache: expected page_size {page_size} slots per page, got "
                         f"{ckv_cache.shape[1]}")
    if q_nope.shape[2] != ckv_cache.shape[2] or q_pe.shape[2] != kpe_cache.shape[2]:
        raise ValueError(f"q_nope / q_pe: head dims {q_nope.shape[2]} / {q_pe.shape[2]} differ "
                         f"from the cache's {ckv_cache.shape[2]} / {kpe_cache.shape[2]}")
    batch = len(qo) - 1
    if len(kv_indptr) != batch + 1 or len(kv_len) != batch:
        raise ValueError(f"kv_indptr / kv_len_arr: expected {batch + 1} / {batch} values, got "
                         f"{len(kv_indptr)} / {len(kv_len)}")
    if qo[0] != 0 or qo[-1] > q_nope.shape[0]:
        raise ValueError(f"qo_indptr: expected to start at 0 and end at <= nnz_q = "
                         f"{q_nope.shape[0]}, got {qo}")
    num_pages = ckv_cache.shape[0]
    for b in range(batch):
        if qo[b + 1] < qo[b] or kv_indptr[b + 1] < kv_indptr[b]:
            raise ValueError(f"qo_indptr / kv_indptr: expected non-decreasing values at {b}")
        pages = kv_indptr[b + 1] - kv_indptr[b]
        if not 0 <= kv_len[b] <= pages * page_size:
            raise ValueError(f"kv_len_arr[{b}]: expected 0..{pages * page_size} (its {pages} "
                             f"pages of {page_size}), got {kv_len[b]}")
        for p in kv_indices[kv_indptr[b]:kv_indptr[b + 1]]:
            if not 0 <= p < num_pages:
                raise ValueError(f"kv_indices: page id {p} of request {b} outside "
                                 f"[0, {num_pages})")


def _softmax_rows(logits: torch.Tensor, visible: torch.Tensor, values: torch.Tensor):
    """logits [rows, L] float64 (already scaled), visible bool [rows, L],
    values [L, D] (or [rows, L, D] per row) -> out [rows, D], lse [rows]
    base 2; rows that see nothing: out 0, lse -inf."""
    masked = logits.masked_fill(~visible, -math.inf)
    lse_e = torch.logsumexp(masked, dim=-1)  # -inf on rows with nothing visible
    weights = torch.exp(masked - lse_e.unsqueeze(-1))
    weights = torch.where(visible, weights, torch.zeros_like(weights))  # also clears NaN rows
    out = (torch.einsum("rl,rld->rd", weights, values) if values.dim() == 3
           else weights @ values)
    return out, lse_e / LN2


def mla_paged_reference(q_nope: torch.Tensor, q_pe: torch.Tensor, ckv_cache: torch.Tensor,
                        kpe_cache: torch.Tensor, qo_indptr, kv_indptr, kv_indices, kv_len_arr,
                        page_size: int, causal: bool, sm_scale: float):
    """Batched paged MLA in float64 (module docstring). Returns out
    [nnz_q, heads, D_ckv] and lse [nnz_q, heads] (base 2), float64, on
    q_nope's device. Rows past qo_indptr[-1] are 0 / -inf."""
    qo = _as_list(qo_indptr, "qo_indptr")
    kv_ptr = _as_list(kv_indptr, "kv_indptr")
    pages = _as_list(kv_indices, "kv_indices")
    kv_len = _as_list(kv_len_arr, "kv_len_arr")
    _check_paged_args(q_nope, q_pe, ckv_cache, kpe_cache, qo, kv_ptr, pages, kv_len, page_size)
    nnz, heads, d_ckv = q_nope.shape
    device = q_nope.device
    out = torch.zeros(nnz, heads, d_ckv, dtype=torch.float64, device=device)
    lse = torch.full((nnz, heads), -math.inf, dtype=torch.float64, device=device)
    for b in range(len(qo) - 1):
        qo_len = qo[b + 1] - qo[b]
        if qo_len == 0:
            continue
        ckv, kpe = gather_latent(ckv_cache, kpe_cache, kv_ptr, pages, kv_len, page_size, b)
        rows = slice(qo[b], qo[b + 1])
        qn = q_nope[rows].double()  # [qo_len, H, D_ckv]
        qp = q_pe[rows].double()
        # [qo_len, H, L]: every head scores the same latent rows.
        logits = (torch.einsum("thd,ld->thl", qn, ckv) +
                  torch.einsum("thd,ld->thl", qp, kpe)) * sm_scale
        visible = visible_keys(qo_len, kv_len[b], causal, device).unsqueeze(1).expand(
            qo_len, heads, kv_len[b])
        o, s = _softmax_rows(logits.reshape(qo_len * heads, -1),
                             visible.reshape(qo_len * heads, -1), ckv)
        out[rows] = o.reshape(qo_len, heads, d_ckv)
        lse[rows] = s.reshape(qo_len, heads)
    return out, lse


def absorb_query(q_nope_128: torch.Tensor, w_uk: torch.Tensor) -> torch.Tensor:
    """q_nope_128 [nnz, H, d_nope] x W_UK [H, d_nope, D_ckv] -> q_nope
    [nnz, H, D_ckv] (float64): q_abs[h] = q_nope_128[h] @ W_UK[h], so that
    q_abs[h] . ckv = q_nope_128[h] . (W_UK[h] @ ckv)."""
    return torch.einsum("nhc,hcd->nhd", q_nope_128.double(), w_uk.double())


def unabsorb_output(o_latent: torch.Tensor, w_uv: torch.Tensor) -> torch.Tensor:
    """o_latent [nnz, H, D_ckv] x W_UV [H, D_ckv, d_v] -> o [nnz, H, d_v]
    (float64): o[h] = o_latent[h] @ W_UV[h]."""
    return torch.einsum("nhd,hdv->nhv", o_latent.double(), w_uv.double())


def mla_unabsorbed_reference(q_nope_128: torch.Tensor, q_pe: torch.Tensor, w_uk: torch.Tensor,
                             w_uv: torch.Tensor, ckv_cache: torch.Tensor, kpe_cache: torch.Tensor,
                             qo_indptr, kv_indptr, kv_indices, kv_len_arr, page_size: int,
                             causal: bool, sm_scale: float):
    """MLA as the model writes it: per head h, keys k_h[j] = [ckv[j] @
    W_UK[h]^T, kpe[j]] ([d_nope + D_kpe]), values v_h[j] = ckv[j] @ W_UV[h]
    ([d_v]), queries [q_nope_128[h], q_pe[h]], standard softmax attention
    with the same sm_scale and mask. q_nope_128 [nnz, H, d_nope], W_UK [H,
    d_nope, D_ckv], W_UV [H, D_ckv, d_v]. Returns out [nnz, H, d_v] and lse
    [nnz, H] (base 2), float64."""
    qo = _as_list(qo_indptr, "qo_indptr")
    kv_ptr = _as_list(kv_indptr, "kv_indptr")
    pages = _as_list(kv_indices, "kv_indices")
    kv_len = _as_list(kv_len_arr, "kv_len_arr")
    nnz, heads, d_nope = q_nope_128.shape
    if w_uk.shape != (heads, d_nope, ckv_cache.shape[2]):
        raise ValueError(f"w_uk: expected {(heads, d_nope, ckv_cache.shape[2])}, got "
                         f"{tuple(w_uk.shape)}")
    if w_uv.dim() != 3 or w_uv.shape[:2] != (heads, ckv_cache.shape[2]):
        raise ValueError(f"w_uv: expected [{heads}, {ckv_cache.shape[2]}, d_v], got "
                         f"{tuple(w_uv.shape)}")
    # The shape checks of the absorbed form, with a stand-in q of its width.
    _check_paged_args(q_nope_128.new_empty(nnz, heads, ckv_cache.shape[2]), q_pe, ckv_cache,
                      kpe_cache, qo, kv_ptr, pages, kv_len, page_size)
    d_v = w_uv.shape[2]
    device = q_nope_128.device
    out = torch.zeros(nnz, heads, d_v, dtype=torch.float64, device=device)
    lse = torch.full((nnz, heads), -math.inf, dtype=torch.float64, device=device)
    w_uk, w_uv = w_uk.double(), w_uv.double()
    for b in range(len(qo) - 1):
        qo_len = qo[b + 1] - qo[b]
        if qo_len == 0:
            continue
        ckv, kpe = gather_latent(ckv_cache, kpe_cache, kv_ptr, pages, kv_len, page_size, b)
        n = kv_len[b]
        k_nope = torch.einsum("ld,hcd->hlc", ckv, w_uk)  # [H, L, d_nope] = ckv @ W_UK[h]^T
        keys = torch.cat([k_nope, kpe.unsqueeze(0).expand(heads, n, kpe.shape[1])], dim=-1)
        values = torch.einsum("ld,hdv->hlv", ckv, w_uv)  # [H, L, d_v]
        rows = slice(qo[b], qo[b + 1])
        queries = torch.cat([q_nope_128[rows].double(), q_pe[rows].double()], dim=-1)
        logits = torch.einsum("thc,hlc->thl", queries, keys) * sm_scale  # [qo_len, H, L]
        visible = visible_keys(qo_len, n, causal, device).unsqueeze(1).expand(qo_len, heads, n)
        per_row_values = values.unsqueeze(0).expand(qo_len, heads, n, d_v).reshape(
            qo_len * heads, n, d_v)
        o, s = _softmax_rows(logits.reshape(qo_len * heads, n),
                             visible.reshape(qo_len * heads, n), per_row_values)
        out[rows] = o.reshape(qo_len, heads, d_v)
        lse[rows] = s.reshape(qo_len, heads)
    return out, lse


def split_latent_cache(kv_buffer: torch.Tensor, head_dim_ckv: int = 512):
    """SGLang's / vLLM's layout: one [pages, page_size, D_ckv + D_kpe]
    buffer; returns the (ckv, kpe) views into it (non-contiguous: row stride
    D_ckv + D_kpe), as those engines pass them to the wrapper."""
    return kv_buffer[..., :head_dim_ckv], kv_buffer[..., head_dim_ckv:]


def merge_base2(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                lse_b: torch.Tensor):
    """Two partial attention states over disjoint key sets -> the state over
    their union, lse in base 2 (what include/tessera/attention/merge.cuh
    computes for split-KV): m = max(s_a, s_b), w = 2^(s - m), out = (w_a o_a
    + w_b o_b) / (w_a + w_b), s = m + log2(w_a + w_b); both -inf: 0, -inf."""
    m = torch.maximum(lse_a, lse_b)
    empty = torch.isinf(m) & (m < 0)
    m_safe = torch.where(empty, torch.zeros_like(m), m)
    w_a = torch.exp2(lse_a - m_safe)
    w_b = torch.exp2(lse_b - m_safe)
    denom = w_a + w_b
    out = (w_a.unsqueeze(-1) * out_a + w_b.unsqueeze(-1) * out_b) / torch.where(
        empty, torch.ones_like(denom), denom).unsqueeze(-1)
    lse = torch.where(empty, m, m_safe + torch.log2(denom))
    return torch.where(empty.unsqueeze(-1), torch.zeros_like(out), out), lse
