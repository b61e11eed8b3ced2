"""tessera.mla against the float64 reference (mla_reference.py) on a Hopper
GPU, plus the parts that run without one (fake kernels, argument errors)."""

import math

import pytest
import torch

import tessera
from tessera import TesseraArgumentError
from mla_reference import kv_lengths_from_last_page_len, mla_paged_reference, split_latent_cache

hopper = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
    reason="needs a Hopper GPU (the MLA kernel is sm_90a only for now)")


def latent_batch(kv_lens, page_size, dtype, seed, spare_pages=3):
    """One [pages, page_size, 576] cache with the batch's rows on shuffled
    pages (unused slots NaN); returns (buffer, kv_indptr, kv_indices)."""
    g = torch.Generator().manual_seed(seed)
    counts = [(n + page_size - 1) // page_size for n in kv_lens]
    kv_indptr = [0]
    for c in counts:
        kv_indptr.append(kv_indptr[-1] + c)
    pages = kv_indptr[-1] + spare_pages
    kv_indices = torch.randperm(pages, generator=g)[:kv_indptr[-1]].to(torch.int32)
    buffer = torch.full((pages, page_size, 576), float("nan"), dtype=dtype)
    for b, n in enumerate(kv_lens):
        rows = torch.randn(n, 576, generator=g).to(dtype)
        for j in range(n):
            buffer[kv_indices[kv_indptr[b] + j // page_size], j % page_size] = rows[j]
    return buffer.cuda(), torch.tensor(kv_indptr, dtype=torch.int32), kv_indices


@hopper
@pytest.mark.parametrize("page_size", [1, 16, 64])
@pytest.mark.parametrize("causal", [False, True])
def test_mla_wrapper_matches_reference_on_sglang_layout(page_size, causal):
    heads, dtype, sm_scale = 16, torch.bfloat16, 1.0 / math.sqrt(192)
    qo_lens, kv_lens = [1, 2, 4, 7, 1], [0, 1, 63, 65, 700]
    buffer, kv_indptr, kv_indices = latent_batch(kv_lens, page_size, dtype, seed=page_size)
    ckv, kpe = split_latent_cache(buffer)  # strided views, as SGLang passes them
    qo_indptr = torch.tensor([0] + list(torch.tensor(qo_lens).cumsum(0)), dtype=torch.int32)
    tokens = int(qo_indptr[-1])
    g = torch.Generator(device="cuda").manual_seed(1)
    q = torch.randn(tokens, heads, 576, dtype=dtype, device="cuda", generator=g) * 0.1
    q_nope, q_pe = q[..., :512], q[..., 512:]
    wrapper = tessera.mla.BatchMLAPagedAttentionWrapper(
        torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
    kv_len = torch.tensor(kv_lens, dtype=torch.int32)
    wrapper.plan(qo_indptr, kv_indptr, kv_indices, kv_len, heads, 512, 64, page_size, causal,
                 sm_scale, dtype, dtype)
    out, lse = wrapper.run(q_nope, q_pe, ckv, kpe, return_lse=True)
    ref, ref_lse = mla_paged_reference(q_nope.cpu(), q_pe.cpu(), ckv.cpu(), kpe.cpu(), qo_indptr,
                                       kv_indptr, kv_indices, kv_len, page_size, causal, sm_scale)
    torch.testing.assert_close(out.double().cpu(), ref, atol=2e-2, rtol=2e-2)
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isneginf(lse.cpu()), ~finite)
    torch.testing.assert_close(lse.double().cpu()[finite], ref_lse[finite], atol=2e-3, rtol=2e-3)
    _, lse_e = wrapper.run(q_nope, q_pe, ckv, kpe, return_lse=True, return_lse_base_on_e=True)
    torch.testing.assert_close(lse_e.cpu()[finite], lse.cpu()[finite] * math.log(2.0))


@hopper
def test_decode_mla_wrapper_0_2_0_form_matches_reference():
    heads, dtype, page_size, sm_scale = 32, torch.float16, 64, 1.0 / math.sqrt(192)
    kv_lens = [5, 64, 65, 4097, 1]
    buffer, kv_indptr, kv_indices = latent_batch(kv_lens, page_size, dtype, seed=3)
    ckv, kpe = split_latent_cache(buffer)
    last = torch.tensor([(n - 1) % page_size + 1 for n in kv_lens], dtype=torch.int32)
    assert kv_lengths_from_last_page_len(kv_indptr, last, page_size) == kv_lens
    g = torch.Generator(device="cuda").manual_seed(2)
    q_nope = torch.randn(len(kv_lens), heads, 512, dtype=dtype, device="cuda", generator=g) * 0.1
    q_pe = torch.randn(len(kv_lens), heads, 64, dtype=dtype, device="cuda", generator=g) * 0.1
    wrapper = tessera.decode.BatchDecodeMlaWithPagedKVCacheWrapper(
        torch.empty(256 << 20, dtype=torch.uint8, device="cuda"))
    wrapper.plan(kv_indptr, kv_indices, last, heads, 512, page_size, sm_scale, data_type=dtype)
    out = wrapper.run(q_nope, q_pe, ckv, kpe, v_scale=0.5)
    ref, _ = mla_paged_reference(q_nope.cpu(), q_pe.cpu(), ckv.cpu(), kpe.cpu(),
                                 list(range(len(kv_lens) + 1)), kv_indptr, kv_indices, kv_lens,
                                 page_size, False, sm_scale)
    torch.testing.assert_close(out.double().cpu(), 0.5 * ref, atol=5e-3, rtol=5e-3)


# ---- without a GPU


def test_fake_kernel_gives_output_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q_nope = torch.empty(6, 16, 512, dtype=torch.bfloat16, device="cuda")
        q_pe = torch.empty(6, 16, 64, dtype=torch.bfloat16, device="cuda")
        ckv = torch.empty(10, 64, 512, dtype=torch.bfloat16, device="cuda")
        kpe = torch.empty(10, 64, 64, dtype=torch.bfloat16, device="cuda")
        idx = torch.empty(10, dtype=torch.int32, device="cuda")
        out = torch.empty_like(q_nope)
        lse = torch.empty(6, 16, dtype=torch.float32, device="cuda")
        torch.ops.tessera.batch_mla_run(0, q_nope, q_pe, ckv, kpe, idx, idx, idx, idx, out, lse,
                                        0.1)
        with pytest.raises(TesseraArgumentError, match="ckv_cache"):
            torch.ops.tessera.batch_mla_run(0, q_nope, q_pe, ckv.half(), kpe, idx, idx, idx, idx,
                                            out, lse, 0.1)


def test_bad_arguments_are_named():
    workspace = torch.empty(16, dtype=torch.uint8)
    with pytest.raises(TesseraArgumentError, match="backend"):
        tessera.mla.BatchMLAPagedAttentionWrapper(workspace, backend="fa1")
    for backend in ("auto", "fa2", "fa3"):  # the kernel is checked against the GPU at plan()
        tessera.mla.BatchMLAPagedAttentionWrapper(workspace, backend=backend)
    with pytest.raises(TesseraArgumentError, match="qo_indptr"):
        tessera.mla.BatchMLAPagedAttentionWrapper(workspace, use_cuda_graph=True)
    wrapper = tessera.mla.BatchMLAPagedAttentionWrapper(workspace)
    with pytest.raises(TesseraArgumentError, match="plan"):
        wrapper.run(torch.empty(1, 16, 512), torch.empty(1, 16, 64), torch.empty(1, 1, 512),
                    torch.empty(1, 1, 64))
    plan = dict(qo_indptr=[0, 1], kv_indptr=[0, 1], kv_indices=[0], kv_len_arr=[5],
                num_heads=16, head_dim_ckv=512, head_dim_kpe=64, page_size=16, causal=False,
                sm_scale=0.1, q_data_type=torch.bfloat16, kv_data_type=torch.bfloat16)
    for name, value in (("head_dim_ckv", 256), ("head_dim_kpe", 128), ("sm_scale", 0.0),
                        ("num_heads", 0)):
        with pytest.raises(TesseraArgumentError, match=name):
            wrapper.plan(**{**plan, name: value})
    with pytest.raises(TesseraArgumentError, match="kv_indptr"):
        wrapper.plan(**{**plan, "kv_indptr": [0, 1, 2]})
    decode = tessera.BatchDecodeMlaWithPagedKVCacheWrapper(workspace)
    with pytest.raises(NotImplementedError, match="window_left"):
        decode.plan([0, 1], [0], [5], 16, 512, 16, 0.1, window_left=8)
