"""tessera.norm: RMSNorm family against a float32 torch reference (GPU), and
its fakes, tracing and error surfacing (CPU)."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from tessera import _lib, norm
from tessera._tensor import dl

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DTYPES = [torch.float16, torch.bfloat16]
# (tokens, hidden): one row; the vectorised path (hidden % 8 == 0, large);
# the scalar path (hidden % 8 != 0).
SHAPES = [(1, 128), (7, 4096), (33, 1001)]
EPS = 1e-6


def tolerance(dtype):
    # The kernel and the reference each round one float32 result to the
    # output dtype; they may land one ulp apart (fp16 2^-10, bf16 2^-7
    # relative), plus float32 reduction-order noise near zero.
    return dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else dict(atol=1.6e-2, rtol=1.6e-2)


def rows(tokens, hidden, dtype, strided=False):
    """Random rows on the GPU; strided: a [tokens, hidden] slice of wider rows."""
    if strided:
        return torch.randn(tokens, hidden + 64, dtype=dtype, device="cuda")[:, 32:32 + hidden]
    return torch.randn(tokens, hidden, dtype=dtype, device="cuda")


def rmsnorm_reference(x, weight, eps, weight_offset=0.0):
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (weight.float() + weight_offset)


# ---- GPU


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("gemma", [False, True])
def test_rmsnorm_matches_reference(dtype, shape, strided, gemma):
    tokens, hidden = shape
    x = rows(tokens, hidden, dtype, strided)
    weight = torch.randn(hidden, dtype=dtype, device="cuda")
    out = rows(tokens, hidden, dtype, strided).fill_(float("nan"))  # keeps the strides
    function = norm.gemma_rmsnorm if gemma else norm.rmsnorm
    result = function(x, weight, EPS, out=out)
    assert result is out
    expected = rmsnorm_reference(x, weight, EPS, 1.0 if gemma else 0.0)
    torch.testing.assert_close(out.float(), expected, **tolerance(dtype))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsnorm_allocates_out(dtype):
    x = rows(5, 256, dtype)
    weight = torch.randn(256, dtype=dtype, device="cuda")
    out = norm.rmsnorm(x, weight)
    assert out.shape == x.shape and out.dtype == dtype
    torch.testing.assert_close(out.float(), rmsnorm_reference(x, weight, EPS), **tolerance(dtype))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("gemma", [False, True])
def test_fused_add_rmsnorm_matches_reference(dtype, shape, strided, gemma):
    tokens, hidden = shape
    x = rows(tokens, hidden, dtype, strided)
    residual = rows(tokens, hidden, dtype, strided)
    weight = torch.randn(hidden, dtype=dtype, device="cuda")
    total = x.float() + residual.float()  # the kernel keeps this float32 sum
    expected_input = rmsnorm_reference(total, weight, EPS, 1.0 if gemma else 0.0)
    function = norm.gemma_fused_add_rmsnorm if gemma else norm.fused_add_rmsnorm
    assert function(x, residual, weight, EPS) is None
    # residual holds the float32 sum rounded once, exactly as .to(dtype) rounds it.
    torch.testing.assert_close(residual, total.to(dtype), atol=0, rtol=0)
    torch.testing.assert_close(x.float(), expected_input, **tolerance(dtype))


@needs_gpu
def test_compiled_norm_matches_eager():
    def step(x, residual, weight):
        y = norm.rmsnorm(x, weight)
        norm.fused_add_rmsnorm(y, residual, weight)
        return y, residual

    x = rows(9, 512, torch.bfloat16)
    residual = rows(9, 512, torch.bfloat16)
    weight = torch.randn(512, dtype=torch.bfloat16, device="cuda")
    eager = step(x.clone(), residual.clone(), weight)
    compiled = torch.compile(step, fullgraph=True)(x.clone(), residual.clone(), weight)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, atol=0, rtol=0)  # same kernels, same inputs


# ---- CPU (fakes, tracing, errors)


def fake_cuda(*shape, dtype=torch.float16):
    return torch.empty(*shape, dtype=dtype, device="cuda")


def test_fakes_give_output_shapes_and_dtypes():
    with FakeTensorMode():
        x = fake_cuda(6, 320, dtype=torch.bfloat16)
        weight = fake_cuda(320, dtype=torch.bfloat16)
        for function in (norm.rmsnorm, norm.gemma_rmsnorm):
            out = function(x, weight)
            assert out.shape == (6, 320) and out.dtype == torch.bfloat16
            assert out.device.type == "cuda"
        residual = fake_cuda(6, 320, dtype=torch.bfloat16)
        assert norm.fused_add_rmsnorm(x, residual, weight) is None
        assert norm.gemma_fused_add_rmsnorm(x, residual, weight) is None


def test_fullgraph_compile_traces_the_ops():
    captured = []

    def capture(graph_module, example_inputs):
        captured.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "call_function")
        return graph_module.forward

    def step(x, residual, weight):
        y = norm.gemma_rmsnorm(x, weight)
        norm.fused_add_rmsnorm(y, residual, weight)
        return y

    with FakeTensorMode():
        x, residual, weight = fake_cuda(4, 64), fake_cuda(4, 64), fake_cuda(64)
    torch._dynamo.reset()
    out = torch.compile(step, fullgraph=True, backend=capture)(x, residual, weight)
    assert out.shape == (4, 64)
    assert torch.ops.tessera.gemma_rmsnorm in captured
    assert torch.ops.tessera.fused_add_rmsnorm in captured


def test_ops_declare_their_written_tensors():
    assert str(torch.ops.tessera.rmsnorm.default._schema) == (
        "tessera::rmsnorm(Tensor input, Tensor weight, Tensor(a2!) out, float eps) -> ()")
    assert str(torch.ops.tessera.fused_add_rmsnorm.default._schema) == (
        "tessera::fused_add_rmsnorm(Tensor(a0!) input, Tensor(a1!) residual, Tensor weight, "
        "float eps) -> ()")


def test_cpu_tensors_are_rejected_by_name_through_the_op():
    # The ops are registered for CPU too, so the library's own message arrives.
    x = torch.randn(2, 64, dtype=torch.float16)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'input'.*CUDA"):
        norm.rmsnorm(x, torch.ones(64, dtype=torch.float16))


def test_library_rejects_cpu_input_by_name():
    # The library checks devices before any CUDA call, so this runs without a GPU.
    x = torch.randn(2, 64, dtype=torch.float16)
    weight = torch.ones(64, dtype=torch.float16)
    out = torch.empty_like(x)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'input'.*CUDA"):
        _lib.call("tessera_rmsnorm", dl(x), dl(weight), dl(out), EPS, None)


def test_library_rejects_missing_tensor_by_name():
    x = torch.randn(2, 64, dtype=torch.float16)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'weight'"):
        _lib.call("tessera_fused_add_rmsnorm", dl(x), dl(x.clone()), None, EPS, None)
