"""tessera.gemm: SegmentGEMMWrapper and bmm_fp8 against torch references (GPU),
and their fakes, argument errors and back-end names (CPU)."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera
from tessera import TesseraArgumentError, gemm

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
FP8 = getattr(torch, "float8_e4m3fn", None)
E5M2 = getattr(torch, "float8_e5m2", None)
needs_fp8 = pytest.mark.skipif(
    not torch.cuda.is_available() or FP8 is None
    or torch.cuda.get_device_capability() < (8, 9), reason="needs an fp8 GPU (sm89+)")

DTYPES = [torch.float16, torch.bfloat16]
BACKENDS = ["auto", "sm80", "sm90"]


def skip_unless_backend_runs(backend):
    """sm90 runs on compute capability 9.0 only (elsewhere a named error, tested below)."""
    if backend == "sm90" and torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("backend sm90 needs a compute capability 9.0 GPU")


def tolerance(dtype):
    # One rounding of a float32 sum to the output dtype (fp16 2^-11, bf16
    # 2^-8 relative), plus summation-order noise; outputs are O(1).
    return dict(atol=2e-2, rtol=1e-2) if dtype == torch.float16 else dict(atol=5e-2, rtol=2e-2)


def segment_reference(x, weights, seg_lens, weight_column_major, weight_indices=None):
    """float64 y = x[seg] @ W[w] per segment, on the GPU."""
    d_out = weights.shape[1] if weight_column_major else weights.shape[2]
    y = torch.zeros(x.shape[0], d_out, dtype=torch.float64, device=x.device)
    start = 0
    for i, length in enumerate(seg_lens.tolist()):
        w = weights[i if weight_indices is None else int(weight_indices[i])].double()
        w = w.t() if weight_column_major else w
        y[start:start + length] = x[start:start + length].double() @ w
        start += length
    return y


def make_case(lengths, d_in, d_out, dtype, column_major, num_weights=None, seed=0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    total = sum(lengths)
    num_weights = num_weights or len(lengths)
    x = torch.randn(total, d_in, generator=generator, device="cuda").to(dtype)
    shape = (num_weights, d_out, d_in) if column_major else (num_weights, d_in, d_out)
    weights = (torch.randn(*shape, generator=generator, device="cuda") / d_in ** 0.5).to(dtype)
    seg_lens = torch.tensor(lengths, dtype=torch.int64, device="cuda")
    return x, weights, seg_lens


# ---- GPU


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize("lengths,d_in,d_out", [
    ([1, 2, 3, 4], 128, 256),          # FlashInfer's docstring example
    ([0, 5, 0, 130, 1], 1024, 128),    # empty segments, a multi-tile one
    ([300], 256, 1024),                # one segment, large tiles
    ([7] * 77, 128, 16),               # LoRA-like shrink, narrow output
    ([1, 0, 3, 2, 9, 1], 4096, 16),    # LoRA decode shrink (the GEMV kernel, column-major)
    ([1] * 8, 16, 4096),               # LoRA decode expand
])
@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_gemm_matches_reference(dtype, column_major, lengths, d_in, d_out, backend):
    skip_unless_backend_runs(backend)
    x, weights, seg_lens = make_case(lengths, d_in, d_out, dtype, column_major)
    wrapper = tessera.SegmentGEMMWrapper(torch.empty(1 << 20, dtype=torch.int8, device="cuda"),
                                         backend=backend)
    y = wrapper.run(x, weights, len(lengths), column_major, seg_lens=seg_lens)
    expected = segment_reference(x, weights, seg_lens, column_major)
    torch.testing.assert_close(y.double(), expected, **tolerance(dtype))
    # seg_indptr (int32 here) gives the same result.
    indptr = torch.zeros(len(lengths) + 1, dtype=torch.int32, device="cuda")
    indptr[1:] = torch.cumsum(seg_lens, 0)
    again = wrapper.run(x, weights, len(lengths), column_major, seg_indptr=indptr)
    torch.testing.assert_close(again, y, atol=0, rtol=0)


@needs_gpu
@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_gemm_weight_indices_share_weights(column_major, backend):
    skip_unless_backend_runs(backend)
    lengths = [3, 0, 17, 64, 1]
    x, weights, seg_lens = make_case(lengths, 256, 512, torch.bfloat16, column_major,
                                     num_weights=2)
    indices = torch.tensor([1, 0, 1, 0, 1], dtype=torch.int64, device="cuda")
    y = gemm.SegmentGEMMWrapper(torch.empty(1, device="cuda"), backend=backend).run(
        x, weights, len(lengths), column_major, seg_lens=seg_lens, weight_indices=indices)
    expected = segment_reference(x, weights, seg_lens, column_major, indices)
    torch.testing.assert_close(y.double(), expected, **tolerance(torch.bfloat16))


@needs_gpu
@pytest.mark.parametrize("backend", BACKENDS)
def test_segment_gemm_replays_in_a_cuda_graph_with_new_lengths(backend):
    skip_unless_backend_runs(backend)
    lengths, new_lengths = [40, 0, 88], [1, 126, 1]
    x, weights, seg_lens = make_case(lengths, 512, 256, torch.float16, True)
    wrapper = tessera.SegmentGEMMWrapper(torch.empty(1, device="cuda"), backend=backend)
    wrapper.run(x, weights, 3, True, seg_lens=seg_lens)  # warm-up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = wrapper.run(x, weights, 3, True, seg_lens=seg_lens)
    seg_lens.copy_(torch.tensor(new_lengths, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    expected = segment_reference(x, weights, seg_lens, True)
    torch.testing.assert_close(y.double(), expected, **tolerance(torch.float16))


def to_fp8(x, dtype):
    amax = x.abs().amax().clamp(min=1e-12)
    scale = torch.finfo(dtype).max / amax
    return (x * scale).clamp(torch.finfo(dtype).min, torch.finfo(dtype).max).to(dtype), \
        scale.float().reciprocal()


@needs_fp8
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("a_dtype,b_dtype", [("e4m3", "e4m3"), ("e4m3", "e5m2"),
                                             ("e5m2", "e4m3")])
def test_bmm_fp8_matches_dequantized_matmul(out_dtype, a_dtype, b_dtype):
    types = {"e4m3": FP8, "e5m2": E5M2}
    a, a_inv = to_fp8(torch.randn(16, 48, 64, device="cuda"), types[a_dtype])
    # Column-major B, as FlashInfer's example builds it.
    b, b_inv = to_fp8(torch.randn(16, 80, 64, device="cuda").transpose(-2, -1), types[b_dtype])
    out = tessera.bmm_fp8(a, b, a_inv, b_inv, out_dtype)
    assert out.shape == (16, 48, 80) and out.dtype == out_dtype
    expected = torch.bmm(a.float() * a_inv, b.float() * b_inv)
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.02)


# ---- CPU (fakes, errors)


def fake_cuda(*shape, dtype=torch.float16):
    return torch.empty(*shape, dtype=dtype, device="cuda")


def test_segment_gemm_fake_gives_the_output_shape():
    with FakeTensorMode():
        x = fake_cuda(10, 128, dtype=torch.bfloat16)
        weights = fake_cuda(4, 256, 128, dtype=torch.bfloat16)
        seg_lens = fake_cuda(4, dtype=torch.int64)
        y = gemm.SegmentGEMMWrapper(fake_cuda(8)).run(x, weights, 4, True, seg_lens=seg_lens)
        assert y.shape == (10, 256) and y.dtype == torch.bfloat16
        row_major = fake_cuda(4, 128, 64, dtype=torch.bfloat16)
        assert gemm.SegmentGEMMWrapper(fake_cuda(8)).run(
            x, row_major, 4, False, seg_indptr=fake_cuda(5, dtype=torch.int32)).shape == (10, 64)


def test_bmm_fp8_fake_gives_the_output_shape():
    if FP8 is None:
        pytest.skip("torch without float8")
    with FakeTensorMode():
        a = fake_cuda(3, 48, 64, dtype=FP8)
        b = fake_cuda(3, 80, 64, dtype=FP8).transpose(-2, -1)
        scale = fake_cuda(1, dtype=torch.float32)
        out = gemm.bmm_fp8(a, b, scale, scale, torch.bfloat16)
        assert out.shape == (3, 48, 80) and out.dtype == torch.bfloat16


def test_backend_names():
    for backend in ("auto", "sm80", "sm90"):
        tessera.SegmentGEMMWrapper(torch.empty(8), backend=backend)
    with pytest.raises(TesseraArgumentError, match="'backend'"):
        tessera.SegmentGEMMWrapper(torch.empty(8), backend="cutlass")


@needs_gpu
def test_sm90_backend_off_hopper_is_a_named_error():
    if torch.cuda.get_device_capability() == (9, 0):
        pytest.skip("a compute capability 9.0 GPU runs sm90")
    x, weights, seg_lens = make_case([4, 4], 64, 32, torch.float16, False)
    wrapper = tessera.SegmentGEMMWrapper(torch.empty(8, device="cuda"), backend="sm90")
    with pytest.raises(TesseraArgumentError, match="'backend'"):
        wrapper.run(x, weights, 2, False, seg_lens=seg_lens)


@pytest.mark.parametrize("change,argument", [
    (dict(x_cols=60), "x"),                      # d_in not a multiple of 8
    (dict(w_in=136), "weights"),                 # d_in mismatch between x and weights
    (dict(w_out=36), "weights"),                 # d_out not a multiple of 8
    (dict(x_dtype=torch.float32), "x"),          # unsupported dtype
    (dict(lens=5), "seg_lens"),                  # seg_lens of another batch size
    (dict(lens_dtype=torch.float32), "seg_lens"),
    (dict(no_segments=True), "seg_lens"),
    (dict(indices=3), "weight_indices"),
    (dict(w_count=3), "weights"),                # W[3] missing without weight_indices
    (dict(batch_size=-1), "batch_size"),
])
def test_segment_gemm_names_the_bad_argument(change, argument):
    with FakeTensorMode():
        x_dtype = change.get("x_dtype", torch.float16)
        x = fake_cuda(10, change.get("x_cols", 128), dtype=x_dtype)
        weights = fake_cuda(change.get("w_count", 4), change.get("w_in", 128),
                            change.get("w_out", 64))
        seg_lens = fake_cuda(change.get("lens", 4), dtype=change.get("lens_dtype", torch.int64))
        indices = fake_cuda(change["indices"], dtype=torch.int64) if "indices" in change else None
        wrapper = gemm.SegmentGEMMWrapper(fake_cuda(8))
        with pytest.raises(TesseraArgumentError, match=f"'{argument}'"):
            wrapper.run(x, weights, change.get("batch_size", 4), False,
                        seg_lens=None if change.get("no_segments") else seg_lens,
                        weight_indices=indices)


@pytest.mark.skipif(FP8 is None, reason="torch without float8")
@pytest.mark.parametrize("change,argument", [
    (dict(k=40), "A"),                            # k not a multiple of 16
    (dict(a_dtype=torch.float16), "A"),
    (dict(both_e5m2=True), "B"),
    (dict(scale_elems=2), "A_scale"),
    (dict(dtype=torch.float32), "dtype"),
])
def test_bmm_fp8_names_the_bad_argument(change, argument):
    with FakeTensorMode():
        k = change.get("k", 64)
        a_dtype = E5M2 if change.get("both_e5m2") else change.get("a_dtype", FP8)
        b_dtype = E5M2 if change.get("both_e5m2") else FP8
        a = fake_cuda(2, 16, k, dtype=a_dtype)
        b = fake_cuda(2, 32, k, dtype=b_dtype).transpose(-2, -1)
        scale = fake_cuda(change.get("scale_elems", 1), dtype=torch.float32)
        with pytest.raises(TesseraArgumentError, match=f"'{argument}'"):
            gemm.bmm_fp8(a, b, scale, fake_cuda(1, dtype=torch.float32),
                         change.get("dtype", torch.bfloat16))


def test_flashinfer_names_are_exported():
    assert tessera.SegmentGEMMWrapper is gemm.SegmentGEMMWrapper
    assert tessera.bmm_fp8 is gemm.bmm_fp8
    assert gemm.SegmentGEMMWrapper.forward is gemm.SegmentGEMMWrapper.run
