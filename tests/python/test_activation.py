"""tessera.activation: gated activations against a float32 torch reference
(GPU), and their fakes, tracing and error surfacing (CPU)."""

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from tessera import _lib, activation
from tessera._tensor import dl

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DTYPES = [torch.float16, torch.bfloat16]
# input shapes [..., 2 * d]: vectorised d (% 8 == 0), scalar d, 3-D leading dims.
SHAPES = [(1, 256), (17, 2 * 4096), (5, 2 * 100), (3, 4, 2 * 64)]


def silu(x):
    return x * torch.sigmoid(x)


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


FUNCTIONS = {
    "silu": (activation.silu_and_mul, silu),
    "gelu": (activation.gelu_and_mul, gelu),
    "gelu_tanh": (activation.gelu_tanh_and_mul, gelu_tanh),
}


def tolerance(dtype):
    # One rounding of a float32 result to the output dtype on each side (fp16
    # 2^-11, bf16 2^-8 relative at most), plus float32 transcendental error.
    return dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else dict(atol=1.6e-2, rtol=1.6e-2)


def gated_reference(x, act):
    x = x.float()
    d = x.shape[-1] // 2
    return act(x[..., :d]) * x[..., d:]


# ---- GPU


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_gated_activation_matches_reference(dtype, shape, name):
    function, act = FUNCTIONS[name]
    x = torch.randn(shape, dtype=dtype, device="cuda")
    out = torch.full((*shape[:-1], shape[-1] // 2), float("nan"), dtype=dtype, device="cuda")
    assert function(x, out=out) is out
    torch.testing.assert_close(out.float(), gated_reference(x, act), **tolerance(dtype))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_gated_activation_strided_rows(dtype, name):
    # Rows of input and out are slices of wider buffers (row stride > width).
    function, act = FUNCTIONS[name]
    x = torch.randn(9, 2 * 128 + 16, dtype=dtype, device="cuda")[:, 8:8 + 2 * 128]
    out = torch.full((9, 128 + 8), float("nan"), dtype=dtype, device="cuda")[:, :128]
    function(x, out=out)
    torch.testing.assert_close(out.float(), gated_reference(x, act), **tolerance(dtype))


@needs_gpu
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_gated_activation_allocates_out(name):
    function, act = FUNCTIONS[name]
    x = torch.randn(4, 2 * 64, dtype=torch.float16, device="cuda")
    out = function(x)
    assert out.shape == (4, 64) and out.dtype == torch.float16
    torch.testing.assert_close(out.float(), gated_reference(x, act), **tolerance(torch.float16))


@needs_gpu
def test_compiled_activation_matches_eager():
    def mlp(x):
        return activation.silu_and_mul(x), activation.gelu_tanh_and_mul(x)

    x = torch.randn(8, 2 * 256, dtype=torch.bfloat16, device="cuda")
    compiled = torch.compile(mlp, fullgraph=True)(x)
    for a, b in zip(compiled, mlp(x)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)  # same kernels, same inputs


# ---- CPU (fakes, tracing, errors)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_fakes_halve_the_last_dim(name):
    function, _ = FUNCTIONS[name]
    with FakeTensorMode():
        x = torch.empty(3, 5, 2 * 96, dtype=torch.bfloat16, device="cuda")
        out = function(x)
        assert out.shape == (3, 5, 96) and out.dtype == torch.bfloat16
        assert out.device.type == "cuda"


def test_fullgraph_compile_traces_the_ops():
    captured = []

    def capture(graph_module, example_inputs):
        captured.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "call_function")
        return graph_module.forward

    def mlp(x):
        return activation.silu_and_mul(x), activation.gelu_and_mul(x)

    with FakeTensorMode():
        x = torch.empty(4, 128, dtype=torch.float16, device="cuda")
    torch._dynamo.reset()
    silu_out, gelu_out = torch.compile(mlp, fullgraph=True, backend=capture)(x)
    assert silu_out.shape == gelu_out.shape == (4, 64)
    assert torch.ops.tessera.silu_and_mul in captured
    assert torch.ops.tessera.gelu_and_mul in captured


def test_op_declares_out_written():
    assert str(torch.ops.tessera.silu_and_mul.default._schema) == (
        "tessera::silu_and_mul(Tensor input, Tensor(a1!) out) -> ()")


def test_library_rejects_cpu_input_by_name():
    x = torch.randn(2, 64, dtype=torch.float16)
    out = torch.empty(2, 32, dtype=torch.float16)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'input'.*CUDA"):
        _lib.call("tessera_gelu_and_mul", dl(x), dl(out), None)
