"""fp8 KV caches in both of FlashInfer's formats, torch.float8_e4m3fn and
torch.float8_e5m2: decode (single and batch), paged prefill and appends on
the GPU against float32 torch references, plus the parts that run without
one (DLPack codes, JIT dtype names and errors)."""

import math

import pytest
import torch

import tessera
import tessera.jit as jit
from tessera import TesseraArgumentError, page
from tessera._tensor import dl
from tessera.prefill import BatchPrefillWithPagedKVCacheWrapper

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
FP8 = [pytest.param(E4M3, id="e4m3fn"), pytest.param(E5M2, id="e5m2")]
FP8_MAX = {E4M3: 448.0, E5M2: 57344.0}
WORKSPACE_BYTES = 128 << 20


def tolerance(dtype):
    # The fp8 values are exact in q's dtype; the error is that of the
    # 16-bit attention itself (P rounded to q's dtype before P @ V).
    return dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=5e-3, rtol=5e-3)


LSE_TOLERANCE = dict(atol=2e-3, rtol=2e-3)


def to_fp8(x, fp8):
    """Round to nearest even, saturating (torch's own cast overflows to inf
    for e5m2 and NaN for e4m3fn): what Tessera's append stores."""
    return x.float().clamp(-FP8_MAX[fp8], FP8_MAX[fp8]).to(fp8)


def reference_attention(q, k, v, k_scale=1.0, v_scale=1.0, causal=False):
    """q [Lq, H, D]; k, v [Lk, Hk, D] (NHD, any dtype, read as float32).
    Query i sits at kv position Lk - Lq + i. Returns out [Lq, H, D] float32
    and lse [Lq, H] base 2; a query that sees no key gets out 0, lse -inf."""
    qo_len, h, d = q.shape
    kv_len, hk, _ = k.shape
    kf = (k.float() * k_scale).repeat_interleave(h // hk, dim=1)
    vf = (v.float() * v_scale).repeat_interleave(h // hk, dim=1)
    logits = torch.einsum("qhd,khd->hqk", q.float(), kf) * d ** -0.5
    if causal:
        q_pos = torch.arange(qo_len, device=q.device) + (kv_len - qo_len)
        k_pos = torch.arange(kv_len, device=q.device)
        logits = logits.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], -math.inf)
    lse = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).transpose(0, 1)
    out = torch.einsum("hqk,khd->qhd", torch.softmax(logits, dim=-1).nan_to_num(0.0), vf)
    return out, lse


def paged_fp8_cache(lengths, page_size, num_kv_heads, head_dim, fp8, std, seed):
    """A combined NHD cache [pages, 2, page_size, Hk, D] of random fp8 values
    (spare pages included), the CPU page table placing `lengths` tokens per
    request on shuffled pages, and each request's (k, v) [n, Hk, D] as fp8."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    pages = [-(-n // page_size) for n in lengths]
    num_pages = sum(pages) + 5
    values = torch.randn(num_pages, 2, page_size, num_kv_heads, head_dim, device="cuda",
                         generator=g) * std
    cache = to_fp8(values, fp8)
    order = torch.randperm(num_pages, generator=torch.Generator().manual_seed(seed))
    indices = order[:sum(pages)].to(torch.int32)
    indptr = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    indptr[1:] = torch.tensor(pages, dtype=torch.int32).cumsum(0)
    last = torch.tensor([(n - 1) % page_size + 1 if n > 0 else 0 for n in lengths],
                        dtype=torch.int32)
    dense = []
    for b, n in enumerate(lengths):
        # Gathered as bytes: index kernels need not know the fp8 dtypes.
        rows = indices[indptr[b]:indptr[b + 1]].long().cuda()
        block = cache.view(torch.uint8)[rows].view(fp8)  # [p, 2, ps, Hk, D]
        dense.append((block[:, 0].reshape(-1, num_kv_heads, head_dim)[:n],
                      block[:, 1].reshape(-1, num_kv_heads, head_dim)[:n]))
    return cache, (indptr, indices, last), dense


# ---- CPU: dtype plumbing


@pytest.mark.parametrize("fp8,code", [(E4M3, 10), (E5M2, 12)])
def test_fp8_tensors_get_dlpack_1_1_codes(fp8, code):
    s = dl(torch.empty(3, 4, dtype=fp8))
    assert (s.dtype.code, s.dtype.bits, s.dtype.lanes) == (code, 8, 1)


PLAIN = """
struct UserPlain : VariantBase {
  float scale_log2;
  __device__ UserPlain(const VariantParams& p, int, int)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e) {}
  __device__ float query_scale() const { return scale_log2; }
};
"""


@pytest.mark.parametrize("kv_dtype", [E5M2, "float8_e5m2"])
@pytest.mark.parametrize("kernel", ["batch_decode", "batch_prefill_paged"])
def test_jit_compiles_an_e5m2_kv_variant(kv_dtype, kernel):
    spec = jit.VariantSpec("UserPlain", PLAIN, kernel=kernel, q_dtype=torch.float16,
                           kv_dtype=kv_dtype, head_dim=128)
    info = jit.compile(spec, use_disk_cache=False)
    assert info.cubin_bytes > 0
    e4m3 = jit.compile(jit.VariantSpec("UserPlain", PLAIN, kernel=kernel, q_dtype=torch.float16,
                                       kv_dtype=E4M3, head_dim=128), use_disk_cache=False)
    assert e4m3.key != info.key


def test_jit_rejects_e5m2_where_no_fp8_kernel_exists():
    with pytest.raises(TesseraArgumentError, match="variant"):
        jit.compile(jit.VariantSpec("UserPlain", PLAIN, kernel="single_prefill",
                                    kv_dtype=E5M2), use_disk_cache=False)


def test_jit_dtype_error_lists_both_fp8_formats():
    with pytest.raises(TesseraArgumentError, match="kv_dtype.*float8_e4m3fn or float8_e5m2"):
        jit.compile(jit.VariantSpec("UserPlain", PLAIN, kv_dtype=torch.float32),
                    use_disk_cache=False)


# ---- GPU: decode


@gpu
@pytest.mark.parametrize("fp8", FP8)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_single_decode_over_an_fp8_cache_matches_reference(fp8, dtype, head_dim):
    g = torch.Generator(device="cuda").manual_seed(head_dim)
    q = torch.randn(32, head_dim, dtype=dtype, device="cuda", generator=g)
    k = to_fp8(torch.randn(1037, 8, head_dim, device="cuda", generator=g), fp8)
    v = to_fp8(torch.randn(1037, 8, head_dim, device="cuda", generator=g), fp8)
    out, lse = tessera.single_decode_with_kv_cache(q, k, v, k_scale=0.5, v_scale=2.0,
                                                   return_lse=True)
    ref_out, ref_lse = reference_attention(q[None], k, v, 0.5, 2.0)
    torch.testing.assert_close(out.float(), ref_out[0], **tolerance(dtype))
    torch.testing.assert_close(lse, ref_lse[0], **LSE_TOLERANCE)


@gpu
@pytest.mark.parametrize("std", [3000.0, 1e-4])
def test_single_decode_over_an_e5m2_cache_uses_its_exponent_range(std):
    # Magnitudes past e4m3fn's 448, and e5m2 subnormals (below 2^-14),
    # scaled back to unit logits and values by k_scale / v_scale.
    g = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(8, 128, dtype=torch.bfloat16, device="cuda", generator=g)
    k = to_fp8(torch.randn(3000, 2, 128, device="cuda", generator=g) * std, E5M2)
    v = to_fp8(torch.randn(3000, 2, 128, device="cuda", generator=g) * std, E5M2)
    out = tessera.single_decode_with_kv_cache(q, k, v, k_scale=1 / std, v_scale=1 / std)
    ref_out, _ = reference_attention(q[None], k, v, 1 / std, 1 / std)
    torch.testing.assert_close(out.float(), ref_out[0], **tolerance(torch.bfloat16))


@gpu
@pytest.mark.parametrize("fp8", FP8)
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_batch_decode_over_an_fp8_cache_matches_reference(fp8, page_size, dtype):
    lengths = [1, 17, 0, 300, 4100, page_size, page_size + 1]
    cache, (indptr, indices, last), dense = paged_fp8_cache(lengths, page_size, 8, 128, fp8,
                                                            1.0, seed=page_size)
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(
        torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), "NHD")
    wrapper.plan(indptr, indices, last, 32, 8, 128, page_size, q_data_type=dtype,
                 kv_data_type=fp8)
    q = torch.randn(len(lengths), 32, 128, dtype=dtype, device="cuda")
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:2], float("nan"), dtype=torch.float32, device="cuda")
    wrapper.run(q, cache, k_scale=0.5, v_scale=2.0, out=out, lse=lse)
    for b, (k, v) in enumerate(dense):
        if k.shape[0] == 0:
            assert torch.all(out[b] == 0) and torch.all(lse[b] == -math.inf)
            continue
        ref_out, ref_lse = reference_attention(q[b:b + 1], k, v, 0.5, 2.0)
        torch.testing.assert_close(out[b].float(), ref_out[0], **tolerance(dtype))
        torch.testing.assert_close(lse[b], ref_lse[0], **LSE_TOLERANCE)


# ---- GPU: paged prefill


@gpu
@pytest.mark.parametrize("fp8", FP8)
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_paged_prefill_over_an_fp8_cache_matches_reference(fp8, page_size, dtype, causal):
    # Chunked prefill over an fp8 KV cache (head_dim 128, GQA 4): the kernel
    # widens the tiles to q's dtype; k_scale / v_scale as FlashInfer's run()
    # takes them.
    qo_lens, kv_lens = [1, 17, 64, 3, 100], [1, 100, 64, 250, 1500]
    cache, table, dense = paged_fp8_cache(kv_lens, page_size, 8, 128, fp8, 1.0, seed=31)
    g = torch.Generator(device="cuda").manual_seed(32)
    q = torch.randn(sum(qo_lens), 32, 128, dtype=dtype, device="cuda", generator=g)
    qo_indptr = torch.tensor([0] + list(torch.tensor(qo_lens).cumsum(0)), dtype=torch.int32)
    wrapper = BatchPrefillWithPagedKVCacheWrapper(
        torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), "NHD")
    wrapper.plan(qo_indptr, *table, 32, 8, 128, page_size, causal=causal, q_data_type=dtype,
                 kv_data_type=fp8)
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:2], float("nan"), dtype=torch.float32, device="cuda")
    wrapper.run(q, cache, k_scale=0.5, v_scale=2.0, out=out, lse=lse)
    start = 0
    for qo_len, (k, v) in zip(qo_lens, dense):
        ref_out, ref_lse = reference_attention(q[start:start + qo_len], k, v, 0.5, 2.0, causal)
        torch.testing.assert_close(out[start:start + qo_len].float(), ref_out, **tolerance(dtype))
        torch.testing.assert_close(lse[start:start + qo_len], ref_lse, **LSE_TOLERANCE)
        start += qo_len


@gpu
def test_paged_prefill_over_an_e5m2_cache_uses_its_exponent_range():
    std = 3000.0
    qo_lens, kv_lens = [40, 7], [300, 900]
    cache, table, dense = paged_fp8_cache(kv_lens, 16, 2, 128, E5M2, std, seed=41)
    q = torch.randn(sum(qo_lens), 8, 128, dtype=torch.bfloat16, device="cuda")
    wrapper = BatchPrefillWithPagedKVCacheWrapper(
        torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device="cuda"), "NHD")
    wrapper.plan(torch.tensor([0, 40, 47], dtype=torch.int32), *table, 8, 2, 128, 16, causal=True)
    out = wrapper.run(q, cache, k_scale=1 / std, v_scale=1 / std)
    start = 0
    for qo_len, (k, v) in zip(qo_lens, dense):
        ref_out, _ = reference_attention(q[start:start + qo_len], k, v, 1 / std, 1 / std, True)
        torch.testing.assert_close(out[start:start + qo_len].float(), ref_out,
                                   **tolerance(torch.bfloat16))
        start += qo_len


# ---- GPU: append


NUM_KV_HEADS, HEAD_DIM, PAGE_SIZE = 2, 64, 16
SEQ_LENS, APPEND_LENS = [5, 2, 37], [3, 0, 17]


def append_case(append_dtype, fp8, scale, seed):
    """Random cache pages and appended K/V, the int32 device index tensors,
    and where each appended token goes."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    pages = [-(-n // PAGE_SIZE) for n in SEQ_LENS]
    num_pages = sum(pages) + 3
    cache = to_fp8(torch.randn(num_pages, 2, PAGE_SIZE, NUM_KV_HEADS, HEAD_DIM, device="cuda",
                               generator=g), fp8)
    order = torch.randperm(num_pages, generator=torch.Generator().manual_seed(seed)).tolist()
    indptr = [0]
    for p in pages:
        indptr.append(indptr[-1] + p)
    indices = order[:indptr[-1]]
    last = [n - (p - 1) * PAGE_SIZE for n, p in zip(SEQ_LENS, pages)]
    batch_indices, positions = [], []
    for b, (seq_len, n) in enumerate(zip(SEQ_LENS, APPEND_LENS)):
        batch_indices += [b] * n
        positions += list(range(seq_len - n, seq_len))
    nnz = len(batch_indices)
    shape = (nnz, NUM_KV_HEADS, HEAD_DIM)
    key = (torch.randn(shape, device="cuda", generator=g) * scale).to(append_dtype)
    value = (torch.randn(shape, device="cuda", generator=g) * scale).to(append_dtype)
    slots = [(indices[indptr[b] + p // PAGE_SIZE], p % PAGE_SIZE)
             for b, p in zip(batch_indices, positions)]

    def i32(values):
        return torch.tensor(values, dtype=torch.int32, device="cuda")

    index_args = (i32(batch_indices), i32(positions))
    table_args = (i32(indices), i32(indptr), i32(last))
    return cache, key, value, index_args, table_args, slots


@gpu
@pytest.mark.parametrize("fp8", FP8)
@pytest.mark.parametrize("append_dtype", [torch.float16, torch.bfloat16])
def test_append_into_an_fp8_cache_rounds_and_saturates(fp8, append_dtype):
    # Scale: about 15% of the appended values pass the format's largest
    # finite value and saturate (at 40000, ~10% of the fp16 inputs are
    # infinite: they saturate too).
    scale = 300.0 if fp8 == E4M3 else 40000.0
    cache, key, value, index_args, table_args, slots = append_case(append_dtype, fp8, scale, 3)
    expected = cache.view(torch.uint8).clone()
    for i, (page_index, slot) in enumerate(slots):
        expected[page_index, 0, slot] = to_fp8(key[i], fp8).view(torch.uint8)
        expected[page_index, 1, slot] = to_fp8(value[i], fp8).view(torch.uint8)
    page.append_paged_kv_cache(key, value, *index_args, cache, *table_args, kv_layout="NHD")
    # Byte equality of the whole cache: appended slots hold the one rounding,
    # every other slot and page is untouched.
    assert torch.equal(cache.view(torch.uint8), expected)
    assert not torch.isinf(cache.float()).any()


@gpu
@pytest.mark.parametrize("fp8", FP8)
def test_append_fp8_into_a_cache_of_its_format_copies_bytes(fp8):
    cache, key, value, index_args, table_args, slots = append_case(torch.float32, fp8, 1.0, 4)
    key, value = to_fp8(key, fp8), to_fp8(value, fp8)
    expected = cache.view(torch.uint8).clone()
    for i, (page_index, slot) in enumerate(slots):
        expected[page_index, 0, slot] = key[i].view(torch.uint8)
        expected[page_index, 1, slot] = value[i].view(torch.uint8)
    page.append_paged_kv_cache(key, value, *index_args, cache, *table_args, kv_layout="NHD")
    assert torch.equal(cache.view(torch.uint8), expected)


@gpu
def test_append_of_the_other_fp8_format_is_rejected_naming_append_key():
    cache, key, value, index_args, table_args, _ = append_case(torch.float32, E5M2, 1.0, 5)
    with pytest.raises(TesseraArgumentError, match="append_key"):
        page.append_paged_kv_cache(to_fp8(key, E4M3), to_fp8(value, E4M3), *index_args, cache,
                                   *table_args, kv_layout="NHD")
