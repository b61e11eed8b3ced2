"""The float64 MLA references (mla_reference.py) checked against each other
and against hand-computed cases. CPU only: no GPU, no libtessera (this file
does not import tessera), so CI runs every test here. The GPU tests of the
MLA kernels (issue 22, docs/mla.md) will compare against these references."""

import itertools
import math

import pytest
import torch

from mla_reference import (LN2, absorb_query, decode_qo_indptr, kv_lengths_from_last_page_len,
                           merge_base2, mla_paged_reference, mla_unabsorbed_reference,
                           split_latent_cache, unabsorb_output, visible_keys)

D_CKV, D_KPE, D_NOPE, D_V = 512, 64, 128, 128
# DeepSeek's softmax scale is 1 / sqrt(qk head dim) of the un-absorbed
# model (128 + 64), not of the 576-wide absorbed dot product.
SM_SCALE = 1.0 / math.sqrt(D_NOPE + D_KPE)
# Both forms run in float64; they differ only in the order of the sums
# (about 1e-14 here), so 1e-10 fails on any real disagreement.
EXACT = dict(atol=1e-10, rtol=1e-10)


class Batch:
    """Random requests in a paged latent cache (float64).

    Each request's rows are drawn dense first (dense_ckv / dense_kpe, the
    independent check's input), then scattered over shuffled pages of one
    [pages, page_size, 576] buffer whose unused slots (the last page's tail,
    spare pages) hold NaN, so a reader of the wrong slot gets NaN out."""

    def __init__(self, seed, heads, qo_lens, kv_lens, page_size, spare_pages=3):
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        self.heads, self.page_size = heads, page_size
        self.qo_lens, self.kv_lens = list(qo_lens), list(kv_lens)
        self.qo_indptr = [0] + list(itertools.accumulate(self.qo_lens))
        nnz = self.qo_indptr[-1]
        pages_of = [math.ceil(n / page_size) for n in self.kv_lens]
        self.kv_indptr = [0] + list(itertools.accumulate(pages_of))
        num_pages = self.kv_indptr[-1] + spare_pages
        page_ids = torch.randperm(num_pages, generator=g).tolist()
        self.kv_indices = page_ids[:self.kv_indptr[-1]]
        self.buffer = torch.full((num_pages, page_size, D_CKV + D_KPE), math.nan,
                                 dtype=torch.float64)
        self.dense_ckv, self.dense_kpe = [], []
        for b, n in enumerate(self.kv_lens):
            ckv = torch.randn(n, D_CKV, generator=g, dtype=torch.float64)
            kpe = torch.randn(n, D_KPE, generator=g, dtype=torch.float64)
            self.dense_ckv.append(ckv)
            self.dense_kpe.append(kpe)
            for j in range(n):
                page = self.kv_indices[self.kv_indptr[b] + j // page_size]
                self.buffer[page, j % page_size] = torch.cat([ckv[j], kpe[j]])
        self.ckv_cache, self.kpe_cache = split_latent_cache(self.buffer, D_CKV)
        # Un-absorbed model weights, scaled so the logits are O(1).
        self.w_uk = torch.randn(heads, D_NOPE, D_CKV, generator=g,
                                dtype=torch.float64) / math.sqrt(D_CKV)
        self.w_uv = torch.randn(heads, D_CKV, D_V, generator=g,
                                dtype=torch.float64) / math.sqrt(D_CKV)
        self.q_nope_128 = torch.randn(nnz, heads, D_NOPE, generator=g, dtype=torch.float64)
        self.q_pe = torch.randn(nnz, heads, D_KPE, generator=g, dtype=torch.float64)
        self.q_nope = absorb_query(self.q_nope_128, self.w_uk)

    def paged_args(self):
        return (self.ckv_cache, self.kpe_cache, self.qo_indptr, self.kv_indptr, self.kv_indices,
                self.kv_lens, self.page_size)

    def absorbed(self, causal):
        return mla_paged_reference(self.q_nope, self.q_pe, *self.paged_args(), causal, SM_SCALE)

    def unabsorbed(self, causal):
        return mla_unabsorbed_reference(self.q_nope_128, self.q_pe, self.w_uk, self.w_uv,
                                        *self.paged_args(), causal, SM_SCALE)


def mixed_batch(seed, heads, page_size):
    """A batch with every (qo_len, kv_len) pair of the issue's list once, in
    an order shuffled by page_size: qo_len 1 / 2 / 4 / 7 x kv_len 0 / 1 /
    63 / 64 / 65."""
    pairs = list(itertools.product([1, 2, 4, 7], [0, 1, 63, 64, 65]))
    order = torch.randperm(len(pairs),
                           generator=torch.Generator().manual_seed(page_size)).tolist()
    return Batch(seed=seed, heads=heads, qo_lens=[pairs[i][0] for i in order],
                 kv_lens=[pairs[i][1] for i in order], page_size=page_size)


def empty_rows(batch, causal):
    """bool [nnz]: query tokens that see no key."""
    rows = []
    for qo_len, kv_len in zip(batch.qo_lens, batch.kv_lens):
        rows += visible_keys(qo_len, kv_len, causal).sum(dim=1).eq(0).tolist()
    return torch.tensor(rows, dtype=torch.bool)


# --- absorption ------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 16, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_absorbed_form_equals_unabsorbed_on_a_mixed_batch(page_size, causal):
    batch = mixed_batch(100 + page_size + causal, heads=16, page_size=page_size)
    out_latent, lse_abs = batch.absorbed(causal)
    out_model, lse_model = batch.unabsorbed(causal)
    torch.testing.assert_close(unabsorb_output(out_latent, batch.w_uv), out_model, **EXACT,
                               msg=lambda m: f"seed {batch.seed}: {m}")
    torch.testing.assert_close(lse_abs, lse_model, **EXACT)
    # Not vacuous: the batch has rows with keys (finite lse) and, for the
    # empty requests (and causal qo_len > kv_len), rows without.
    empty = empty_rows(batch, causal)
    assert empty.any() and (~empty).any()
    assert torch.isfinite(lse_abs[~empty]).all()
    assert out_model.abs()[~empty].amax() > 0.01


@pytest.mark.parametrize("qo_len", [1, 2, 4, 7])
@pytest.mark.parametrize("kv_len", [1, 63, 64, 65])
def test_absorbed_form_equals_unabsorbed_per_length(qo_len, kv_len):
    batch = Batch(seed=7 * qo_len + kv_len, heads=16, qo_lens=[qo_len], kv_lens=[kv_len],
                  page_size=16)
    for causal in (False, True):
        out_latent, lse_abs = batch.absorbed(causal)
        out_model, lse_model = batch.unabsorbed(causal)
        torch.testing.assert_close(unabsorb_output(out_latent, batch.w_uv), out_model, **EXACT)
        torch.testing.assert_close(lse_abs, lse_model, **EXACT)


def test_absorbed_form_equals_unabsorbed_at_128_heads():
    batch = Batch(seed=128, heads=128, qo_lens=[1, 2], kv_lens=[65, 64], page_size=64)
    out_latent, lse_abs = batch.absorbed(causal=True)
    out_model, lse_model = batch.unabsorbed(causal=True)
    torch.testing.assert_close(unabsorb_output(out_latent, batch.w_uv), out_model, **EXACT)
    torch.testing.assert_close(lse_abs, lse_model, **EXACT)


def test_absorbed_query_scores_like_the_decompressed_key():
    """q_abs . ckv = q_nope_128 . (W_UK ckv) for every head: the identity
    the absorption rests on, checked on its own."""
    g = torch.Generator().manual_seed(3)
    w_uk = torch.randn(4, D_NOPE, D_CKV, generator=g, dtype=torch.float64)
    q = torch.randn(5, 4, D_NOPE, generator=g, dtype=torch.float64)
    ckv = torch.randn(9, D_CKV, generator=g, dtype=torch.float64)
    absorbed = torch.einsum("nhd,ld->nhl", absorb_query(q, w_uk), ckv)
    decompressed = torch.einsum("nhc,hlc->nhl", q, torch.einsum("hcd,ld->hlc", w_uk, ckv))
    torch.testing.assert_close(absorbed, decompressed, rtol=1e-12, atol=1e-9)


# --- paged against dense ---------------------------------------------------


def dense_rowwise(batch, q_nope, causal, sm_scale):
    """The formula written out row by row on the dense (unpaged) rows: no
    masks, no logsumexp, no shared helpers with mla_reference."""
    out = torch.zeros(batch.qo_indptr[-1], batch.heads, D_CKV, dtype=torch.float64)
    lse = torch.full((batch.qo_indptr[-1], batch.heads), -math.inf, dtype=torch.float64)
    for b, (qo_len, kv_len) in enumerate(zip(batch.qo_lens, batch.kv_lens)):
        for t in range(qo_len):
            seen = min(kv_len, kv_len - qo_len + t + 1) if causal else kv_len
            if seen <= 0:
                continue
            ckv, kpe = batch.dense_ckv[b][:seen], batch.dense_kpe[b][:seen]
            row = batch.qo_indptr[b] + t
            for h in range(batch.heads):
                logits = (ckv @ q_nope[row, h] + kpe @ batch.q_pe[row, h]) * sm_scale
                peak = logits.max()
                e = torch.exp(logits - peak)
                out[row, h] = (e @ ckv) / e.sum()
                lse[row, h] = (peak + torch.log(e.sum())) / LN2
    return out, lse


@pytest.mark.parametrize("page_size", [1, 16, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_paged_reference_matches_dense_rowwise(page_size, causal):
    batch = mixed_batch(200 + page_size + causal, heads=4, page_size=page_size)
    out, lse = batch.absorbed(causal)
    expected_out, expected_lse = dense_rowwise(batch, batch.q_nope, causal, SM_SCALE)
    torch.testing.assert_close(out, expected_out, **EXACT)
    torch.testing.assert_close(lse, expected_lse, **EXACT)
    assert not torch.isnan(out).any(), "read a NaN-poisoned slot"


def test_paged_reference_reads_strided_cache_slices_like_contiguous_copies():
    batch = Batch(seed=11, heads=8, qo_lens=[3, 1], kv_lens=[65, 17], page_size=16)
    assert not batch.ckv_cache.is_contiguous() and batch.ckv_cache.stride(1) == D_CKV + D_KPE
    strided = batch.absorbed(causal=True)
    contiguous = mla_paged_reference(batch.q_nope, batch.q_pe, batch.ckv_cache.contiguous(),
                                     batch.kpe_cache.contiguous(), batch.qo_indptr,
                                     batch.kv_indptr, batch.kv_indices, batch.kv_lens,
                                     batch.page_size, True, SM_SCALE)
    torch.testing.assert_close(strided, contiguous, rtol=0, atol=0)


def test_empty_kv_gives_zero_output_and_minus_infinity_lse():
    batch = Batch(seed=5, heads=16, qo_lens=[1, 2, 1], kv_lens=[0, 0, 5], page_size=16)
    out, lse = batch.absorbed(causal=False)
    assert torch.equal(out[:3], torch.zeros_like(out[:3]))
    assert torch.equal(lse[:3], torch.full_like(lse[:3], -math.inf))
    assert torch.isfinite(lse[3]).all() and out[3].abs().amax() > 0


# --- causal semantics ------------------------------------------------------


def test_causal_visibility_is_bottom_right_aligned():
    # qo_len 3, kv_len 5: token i sees j <= 5 - 3 + i.
    expected = torch.tensor([[1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(visible_keys(3, 5, causal=True), expected)
    # qo_len 4 > kv_len 2: j <= i - 2, so tokens 0 and 1 see nothing.
    expected = torch.tensor([[0, 0], [0, 0], [1, 0], [1, 1]], dtype=torch.bool)
    assert torch.equal(visible_keys(4, 2, causal=True), expected)
    # Decode (qo_len 1) sees everything, causal or not.
    assert visible_keys(1, 7, causal=True).all() and visible_keys(3, 5, causal=False).all()


def test_causal_outputs_average_exactly_the_visible_rows():
    """Zero queries make every logit 0, so each output is the plain mean of
    the latent rows its token sees; ckv row j is the unit vector e_j, so the
    output spells out the visibility. Page size 2: rows span 3 pages, the
    last one half full."""
    heads, page_size = 2, 2
    kv_len, qo_len = 5, 3
    pages = [4, 0, 2]  # out of order on purpose
    ckv_cache = torch.full((5, page_size, D_CKV), math.nan, dtype=torch.float64)
    kpe_cache = torch.full((5, page_size, D_KPE), math.nan, dtype=torch.float64)
    for j in range(kv_len):
        ckv_cache[pages[j // page_size], j % page_size] = torch.nn.functional.one_hot(
            torch.tensor(j), D_CKV).double()
        kpe_cache[pages[j // page_size], j % page_size] = float(j)
    q_nope = torch.zeros(qo_len, heads, D_CKV, dtype=torch.float64)
    q_pe = torch.zeros(qo_len, heads, D_KPE, dtype=torch.float64)
    out, lse = mla_paged_reference(q_nope, q_pe, ckv_cache, kpe_cache, [0, qo_len],
                                   [0, len(pages)], pages, [kv_len], page_size, True, 0.5)
    expected_mean = torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0, 0],
                                  [1 / 4, 1 / 4, 1 / 4, 1 / 4, 0],
                                  [1 / 5, 1 / 5, 1 / 5, 1 / 5, 1 / 5]], dtype=torch.float64)
    for h in range(heads):
        torch.testing.assert_close(out[:, h, :kv_len], expected_mean, rtol=0, atol=1e-15)
        torch.testing.assert_close(lse[:, h], torch.log2(torch.tensor([3.0, 4.0, 5.0],
                                                                      dtype=torch.float64)),
                                   rtol=0, atol=1e-15)
    assert torch.equal(out[..., kv_len:], torch.zeros_like(out[..., kv_len:]))


def test_causal_tokens_before_the_first_key_get_zero_and_minus_infinity():
    batch = Batch(seed=9, heads=4, qo_lens=[4], kv_lens=[2], page_size=1)
    out, lse = batch.absorbed(causal=True)
    assert torch.equal(out[:2], torch.zeros_like(out[:2]))
    assert torch.equal(lse[:2], torch.full_like(lse[:2], -math.inf))
    # Token 2 sees key 0 alone: its output is that row, its lse the one logit.
    ckv0, kpe0 = batch.dense_ckv[0][0], batch.dense_kpe[0][0]
    torch.testing.assert_close(out[2], ckv0.expand(4, D_CKV), rtol=0, atol=1e-12)
    logit = (batch.q_nope[2] @ ckv0 + batch.q_pe[2] @ kpe0) * SM_SCALE
    torch.testing.assert_close(lse[2], logit / LN2, rtol=0, atol=1e-12)


# --- lse base 2 ------------------------------------------------------------


def test_lse_is_log2_of_the_sum_of_exp2_of_the_base2_logits():
    batch = Batch(seed=21, heads=16, qo_lens=[1, 4], kv_lens=[65, 63], page_size=16)
    _, lse = batch.absorbed(causal=True)
    for b, (qo_len, kv_len) in enumerate(zip(batch.qo_lens, batch.kv_lens)):
        for t in range(qo_len):
            row = batch.qo_indptr[b] + t
            seen = kv_len - qo_len + t + 1
            ckv, kpe = batch.dense_ckv[b][:seen], batch.dense_kpe[b][:seen]
            logits = (torch.einsum("hd,ld->hl", batch.q_nope[row], ckv) +
                      torch.einsum("hd,ld->hl", batch.q_pe[row], kpe)) * SM_SCALE
            # The kernels' form: logits * log2(e) exponentiated in base 2.
            base2 = torch.log2(torch.exp2(logits * math.log2(math.e)).sum(dim=1))
            torch.testing.assert_close(lse[row], base2, rtol=1e-12, atol=1e-12)
            # return_lse_base_on_e (vLLM): lse * ln 2 is torch's logsumexp.
            torch.testing.assert_close(lse[row] * LN2, torch.logsumexp(logits, dim=1),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("split_pages", [0, 1, 2, 4])
def test_split_kv_partials_merge_in_base_2_to_the_whole(split_pages):
    """A request cut at a page boundary into two KV chunks, each run as its
    own request and merged with the base-2 rule of merge.cuh, gives the
    unsplit result (non-causal: the chunks' positions do not matter). A
    chunk of 0 pages is an empty state (lse -inf) and drops out."""
    batch = Batch(seed=31, heads=16, qo_lens=[1, 2], kv_lens=[64, 49], page_size=16)
    whole_out, whole_lse = batch.absorbed(causal=False)
    halves = []
    for first in (True, False):
        kv_indptr, kv_indices, kv_lens = [0], [], []
        for b, kv_len in enumerate(batch.kv_lens):
            pages = batch.kv_indices[batch.kv_indptr[b]:batch.kv_indptr[b + 1]]
            cut = min(split_pages, len(pages))
            mine = pages[:cut] if first else pages[cut:]
            head_tokens = min(kv_len, cut * batch.page_size)
            kv_indices += mine
            kv_indptr.append(len(kv_indices))
            kv_lens.append(head_tokens if first else kv_len - head_tokens)
        halves.append(mla_paged_reference(batch.q_nope, batch.q_pe, batch.ckv_cache,
                                          batch.kpe_cache, batch.qo_indptr, kv_indptr,
                                          kv_indices, kv_lens, batch.page_size, False, SM_SCALE))
    out, lse = merge_base2(*halves[0], *halves[1])
    torch.testing.assert_close(out, whole_out, **EXACT)
    torch.testing.assert_close(lse, whole_lse, **EXACT)


def test_merging_two_empty_states_gives_zero_and_minus_infinity():
    out = torch.randn(2, 3, 8, dtype=torch.float64)
    empty = torch.full((2, 3), -math.inf, dtype=torch.float64)
    merged, lse = merge_base2(out, empty, out, empty)
    assert torch.equal(merged, torch.zeros_like(merged))
    assert torch.equal(lse, empty)


# --- arguments ---------------------------------------------------------------


def test_decode_arguments_map_to_token_lengths():
    # Pages per request 2, 0, 3 with page size 16; the empty request's
    # last_page_len is ignored.
    assert kv_lengths_from_last_page_len([0, 2, 2, 5], [3, 7, 16], 16) == [19, 0, 48]
    assert decode_qo_indptr(3) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="kv_last_page_len"):
        kv_lengths_from_last_page_len([0, 1], [0], 16)
    with pytest.raises(ValueError, match="kv_last_page_len"):
        kv_lengths_from_last_page_len([0, 1], [17], 16)


def test_reference_rejects_inconsistent_page_tables():
    batch = Batch(seed=41, heads=2, qo_lens=[1], kv_lens=[20], page_size=16)
    q = (batch.q_nope, batch.q_pe, batch.ckv_cache, batch.kpe_cache, batch.qo_indptr)
    with pytest.raises(ValueError, match="kv_len_arr"):  # 33 tokens on 2 pages of 16
        mla_paged_reference(*q, batch.kv_indptr, batch.kv_indices, [33], 16, False, SM_SCALE)
    with pytest.raises(ValueError, match="kv_indices"):
        mla_paged_reference(*q, batch.kv_indptr, [0, batch.ckv_cache.shape[0]], [20], 16, False,
                            SM_SCALE)
    with pytest.raises(ValueError, match="page_size"):
        mla_paged_reference(*q, batch.kv_indptr, batch.kv_indices, [20], 8, False, SM_SCALE)
