"""tessera.decode and tessera.cascade against float32 torch references (GPU),
plus the parts that run without one (fake kernels, argument errors)."""

import math

import pytest
import torch

import tessera
from tessera import TesseraArgumentError

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def reference_decode(q, k, v, sm_scale, soft_cap=None, window_left=-1):
    """q [H, D]; k, v [L, Hk, D] (NHD). Returns out [H, D] float32, lse [H] base 2."""
    h, d = q.shape
    kv_len, hk, _ = k.shape
    group = h // hk
    kf = k.float().repeat_interleave(group, dim=1)  # [L, H, D]
    vf = v.float().repeat_interleave(group, dim=1)
    logits = torch.einsum("hd,lhd->hl", q.float(), kf) * sm_scale
    if soft_cap:
        logits = soft_cap * torch.tanh(logits / soft_cap)
    if window_left >= 0:
        positions = torch.arange(kv_len, device=q.device)
        logits = logits.masked_fill(positions[None, :] < kv_len - 1 - window_left, -math.inf)
    lse = torch.logsumexp(logits, dim=-1) / math.log(2.0)
    out = torch.einsum("hl,lhd->hd", torch.softmax(logits, dim=-1), vf)
    return out, lse


def tolerance(dtype):
    return dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=5e-3, rtol=5e-3)


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(8, 8), (32, 8), (16, 1)])
@pytest.mark.parametrize("head_dim", [64, 80, 96, 112, 128])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
def test_single_decode_matches_reference(dtype, num_qo_heads, num_kv_heads, head_dim, kv_layout):
    torch.manual_seed(0)
    kv_len = 1037
    q = torch.randn(num_qo_heads, head_dim, dtype=dtype, device="cuda")
    k = torch.randn(kv_len, num_kv_heads, head_dim, dtype=dtype, device="cuda")
    v = torch.randn(kv_len, num_kv_heads, head_dim, dtype=dtype, device="cuda")
    kk, vv = (k, v) if kv_layout == "NHD" else (k.transpose(0, 1).contiguous(),
                                                v.transpose(0, 1).contiguous())
    out, lse = tessera.single_decode_with_kv_cache(q, kk, vv, kv_layout=kv_layout,
                                                   return_lse=True)
    ref_out, ref_lse = reference_decode(q, k, v, head_dim ** -0.5)
    torch.testing.assert_close(out.float(), ref_out, **tolerance(dtype))
    torch.testing.assert_close(lse, ref_lse, atol=1e-3, rtol=1e-3)


@gpu
@pytest.mark.parametrize("variant", ["soft_cap", "window"])
def test_single_decode_variants(variant):
    torch.manual_seed(1)
    q = torch.randn(32, 128, dtype=torch.float16, device="cuda")
    k = torch.randn(700, 8, 128, dtype=torch.float16, device="cuda")
    v = torch.randn(700, 8, 128, dtype=torch.float16, device="cuda")
    kwargs = dict(logits_soft_cap=30.0) if variant == "soft_cap" else dict(window_left=100)
    out = tessera.single_decode_with_kv_cache(q, k, v, **kwargs)
    ref, _ = reference_decode(q, k, v, 128 ** -0.5,
                              soft_cap=kwargs.get("logits_soft_cap"),
                              window_left=kwargs.get("window_left", -1))
    torch.testing.assert_close(out.float(), ref, **tolerance(torch.float16))


def new_cache(num_pages, page_size, num_kv_heads, head_dim, dtype, layout, generator):
    shape = ((num_pages, 2, page_size, num_kv_heads, head_dim) if layout == "NHD"
             else (num_pages, 2, num_kv_heads, page_size, head_dim))
    return torch.randn(shape, dtype=dtype, device="cuda", generator=generator)


def paged_batch(cache, lengths, page_size, layout, seed):
    """Page tables (CPU int32 indptr, indices, last_page_len) placing `lengths`
    tokens per request on shuffled pages of `cache`, and each request's dense
    (k, v) [n, num_kv_heads, head_dim] (None when empty)."""
    pages = [(n + page_size - 1) // page_size for n in lengths]
    assert sum(pages) <= cache.shape[0], "the test's cache is too small"
    order = torch.randperm(cache.shape[0], generator=torch.Generator().manual_seed(seed))
    indices = order[:sum(pages)].to(torch.int32)
    indptr = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    indptr[1:] = torch.tensor(pages, dtype=torch.int32).cumsum(0)
    last = torch.tensor([(n - 1) % page_size + 1 if n > 0 else 0 for n in lengths],
                        dtype=torch.int32)
    dense = []
    for b, n in enumerate(lengths):
        if n == 0:
            dense.append(None)
            continue
        block = cache[indices[indptr[b]:indptr[b + 1]].long().cuda()]  # [p, 2, ...]
        if layout == "HND":
            block = block.transpose(2, 3)  # [p, 2, page_size, heads, dim]
        heads, dim = block.shape[-2:]
        dense.append((block[:, 0].reshape(-1, heads, dim)[:n],
                      block[:, 1].reshape(-1, heads, dim)[:n]))
    return indptr, indices, last, dense


@gpu
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("kv_layout", ["NHD", "HND"])
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(8, 8), (32, 8)])
def test_batch_decode_wrapper_matches_reference(page_size, kv_layout, num_qo_heads, num_kv_heads):
    g = torch.Generator(device="cuda").manual_seed(2)
    head_dim, dtype = 128, torch.bfloat16
    lengths = [1, 17, 0, 300, 4100, page_size, page_size + 1]
    pages = sum((n + page_size - 1) // page_size for n in lengths)
    cache = new_cache(pages + 8, page_size, num_kv_heads, head_dim, dtype, kv_layout, g)
    indptr, indices, last, dense = paged_batch(cache, lengths, page_size, kv_layout, seed=7)
    workspace = torch.empty(128 << 20, dtype=torch.uint8, device="cuda")
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace, kv_layout)
    wrapper.plan(indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size)
    # FlashInfer's pattern: plan once, run per layer.
    for layer in range(2):
        q = torch.randn(len(lengths), num_qo_heads, head_dim, dtype=dtype, device="cuda",
                        generator=g)
        out, lse = wrapper.run(q, cache, return_lse=True)
        for b, n in enumerate(lengths):
            if n == 0:
                assert torch.all(out[b] == 0) and torch.all(torch.isneginf(lse[b]))
                continue
            ref, ref_lse = reference_decode(q[b], dense[b][0], dense[b][1], head_dim ** -0.5)
            torch.testing.assert_close(out[b].float(), ref, **tolerance(dtype))
            torch.testing.assert_close(lse[b], ref_lse, atol=2e-3, rtol=2e-3)


@gpu
def test_batch_decode_cuda_graph_replays_for_new_plans():
    g = torch.Generator(device="cuda").manual_seed(3)
    num_qo_heads, num_kv_heads, head_dim, page_size, dtype = 32, 8, 128, 16, torch.float16
    max_batch, max_pages = 16, 4096
    workspace = torch.empty(128 << 20, dtype=torch.uint8, device="cuda")
    indptr_buf = torch.zeros(max_batch + 1, dtype=torch.int32, device="cuda")
    indices_buf = torch.zeros(max_pages, dtype=torch.int32, device="cuda")
    last_buf = torch.zeros(max_batch, dtype=torch.int32, device="cuda")
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(
        workspace, "NHD", use_cuda_graph=True, paged_kv_indptr_buffer=indptr_buf,
        paged_kv_indices_buffer=indices_buf, paged_kv_last_page_len_buffer=last_buf)
    q = torch.randn(max_batch, num_qo_heads, head_dim, dtype=dtype, device="cuda", generator=g)
    out = torch.empty_like(q)
    cache = new_cache(max_pages, page_size, num_kv_heads, head_dim, dtype, "NHD", g)
    indptr, indices, last, _ = paged_batch(cache, [50] * max_batch, page_size, "NHD", seed=8)
    wrapper.plan(indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size)
    wrapper.run(q, cache, out=out)  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(q, cache, out=out)
    # Other batches and lengths, within the buffers: one request split over
    # the SMs, then a mixed batch.
    for seed, lengths in ((9, [30000]), (10, [7, 900, 3, 0] + [33] * 9)):
        indptr, indices, last, dense = paged_batch(cache, lengths, page_size, "NHD", seed)
        wrapper.plan(indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        for b, n in enumerate(lengths):
            if n == 0:
                assert torch.all(out[b] == 0)
                continue
            ref, _ = reference_decode(q[b], dense[b][0], dense[b][1], head_dim ** -0.5)
            torch.testing.assert_close(out[b].float(), ref, **tolerance(dtype))
        # Rows past this plan's batch are left alone.
        assert torch.all(torch.isnan(out[len(lengths):].float()))


@gpu
def test_batch_decode_under_torch_compile_fullgraph():
    g = torch.Generator(device="cuda").manual_seed(4)
    num_qo_heads, num_kv_heads, head_dim, page_size, dtype = 32, 8, 128, 16, torch.bfloat16
    lengths = [100, 2000, 5]
    cache = new_cache(200, page_size, num_kv_heads, head_dim, dtype, "NHD", g)
    indptr, indices, last, _ = paged_batch(cache, lengths, page_size, "NHD", seed=11)
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(
        torch.empty(64 << 20, dtype=torch.uint8, device="cuda"))
    wrapper.plan(indptr, indices, last, num_qo_heads, num_kv_heads, head_dim, page_size)

    def step(q):
        return wrapper.run(q * 2.0, cache) + 1.0

    q = torch.randn(len(lengths), num_qo_heads, head_dim, dtype=dtype, device="cuda",
                    generator=g)
    compiled = torch.compile(step, fullgraph=True)
    torch.testing.assert_close(compiled(q), step(q), atol=0, rtol=0)


@gpu
def test_merge_state_matches_reference():
    torch.manual_seed(5)
    v_a = torch.randn(37, 8, 128, dtype=torch.float16, device="cuda")
    v_b = torch.randn(37, 8, 128, dtype=torch.float16, device="cuda")
    s_a = torch.randn(37, 8, device="cuda") * 3
    s_b = torch.randn(37, 8, device="cuda") * 3
    v, s = tessera.merge_state(v_a, s_a, v_b, s_b)
    m = torch.maximum(s_a, s_b)
    w_a, w_b = torch.exp2(s_a - m), torch.exp2(s_b - m)
    ref_v = (v_a.float() * w_a[..., None] + v_b.float() * w_b[..., None]) / (w_a + w_b)[..., None]
    torch.testing.assert_close(v.float(), ref_v, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(s, m + torch.log2(w_a + w_b), atol=1e-5, rtol=1e-5)

    stacked_v = torch.stack([v_a, v_b], dim=1)
    stacked_s = torch.stack([s_a, s_b], dim=1)
    v2, s2 = tessera.merge_states(stacked_v, stacked_s)
    torch.testing.assert_close(v2.float(), ref_v, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(s2, s, atol=1e-5, rtol=1e-5)

    v3, s3 = v_a.clone(), s_a.clone()
    tessera.merge_state_in_place(v3, s3, v_b, s_b)
    torch.testing.assert_close(v3.float(), ref_v, atol=5e-3, rtol=5e-3)


# ---- without a GPU


def test_fake_kernels_give_output_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(32, 128, dtype=torch.bfloat16, device="cuda")
        k = torch.empty(100, 8, 128, dtype=torch.bfloat16, device="cuda")
        out, lse = tessera.single_decode_with_kv_cache(q, k, k, return_lse=True)
        assert out.shape == (32, 128) and out.dtype == torch.bfloat16
        assert lse.shape == (32,) and lse.dtype == torch.float32
        v = torch.empty(5, 3, 8, 64, dtype=torch.float16, device="cuda")
        s = torch.empty(5, 3, 8, dtype=torch.float32, device="cuda")
        v_merged, s_merged = tessera.merge_states(v, s)
        assert v_merged.shape == (5, 8, 64) and s_merged.shape == (5, 8)


def test_library_errors_name_the_argument():
    q = torch.empty(32, 128, dtype=torch.float16)  # a CPU tensor: rejected before any CUDA call
    k = torch.empty(100, 8, 128, dtype=torch.float16)
    with pytest.raises(TesseraArgumentError, match="'q'"):
        tessera.single_decode_with_kv_cache(q, k, k)


def test_bad_strings_are_rejected():
    q = torch.empty(32, 128, dtype=torch.float16)
    with pytest.raises(ValueError, match="kv_layout"):
        tessera.single_decode_with_kv_cache(q, q, q, kv_layout="NDH")
    with pytest.raises(ValueError, match="pos_encoding_mode"):
        tessera.single_decode_with_kv_cache(q, q, q, pos_encoding_mode="ROPE")


def test_run_before_plan_is_rejected():
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(16, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="plan"):
        wrapper.run(torch.empty(1, 8, 128), torch.empty(1, 2, 16, 8, 128))


def test_cuda_graph_mode_needs_its_buffers():
    with pytest.raises(TesseraArgumentError, match="paged_kv_indptr_buffer"):
        tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(16, dtype=torch.uint8),
                                                   use_cuda_graph=True)


def test_version_matches_the_library():
    assert tessera.version() == tessera.__version__
