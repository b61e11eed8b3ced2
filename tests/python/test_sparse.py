"""tessera.sparse.BlockSparseAttentionWrapper against a dense float32 torch
reference with the block pattern (and plan()'s element mask) expanded to a
mask (GPU), plus the argument errors raised before any CUDA call."""

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera
from tessera import TesseraArgumentError
from tessera.sparse import BlockSparseAttentionWrapper

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def random_pattern(block_rows, block_cols, generator):
    """BSR indptr / indices (CPU int32) of a random pattern; block row 1 is
    empty so the no-blocks case (out 0, lse -inf) is covered."""
    keep = torch.rand(block_rows, block_cols, generator=generator) < 0.4
    keep[0, 0] = True
    if block_rows > 1:
        keep[1] = False
    indptr = torch.zeros(block_rows + 1, dtype=torch.int32)
    indptr[1:] = keep.sum(1).cumsum(0)
    indices = keep.nonzero()[:, 1].to(torch.int32)  # row-major: grouped by block row
    return indptr, indices, keep


def reference_block_sparse(q, k, v, keep, R, C):
    """softmax(q k^T * scale + mask) v with the block pattern as the mask;
    GQA by repeating kv heads. Rows that see no key: out 0, lse -inf (base 2)."""
    m, h, d = q.shape
    hk = k.shape[1]
    mask = keep.to(q.device).repeat_interleave(R, 0).repeat_interleave(C, 1)  # [M, N]
    kf = k.float().repeat_interleave(h // hk, dim=1)
    vf = v.float().repeat_interleave(h // hk, dim=1)
    logits = torch.einsum("qhd,khd->hqk", q.float(), kf) * d ** -0.5
    logits = logits.masked_fill(~mask[None], -math.inf)
    lse = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).transpose(0, 1)
    out = torch.einsum("hqk,khd->qhd", torch.softmax(logits, dim=-1).nan_to_num(0.0), vf)
    return out, lse


@gpu
@pytest.mark.parametrize("R,C", [(16, 16), (64, 1), (1, 32)])
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(8, 8), (32, 8)])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_block_sparse_matches_dense_reference(R, C, num_qo_heads, num_kv_heads, head_dim,
                                              dtype):
    M, N = 256, 512
    g = torch.Generator().manual_seed(R * 100 + C)
    indptr, indices, keep = random_pattern(M // R, N // C, g)
    gc = torch.Generator(device="cuda").manual_seed(5)

    def rand(*shape):
        return torch.randn(shape, dtype=dtype, device="cuda", generator=gc)
    q, k, v = rand(M, num_qo_heads, head_dim), rand(N, num_kv_heads, head_dim), \
        rand(N, num_kv_heads, head_dim)
    wrapper = BlockSparseAttentionWrapper(torch.empty(128 << 20, dtype=torch.uint8,
                                                      device="cuda"))
    wrapper.plan(indptr, indices, M, N, R, C, num_qo_heads, num_kv_heads, head_dim,
                 q_data_type=dtype)
    out = torch.full_like(q, float("nan"))
    lse = torch.full((M, num_qo_heads), float("nan"), dtype=torch.float32, device="cuda")
    wrapper.run(q, k, v, out=out, lse=lse)
    ref_out, ref_lse = reference_block_sparse(q, k, v, keep, R, C)
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(out.float(), ref_out, **tol)
    torch.testing.assert_close(lse, ref_lse, atol=2e-3, rtol=2e-3)


@gpu
@pytest.mark.parametrize("R,C", [(16, 16), (1, 32), (64, 8)])
def test_block_sparse_element_mask_matches_dense_reference(R, C):
    M, N, num_qo_heads, num_kv_heads, head_dim = 128, 256, 16, 4, 128
    g = torch.Generator().manual_seed(R + C)
    indptr, indices, _ = random_pattern(M // R, N // C, g)
    mask = torch.rand(int(indptr[-1]), R, C, generator=g) < 0.6
    first_row = slice(0, int(indptr[1]))
    mask[first_row, 0] = False  # query 0 sees no key: out 0, lse -inf
    dense = dense_of_bsr_mask(mask, indptr, indices, M, N, R, C)
    gc = torch.Generator(device="cuda").manual_seed(6)

    def rand(*shape):
        return torch.randn(shape, dtype=torch.float16, device="cuda", generator=gc)
    q, k, v = rand(M, num_qo_heads, head_dim), rand(N, num_kv_heads, head_dim), \
        rand(N, num_kv_heads, head_dim)
    wrapper = BlockSparseAttentionWrapper(torch.empty(128 << 20, dtype=torch.uint8,
                                                      device="cuda"))
    wrapper.plan(indptr, indices, M, N, R, C, num_qo_heads, num_kv_heads, head_dim,
                 mask=mask.cuda())
    out, lse = wrapper.run(q, k, v, return_lse=True)
    # The dense reference with the element mask as the pattern (blocks of 1 x 1).
    ref_out, ref_lse = reference_block_sparse(q, k, v, dense, 1, 1)
    torch.testing.assert_close(out.float(), ref_out, atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(lse, ref_lse, atol=2e-3, rtol=2e-3)
    # FlashInfer's packed form: segment_packbits of the BSR layout, one segment per block row.
    blocks = indptr[1:] - indptr[:-1]
    segments = torch.zeros(M // R + 1, dtype=torch.int64)
    segments[1:] = torch.cumsum(blocks.to(torch.int64) * R * C, 0)
    packed, _ = tessera.segment_packbits(flashinfer_bsr_mask_layout(mask, indptr.tolist()),
                                         segments, bitorder="little")
    wrapper.plan(indptr, indices, M, N, R, C, num_qo_heads, num_kv_heads, head_dim,
                 packed_mask=packed.cuda())
    torch.testing.assert_close(wrapper.run(q, k, v, return_lse=True)[0], out, atol=0, rtol=0)


def reference_block_rows_causal(q, k, v, indptr, indices, R, C):
    """FlashInfer's causal block-sparse attention: block row i is a request of
    R queries whose keys are its blocks' keys in indices order (kv_len = blocks
    * C); query r sees key j <= kv_len - R + r. out float32, lse base 2."""
    m, h, d = q.shape
    out = torch.zeros(m, h, d, dtype=torch.float32, device=q.device)
    lse = torch.full((m, h), -math.inf, dtype=torch.float32, device=q.device)
    hk = k.shape[1]
    for i in range(m // R):
        cols = indices[int(indptr[i]):int(indptr[i + 1])].tolist()
        if not cols:
            continue
        keys = torch.cat([torch.arange(c * C, (c + 1) * C) for c in cols]).to(q.device)
        kf = k[keys].float().repeat_interleave(h // hk, dim=1)
        vf = v[keys].float().repeat_interleave(h // hk, dim=1)
        rows = slice(i * R, (i + 1) * R)
        logits = torch.einsum("qhd,khd->hqk", q[rows].float(), kf) * d ** -0.5
        kv_len = keys.numel()
        q_pos = torch.arange(R, device=q.device) + (kv_len - R)
        k_pos = torch.arange(kv_len, device=q.device)
        logits = logits.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], -math.inf)
        lse[rows] = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).transpose(0, 1)
        out[rows] = torch.einsum("hqk,khd->qhd", torch.softmax(logits, -1).nan_to_num(0.0), vf)
    return out, lse


@gpu
@pytest.mark.parametrize("R,C", [(16, 16), (64, 64), (16, 4)])
def test_block_sparse_causal_matches_flashinfers_definition(R, C):
    # Lower-triangular block pattern (sorted columns ending at the diagonal
    # block): with R = C this is the dense causal mask; R != C exercises the
    # per-block-row bottom-right alignment (including rows that see no key).
    M, N, num_qo_heads, num_kv_heads, head_dim = 256, 256, 16, 4, 128
    rows, cols = M // R, N // C
    keep = torch.zeros(rows, cols, dtype=torch.bool)
    g = torch.Generator().manual_seed(R + 3 * C)
    for i in range(rows):
        diag = min(cols - 1, (i * R) // C)
        keep[i, :diag + 1] = torch.rand(diag + 1, generator=g) < 0.7
        keep[i, diag] = True
    indptr = torch.zeros(rows + 1, dtype=torch.int32)
    indptr[1:] = keep.sum(1).cumsum(0)
    indices = keep.nonzero()[:, 1].to(torch.int32)
    gc = torch.Generator(device="cuda").manual_seed(9)

    def rand(*shape):
        return torch.randn(shape, dtype=torch.bfloat16, device="cuda", generator=gc)
    q, k, v = rand(M, num_qo_heads, head_dim), rand(N, num_kv_heads, head_dim), \
        rand(N, num_kv_heads, head_dim)
    wrapper = BlockSparseAttentionWrapper(torch.empty(128 << 20, dtype=torch.uint8,
                                                      device="cuda"))
    wrapper.plan(indptr, indices, M, N, R, C, num_qo_heads, num_kv_heads, head_dim, causal=True)
    out = torch.full_like(q, float("nan"))
    lse = torch.full((M, num_qo_heads), float("nan"), dtype=torch.float32, device="cuda")
    wrapper.run(q, k, v, out=out, lse=lse)
    ref_out, ref_lse = reference_block_rows_causal(q, k, v, indptr, indices, R, C)
    torch.testing.assert_close(out.float(), ref_out, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse, ref_lse, atol=2e-3, rtol=2e-3)


# ------------------------------------------------------- CPU: no CUDA call


def cpu_wrapper():
    return BlockSparseAttentionWrapper(torch.empty(8, dtype=torch.uint8))


def test_fake_block_sparse_op_accepts_its_arguments():
    with FakeTensorMode():
        q = torch.empty(64, 8, 64, dtype=torch.float16, device="cuda")
        k = torch.empty(32, 8, 64, dtype=torch.float16, device="cuda")
        index = torch.empty(5, dtype=torch.int32, device="cuda")
        lse = torch.empty(64, 8, dtype=torch.float32, device="cuda")
        assert torch.ops.tessera.block_sparse_run(1, q, k, k, index, index, torch.empty_like(q),
                                                  lse, 0.0, 0.0, -1, 0, 0.0, 0.0) is None


def flashinfer_bsr_mask_layout(mask, indptr):
    """FlashInfer's convert_bsr_mask_layout, as it is written there (a loop)."""
    nnz, R, C = mask.shape
    out = torch.empty((nnz * R * C,), dtype=mask.dtype)
    for i in range(len(indptr) - 1):
        out[indptr[i] * R * C:indptr[i + 1] * R * C] = (
            mask[indptr[i]:indptr[i + 1]].transpose(0, 1).reshape(-1))
    return out


@pytest.mark.parametrize("R,C", [(4, 8), (1, 3), (5, 1)])
def test_rows_mask_is_flashinfers_bsr_mask_layout(R, C):
    from tessera.sparse import _rows_mask
    indptr = torch.tensor([0, 2, 2, 5, 6], dtype=torch.int32)  # block row 1 empty
    mask = torch.rand(6, R, C, generator=torch.Generator().manual_seed(R * 10 + C)) < 0.5
    got = _rows_mask(mask, (indptr[1:] - indptr[:-1]).to(torch.int64), R, C)
    assert torch.equal(got, flashinfer_bsr_mask_layout(mask, indptr.tolist()))


def dense_of_bsr_mask(mask, indptr, indices, M, N, R, C):
    """The [M, N] mask that block p's [R, C] mask means at its place."""
    dense = torch.zeros(M, N, dtype=torch.bool)
    rows = torch.repeat_interleave(torch.arange(M // R), indptr[1:] - indptr[:-1])
    for p in range(int(indptr[-1])):
        i, j = int(rows[p]), int(indices[p])
        dense[i * R:(i + 1) * R, j * C:(j + 1) * C] = mask[p]
    return dense


def dense_of_packed(packed, indptr, indices, M, N, R, C):
    """The [M, N] mask the library reads from a packed mask: block row i is
    request i (R queries; its keys: its blocks' in indices order), whose bit
    r * kv_len + j (kv_len = blocks * C) is at byte offset sum of earlier
    rows' ceil(R * kv_len / 8), little-endian bits (attention_options.h)."""
    dense = torch.zeros(M, N, dtype=torch.bool)
    begin = 0
    for i in range(M // R):
        blocks = indices[indptr[i]:indptr[i + 1]].tolist()
        kv_len = len(blocks) * C
        for e in range(R * kv_len):
            if (int(packed[begin + e // 8]) >> (e % 8)) & 1:
                r, j = divmod(e, kv_len)
                dense[i * R + r, blocks[j // C] * C + j % C] = True
        begin += (R * kv_len + 7) // 8
    assert begin <= packed.numel()
    return dense


@pytest.mark.parametrize("R,C", [(8, 8), (1, 16), (16, 2)])
def test_plan_packs_the_mask_as_the_library_reads_it(monkeypatch, R, C):
    from tessera import _lib
    from tessera.prefill import _PlanHandle
    calls = []
    monkeypatch.setattr(_lib, "call", lambda name, *arguments: calls.append((name, arguments)))
    monkeypatch.setattr(_PlanHandle, "ensure", lambda self, shape, needed, names: 1)
    M, N = 32, 64
    g = torch.Generator().manual_seed(R * 7 + C)
    indptr, indices, _ = random_pattern(M // R, N // C, g)
    mask = torch.rand(int(indptr[-1]), R, C, generator=g) < 0.5
    wrapper = cpu_wrapper()
    wrapper.plan(indptr, indices, M, N, R, C, 8, 8, 64, mask=mask, non_blocking=False)
    packed = wrapper._planned[3]
    assert torch.equal(dense_of_packed(packed, indptr, indices, M, N, R, C),
                       dense_of_bsr_mask(mask, indptr, indices, M, N, R, C))
    q = torch.zeros(M, 8, 64, dtype=torch.float16)
    wrapper.run(q, torch.zeros(N, 8, 64, dtype=torch.float16),
                torch.zeros(N, 8, 64, dtype=torch.float16))
    options = calls[-1][1][8]
    assert calls[-1][0] == "tessera_block_sparse_run"
    assert options.custom_mask.contents.data == packed.data_ptr()


def test_mask_shape_is_checked():
    with pytest.raises(TesseraArgumentError, match=r"'mask'.*\(1, 16, 16\)"):
        cpu_wrapper().plan([0, 1], [0], 16, 16, 16, 16, 8, 8, 64,
                           mask=torch.ones(16, 16, dtype=torch.bool))




def test_sizes_must_be_multiples_of_the_blocks():
    with pytest.raises(TesseraArgumentError, match="'M'"):
        cpu_wrapper().plan([0, 1], [0], 17, 16, 16, 16, 8, 8, 64)
    with pytest.raises(TesseraArgumentError, match="'N'"):
        cpu_wrapper().plan([0, 1], [0], 16, 20, 16, 16, 8, 8, 64)


def test_indptr_must_have_one_entry_per_block_row_plus_one():
    with pytest.raises(TesseraArgumentError, match="indptr"):
        cpu_wrapper().plan([0, 1, 1], [0], 16, 16, 16, 16, 8, 8, 64)


def test_unknown_pos_encoding_mode_is_rejected():
    with pytest.raises(ValueError, match="pos_encoding_mode"):
        cpu_wrapper().plan([0, 1], [0], 16, 16, 16, 16, 8, 8, 64, pos_encoding_mode="rope")
