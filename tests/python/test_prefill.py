"""tessera.prefill against a torch reference (GPU; float32, float64 for custom
masks), plus the parts that run without one (fake kernels, tracing, argument
errors raised before any CUDA call)."""

import ctypes
import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera  # (loads the package the way users do)
from tessera import TesseraArgumentError, _lib
from tessera.prefill import (BatchPrefillWithPagedKVCacheWrapper,
                             BatchPrefillWithRaggedKVCacheWrapper, single_prefill_with_kv_cache)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

WORKSPACE_BYTES = 128 * 1024 * 1024  # FlashInfer's documented default


def reference_prefill(q, k, v, causal, sm_scale=None):
    """q [Lq, H, D]; k, v [Lk, Hk, D] (NHD). Query i sits at kv position
    Lk - Lq + i (prefill.h). Returns out [Lq, H, D] float32 and lse [Lq, H]
    in base 2; a query that sees no key gets out 0 and lse -inf."""
    qo_len, h, d = q.shape
    kv_len, hk, _ = k.shape
    sm_scale = d ** -0.5 if sm_scale is None else sm_scale
    kf = k.float().repeat_interleave(h // hk, dim=1)  # GQA: each kv head serves h // hk q heads
    vf = v.float().repeat_interleave(h // hk, dim=1)
    logits = torch.einsum("qhd,khd->hqk", q.float(), kf) * sm_scale
    if causal:
        q_pos = torch.arange(qo_len, device=q.device) + (kv_len - qo_len)
        k_pos = torch.arange(kv_len, device=q.device)
        logits = logits.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], -math.inf)
    lse = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).transpose(0, 1)  # [Lq, H]
    weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    out = torch.einsum("hqk,khd->qhd", weights, vf)
    return out, lse


def tolerance(dtype):
    # Inputs are rounded to 16 bits; P is rounded to 16 bits before P @ V.
    return dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=5e-3, rtol=5e-3)


LSE_TOLERANCE = dict(atol=2e-3, rtol=2e-3)  # float32 softmax statistics


def workspace():
    return torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda")


def to_layout(x, kv_layout):
    """[L, Hk, D] as the kernel's input for kv_layout (HND: [Hk, L, D])."""
    return x if kv_layout == "NHD" else x.transpose(0, 1).contiguous()


def random_qkv(qo_len, kv_len, num_qo_heads, num_kv_heads, head_dim, dtype, generator):
    def rand(*shape):
        return torch.randn(shape, dtype=dtype, device="cuda", generator=generator)
    return (rand(qo_len, num_qo_heads, head_dim), rand(kv_len, num_kv_heads, head_dim),
            rand(kv_len, num_kv_heads, head_dim))


def indptr(lengths):
    return torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)


# ------------------------------------------------------------------ single

LENGTHS = [(1, 1), (1, 77), (17, 17), (33, 129), (128, 300), (40, 16)]


@gpu
@pytest.mark.parametrize("qo_len,kv_len", LENGTHS)
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(8, 8), (32, 8)])
@pytest.mark.parametrize("head_dim", [64, 80, 96, 112, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_single_prefill_matches_reference(qo_len, kv_len, num_qo_heads, num_kv_heads, head_dim,
                                          dtype, causal, kv_layout):
    g = torch.Generator(device="cuda").manual_seed(qo_len * 1000 + kv_len)
    q, k, v = random_qkv(qo_len, kv_len, num_qo_heads, num_kv_heads, head_dim, dtype, g)
    out, lse = single_prefill_with_kv_cache(q, to_layout(k, kv_layout), to_layout(v, kv_layout),
                                            causal=causal, kv_layout=kv_layout, return_lse=True)
    ref_out, ref_lse = reference_prefill(q, k, v, causal)
    torch.testing.assert_close(out.float(), ref_out, **tolerance(dtype))
    torch.testing.assert_close(lse, ref_lse, **LSE_TOLERANCE)


@gpu
def test_single_prefill_sm_scale_is_used():
    g = torch.Generator(device="cuda").manual_seed(3)
    q, k, v = random_qkv(20, 50, 8, 8, 128, torch.float16, g)
    out = single_prefill_with_kv_cache(q, k, v, sm_scale=0.3)
    ref_out, _ = reference_prefill(q, k, v, causal=False, sm_scale=0.3)
    torch.testing.assert_close(out.float(), ref_out, **tolerance(torch.float16))


@gpu
@pytest.mark.parametrize("qo_len,kv_len", [(8, 4), (200, 70), (65, 0)])
def test_single_prefill_causal_longer_queries_than_keys(qo_len, kv_len):
    # FlashInfer: query i sees keys j <= kv_len - qo_len + i; the first
    # qo_len - kv_len queries see none and get out 0, lse -inf.
    g = torch.Generator(device="cuda").manual_seed(qo_len + 7 * kv_len)
    q, k, v = random_qkv(qo_len, kv_len, 8, 2, 128, torch.bfloat16, g)
    out, lse = single_prefill_with_kv_cache(q, k, v, causal=True, return_lse=True)
    ref_out, ref_lse = reference_prefill(q, k, v, causal=True)
    blind = qo_len - kv_len
    assert torch.all(out[:blind] == 0) and torch.all(lse[:blind] == -math.inf)
    torch.testing.assert_close(out.float(), ref_out, **tolerance(torch.bfloat16))
    torch.testing.assert_close(lse, ref_lse, **LSE_TOLERANCE)


@gpu
def test_single_prefill_rope_llama_on_the_fly_equals_rope_then_attention():
    # RoPE on the fly (JIT-served): queries at kv_len - qo_len + i, keys at
    # their index, against tessera.apply_rope_pos_ids then plain prefill.
    g = torch.Generator(device="cuda").manual_seed(31)
    qo_len, kv_len = 40, 300
    q, k, v = random_qkv(qo_len, kv_len, 8, 2, 128, torch.bfloat16, g)
    out = single_prefill_with_kv_cache(q, k, v, causal=True, pos_encoding_mode="ROPE_LLAMA",
                                       rope_theta=5e5)
    q_pos = torch.arange(kv_len - qo_len, kv_len, dtype=torch.int32, device="cuda")
    k_pos = torch.arange(kv_len, dtype=torch.int32, device="cuda")
    q_rot, _ = tessera.apply_rope_pos_ids(q, q.clone(), q_pos, rope_theta=5e5)
    _, k_rot = tessera.apply_rope_pos_ids(k, k.clone(), k_pos, rope_theta=5e5)
    ref, _ = reference_prefill(q_rot, k_rot, v, causal=True)
    torch.testing.assert_close(out.float(), ref, **tolerance(torch.bfloat16))


# ------------------------------------------------------------------ ragged

# (qo_len, kv_len); (150, 40): causal queries before the first key (FlashInfer's
# bottom-right alignment) get out 0, lse -inf.
BATCH_LENGTHS = [(1, 1), (17, 100), (64, 64), (3, 250), (100, 131), (150, 40)]


def ragged_batch(lengths, num_qo_heads, num_kv_heads, head_dim, dtype, generator):
    """Per-request (q, k, v) and their concatenations."""
    requests = [random_qkv(qo, kv, num_qo_heads, num_kv_heads, head_dim, dtype, generator)
                for qo, kv in lengths]
    return requests, [torch.cat([r[i] for r in requests]) for i in range(3)]


def check_batch(out, lse, requests, lengths, causal, dtype):
    start = 0
    for (qo_len, _), (q, k, v) in zip(lengths, requests):
        ref_out, ref_lse = reference_prefill(q, k, v, causal)
        torch.testing.assert_close(out[start:start + qo_len].float(), ref_out, **tolerance(dtype))
        torch.testing.assert_close(lse[start:start + qo_len], ref_lse, **LSE_TOLERANCE)
        start += qo_len


@gpu
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(8, 8), (32, 8)])
@pytest.mark.parametrize("head_dim", [64, 80, 96, 112, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_ragged_batch_matches_reference(num_qo_heads, num_kv_heads, head_dim, dtype, causal,
                                        kv_layout):
    g = torch.Generator(device="cuda").manual_seed(11)
    requests, (q, k, v) = ragged_batch(BATCH_LENGTHS, num_qo_heads, num_kv_heads, head_dim,
                                       dtype, g)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(workspace(), kv_layout)
    wrapper.plan(indptr([l[0] for l in BATCH_LENGTHS]), indptr([l[1] for l in BATCH_LENGTHS]),
                 num_qo_heads, num_kv_heads, head_dim, causal=causal, q_data_type=dtype)
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:2], float("nan"), dtype=torch.float32, device="cuda")
    wrapper.run(q, to_layout(k, kv_layout), to_layout(v, kv_layout), out=out, lse=lse)
    check_batch(out, lse, requests, BATCH_LENGTHS, causal, dtype)


# ------------------------------------------------------------------- paged


def paged_cache(requests, page_size, num_pages, kv_layout, generator):
    """A combined cache [pages, 2, ...] of `num_pages` random pages holding each
    request's K/V on shuffled pages, and its CPU page table."""
    _, k0, _ = requests[0]
    _, num_kv_heads, head_dim = k0.shape
    shape = ((num_pages, 2, page_size, num_kv_heads, head_dim) if kv_layout == "NHD"
             else (num_pages, 2, num_kv_heads, page_size, head_dim))
    cache = torch.randn(shape, dtype=k0.dtype, device="cuda", generator=generator)
    order = torch.randperm(num_pages, generator=torch.Generator().manual_seed(num_pages))
    indptr_, indices, last = [0], [], []
    used = 0
    for _, k, v in requests:
        kv_len = k.shape[0]
        pages = max(1, -(-kv_len // page_size))
        for p in range(pages):
            page = int(order[used])
            used += 1
            indices.append(page)
            rows = slice(p * page_size, min((p + 1) * page_size, kv_len))
            n = rows.stop - rows.start
            for which, x in ((0, k), (1, v)):
                if kv_layout == "NHD":
                    cache[page, which, :n] = x[rows]
                else:
                    cache[page, which, :, :n] = x[rows].transpose(0, 1)
        indptr_.append(indptr_[-1] + pages)
        last.append(kv_len - (pages - 1) * page_size)
    assert used <= num_pages
    i32 = dict(dtype=torch.int32)
    return cache, (torch.tensor(indptr_, **i32), torch.tensor(indices, **i32),
                   torch.tensor(last, **i32))


def plan_paged(wrapper, qo_lengths, table, requests, page_size, causal, **kwargs):
    _, k, _ = requests[0]
    num_qo_heads = requests[0][0].shape[1]
    wrapper.plan(indptr(qo_lengths), *table, num_qo_heads, k.shape[1], k.shape[2], page_size,
                 causal=causal, **kwargs)


@gpu
@pytest.mark.parametrize("paged", [False, True])
def test_small_workspace_follows_the_planned_work(paged):
    # FlashInfer's users pass 32 MB: 17 requests of 17 queries (no GQA, 32
    # heads) need far less, and a long-KV request still runs (splitting only
    # as far as the partials fit), equal to the result with 128 MB.
    lengths = [(17, 17 + 40 * i) for i in range(16)] + [(17, 30000)]
    g = torch.Generator(device="cuda").manual_seed(17)
    requests, (q, k, v) = ragged_batch(lengths, 32, 32, 128, torch.bfloat16, g)
    qo = indptr([l[0] for l in lengths])
    if paged:
        cache, table = paged_cache(requests, 16, 2400, "NHD", g)
    outs = []
    for workspace_bytes in (32 << 20, 1 << 20, WORKSPACE_BYTES):
        buffer = torch.empty(workspace_bytes, dtype=torch.uint8, device="cuda")
        if paged:
            wrapper = BatchPrefillWithPagedKVCacheWrapper(buffer)
            plan_paged(wrapper, [l[0] for l in lengths], table, requests, 16, True)
            out, lse = wrapper.run(q, cache, return_lse=True)
        else:
            wrapper = BatchPrefillWithRaggedKVCacheWrapper(buffer)
            wrapper.plan(qo, indptr([l[1] for l in lengths]), 32, 32, 128, causal=True)
            out, lse = wrapper.run(q, k, v, return_lse=True)
        check_batch(out, lse, requests, lengths, True, torch.bfloat16)
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[2], atol=2e-2, rtol=2e-2)


@gpu
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(8, 8), (32, 8)])
@pytest.mark.parametrize("head_dim", [64, 80, 96, 112, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_paged_batch_matches_reference(page_size, num_qo_heads, num_kv_heads, head_dim, dtype,
                                       causal, kv_layout):
    g = torch.Generator(device="cuda").manual_seed(12)
    requests, (q, _, _) = ragged_batch(BATCH_LENGTHS, num_qo_heads, num_kv_heads, head_dim,
                                       dtype, g)
    cache, table = paged_cache(requests, page_size, 700, kv_layout, g)
    wrapper = BatchPrefillWithPagedKVCacheWrapper(workspace(), kv_layout)
    plan_paged(wrapper, [l[0] for l in BATCH_LENGTHS], table, requests, page_size, causal)
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:2], float("nan"), dtype=torch.float32, device="cuda")
    wrapper.run(q, cache, out=out, lse=lse)
    check_batch(out, lse, requests, BATCH_LENGTHS, causal, dtype)


@gpu
@pytest.mark.parametrize("page_size", [1, 16])
def test_paged_batch_over_an_fp8_cache_matches_reference(page_size):
    # Chunked prefill over a float8 e4m3 KV cache (head_dim 128): the kernel
    # widens the tiles to bf16; k_scale / v_scale as FlashInfer's run() takes them.
    g = torch.Generator(device="cuda").manual_seed(21)
    requests, (q, _, _) = ragged_batch(BATCH_LENGTHS, 32, 8, 128, torch.bfloat16, g)
    cache, table = paged_cache(requests, page_size, 700, "NHD", g)
    cache8 = cache.to(torch.float8_e4m3fn)
    k_scale, v_scale = 0.5, 2.0
    exact = cache8.to(torch.bfloat16)  # the values the kernel sees
    wrapper = BatchPrefillWithPagedKVCacheWrapper(workspace(), "NHD")
    plan_paged(wrapper, [l[0] for l in BATCH_LENGTHS], table, requests, page_size, causal=True)
    out = wrapper.run(q, cache8, k_scale=k_scale, v_scale=v_scale)
    # Reference: the same pages in bf16 with the scales folded into K and V.
    scaled = exact.clone()
    scaled[:, 0] *= k_scale
    scaled[:, 1] *= v_scale
    reference = wrapper.run(q, scaled)
    torch.testing.assert_close(out.float(), reference.float(), **tolerance(torch.bfloat16))


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_head_dim_256_single_ragged_and_paged_match_reference(dtype, causal):
    """head_dim 256 (JIT-compiled on first use, 64-row tiles) through each entry point."""
    g = torch.Generator(device="cuda").manual_seed(256)
    q, k, v = random_qkv(100, 131, 8, 2, 256, dtype, g)
    out, lse = single_prefill_with_kv_cache(q, k, v, causal=causal, return_lse=True)
    ref_out, ref_lse = reference_prefill(q, k, v, causal)
    torch.testing.assert_close(out.float(), ref_out, **tolerance(dtype))
    torch.testing.assert_close(lse, ref_lse, **LSE_TOLERANCE)

    requests, (q, k, v) = ragged_batch(BATCH_LENGTHS, 8, 2, 256, dtype, g)
    qo_lengths = [l[0] for l in BATCH_LENGTHS]
    ragged = BatchPrefillWithRaggedKVCacheWrapper(workspace())
    ragged.plan(indptr(qo_lengths), indptr([l[1] for l in BATCH_LENGTHS]), 8, 2, 256,
                causal=causal, q_data_type=dtype)
    out, lse = ragged.run(q, k, v, return_lse=True)
    check_batch(out, lse, requests, BATCH_LENGTHS, causal, dtype)

    cache, table = paged_cache(requests, 16, 100, "NHD", g)
    paged = BatchPrefillWithPagedKVCacheWrapper(workspace())
    plan_paged(paged, qo_lengths, table, requests, 16, causal)
    out, lse = paged.run(q, cache, return_lse=True)
    check_batch(out, lse, requests, BATCH_LENGTHS, causal, dtype)


def split_head_dim_qkv(qo_len, kv_len, num_qo_heads, num_kv_heads, dtype, generator):
    """q, k of head dim 192 and v of 128 (DeepSeek-style prefill), NHD."""
    def rand(*shape):
        return torch.randn(shape, dtype=dtype, device="cuda", generator=generator)
    return (rand(qo_len, num_qo_heads, 192), rand(kv_len, num_kv_heads, 192),
            rand(kv_len, num_kv_heads, 128))


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_single_prefill_head_dim_qk_192_vo_128_matches_reference(dtype, causal, kv_layout):
    """q/k 192 with v/o 128 (JIT-compiled on first use): out has v's head dim."""
    g = torch.Generator(device="cuda").manual_seed(192)
    for qo_len, kv_len in [(100, 131), (40, 16), (1, 77)]:
        q, k, v = split_head_dim_qkv(qo_len, kv_len, 16, 4, dtype, g)
        out, lse = single_prefill_with_kv_cache(q, to_layout(k, kv_layout),
                                                to_layout(v, kv_layout), causal=causal,
                                                kv_layout=kv_layout, return_lse=True)
        assert out.shape == (qo_len, 16, 128)
        ref_out, ref_lse = reference_prefill(q, k, v, causal)
        torch.testing.assert_close(out.float(), ref_out, **tolerance(dtype))
        torch.testing.assert_close(lse, ref_lse, **LSE_TOLERANCE)


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_ragged_batch_head_dim_qk_192_vo_128_matches_reference(dtype, causal, kv_layout):
    g = torch.Generator(device="cuda").manual_seed(193)
    requests = [split_head_dim_qkv(qo, kv, 16, 4, dtype, g) for qo, kv in BATCH_LENGTHS]
    q, k, v = (torch.cat([r[i] for r in requests]) for i in range(3))
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(workspace(), kv_layout)
    wrapper.plan(indptr([l[0] for l in BATCH_LENGTHS]), indptr([l[1] for l in BATCH_LENGTHS]),
                 16, 4, head_dim_qk=192, head_dim_vo=128, causal=causal, q_data_type=dtype)
    out, lse = wrapper.run(q, to_layout(k, kv_layout), to_layout(v, kv_layout), return_lse=True)
    assert out.shape == (q.shape[0], 16, 128)
    check_batch(out, lse, requests, BATCH_LENGTHS, causal, dtype)
    # A caller's out of v's head dim is filled in place.
    given = torch.full_like(out, float("nan"))
    wrapper.run(q, to_layout(k, kv_layout), to_layout(v, kv_layout), out=given)
    torch.testing.assert_close(given, out, atol=0, rtol=0)


@gpu
def test_head_dim_qk_192_vo_128_on_the_fa3_backend_names_backend():
    """The Hopper kernels have no head dim 192: "fa3" raises, "auto" runs FA2."""
    g = torch.Generator(device="cuda").manual_seed(194)
    q, k, v = split_head_dim_qkv(8, 8, 4, 4, torch.bfloat16, g)
    with pytest.raises(tessera.TesseraError, match="backend"):
        single_prefill_with_kv_cache(q, k, v, backend="fa3")
    assert single_prefill_with_kv_cache(q, k, v, backend="auto").shape == (8, 4, 128)


@gpu
def test_paged_batch_takes_a_k_v_tuple():
    g = torch.Generator(device="cuda").manual_seed(13)
    requests, (q, _, _) = ragged_batch(BATCH_LENGTHS, 16, 4, 128, torch.float16, g)
    cache, table = paged_cache(requests, 16, 64, "NHD", g)
    wrapper = BatchPrefillWithPagedKVCacheWrapper(workspace(), "NHD")
    plan_paged(wrapper, [l[0] for l in BATCH_LENGTHS], table, requests, 16, causal=True)
    combined = wrapper.run(q, cache)
    separate = wrapper.run(q, (cache[:, 0], cache[:, 1]))
    torch.testing.assert_close(separate, combined, atol=0, rtol=0)  # same kernel, same inputs


@gpu
def test_paged_plan_once_run_per_layer():
    """FlashInfer's pattern: one plan per batch, run() for each layer's q / cache."""
    lengths = [(5, 40), (32, 32), (1, 90)]
    g = torch.Generator(device="cuda").manual_seed(14)
    wrapper = BatchPrefillWithPagedKVCacheWrapper(workspace(), "NHD")
    layers, tables = [], []
    for _ in range(3):
        requests, (q, _, _) = ragged_batch(lengths, 32, 8, 128, torch.bfloat16, g)
        cache, table = paged_cache(requests, 16, 16, "NHD", g)
        layers.append((requests, q, cache))
        tables.append(table)
    for table in tables[1:]:  # one structure: the layers share the page table
        assert all(torch.equal(a, b) for a, b in zip(table, tables[0]))
    plan_paged(wrapper, [l[0] for l in lengths], tables[0], layers[0][0], 16, causal=True)
    for requests, q, cache in layers:
        out, lse = wrapper.run(q, cache, return_lse=True)
        check_batch(out, lse, requests, lengths, True, torch.bfloat16)


@gpu
def test_paged_cuda_graph_replays_a_later_plan():
    """Capture run() once; re-plan with other lengths within the bounds (at most
    4 requests, at most the first plan's 64 query tokens); replay."""
    max_batch, max_pages, page_size = 4, 64, 16
    i32 = dict(dtype=torch.int32, device="cuda")
    wrapper = BatchPrefillWithPagedKVCacheWrapper(
        workspace(), "NHD", use_cuda_graph=True,
        qo_indptr_buf=torch.zeros(max_batch + 1, **i32),
        paged_kv_indptr_buf=torch.zeros(max_batch + 1, **i32),
        paged_kv_indices_buf=torch.zeros(max_pages, **i32),
        paged_kv_last_page_len_buf=torch.zeros(max_batch, **i32))
    g = torch.Generator(device="cuda").manual_seed(15)

    first = [(16, 16), (16, 100), (16, 40), (16, 17)]
    requests, (q, _, _) = ragged_batch(first, 16, 4, 128, torch.float16, g)
    cache, table = paged_cache(requests, page_size, max_pages, "NHD", g)
    plan_paged(wrapper, [l[0] for l in first], table, requests, page_size, causal=True)
    static_q = q.clone()
    static_out = torch.empty_like(q)
    static_lse = torch.empty(q.shape[:2], dtype=torch.float32, device="cuda")
    wrapper.run(static_q, cache, out=static_out, lse=static_lse)  # warm-up outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(static_q, cache, out=static_out, lse=static_lse)

    later = [(10, 30), (30, 120), (5, 5)]  # 3 requests, 45 query tokens
    requests, (q, _, _) = ragged_batch(later, 16, 4, 128, torch.float16, g)
    new_cache, table = paged_cache(requests, page_size, max_pages, "NHD", g)
    cache.copy_(new_cache)
    plan_paged(wrapper, [l[0] for l in later], table, requests, page_size, causal=True)
    static_q[:q.shape[0]].copy_(q)
    static_out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    check_batch(static_out, static_lse, requests, later, True, torch.float16)


@gpu
def test_paged_cuda_graph_plan_beyond_bounds_raises():
    i32 = dict(dtype=torch.int32, device="cuda")
    wrapper = BatchPrefillWithPagedKVCacheWrapper(
        workspace(), "NHD", use_cuda_graph=True, qo_indptr_buf=torch.zeros(3, **i32),
        paged_kv_indptr_buf=torch.zeros(3, **i32), paged_kv_indices_buf=torch.zeros(8, **i32),
        paged_kv_last_page_len_buf=torch.zeros(2, **i32))
    table = ([0, 1, 2], [0, 1], [4, 4])
    wrapper.plan([0, 4, 8], *table, 8, 8, 64, 16)
    with pytest.raises(TesseraArgumentError, match="qo_indptr"):
        wrapper.plan([0, 4, 9], *table, 8, 8, 64, 16)  # 9 query tokens > the first plan's 8


@gpu
def test_paged_run_under_torch_compile_matches_eager():
    lengths = [(7, 50), (20, 20)]
    g = torch.Generator(device="cuda").manual_seed(16)
    requests, (q, _, _) = ragged_batch(lengths, 8, 2, 64, torch.float16, g)
    cache, table = paged_cache(requests, 16, 8, "NHD", g)
    wrapper = BatchPrefillWithPagedKVCacheWrapper(workspace(), "NHD")
    plan_paged(wrapper, [l[0] for l in lengths], table, requests, 16, causal=True)

    def step(q, cache):
        return wrapper.run(q, cache) * 2.0

    compiled = torch.compile(step, fullgraph=True)
    # Same plan and inputs run the same kernels: results match bit for bit.
    torch.testing.assert_close(compiled(q, cache), step(q, cache), atol=0, rtol=0)


@gpu
def test_ragged_run_under_torch_compile_matches_eager():
    lengths = [(7, 50), (20, 20)]
    g = torch.Generator(device="cuda").manual_seed(17)
    _, (q, k, v) = ragged_batch(lengths, 8, 2, 64, torch.float16, g)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(workspace(), "NHD")
    wrapper.plan(indptr([7, 20]), indptr([50, 20]), 8, 2, 64, causal=True)

    def step(q, k, v):
        out, lse = wrapper.run(q, k, v, return_lse=True)
        return out.float().sum(-1), lse

    compiled = torch.compile(step, fullgraph=True)
    for got, want in zip(compiled(q, k, v), step(q, k, v)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


# ------------------------------------------------------------ custom masks


def reference_masked(q, k, v, mask):
    """float64 reference with a boolean mask [Lq, Lk] (True: attend); GQA by
    repeating kv heads. A query that sees no key: out 0, lse -inf (base 2)."""
    h, d, hk = q.shape[1], q.shape[2], k.shape[1]
    kf = k.double().repeat_interleave(h // hk, dim=1)
    vf = v.double().repeat_interleave(h // hk, dim=1)
    logits = torch.einsum("qhd,khd->hqk", q.double(), kf) * d ** -0.5
    logits = logits.masked_fill(~mask.to(q.device)[None], -math.inf)
    lse = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).transpose(0, 1)
    out = torch.einsum("hqk,khd->qhd", torch.softmax(logits, dim=-1).nan_to_num(0.0), vf)
    return out, lse


def random_mask(qo_len, kv_len, seed):
    """A random [qo_len, kv_len] bool mask (CPU); query 0 sees no key when
    there are several queries (out 0, lse -inf)."""
    mask = torch.rand(qo_len, kv_len, generator=torch.Generator().manual_seed(seed)) < 0.5
    if qo_len > 1:
        mask[0] = False
    return mask


def check_masked(out, lse, requests, masks):
    start = 0
    for (q, k, v), mask in zip(requests, masks):
        ref_out, ref_lse = reference_masked(q, k, v, mask)
        n = q.shape[0]
        torch.testing.assert_close(out[start:start + n].double(), ref_out,
                                   **tolerance(q.dtype))
        torch.testing.assert_close(lse[start:start + n].double(), ref_lse, **LSE_TOLERANCE)
        if n > 1:  # the fully masked query
            assert torch.all(out[start] == 0) and torch.all(lse[start] == -math.inf)
        start += n


MASK_LENGTHS = [(1, 1), (7, 13), (33, 129), (64, 64), (100, 37)]


@gpu
@pytest.mark.parametrize("qo_len,kv_len", MASK_LENGTHS)
@pytest.mark.parametrize("num_qo_heads,num_kv_heads,head_dim", [(8, 8, 128), (32, 8, 64)])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_single_prefill_custom_mask_matches_reference(qo_len, kv_len, num_qo_heads,
                                                      num_kv_heads, head_dim, kv_layout):
    g = torch.Generator(device="cuda").manual_seed(qo_len * 100 + kv_len)
    q, k, v = random_qkv(qo_len, kv_len, num_qo_heads, num_kv_heads, head_dim, torch.float16, g)
    mask = random_mask(qo_len, kv_len, qo_len + kv_len)
    kl, vl = to_layout(k, kv_layout), to_layout(v, kv_layout)
    out, lse = single_prefill_with_kv_cache(q, kl, vl, custom_mask=mask.cuda(),
                                            kv_layout=kv_layout, return_lse=True)
    check_masked(out, lse, [(q, k, v)], [mask])
    # The packed form, a CPU mask, and causal=True (ignored with a mask: FlashInfer)
    # run the same kernel on the same bits.
    packed = tessera.packbits(mask.reshape(-1).cuda(), bitorder="little")
    for kwargs in (dict(packed_custom_mask=packed), dict(custom_mask=mask),
                   dict(custom_mask=mask.cuda(), causal=True)):
        again, _ = single_prefill_with_kv_cache(q, kl, vl, kv_layout=kv_layout, return_lse=True,
                                                **kwargs)
        torch.testing.assert_close(again, out, atol=0, rtol=0)


@gpu
@pytest.mark.parametrize("qo_len,kv_len", [(17, 17), (33, 129)])
def test_single_prefill_causal_as_custom_mask_matches_causal(qo_len, kv_len):
    # Not bitwise: a custom mask may take another kernel path than causal=True.
    g = torch.Generator(device="cuda").manual_seed(21)
    q, k, v = random_qkv(qo_len, kv_len, 8, 8, 128, torch.bfloat16, g)
    q_pos = torch.arange(qo_len)[:, None] + (kv_len - qo_len)
    mask = torch.arange(kv_len)[None, :] <= q_pos
    out, lse = single_prefill_with_kv_cache(q, k, v, custom_mask=mask.cuda(), return_lse=True)
    ref_out, ref_lse = reference_prefill(q, k, v, causal=True)
    torch.testing.assert_close(out.float(), ref_out, **tolerance(torch.bfloat16))
    torch.testing.assert_close(lse, ref_lse, **LSE_TOLERANCE)


@gpu
def test_single_prefill_custom_mask_with_window_is_anded():
    g = torch.Generator(device="cuda").manual_seed(22)
    q, k, v = random_qkv(20, 60, 8, 8, 128, torch.float16, g)
    mask = random_mask(20, 60, 5)
    q_pos = torch.arange(20)[:, None] + 40
    window = torch.arange(60)[None, :] >= q_pos - 10  # window_left=10 (no causal: keys after too)
    out = single_prefill_with_kv_cache(q, k, v, custom_mask=mask.cuda(), window_left=10)
    ref_out, _ = reference_masked(q, k, v, mask & window)
    torch.testing.assert_close(out.double(), ref_out, **tolerance(torch.float16))


BATCH_MASK_LENGTHS = [(1, 1), (7, 13), (33, 129), (0, 5), (64, 64), (20, 3)]


def flat_masks(lengths, seed):
    masks = [random_mask(qo, kv, seed + i) for i, (qo, kv) in enumerate(lengths)]
    return masks, torch.cat([m.reshape(-1) for m in masks])


def mask_segments(lengths):
    return indptr([qo * kv for qo, kv in lengths])


@gpu
@pytest.mark.parametrize("num_qo_heads,num_kv_heads,head_dim", [(8, 8, 128), (32, 8, 64)])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_ragged_custom_mask_matches_reference(num_qo_heads, num_kv_heads, head_dim, kv_layout):
    g = torch.Generator(device="cuda").manual_seed(23)
    requests, (q, k, v) = ragged_batch(BATCH_MASK_LENGTHS, num_qo_heads, num_kv_heads, head_dim,
                                       torch.float16, g)
    masks, flat = flat_masks(BATCH_MASK_LENGTHS, 30)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(workspace(), kv_layout)
    qo_ptr, kv_ptr = (indptr([l[i] for l in BATCH_MASK_LENGTHS]) for i in (0, 1))
    wrapper.plan(qo_ptr, kv_ptr, num_qo_heads, num_kv_heads, head_dim, custom_mask=flat.cuda(),
                 causal=True)  # ignored with a mask (and (20, 3) could not be causal)
    kl, vl = to_layout(k, kv_layout), to_layout(v, kv_layout)
    out, lse = wrapper.run(q, kl, vl, return_lse=True)
    check_masked(out, lse, requests, masks)
    packed, _ = tessera.segment_packbits(flat, mask_segments(BATCH_MASK_LENGTHS),
                                         bitorder="little")
    wrapper.plan(qo_ptr, kv_ptr, num_qo_heads, num_kv_heads, head_dim,
                 packed_custom_mask=packed.cuda())
    torch.testing.assert_close(wrapper.run(q, kl, vl, return_lse=True)[0], out, atol=0, rtol=0)
    wrapper.plan(qo_ptr, kv_ptr, num_qo_heads, num_kv_heads, head_dim)  # no mask again
    check_batch(*wrapper.run(q, kl, vl, return_lse=True), requests, BATCH_MASK_LENGTHS, False,
                torch.float16)


@gpu
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_paged_custom_mask_matches_reference(page_size, kv_layout):
    lengths = [(1, 1), (7, 13), (33, 129), (64, 64), (20, 3)]
    g = torch.Generator(device="cuda").manual_seed(24)
    requests, (q, _, _) = ragged_batch(lengths, 32, 8, 128, torch.bfloat16, g)
    cache, table = paged_cache(requests, page_size, 300, kv_layout, g)
    masks, flat = flat_masks(lengths, 40)
    wrapper = BatchPrefillWithPagedKVCacheWrapper(workspace(), kv_layout)
    plan_paged(wrapper, [l[0] for l in lengths], table, requests, page_size, causal=False,
               custom_mask=flat)  # a CPU mask: packed there, copied to the device
    out, lse = wrapper.run(q, cache, return_lse=True)
    check_masked(out, lse, requests, masks)


@gpu
def test_ragged_cuda_graph_replays_a_later_plans_mask():
    """Capture run() with a mask in custom_mask_buf; re-plan with another mask
    (and lengths within the bounds); replay."""
    i32 = dict(dtype=torch.int32, device="cuda")
    mask_buf = torch.zeros(4096, dtype=torch.uint8, device="cuda")
    mask_indptr_buf = torch.zeros(5, **i32)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(
        workspace(), "NHD", use_cuda_graph=True, qo_indptr_buf=torch.zeros(5, **i32),
        kv_indptr_buf=torch.zeros(5, **i32), custom_mask_buf=mask_buf,
        mask_indptr_buf=mask_indptr_buf)
    g = torch.Generator(device="cuda").manual_seed(25)
    first = [(16, 40), (16, 16), (16, 77), (16, 9)]
    requests, (q, k, v) = ragged_batch(first, 16, 4, 64, torch.float16, g)
    _, flat = flat_masks(first, 50)
    wrapper.plan(indptr([l[0] for l in first]), indptr([l[1] for l in first]), 16, 4, 64,
                 custom_mask=flat)
    static = [torch.zeros(64, 16, 64, dtype=torch.float16, device="cuda"),
              torch.zeros(300, 4, 64, dtype=torch.float16, device="cuda"),
              torch.zeros(300, 4, 64, dtype=torch.float16, device="cuda")]
    for t, x in zip(static, (q, k, v)):
        t[:x.shape[0]].copy_(x)
    static_out = torch.empty_like(static[0])
    static_lse = torch.empty(64, 16, dtype=torch.float32, device="cuda")
    wrapper.run(*static, out=static_out, lse=static_lse)  # warm-up outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(*static, out=static_out, lse=static_lse)

    later = [(30, 100), (5, 5), (10, 31)]
    requests, (q, k, v) = ragged_batch(later, 16, 4, 64, torch.float16, g)
    masks, flat = flat_masks(later, 60)
    wrapper.plan(indptr([l[0] for l in later]), indptr([l[1] for l in later]), 16, 4, 64,
                 custom_mask=flat.cuda())
    assert mask_indptr_buf[:4].tolist() == [0, 375, 379, 418]  # ceil(3000/8), ceil(25/8), ...
    for t, x in zip(static, (q, k, v)):
        t[:x.shape[0]].copy_(x)
    static_out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    check_masked(static_out, static_lse, requests, masks)


@gpu
def test_plan_mask_errors_name_the_argument():
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(workspace())
    with pytest.raises(TesseraArgumentError, match="'custom_mask'.*40 elements"):
        wrapper.plan([0, 4], [0, 10], 8, 8, 64, custom_mask=torch.ones(39, dtype=torch.bool))
    with pytest.raises(TesseraArgumentError, match="'packed_custom_mask'.*at least 5 bytes"):
        wrapper.plan([0, 4], [0, 10], 8, 8, 64,
                     packed_custom_mask=torch.ones(4, dtype=torch.uint8, device="cuda"))
    with pytest.raises(TesseraArgumentError, match="plan"):
        wrapper.run(*random_qkv(4, 10, 8, 8, 64, torch.float16, None))  # the failed plan left none
    i32 = dict(dtype=torch.int32, device="cuda")
    graphed = BatchPrefillWithRaggedKVCacheWrapper(
        workspace(), use_cuda_graph=True, qo_indptr_buf=torch.zeros(2, **i32),
        kv_indptr_buf=torch.zeros(2, **i32),
        custom_mask_buf=torch.zeros(4, dtype=torch.uint8, device="cuda"))
    with pytest.raises(TesseraArgumentError, match="custom_mask_buf"):
        graphed.plan([0, 4], [0, 10], 8, 8, 64, custom_mask=torch.ones(40, dtype=torch.bool))


@gpu
def test_library_rejects_a_cpu_packed_mask_naming_custom_mask():
    q, k, v = random_qkv(4, 10, 8, 8, 64, torch.float16, None)
    with pytest.raises(TesseraArgumentError, match="custom_mask"):
        single_prefill_with_kv_cache(q, k, v, packed_custom_mask=torch.ones(5, dtype=torch.uint8))


# ------------------------------------------------------- CPU: no CUDA call


def test_fake_single_prefill_gives_flashinfer_shapes():
    with FakeTensorMode():
        q = torch.empty(7, 32, 128, dtype=torch.bfloat16, device="cuda")
        k = torch.empty(9, 8, 128, dtype=torch.bfloat16, device="cuda")
        out, lse = single_prefill_with_kv_cache(q, k, k, causal=True, return_lse=True)
        assert out.shape == q.shape and out.dtype == q.dtype
        assert lse.shape == (7, 32) and lse.dtype == torch.float32


def test_fake_batch_run_ops_accept_their_arguments():
    with FakeTensorMode():
        def cuda(*shape, dtype=torch.float16):
            return torch.empty(shape, dtype=dtype, device="cuda")
        q, out, lse = cuda(30, 8, 64), cuda(30, 8, 64), cuda(30, 8, dtype=torch.float32)
        indptr_ = cuda(3, dtype=torch.int32)
        scalars = (0.0, 0.0, -1, 0, 0.0, 0.0, 0.0, 0.0)
        assert torch.ops.tessera.batch_prefill_ragged_run(
            1, q, cuda(50, 2, 64), cuda(50, 2, 64), indptr_, indptr_, out, lse, *scalars) is None
        assert torch.ops.tessera.batch_prefill_paged_run(
            1, q, cuda(4, 2, 16, 2, 64), None, 0, cuda(4, dtype=torch.int32), indptr_, indptr_,
            cuda(2, dtype=torch.int32), out, None, *scalars) is None
        mask = cuda(100, dtype=torch.uint8)
        assert torch.ops.tessera.batch_prefill_ragged_run(
            1, q, cuda(50, 2, 64), cuda(50, 2, 64), indptr_, indptr_, out, lse, *scalars,
            mask) is None
        assert torch.ops.tessera.batch_prefill_paged_run(
            1, q, cuda(4, 2, 16, 2, 64), None, 0, cuda(4, dtype=torch.int32), indptr_, indptr_,
            cuda(2, dtype=torch.int32), out, None, *scalars, custom_mask=mask) is None


def test_unknown_kv_layout_is_rejected():
    with pytest.raises(ValueError, match="kv_layout"):
        BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8), "NDH")
    with pytest.raises(ValueError, match="kv_layout"):
        BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8), "nhd")
    q = torch.empty(4, 8, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="kv_layout"):
        single_prefill_with_kv_cache(q, q, q, kv_layout="HDN")


def test_unknown_pos_encoding_mode_is_rejected():
    q = torch.empty(4, 8, 64, dtype=torch.float16)
    with pytest.raises(ValueError, match="pos_encoding_mode"):
        single_prefill_with_kv_cache(q, q, q, pos_encoding_mode="ROPE")
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="pos_encoding_mode"):
        wrapper.plan([0, 4], [0, 4], 8, 8, 64, pos_encoding_mode="rope_llama")


def test_single_prefill_custom_mask_size_is_checked():
    q, k = torch.empty(4, 8, 64, dtype=torch.float16), torch.empty(6, 8, 64, dtype=torch.float16)
    with pytest.raises(TesseraArgumentError, match="'custom_mask'.*24 elements"):
        single_prefill_with_kv_cache(q, k, k, custom_mask=torch.ones(4, 4, dtype=torch.bool))
    hnd = k.transpose(0, 1)  # HND: kv_len is dim 1
    with pytest.raises(TesseraArgumentError, match="'custom_mask'.*24 elements"):
        single_prefill_with_kv_cache(q, hnd, hnd, kv_layout="HND",
                                     custom_mask=torch.ones(8, 6, dtype=torch.bool))
    with pytest.raises(TesseraArgumentError, match="'packed_custom_mask'.*at least 3 bytes"):
        single_prefill_with_kv_cache(q, k, k, packed_custom_mask=torch.ones(2, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="'packed_custom_mask'.*uint8"):
        single_prefill_with_kv_cache(q, k, k, packed_custom_mask=torch.ones(24, dtype=torch.bool))


def test_plan_mask_packs_each_request_byte_aligned():
    from tessera.prefill import _plan_mask
    from tessera.quantization import packbits
    qo, kv = torch.tensor([3, 0, 5, 2]), torch.tensor([5, 4, 8, 0])
    masks = [torch.rand(int(a), int(b), generator=torch.Generator().manual_seed(i)) < 0.5
             for i, (a, b) in enumerate(zip(qo, kv))]
    packed, byte_indptr = _plan_mask(torch.cat([m.reshape(-1) for m in masks]), None, qo, kv)
    assert byte_indptr.tolist() == [0, 2, 2, 7, 7]  # ceil(15 / 8), 0, ceil(40 / 8), 0
    want = torch.cat([packbits(m.reshape(-1), bitorder="little") for m in masks])
    assert torch.equal(packed, want)
    assert _plan_mask(None, None, qo, kv) == (None, None)
    given = torch.zeros(7, dtype=torch.uint8)
    assert _plan_mask(torch.ones(3, dtype=torch.bool), given, qo, kv)[0] is given  # packed wins
    with pytest.raises(TesseraArgumentError, match="'custom_mask'.*55 elements"):
        _plan_mask(torch.ones(54, dtype=torch.bool), None, qo, kv)
    with pytest.raises(TesseraArgumentError, match="'packed_custom_mask'.*at least 7 bytes"):
        _plan_mask(None, torch.zeros(6, dtype=torch.uint8), qo, kv)


def test_fake_single_prefill_with_custom_mask_gives_flashinfer_shapes():
    with FakeTensorMode():
        q = torch.empty(7, 32, 128, dtype=torch.bfloat16, device="cuda")
        k = torch.empty(9, 8, 128, dtype=torch.bfloat16, device="cuda")
        mask = torch.empty(7, 9, dtype=torch.bool, device="cuda")
        out, lse = single_prefill_with_kv_cache(q, k, k, custom_mask=mask, return_lse=True)
        assert out.shape == q.shape and lse.shape == (7, 32)
        packed = torch.empty(8, dtype=torch.uint8, device="cuda")
        out = single_prefill_with_kv_cache(q, k, k, packed_custom_mask=packed)
        assert out.shape == q.shape


def test_single_prefill_with_custom_mask_traces_into_one_graph():
    captured = []

    def capture(graph_module, example_inputs):
        captured.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "call_function")
        return graph_module.forward

    def attend(q, k, mask):
        return single_prefill_with_kv_cache(q, k, k, custom_mask=mask)

    with FakeTensorMode():
        q = torch.empty(5, 8, 64, dtype=torch.float16, device="cuda")
        k = torch.empty(11, 8, 64, dtype=torch.float16, device="cuda")
        mask = torch.empty(5, 11, dtype=torch.bool, device="cuda")
    torch._dynamo.reset()
    out = torch.compile(attend, fullgraph=True, backend=capture)(q, k, mask)
    assert out.shape == q.shape
    assert torch.ops.tessera.single_prefill in captured  # packbits' ops trace beside it


def test_run_ops_take_an_optional_custom_mask():
    # Single prefill's op also takes the back end (0 auto, 1 fa2, 2 fa3); the
    # batch wrappers fix theirs when the plan object is made.
    tails = {"single_prefill": ", SymInt jit_variant=0, SymInt backend=0) -> ()",
             "batch_prefill_ragged_run": ", SymInt jit_variant=0) -> ()",
             "batch_prefill_paged_run": ", SymInt jit_variant=0) -> ()"}
    for name, tail in tails.items():
        schema = str(getattr(torch.ops.tessera, name).default._schema)
        assert schema.endswith(", Tensor? custom_mask=None, Tensor? alibi_slopes=None" + tail), \
            schema
    schema = str(torch.ops.tessera.block_sparse_run.default._schema)
    assert schema.endswith(", Tensor? custom_mask=None) -> ()"), schema


def stub_library(monkeypatch):
    """Runs the wrappers' Python side on the CPU: libtessera calls are
    recorded (name, arguments), plan objects are address 1."""
    from tessera import _lib
    from tessera.prefill import _PlanHandle
    from tessera import _flat
    calls = []
    monkeypatch.setattr(_lib, "call", lambda name, *arguments: calls.append((name, arguments)))
    # These check the op path's plumbing (what torch.compile records); the
    # eager fast path's C calls bypass _lib.call (test_flat.py checks them).
    monkeypatch.setattr(_flat, "eager", lambda: False)
    monkeypatch.setattr(_PlanHandle, "ensure",
                        lambda self, shape, needed, names, head_dim_vo=None: 1)
    return calls


def the_call(calls, suffix):
    found = [arguments for name, arguments in calls if name.endswith(suffix)]
    assert len(found) == 1, [name for name, _ in calls]
    calls.clear()
    return found[0]


def passed_mask(options):
    """(data pointer, bytes) of the options' custom_mask, or None."""
    if not options.custom_mask:
        return None
    return options.custom_mask.contents.data, options.custom_mask.contents.shape[0]


PLUMBING_LENGTHS = [(3, 5), (0, 4), (5, 8), (2, 0), (2, 1)]


def test_single_prefill_passes_the_packed_mask_and_drops_causal(monkeypatch):
    calls = stub_library(monkeypatch)
    q, k = torch.zeros(3, 8, 64, dtype=torch.float16), torch.zeros(5, 8, 64, dtype=torch.float16)
    mask = random_mask(3, 5, 1)
    single_prefill_with_kv_cache(q, k, k, custom_mask=mask, causal=True)
    arguments = the_call(calls, "single_prefill_with_kv_cache")
    assert arguments[6] == 0  # causal: ignored with a mask, as FlashInfer
    packed = tessera.packbits(mask.reshape(-1), bitorder="little")
    assert passed_mask(arguments[7])[1] == 2
    given = packed.clone()
    single_prefill_with_kv_cache(q, k, k, packed_custom_mask=given, causal=True)
    assert passed_mask(the_call(calls, "single_prefill_with_kv_cache")[7]) == (
        given.data_ptr(), 2)
    single_prefill_with_kv_cache(q, k, k, causal=True)
    arguments = the_call(calls, "single_prefill_with_kv_cache")
    assert arguments[6] == 1 and passed_mask(arguments[7]) is None


def test_ragged_plan_packs_per_request_and_run_passes_it(monkeypatch):
    calls = stub_library(monkeypatch)
    masks, flat = flat_masks(PLUMBING_LENGTHS, 70)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    qo_ptr, kv_ptr = (indptr([l[i] for l in PLUMBING_LENGTHS]) for i in (0, 1))
    wrapper.plan(qo_ptr, kv_ptr, 8, 8, 64, custom_mask=flat, causal=True, non_blocking=False)
    assert the_call(calls, "_plan")[5] == 0  # causal
    want = torch.cat([tessera.packbits(m.reshape(-1), bitorder="little") for m in masks])
    planned = wrapper._planned[3]
    assert torch.equal(planned, want)
    q, k = torch.zeros(12, 8, 64, dtype=torch.float16), torch.zeros(18, 8, 64, dtype=torch.float16)
    wrapper.run(q, k, k)
    assert passed_mask(the_call(calls, "_run")[8]) == (planned.data_ptr(), want.numel())
    wrapper.plan(qo_ptr, kv_ptr, 8, 8, 64, causal=True, non_blocking=False)
    assert the_call(calls, "_plan")[5] == 1
    wrapper.run(q, k, k)
    assert passed_mask(the_call(calls, "_run")[8]) is None


@pytest.mark.parametrize("page_size", [1, 4])
def test_paged_plan_uses_the_tokens_in_the_pages(monkeypatch, page_size):
    calls = stub_library(monkeypatch)
    masks, flat = flat_masks(PLUMBING_LENGTHS, 80)
    kv_lengths = [kv for _, kv in PLUMBING_LENGTHS]
    pages = [-(-kv // page_size) for kv in kv_lengths]  # (2, 0): no pages
    last = [kv - (p - 1) * page_size if p else 0 for kv, p in zip(kv_lengths, pages)]
    wrapper = BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    wrapper.plan(indptr([qo for qo, _ in PLUMBING_LENGTHS]), indptr(pages),
                 torch.arange(sum(pages), dtype=torch.int32), torch.tensor(last, dtype=torch.int32),
                 8, 8, 64, page_size, custom_mask=flat, causal=True, non_blocking=False)
    assert the_call(calls, "_plan")[7] == 0  # causal
    want = torch.cat([tessera.packbits(m.reshape(-1), bitorder="little") for m in masks])
    assert torch.equal(wrapper._planned[3], want)


def test_cuda_graph_plan_copies_the_mask_into_its_buffers(monkeypatch):
    calls = stub_library(monkeypatch)
    i32 = dict(dtype=torch.int32)
    mask_buf, mask_indptr_buf = torch.zeros(64, dtype=torch.uint8), torch.zeros(6, **i32)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(
        torch.empty(8, dtype=torch.uint8), use_cuda_graph=True,
        qo_indptr_buf=torch.zeros(6, **i32), kv_indptr_buf=torch.zeros(6, **i32),
        custom_mask_buf=mask_buf, mask_indptr_buf=mask_indptr_buf)
    masks, flat = flat_masks(PLUMBING_LENGTHS, 90)
    qo_ptr, kv_ptr = (indptr([l[i] for l in PLUMBING_LENGTHS]) for i in (0, 1))
    wrapper.plan(qo_ptr, kv_ptr, 8, 8, 64, custom_mask=flat, non_blocking=False)
    want = torch.cat([tessera.packbits(m.reshape(-1), bitorder="little") for m in masks])
    assert wrapper._planned[3] is mask_buf and torch.equal(mask_buf[:want.numel()], want)
    assert mask_indptr_buf.tolist() == [0, 2, 2, 7, 7, 8]
    with pytest.raises(TesseraArgumentError, match="custom_mask_buf.*at least 65 bytes"):
        wrapper.plan([0, 65], [0, 8], 8, 8, 64, custom_mask=torch.ones(520, dtype=torch.bool),
                     non_blocking=False)


def test_custom_mask_buffers_are_checked_in_cuda_graph_mode():
    i32 = dict(dtype=torch.int32)
    buffers = dict(qo_indptr_buf=torch.zeros(3, **i32), kv_indptr_buf=torch.zeros(3, **i32))
    with pytest.raises(TesseraArgumentError, match="custom_mask_buf.*uint8"):
        BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8), use_cuda_graph=True,
                                             custom_mask_buf=torch.zeros(8, **i32), **buffers)
    with pytest.raises(TesseraArgumentError, match="mask_indptr_buf.*int32"):
        BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8), use_cuda_graph=True,
                                             mask_indptr_buf=torch.zeros(3, dtype=torch.int64),
                                             **buffers)
    # Without use_cuda_graph they are ignored, as in FlashInfer.
    BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8),
                                        custom_mask_buf=torch.empty(4, dtype=torch.uint8),
                                        mask_indptr_buf=torch.empty(4, **i32))


def test_distinct_value_head_dim_is_not_implemented():
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(NotImplementedError, match="head_dim_vo"):
        wrapper.plan([0, 4], [0, 4], 8, 8, 128, head_dim_vo=64)
    with pytest.raises(NotImplementedError, match="head_dim_vo.*got 64"):
        wrapper.plan([0, 4], [0, 4], 8, 8, 192, head_dim_vo=64)


def test_paged_plan_names_head_dim_vo_for_the_192_128_pair():
    wrapper = BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(NotImplementedError,
                       match="argument 'head_dim_vo'.*not yet supported for paged"):
        wrapper.plan([0, 4], [0, 1], [0], [4], 8, 8, head_dim_qk=192, page_size=16,
                     head_dim_vo=128)


def test_ragged_plan_takes_head_dim_qk_192_with_head_dim_vo_128(monkeypatch):
    calls = stub_library(monkeypatch)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    wrapper.plan([0, 4], [0, 6], 8, 2, head_dim_qk=192, head_dim_vo=128, non_blocking=False)
    assert the_call(calls, "_plan")
    assert wrapper._head_dim == 192 and wrapper._head_dim_vo == 128
    # Equal head dims stay on the plain plan object (libraries without the new entry).
    wrapper.plan([0, 4], [0, 6], 8, 2, head_dim_qk=128, head_dim_vo=128, non_blocking=False)
    assert wrapper._head_dim_vo == 128 and wrapper._head_dim == 128


def test_distinct_head_dims_create_through_create_with_head_dims():
    from tessera.prefill import _create_call
    prefix = "tessera_batch_prefill_ragged"
    assert _create_call(prefix, 1, (8, 2, 192), 128) == (
        prefix + "_create_with_head_dims", (8, 2, 192, 128), (1,))
    assert _create_call(prefix, 0, (8, 2, 128), 128) == (
        prefix + "_create_with_backend", (8, 2, 128), (0,))
    assert _create_call(prefix, 2, (8, 2, 128), None) == (
        prefix + "_create_with_backend", (8, 2, 128), (2,))
    assert _create_call(prefix, None, (8, 2, 64), None) == (prefix + "_create", (8, 2, 64), ())


def test_distinct_head_dims_size_the_workspace_with_both():
    """The minimum workspace of a 192 / 128 plan is asked with both head dims
    (with head_dim_qk alone the library sees 192 / 192 and refuses it)."""
    from tessera.prefill import _min_workspace_call
    prefix = "tessera_batch_prefill_ragged"
    assert _min_workspace_call(prefix, (8, 2, 192), 128) == (
        prefix + "_min_workspace_size_with_head_dims", (8, 2, 192, 128))
    assert _min_workspace_call(prefix, (8, 2, 128), 128) == (
        prefix + "_min_workspace_size", (8, 2, 128))
    assert _min_workspace_call(prefix, (8, 2, 64), None) == (prefix + "_min_workspace_size",
                                                             (8, 2, 64))


def test_ragged_run_allocates_out_at_head_dim_vo_and_names_v_and_out(monkeypatch):
    calls = stub_library(monkeypatch)
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    wrapper.plan([0, 4], [0, 6], 8, 2, head_dim_qk=192, head_dim_vo=128, non_blocking=False)
    half = dict(dtype=torch.float16)
    q, k = torch.zeros(4, 8, 192, **half), torch.zeros(6, 2, 192, **half)
    v = torch.zeros(6, 2, 128, **half)
    out, lse = wrapper.run(q, k, v, return_lse=True)
    assert out.shape == (4, 8, 128) and out.dtype == q.dtype and lse.shape == (4, 8)
    assert the_call(calls, "_run")
    with pytest.raises(TesseraArgumentError, match="argument 'v'.*head_dim_vo 128"):
        wrapper.run(q, k, k)
    with pytest.raises(TesseraArgumentError, match="argument 'out'.*head_dim_vo 128"):
        wrapper.run(q, k, v, out=torch.zeros_like(q))


def test_single_prefill_head_dim_qk_192_takes_v_and_out_of_128(monkeypatch):
    calls = stub_library(monkeypatch)
    half = dict(dtype=torch.float16)
    q, k = torch.zeros(3, 8, 192, **half), torch.zeros(5, 8, 192, **half)
    v = torch.zeros(5, 8, 128, **half)
    out = single_prefill_with_kv_cache(q, k, v, causal=True)
    assert out.shape == (3, 8, 128)
    assert the_call(calls, "single_prefill_with_kv_cache")
    with pytest.raises(TesseraArgumentError, match="argument 'v'.*\\(5, 8, 128\\)"):
        single_prefill_with_kv_cache(q, k, k)
    with pytest.raises(TesseraArgumentError, match="argument 'v'"):
        single_prefill_with_kv_cache(q, k, torch.zeros(4, 8, 128, **half))


def test_fake_single_prefill_head_dim_qk_192_returns_v_head_dim():
    with FakeTensorMode():
        q = torch.empty(7, 4, 192, dtype=torch.bfloat16, device="cuda")
        k = torch.empty(9, 2, 192, dtype=torch.bfloat16, device="cuda")
        v = torch.empty(9, 2, 128, dtype=torch.bfloat16, device="cuda")
        out, lse = single_prefill_with_kv_cache(q, k, v, return_lse=True)
        assert out.shape == (7, 4, 128) and lse.shape == (7, 4)


def test_c_abi_create_with_head_dims_rejects_an_unknown_backend_int():
    # No GPU needed; a library built before the entry point lacks it (skip).
    if getattr(_lib.library(), "tessera_batch_prefill_ragged_create_with_head_dims",
               None) is None:
        pytest.skip("this libtessera has no tessera_batch_prefill_ragged_create_with_head_dims")
    handle = ctypes.c_void_p()
    with pytest.raises(TesseraArgumentError, match="argument 'backend'"):
        _lib.call("tessera_batch_prefill_ragged_create_with_head_dims", 8, 2, 192, 128, 4, 256,
                  ctypes.c_void_p(1 << 20), 1 << 20, 0, 3, ctypes.byref(handle))
    assert handle.value is None


def test_c_abi_min_workspace_with_head_dims_names_a_bad_pair():
    # Shape checks come before any CUDA call (no GPU needed).
    needed = ctypes.c_size_t()
    with pytest.raises(TesseraArgumentError, match="argument 'shape'.*head_dim_vo 64"):
        _lib.call("tessera_batch_prefill_ragged_min_workspace_size_with_head_dims", 8, 2, 192,
                  64, 4, 256, 0, ctypes.byref(needed))


def test_unknown_backend_and_jit_args_are_rejected():
    with pytest.raises(ValueError, match="backend"):
        BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8), backend="cudnn")
    with pytest.raises(NotImplementedError, match="jit_args"):
        BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8), jit_args=[1])


@pytest.mark.parametrize("backend", ["cudnn", "FA3", "", None, 2])
def test_every_prefill_entry_point_names_a_bad_backend(backend):
    # Checked first, before the tensors (CPU ones here) or the workspace.
    workspace = torch.empty(8, dtype=torch.uint8)
    for make in (BatchPrefillWithRaggedKVCacheWrapper, BatchPrefillWithPagedKVCacheWrapper,
                 tessera.BlockSparseAttentionWrapper):
        with pytest.raises(TesseraArgumentError, match="argument 'backend'"):
            make(workspace, backend=backend)
    q = torch.empty(4, 2, 64, dtype=torch.float16)
    with pytest.raises(TesseraArgumentError, match="argument 'backend'"):
        single_prefill_with_kv_cache(q, q, q, backend=backend)


def test_backend_names_become_the_c_abi_ints():
    workspace = torch.empty(8, dtype=torch.uint8)
    for code, name in enumerate(("auto", "fa2", "fa3")):
        assert BatchPrefillWithRaggedKVCacheWrapper(workspace, backend=name)._handle._backend \
            == code
        assert BatchPrefillWithPagedKVCacheWrapper(workspace, backend=name)._handle._backend \
            == code
        assert tessera.BlockSparseAttentionWrapper(workspace, backend=name)._handle._backend \
            == code


@pytest.mark.parametrize("prefix, shape", [("tessera_batch_prefill_ragged", (8, 2, 128, 4, 256)),
                                           ("tessera_batch_prefill_paged", (8, 2, 128, 16, 4, 256)),
                                           ("tessera_block_sparse", (8, 2, 128, 16, 16, 4))])
def test_c_abi_create_rejects_an_unknown_backend_int(prefix, shape):
    # No GPU needed: the int is converted before the wrapper is made.
    handle = ctypes.c_void_p()
    with pytest.raises(TesseraArgumentError, match="argument 'backend'"):
        _lib.call(prefix + "_create_with_backend", *shape, ctypes.c_void_p(1 << 20),
                  1 << 20, 0, 3, ctypes.byref(handle))
    assert handle.value is None


def test_fake_single_prefill_takes_every_backend():
    with FakeTensorMode():
        q = torch.empty(7, 4, 128, dtype=torch.bfloat16, device="cuda")
        k = torch.empty(9, 2, 128, dtype=torch.bfloat16, device="cuda")
        for backend in ("auto", "fa2", "fa3"):
            assert single_prefill_with_kv_cache(q, k, k, backend=backend).shape == q.shape


def test_ragged_plan_indptr_lengths_must_agree():
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="kv_indptr"):
        wrapper.plan([0, 4, 8], [0, 4], 8, 8, 64)
    with pytest.raises(TesseraArgumentError, match="qo_indptr"):
        wrapper.plan([], [], 8, 8, 64)


def test_paged_plan_table_lengths_must_agree():
    wrapper = BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="paged_kv_indptr"):
        wrapper.plan([0, 4, 8], [0, 1], [0], [4], 8, 8, 64, 16)
    with pytest.raises(TesseraArgumentError, match="paged_kv_last_page_len"):
        wrapper.plan([0, 4], [0, 1], [0], [4, 4], 8, 8, 64, 16)


def test_workspace_must_be_a_cuda_tensor():
    wrapper = BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="float_workspace_buffer"):
        wrapper.plan([0, 4], [0, 1], [0], [4], 8, 8, 64, 16)


def test_cuda_graph_mode_needs_its_buffers():
    with pytest.raises(TesseraArgumentError, match="paged_kv_indices_buf"):
        BatchPrefillWithPagedKVCacheWrapper(
            torch.empty(8, dtype=torch.uint8), use_cuda_graph=True,
            qo_indptr_buf=torch.zeros(3, dtype=torch.int32),
            paged_kv_indptr_buf=torch.zeros(3, dtype=torch.int32),
            paged_kv_last_page_len_buf=torch.zeros(2, dtype=torch.int32))


def test_cuda_graph_mode_batch_is_bounded_by_qo_indptr_buf():
    wrapper = BatchPrefillWithRaggedKVCacheWrapper(
        torch.empty(8, dtype=torch.uint8), use_cuda_graph=True,
        qo_indptr_buf=torch.zeros(3, dtype=torch.int32),
        kv_indptr_buf=torch.zeros(3, dtype=torch.int32))
    with pytest.raises(TesseraArgumentError, match="qo_indptr"):
        wrapper.plan([0, 1, 2, 3], [0, 1, 2, 3], 8, 8, 64)


def test_run_before_plan_is_rejected():
    wrapper = BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    q = torch.empty(4, 8, 64, dtype=torch.float16)
    with pytest.raises(TesseraArgumentError, match="plan"):
        wrapper.run(q, q)
