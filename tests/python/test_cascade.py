"""tessera.cascade's cascade wrappers against plain attention over each
request's concatenated KV (a float32 torch reference, GPU): the multi-level
wrapper with 2 and 3 levels, GQA 32/8 and MHA, head dims 64 / 128, page
sizes 1 and 16, causal on the last level or not, batch 1 and many, shared
prefixes of 0, 1 and thousands of tokens, CUDA-graph replay; the two
shared-prefix wrappers (k_shared / v_shared); plus the argument errors
raised before any CUDA call."""

import math

import pytest
import torch

import tessera
from tessera import TesseraArgumentError
from tessera.cascade import (BatchDecodeWithSharedPrefixPagedKVCacheWrapper,
                             BatchPrefillWithSharedPrefixPagedKVCacheWrapper,
                             MultiLevelCascadeAttentionWrapper)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

WORKSPACE_BYTES = 128 * 1024 * 1024  # FlashInfer's documented default
# One rounding of each level's output to 16 bits, then the merges in q's dtype.
TOLERANCE = {torch.bfloat16: dict(atol=2e-2, rtol=2e-2), torch.float16: dict(atol=5e-3, rtol=5e-3)}
LSE_TOLERANCE = dict(atol=2e-3, rtol=2e-3)
UNUSED_SLOT = 1000.0  # cache slots no level uses: a wrong page read shows


def reference(q, k, v, causal):
    """Plain attention of q [Lq, H, D] over k, v [Lk, Hk, D], query i at KV
    position Lk - Lq + i; out [Lq, H, D] float32, lse [Lq, H] base 2 (a query
    that sees nothing: 0 and -inf)."""
    qo_len, h, d = q.shape
    kv_len, hk, _ = k.shape
    kf = k.float().repeat_interleave(h // hk, dim=1)
    vf = v.float().repeat_interleave(h // hk, dim=1)
    logits = torch.einsum("qhd,khd->hqk", q.float(), kf) * d ** -0.5
    if causal:
        q_pos = torch.arange(qo_len, device=q.device) + (kv_len - qo_len)
        k_pos = torch.arange(kv_len, device=q.device)
        logits = logits.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], -math.inf)
    lse = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).transpose(0, 1)
    out = torch.einsum("hqk,khd->qhd", torch.softmax(logits, dim=-1).nan_to_num(0.0), vf)
    return out, lse


def indptr(lengths):
    return torch.tensor([0] + list(torch.tensor(lengths, dtype=torch.int64).cumsum(0)),
                        dtype=torch.int32)


class Cascade:
    """A batch whose tokens' KV is split in levels over one paged cache.

    qo_lens: query tokens per request; shared: the levels above the last, as
    (group_sizes, kv_lens) (group g: that many consecutive requests sharing
    kv_lens[g] tokens); unique_lens: each request's own tokens (the last
    level). Pages are shuffled over the cache; k / v per request hold the
    concatenation of its levels' tokens in order (for the reference)."""

    def __init__(self, qo_lens, shared, unique_lens, num_qo_heads, num_kv_heads, head_dim,
                 page_size, dtype, kv_layout, generator, spare_pages=2):
        self.qo_lens, self.num_levels = list(qo_lens), len(shared) + 1
        batch, hk, d = len(qo_lens), num_kv_heads, head_dim

        def rand(*shape):
            return torch.randn(shape, dtype=dtype, device="cuda", generator=generator)

        self.q = rand(max(sum(qo_lens), 1), num_qo_heads, head_dim)
        token_indptr = indptr(qo_lens).tolist()
        segments = []  # (level, first request, requests, kv_len)
        for level, (sizes, lens) in enumerate(shared):
            first = 0
            for size, length in zip(sizes, lens):
                segments.append((level, first, size, length))
                first += size
        segments += [(self.num_levels - 1, b, 1, u) for b, u in enumerate(unique_lens)]
        num_pages = spare_pages + sum((s[3] + page_size - 1) // page_size for s in segments)
        self.num_pages = num_pages
        perm = torch.randperm(num_pages, generator=torch.Generator().manual_seed(
            int(torch.randint(0, 1 << 30, (1,), generator=generator, device="cuda"))))
        shape = ((num_pages, 2, page_size, hk, d) if kv_layout == "NHD"
                 else (num_pages, 2, hk, page_size, d))
        self.cache = torch.full(shape, UNUSED_SLOT, dtype=dtype, device="cuda")
        self.levels = [dict(qo=[0], kv=[0], indices=[], last=[]) for _ in range(self.num_levels)]
        self.k = [[] for _ in range(batch)]
        self.v = [[] for _ in range(batch)]
        next_page = 0
        for level, first, size, length in segments:
            table = self.levels[level]
            k, v = rand(length, hk, d), rand(length, hk, d)
            pages = (length + page_size - 1) // page_size
            ids = perm[next_page:next_page + pages].tolist()
            next_page += pages
            for p, page in enumerate(ids):
                rows = slice(p * page_size, min(length, (p + 1) * page_size))
                n = rows.stop - rows.start
                if kv_layout == "NHD":
                    self.cache[page, 0, :n] = k[rows]
                    self.cache[page, 1, :n] = v[rows]
                else:
                    self.cache[page, 0, :, :n] = k[rows].transpose(0, 1)
                    self.cache[page, 1, :, :n] = v[rows].transpose(0, 1)
            table["indices"] += ids
            table["kv"].append(len(table["indices"]))
            table["last"].append(0 if length == 0 else length - (pages - 1) * page_size)
            table["qo"].append(token_indptr[first + size])
            for b in range(first, first + size):
                self.k[b].append(k)
                self.v[b].append(v)
        self.k = [torch.cat(parts) for parts in self.k]
        self.v = [torch.cat(parts) for parts in self.v]

    def arrays(self):
        """plan()'s per-level lists (host int32)."""
        as_tensor = lambda values: torch.tensor(values, dtype=torch.int32)  # noqa: E731
        return tuple([as_tensor(t[key]) for t in self.levels]
                     for key in ("qo", "kv", "indices", "last"))

    def expected(self, causal):
        outs, lses, offset = [], [], 0
        for b, qo_len in enumerate(self.qo_lens):
            out, lse = reference(self.q[offset:offset + qo_len], self.k[b], self.v[b], causal)
            outs.append(out)
            lses.append(lse)
            offset += qo_len
        return torch.cat(outs), torch.cat(lses)


def check(out, lse, expected, dtype):
    ref_out, ref_lse = expected
    tokens = ref_out.shape[0]
    torch.testing.assert_close(out[:tokens].float(), ref_out, **TOLERANCE[dtype])
    if lse is not None:
        torch.testing.assert_close(lse[:tokens], ref_lse, **LSE_TOLERANCE)


def run_multi_level(c, num_qo_heads, num_kv_heads, head_dim, page_size, causal, kv_layout="NHD"):
    wrapper = MultiLevelCascadeAttentionWrapper(
        c.num_levels, torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), kv_layout)
    wrapper.plan(*c.arrays(), num_qo_heads, num_kv_heads, head_dim, page_size, causal=causal)
    return wrapper.run(c.q, c.cache, return_lse=True)


# Batches (qo_lens, shared levels, unique_lens); every qo_len <= its unique
# tokens, so causal on the last level is causal over the concatenation.
BATCHES = {
    "one": ([5], [([1], [300])], [9]),
    "many": ([1, 4, 2, 8, 1, 16, 1], [([7], [1000])], [0, 4, 20, 8, 3, 100, 1]),
}
THREE_LEVELS = {
    "one": ([3], [([1], [64]), ([1], [17])], [3]),
    "many": ([1, 4, 2, 8, 1, 16], [([6], [1200]), ([2, 3, 1], [70, 1, 0])],
             [0, 4, 20, 8, 3, 100]),
}


@gpu
@pytest.mark.parametrize("num_levels", [2, 3])
@pytest.mark.parametrize("batch", ["one", "many"])
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(32, 8), (8, 8)])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("causal", [False, True])
def test_multi_level_matches_concatenated_attention(num_levels, batch, num_qo_heads,
                                                    num_kv_heads, head_dim, page_size, causal):
    g = torch.Generator(device="cuda").manual_seed(1)
    qo_lens, shared, unique = (BATCHES if num_levels == 2 else THREE_LEVELS)[batch]
    c = Cascade(qo_lens, shared, unique, num_qo_heads, num_kv_heads, head_dim, page_size,
                torch.bfloat16, "NHD", g)
    out, lse = run_multi_level(c, num_qo_heads, num_kv_heads, head_dim, page_size, causal)
    check(out, lse, c.expected(causal), torch.bfloat16)


@gpu
@pytest.mark.parametrize("prefix", [0, 1, 4097])
@pytest.mark.parametrize("batch", [1, 32])
def test_multi_level_shared_prefix_lengths(prefix, batch):
    g = torch.Generator(device="cuda").manual_seed(2)
    unique = torch.randint(1, 60, (batch,), generator=torch.Generator().manual_seed(3)).tolist()
    c = Cascade([1] * batch, [([batch], [prefix])], unique, 32, 8, 128, 16, torch.bfloat16,
                "NHD", g)
    out, lse = run_multi_level(c, 32, 8, 128, 16, causal=True)
    check(out, lse, c.expected(True), torch.bfloat16)


@gpu
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_multi_level_fp16_hnd_and_tuple_cache(kv_layout):
    g = torch.Generator(device="cuda").manual_seed(4)
    qo_lens, shared, unique = BATCHES["many"]
    c = Cascade(qo_lens, shared, unique, 32, 8, 128, 16, torch.float16, kv_layout, g)
    wrapper = MultiLevelCascadeAttentionWrapper(
        2, torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), kv_layout)
    wrapper.plan(*c.arrays(), 32, 8, 128, 16, causal=True)
    out = wrapper.run(c.q, (c.cache[:, 0], c.cache[:, 1]))
    check(out, None, c.expected(True), torch.float16)
    # forward is FlashInfer's alias; a plan serves every layer.
    check(wrapper.forward(c.q, c.cache), None, c.expected(True), torch.float16)


@gpu
def test_multi_level_cuda_graph_replays_a_later_plan():
    """Captured once on the first plan's buffers, replayed after a plan with
    another batch and lengths (written into the same buffers)."""
    g = torch.Generator(device="cuda").manual_seed(5)
    max_batch, max_pages, tokens = 16, 512, 16
    bufs = [[torch.zeros(n, dtype=torch.int32, device="cuda") for _ in range(2)]
            for n in (max_batch + 1, max_batch + 1, max_pages, max_batch)]
    wrapper = MultiLevelCascadeAttentionWrapper(
        2, torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), "NHD",
        use_cuda_graph=True, qo_indptr_buf_arr=bufs[0], paged_kv_indptr_buf_arr=bufs[1],
        paged_kv_indices_buf_arr=bufs[2], paged_kv_last_page_len_buf_arr=bufs[3])
    assert wrapper.is_cuda_graph_enabled
    q = torch.zeros(tokens, 32, 128, dtype=torch.bfloat16, device="cuda")
    cache = torch.zeros(max_pages, 2, 16, 8, 128, dtype=torch.bfloat16, device="cuda")
    graph, out = None, None
    for batch, prefix in ((16, 2000), (5, 33)):
        c = Cascade([1] * batch, [([batch], [prefix])], [7 * (b % 5) for b in range(batch)],
                    32, 8, 128, 16, torch.bfloat16, "NHD", g)
        cache[:c.num_pages].copy_(c.cache)
        q.zero_()
        q[:batch].copy_(c.q)
        wrapper.plan(*c.arrays(), 32, 8, 128, 16)
        if graph is None:
            wrapper.run(q, cache)  # warm-up outside the capture
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = wrapper.run(q, cache)
        graph.replay()
        torch.cuda.synchronize()
        check(out[:batch], None, c.expected(False), torch.bfloat16)


@gpu
def test_multi_level_decode_step_runs_its_last_level_on_the_decode_kernel(monkeypatch):
    """One query token per request: the last level goes through the batch
    decode wrapper (same result); a step with a longer request does not."""
    from tessera.decode import BatchDecodeWithPagedKVCacheWrapper

    calls = []
    original = BatchDecodeWithPagedKVCacheWrapper.run

    def counting_run(self, *args, **kwargs):
        calls.append(kwargs.get("return_lse"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BatchDecodeWithPagedKVCacheWrapper, "run", counting_run)
    g = torch.Generator(device="cuda").manual_seed(6)
    wrapper = MultiLevelCascadeAttentionWrapper(
        2, torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), "NHD")
    for qo_lens, expect_decode in (([1] * 9, True), ([1, 2, 1], False), ([1] * 4, True)):
        unique = [3 * b + 2 for b in range(len(qo_lens))]
        c = Cascade(qo_lens, [([len(qo_lens)], [700])], unique, 32, 8, 128, 16, torch.bfloat16,
                    "NHD", g)
        calls.clear()
        wrapper.plan(*c.arrays(), 32, 8, 128, 16, causal=True)
        out, lse = wrapper.run(c.q, c.cache, return_lse=True)
        check(out, lse, c.expected(True), torch.bfloat16)
        assert calls == ([True] if expect_decode else [])


def shared_prefix_inputs(batch_unique, prefix, num_qo_heads, num_kv_heads, head_dim, page_size,
                         kv_layout, qo_lens, g):
    """The same batch as a Cascade (2 levels) and as the shared-prefix
    wrappers take it: k_shared / v_shared contiguous, unique pages."""
    batch = len(batch_unique)
    c = Cascade(qo_lens, [([batch], [prefix])], batch_unique, num_qo_heads, num_kv_heads,
                head_dim, page_size, torch.bfloat16, kv_layout, g)
    k_shared = c.k[0][:prefix]
    v_shared = c.v[0][:prefix]
    if kv_layout == "HND":
        k_shared = k_shared.transpose(0, 1).contiguous()
        v_shared = v_shared.transpose(0, 1).contiguous()
    unique = c.levels[1]
    return c, k_shared, v_shared, (torch.tensor(unique["kv"], dtype=torch.int32),
                                   torch.tensor(unique["indices"], dtype=torch.int32),
                                   torch.tensor(unique["last"], dtype=torch.int32))


@gpu
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(32, 8), (8, 8)])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
@pytest.mark.parametrize("prefix", [1, 3000])
def test_shared_prefix_decode_matches_concatenated_attention(num_qo_heads, num_kv_heads,
                                                             page_size, kv_layout, prefix):
    g = torch.Generator(device="cuda").manual_seed(6)
    unique_lens = [0, 5, 17, 1, 300, 64, 2]
    c, k_shared, v_shared, (kv_indptr, kv_indices, last) = shared_prefix_inputs(
        unique_lens, prefix, num_qo_heads, num_kv_heads, 128, page_size, kv_layout,
        [1] * len(unique_lens), g)
    wrapper = BatchDecodeWithSharedPrefixPagedKVCacheWrapper(
        torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), kv_layout)
    wrapper.begin_forward(kv_indptr, kv_indices, last, num_qo_heads, num_kv_heads, 128,
                          page_size)
    for _ in range(2):  # plan once, run per layer (the prefix plan is made once)
        out = wrapper.forward(c.q, k_shared, v_shared, c.cache)
        check(out, None, c.expected(False), torch.bfloat16)
    # A longer prefix on the next call re-plans the shared part.
    c2, k2, v2, _ = shared_prefix_inputs(unique_lens, prefix + 100, num_qo_heads, num_kv_heads,
                                         128, page_size, kv_layout, [1] * len(unique_lens), g)
    out = wrapper.run(c.q, k2, v2, c.cache)
    mixed = Cascade.__new__(Cascade)
    mixed.q, mixed.qo_lens = c.q, c.qo_lens
    mixed.k = [torch.cat([c2.k[0][:prefix + 100], c.k[b][prefix:]]) for b in range(len(c.k))]
    mixed.v = [torch.cat([c2.v[0][:prefix + 100], c.v[b][prefix:]]) for b in range(len(c.v))]
    check(out, None, mixed.expected(False), torch.bfloat16)


@gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("page_size", [1, 16])
def test_shared_prefix_prefill_matches_concatenated_attention(causal, page_size):
    g = torch.Generator(device="cuda").manual_seed(7)
    qo_lens, unique_lens = [3, 17, 1, 40], [3, 30, 9, 40]
    c, k_shared, v_shared, (kv_indptr, kv_indices, last) = shared_prefix_inputs(
        unique_lens, 2049, 32, 8, 128, page_size, "NHD", qo_lens, g)
    wrapper = BatchPrefillWithSharedPrefixPagedKVCacheWrapper(
        torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), "NHD")
    wrapper.begin_forward(indptr(qo_lens), kv_indptr, kv_indices, last, 32, 8, 128, page_size)
    out = wrapper.forward(c.q, k_shared, v_shared, c.cache, causal=causal)
    check(out, None, c.expected(causal), torch.bfloat16)


# ---- argument errors raised before any CUDA call (CPU workspace)


def cpu_wrapper(num_levels=2, **kwargs):
    return MultiLevelCascadeAttentionWrapper(num_levels, torch.empty(1 << 20, dtype=torch.uint8),
                                             **kwargs)


def two_levels():
    """A decode batch of 3 over a shared prefix of 3 pages (host arrays)."""
    i32 = lambda values: torch.tensor(values, dtype=torch.int32)  # noqa: E731
    return ([i32([0, 3]), i32([0, 1, 2, 3])], [i32([0, 3]), i32([0, 1, 1, 2])],
            [i32([0, 1, 2]), i32([3, 4])], [i32([16]), i32([5, 0, 9])])


def test_num_levels_must_be_a_positive_integer():
    for bad in (0, -1, "2", 1.5):
        with pytest.raises(TesseraArgumentError, match="'num_levels'"):
            cpu_wrapper(bad)


def test_workspace_must_be_a_contiguous_tensor():
    with pytest.raises(TesseraArgumentError, match="'float_workspace_buffer'"):
        MultiLevelCascadeAttentionWrapper(2, None)
    with pytest.raises(TesseraArgumentError, match="'float_workspace_buffer'"):
        MultiLevelCascadeAttentionWrapper(2, torch.empty(64, 64, dtype=torch.uint8)[:, :8])


@pytest.mark.parametrize("index,name", [(0, "qo_indptr_arr"), (1, "paged_kv_indptr_arr"),
                                        (2, "paged_kv_indices_arr"),
                                        (3, "paged_kv_last_page_len")])
def test_plan_needs_one_array_per_level(index, name):
    arrays = list(two_levels())
    arrays[index] = arrays[index][:1]  # one level's array for a 2-level wrapper
    with pytest.raises(TesseraArgumentError, match=f"'{name}'.*2 entries"):
        cpu_wrapper().plan(*arrays, 32, 8, 128, 16)
    arrays[index] = arrays[index][0]  # a bare tensor, not a list
    with pytest.raises(TesseraArgumentError, match=f"'{name}'"):
        cpu_wrapper().plan(*arrays, 32, 8, 128, 16)
    with pytest.raises(TesseraArgumentError, match="'qo_indptr_arr'"):
        cpu_wrapper(3).plan(*two_levels(), 32, 8, 128, 16)


def test_every_level_must_cover_the_same_tokens():
    qo, kv, indices, last = two_levels()
    qo[1] = torch.tensor([0, 1, 2, 4], dtype=torch.int32)
    with pytest.raises(TesseraArgumentError, match=r"'qo_indptr_arr\[1\]'.*last value of 3"):
        cpu_wrapper().plan(qo, kv, indices, last, 32, 8, 128, 16)


def test_level_index_arrays_must_be_one_dimensional():
    qo, kv, indices, last = two_levels()
    qo[0] = qo[0].reshape(1, 2)
    with pytest.raises(TesseraArgumentError, match=r"'qo_indptr_arr\[0\]'.*1-D"):
        cpu_wrapper().plan(qo, kv, indices, last, 32, 8, 128, 16)


def test_position_encodings_and_windows_are_refused():
    with pytest.raises(TesseraArgumentError, match="'pos_encoding_mode'"):
        cpu_wrapper().plan(*two_levels(), 32, 8, 128, 16, pos_encoding_mode="ROPE_LLAMA")
    with pytest.raises(TesseraArgumentError, match="'window_left'"):
        cpu_wrapper().plan(*two_levels(), 32, 8, 128, 16, window_left=128)


def test_level_errors_name_the_argument_and_the_level():
    # Valid arrays reach the level's own plan(), which needs a CUDA workspace.
    with pytest.raises(TesseraArgumentError,
                       match=r"'float_workspace_buffer'.*\(cascade level 0\)"):
        cpu_wrapper().plan(*two_levels(), 32, 8, 128, 16)


def test_cuda_graph_mode_needs_a_buffer_list_per_array():
    with pytest.raises(TesseraArgumentError, match="'qo_indptr_buf_arr'"):
        cpu_wrapper(use_cuda_graph=True)
    buf = torch.zeros(4, dtype=torch.int32)
    with pytest.raises(TesseraArgumentError, match="'paged_kv_indices_buf_arr'.*2 entries"):
        cpu_wrapper(use_cuda_graph=True, qo_indptr_buf_arr=[buf, buf],
                    paged_kv_indptr_buf_arr=[buf, buf], paged_kv_indices_buf_arr=[buf],
                    paged_kv_last_page_len_buf_arr=[buf, buf])


def test_run_before_plan_names_self():
    with pytest.raises(TesseraArgumentError, match="'self'"):
        cpu_wrapper().run(torch.empty(3, 32, 128, dtype=torch.bfloat16),
                          torch.empty(4, 2, 16, 8, 128, dtype=torch.bfloat16))


@pytest.mark.parametrize("cls", [BatchDecodeWithSharedPrefixPagedKVCacheWrapper,
                                 BatchPrefillWithSharedPrefixPagedKVCacheWrapper])
def test_shared_prefix_forward_checks_k_v_shared_then_the_plan(cls):
    wrapper = cls(torch.empty(1 << 20, dtype=torch.uint8))
    q = torch.empty(3, 32, 128, dtype=torch.bfloat16)
    k = torch.empty(100, 8, 128, dtype=torch.bfloat16)
    cache = torch.empty(4, 2, 16, 8, 128, dtype=torch.bfloat16)
    with pytest.raises(TesseraArgumentError, match="'k_shared'.*3 dimensions"):
        wrapper.forward(q, k[0], k, cache)
    with pytest.raises(TesseraArgumentError, match="'v_shared'"):
        wrapper.forward(q, k, k[:50], cache)
    with pytest.raises(TesseraArgumentError, match="'k_shared'.*head_dim"):
        wrapper.forward(q, k[..., :64], k[..., :64], cache)
    with pytest.raises(TesseraArgumentError, match="'self'"):
        wrapper.forward(q, k, k, cache)


def test_wrappers_are_exported_at_the_top_level():
    assert tessera.MultiLevelCascadeAttentionWrapper is MultiLevelCascadeAttentionWrapper
    assert (tessera.BatchDecodeWithSharedPrefixPagedKVCacheWrapper
            is BatchDecodeWithSharedPrefixPagedKVCacheWrapper)
    assert (tessera.BatchPrefillWithSharedPrefixPagedKVCacheWrapper
            is BatchPrefillWithSharedPrefixPagedKVCacheWrapper)


def test_shared_prefix_forward_signatures_are_flashinfers():
    """FlashInfer 0.2: the prefill form's causal defaults to True, and both
    forward()s take allow_fp16_qk_reduction, sm_scale, rope_scale, rope_theta."""
    import inspect

    prefill = inspect.signature(
        tessera.BatchPrefillWithSharedPrefixPagedKVCacheWrapper.forward).parameters
    assert prefill["causal"].default is True
    decode = inspect.signature(
        tessera.BatchDecodeWithSharedPrefixPagedKVCacheWrapper.forward).parameters
    for params in (prefill, decode):
        for name in ("allow_fp16_qk_reduction", "sm_scale", "rope_scale", "rope_theta"):
            assert name in params, name
