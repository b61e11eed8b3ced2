"""tessera.sparse.BlockSparseAttentionWrapper against a dense float32 torch
reference with the block pattern expanded to a mask (GPU), plus the argument
errors raised before any CUDA call."""

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera  # noqa: F401
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


@pytest.mark.parametrize("name", ["mask", "packed_mask"])
def test_element_masks_are_not_implemented(name):
    with pytest.raises(NotImplementedError, match=name):
        cpu_wrapper().plan([0, 1], [0], 16, 16, 16, 16, 8, 8, 64,
                           **{name: torch.ones(16, 16, dtype=torch.bool)})


def test_causal_is_not_implemented():
    with pytest.raises(NotImplementedError, match="causal"):
        cpu_wrapper().plan([0, 1], [0], 16, 16, 16, 16, 8, 8, 64, causal=True)


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
