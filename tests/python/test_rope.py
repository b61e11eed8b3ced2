"""tessera.rope: RoPE variants against a float64 torch reference (GPU), and
their fakes, tracing and error surfacing (CPU)."""

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from tessera import _lib, rope
from tessera._lib import RopeOptions
from tessera._tensor import dl

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DTYPES = [torch.float16, torch.bfloat16]
NUM_QO_HEADS, NUM_KV_HEADS, HEAD_DIM = 4, 2, 128
# A ragged batch of three requests: 3, 7 and 7 tokens starting at these positions.
INDPTR = [0, 3, 10, 17]
OFFSETS = [0, 5, 900]
LLAMA31 = dict(rope_scale=8.0, rope_theta=5e5, low_freq_factor=1.0, high_freq_factor=4.0,
               old_context_len=8192)


def tolerance(dtype):
    # One rounding of the output to its dtype (fp16 2^-11, bf16 2^-8 relative)
    # plus the float32 angle: pos * freq rounded at positions below 1000 is off
    # by about 1e-4 rad, times |x| of a few units.
    return dict(atol=4e-3, rtol=4e-3) if dtype == torch.float16 else dict(atol=1.6e-2, rtol=1.6e-2)


def frequencies(rotary_dim, rope_scale=1.0, rope_theta=1e4, llama31=None):
    """freq_j as rope.h defines it, rounded to float32 once as the library does."""
    j = torch.arange(rotary_dim // 2, dtype=torch.float64)
    base = 1.0 / rope_theta ** (2.0 * j / rotary_dim)
    freq = base / rope_scale
    if llama31 is not None:
        low, high, old = llama31
        wavelen = 2.0 * math.pi / base
        smooth = ((old / wavelen - low) / (high - low)).clamp(0.0, 1.0)
        freq = (1.0 - smooth) * base / rope_scale + smooth * base
    return freq.float().double()


def rotate(x, cos, sin, rotary_dim, interleave):
    """x [nnz, heads, head_dim]; cos/sin [nnz, rotary_dim / 2]; float64 result."""
    x = x.double()
    out = x.clone()
    cos, sin = cos.double()[:, None, :], sin.double()[:, None, :]
    if interleave:
        x1, x2 = x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2]
        out[..., 0:rotary_dim:2] = x1 * cos - x2 * sin
        out[..., 1:rotary_dim:2] = x2 * cos + x1 * sin
    else:
        half = rotary_dim // 2
        x1, x2 = x[..., :half], x[..., half:rotary_dim]
        out[..., :half] = x1 * cos - x2 * sin
        out[..., half:rotary_dim] = x2 * cos + x1 * sin
    return out


def rope_reference(x, positions, freq, rotary_dim, interleave):
    angles = positions.double().cpu()[:, None] * freq[None, :]
    return rotate(x.cpu(), angles.cos(), angles.sin(), rotary_dim, interleave)


def ragged_positions():
    return torch.cat([torch.arange(OFFSETS[b], OFFSETS[b] + INDPTR[b + 1] - INDPTR[b])
                      for b in range(len(OFFSETS))])


def query_key(dtype, nnz, fused):
    """q [nnz, 4, 128], k [nnz, 2, 128]; fused: slices of one qkv buffer (strided tokens)."""
    if fused:
        width = (NUM_QO_HEADS + 2 * NUM_KV_HEADS) * HEAD_DIM
        qkv = torch.randn(nnz, width, dtype=dtype, device="cuda")
        q = qkv[:, :NUM_QO_HEADS * HEAD_DIM].view(nnz, NUM_QO_HEADS, HEAD_DIM)
        k = qkv[:, NUM_QO_HEADS * HEAD_DIM:(NUM_QO_HEADS + NUM_KV_HEADS) * HEAD_DIM]
        return q, k.view(nnz, NUM_KV_HEADS, HEAD_DIM)
    return (torch.randn(nnz, NUM_QO_HEADS, HEAD_DIM, dtype=dtype, device="cuda"),
            torch.randn(nnz, NUM_KV_HEADS, HEAD_DIM, dtype=dtype, device="cuda"))


def int32_cuda(values):
    return torch.tensor(values, dtype=torch.int32, device="cuda")


def check_rotated(out, x, positions, freq, rotary_dim, interleave, dtype):
    expected = rope_reference(x, positions, freq, rotary_dim, interleave)
    torch.testing.assert_close(out.double().cpu(), expected, **tolerance(dtype))
    # Dimensions past rotary_dim are copies.
    assert torch.equal(out[..., rotary_dim:], x[..., rotary_dim:])


# ---- GPU

ROPE_CASES = pytest.mark.parametrize("dtype", DTYPES)
INTERLEAVE = pytest.mark.parametrize("interleave", [False, True])
ROTARY_DIM = pytest.mark.parametrize("rotary_dim", [None, 64])
LLAMA = pytest.mark.parametrize("llama31", [False, True])


def rope_kwargs(rotary_dim, interleave, llama31):
    if llama31:
        return dict(rotary_dim=rotary_dim, interleave=interleave, **LLAMA31)
    return dict(rotary_dim=rotary_dim, interleave=interleave, rope_scale=1.0, rope_theta=1e4)


def reference_frequencies(rotary_dim, llama31):
    if llama31:
        return frequencies(rotary_dim, LLAMA31["rope_scale"], LLAMA31["rope_theta"],
                           (LLAMA31["low_freq_factor"], LLAMA31["high_freq_factor"],
                            LLAMA31["old_context_len"]))
    return frequencies(rotary_dim)


@needs_gpu
@ROPE_CASES
@INTERLEAVE
@ROTARY_DIM
@LLAMA
@pytest.mark.parametrize("fused", [False, True])
def test_apply_rope_matches_reference(dtype, interleave, rotary_dim, llama31, fused):
    q, k = query_key(dtype, INDPTR[-1], fused)
    function = rope.apply_llama31_rope if llama31 else rope.apply_rope
    q_rope, k_rope = function(q, k, int32_cuda(INDPTR), int32_cuda(OFFSETS),
                              **rope_kwargs(rotary_dim, interleave, llama31))
    dim = rotary_dim or HEAD_DIM
    freq = reference_frequencies(dim, llama31)
    check_rotated(q_rope, q, ragged_positions(), freq, dim, interleave, dtype)
    check_rotated(k_rope, k, ragged_positions(), freq, dim, interleave, dtype)


@needs_gpu
@ROPE_CASES
@INTERLEAVE
@ROTARY_DIM
@LLAMA
@pytest.mark.parametrize("pos_dtype", [torch.int32, torch.int64])
def test_apply_rope_pos_ids_matches_reference(dtype, interleave, rotary_dim, llama31, pos_dtype):
    nnz = 21
    q, k = query_key(dtype, nnz, fused=False)
    positions = torch.randint(0, 1000, (nnz,), dtype=pos_dtype)
    function = rope.apply_llama31_rope_pos_ids if llama31 else rope.apply_rope_pos_ids
    q_rope, k_rope = function(q, k, positions.cuda(), **rope_kwargs(rotary_dim, interleave,
                                                                      llama31))
    dim = rotary_dim or HEAD_DIM
    freq = reference_frequencies(dim, llama31)
    check_rotated(q_rope, q, positions, freq, dim, interleave, dtype)
    check_rotated(k_rope, k, positions, freq, dim, interleave, dtype)


@needs_gpu
@INTERLEAVE
@LLAMA
def test_inplace_variants_match_out_of_place(interleave, llama31):
    dtype = torch.bfloat16
    q, k = query_key(dtype, INDPTR[-1], fused=True)
    indptr, offsets = int32_cuda(INDPTR), int32_cuda(OFFSETS)
    positions = ragged_positions().to(torch.int32).cuda()
    kwargs = rope_kwargs(64, interleave, llama31)
    if llama31:
        ragged, ragged_inplace = rope.apply_llama31_rope, rope.apply_llama31_rope_inplace
        by_id, by_id_inplace = rope.apply_llama31_rope_pos_ids, rope.apply_llama31_rope_pos_ids_inplace
    else:
        ragged, ragged_inplace = rope.apply_rope, rope.apply_rope_inplace
        by_id, by_id_inplace = rope.apply_rope_pos_ids, rope.apply_rope_pos_ids_inplace

    expected_q, expected_k = ragged(q, k, indptr, offsets, **kwargs)
    q1, k1 = q.clone(), k.clone()
    assert ragged_inplace(q1, k1, indptr, offsets, **kwargs) is None
    assert torch.equal(q1, expected_q) and torch.equal(k1, expected_k)

    expected_q, expected_k = by_id(q, k, positions, **kwargs)
    q2, k2 = q.clone(), k.clone()
    assert by_id_inplace(q2, k2, positions, **kwargs) is None
    assert torch.equal(q2, expected_q) and torch.equal(k2, expected_k)


def cos_sin_cache(max_position, rotary_dim):
    angles = torch.arange(max_position, dtype=torch.float64)[:, None] * frequencies(rotary_dim)
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


@needs_gpu
@ROPE_CASES
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("rotary_dim", [HEAD_DIM, 64])
@pytest.mark.parametrize("pos_dtype", [torch.int32, torch.int64])
def test_cos_sin_cache_matches_reference(dtype, is_neox, rotary_dim, pos_dtype):
    nnz, max_position = 19, 2048
    cache = cos_sin_cache(max_position, rotary_dim)
    positions = torch.randint(0, max_position, (nnz,), dtype=pos_dtype)
    query = torch.randn(nnz, NUM_QO_HEADS * HEAD_DIM, dtype=dtype, device="cuda")
    key = torch.randn(nnz, NUM_KV_HEADS * HEAD_DIM, dtype=dtype, device="cuda")
    query_out, key_out = rope.apply_rope_with_cos_sin_cache(positions.cuda(), query, key,
                                                            HEAD_DIM, cache.cuda(), is_neox)
    assert query_out.shape == query.shape and key_out.shape == key.shape
    half = rotary_dim // 2
    cos, sin = cache[positions.long(), :half], cache[positions.long(), half:]
    for out, x, heads in ((query_out, query, NUM_QO_HEADS), (key_out, key, NUM_KV_HEADS)):
        x3 = x.view(nnz, heads, HEAD_DIM)
        expected = rotate(x3.cpu(), cos, sin, rotary_dim, interleave=not is_neox)
        torch.testing.assert_close(out.view(nnz, heads, HEAD_DIM).double().cpu(), expected,
                                   **tolerance(dtype))

    query_inplace, key_inplace = query.clone(), key.clone()
    assert rope.apply_rope_with_cos_sin_cache_inplace(positions.cuda(), query_inplace,
                                                      key_inplace, HEAD_DIM, cache.cuda(),
                                                      is_neox) is None
    assert torch.equal(query_inplace, query_out) and torch.equal(key_inplace, key_out)


@needs_gpu
def test_compiled_rope_matches_eager():
    def step(q, k, positions, cache):
        q_rope, k_rope = rope.apply_rope_pos_ids(q, k, positions.to(torch.int32))
        rope.apply_rope_with_cos_sin_cache_inplace(positions, q_rope, k_rope, HEAD_DIM, cache)
        return q_rope, k_rope

    q, k = query_key(torch.float16, 11, fused=False)
    positions = torch.randint(0, 256, (11,), device="cuda")
    cache = cos_sin_cache(256, HEAD_DIM).cuda()
    eager = step(q, k, positions, cache)
    compiled = torch.compile(step, fullgraph=True)(q, k, positions, cache)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, atol=0, rtol=0)  # same kernels, same inputs


# ---- CPU (fakes, tracing, errors)


def fake_qk(nnz=6, dtype=torch.bfloat16):
    return (torch.empty(nnz, NUM_QO_HEADS, HEAD_DIM, dtype=dtype, device="cuda"),
            torch.empty(nnz, NUM_KV_HEADS, HEAD_DIM, dtype=dtype, device="cuda"))


def test_fakes_give_output_shapes_and_dtypes():
    with FakeTensorMode():
        q, k = fake_qk()
        indptr = torch.empty(3, dtype=torch.int32, device="cuda")
        offsets = torch.empty(2, dtype=torch.int32, device="cuda")
        pos_ids = torch.empty(6, dtype=torch.int32, device="cuda")
        for q_rope, k_rope in (rope.apply_rope(q, k, indptr, offsets),
                               rope.apply_llama31_rope(q, k, indptr, offsets),
                               rope.apply_rope_pos_ids(q, k, pos_ids),
                               rope.apply_llama31_rope_pos_ids(q, k, pos_ids)):
            assert q_rope.shape == q.shape and k_rope.shape == k.shape
            assert q_rope.dtype == k_rope.dtype == torch.bfloat16
        assert rope.apply_rope_inplace(q, k, indptr, offsets) is None
        assert rope.apply_llama31_rope_inplace(q, k, indptr, offsets) is None
        assert rope.apply_rope_pos_ids_inplace(q, k, pos_ids) is None
        assert rope.apply_llama31_rope_pos_ids_inplace(q, k, pos_ids) is None

        query = torch.empty(6, NUM_QO_HEADS * HEAD_DIM, dtype=torch.float16, device="cuda")
        key = torch.empty(6, NUM_KV_HEADS * HEAD_DIM, dtype=torch.float16, device="cuda")
        cache = torch.empty(64, HEAD_DIM, dtype=torch.float32, device="cuda")
        query_out, key_out = rope.apply_rope_with_cos_sin_cache(pos_ids, query, key, HEAD_DIM,
                                                                cache)
        assert query_out.shape == query.shape and key_out.shape == key.shape
        assert query_out.dtype == torch.float16
        assert rope.apply_rope_with_cos_sin_cache_inplace(pos_ids, query, key, HEAD_DIM,
                                                          cache) is None


def test_fullgraph_compile_traces_the_ops():
    captured = []

    def capture(graph_module, example_inputs):
        captured.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "call_function")
        return graph_module.forward

    def step(q, k, pos_ids):
        q_rope, k_rope = rope.apply_llama31_rope_pos_ids(q, k, pos_ids, rotary_dim=64)
        rope.apply_rope_pos_ids_inplace(q_rope, k_rope, pos_ids, interleave=True)
        return q_rope, k_rope

    with FakeTensorMode():
        q, k = fake_qk()
        pos_ids = torch.empty(6, dtype=torch.int32, device="cuda")
    torch._dynamo.reset()
    q_rope, _ = torch.compile(step, fullgraph=True, backend=capture)(q, k, pos_ids)
    assert q_rope.shape == q.shape
    assert torch.ops.tessera.apply_rope_pos_ids in captured
    assert torch.ops.tessera.apply_rope_pos_ids_inplace in captured


def test_inplace_ops_declare_q_and_k_written():
    schema = str(torch.ops.tessera.apply_rope_inplace.default._schema)
    assert schema.startswith("tessera::apply_rope_inplace(Tensor(a0!) q, Tensor(a1!) k, "
                             "Tensor indptr, Tensor offsets, ")
    schema = str(torch.ops.tessera.apply_rope_with_cos_sin_cache_inplace.default._schema)
    assert "Tensor(a1!) query, Tensor(a2!) key" in schema


def cpu_rope_options():
    options = RopeOptions()
    options.rope_scale, options.rope_theta = 1.0, 1e4
    return options


def test_library_rejects_cpu_q_by_name():
    q = torch.randn(3, NUM_QO_HEADS, HEAD_DIM, dtype=torch.float16)
    k = torch.randn(3, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    pos_ids = torch.arange(3, dtype=torch.int32)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'q'.*CUDA"):
        _lib.call("tessera_apply_rope_pos_ids", dl(q), dl(k), dl(q), dl(k), dl(pos_ids),
                  cpu_rope_options(), None)


def test_library_rejects_missing_options():
    q = torch.randn(3, NUM_QO_HEADS, HEAD_DIM, dtype=torch.float16)
    k = torch.randn(3, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    pos_ids = torch.arange(3, dtype=torch.int32)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'options'"):
        _lib.call("tessera_apply_rope_pos_ids", dl(q), dl(k), dl(q), dl(k), dl(pos_ids), None,
                  None)
