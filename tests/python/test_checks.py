"""Argument checks (tessera/_checks.py) without a GPU: every public entry
point names a bad argument, and the ops' fake kernels reject what the real
ones would, so FakeTensorMode, torch.export and torch.compile catch the
mistake while tracing. Eager calls on CPU tensors run the same checks before
the library (which would otherwise stop at "expected a CUDA tensor")."""

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera
from tessera import TesseraArgumentError


def cuda(*shape, dtype=torch.float16):
    """A fake CUDA tensor (call under FakeTensorMode)."""
    return torch.empty(shape, dtype=dtype, device="cuda")


def i32(*shape):
    return cuda(*shape, dtype=torch.int32)


# ---- fake kernels: (name of the case, call, argument the error names)

FAKE_CASES = [
    ("rmsnorm fp32 input",
     lambda: tessera.rmsnorm(cuda(4, 64, dtype=torch.float32), cuda(64, dtype=torch.float32)),
     "input"),
    ("rmsnorm weight of another length",
     lambda: tessera.rmsnorm(cuda(4, 64), cuda(32)), "weight"),
    ("rmsnorm weight of another dtype",
     lambda: tessera.rmsnorm(cuda(4, 64), cuda(64, dtype=torch.bfloat16)), "weight"),
    ("rmsnorm out of another shape",
     lambda: tessera.rmsnorm(cuda(4, 64), cuda(64), out=cuda(4, 32)), "out"),
    ("rmsnorm eps 0", lambda: tessera.rmsnorm(cuda(4, 64), cuda(64), eps=0.0), "eps"),
    ("fused_add_rmsnorm residual of another shape",
     lambda: tessera.fused_add_rmsnorm(cuda(4, 64), cuda(3, 64), cuda(64)), "residual"),
    ("gemma_rmsnorm 3-D input", lambda: tessera.gemma_rmsnorm(cuda(2, 4, 64), cuda(64)),
     "input"),
    ("silu_and_mul odd width", lambda: tessera.silu_and_mul(cuda(4, 63)), "input"),
    ("gelu_and_mul fp32", lambda: tessera.gelu_and_mul(cuda(4, 64, dtype=torch.float32)),
     "input"),
    ("gelu_tanh_and_mul out not halved",
     lambda: tessera.gelu_tanh_and_mul(cuda(4, 64), out=cuda(4, 64)), "out"),
    ("merge_state s_a of other rows",
     lambda: tessera.merge_state(cuda(5, 8, 64), cuda(4, 8, dtype=torch.float32),
                                 cuda(5, 8, 64), cuda(5, 8, dtype=torch.float32)), "s_a"),
    ("merge_state v_b of another shape",
     lambda: tessera.merge_state(cuda(5, 8, 64), cuda(5, 8, dtype=torch.float32),
                                 cuda(5, 8, 32), cuda(5, 8, dtype=torch.float32)), "v_b"),
    ("merge_state fp16 lse",
     lambda: tessera.merge_state(cuda(5, 8, 64), cuda(5, 8), cuda(5, 8, 64), cuda(5, 8)), "s_a"),
    ("merge_state_in_place mask of other rows",
     lambda: tessera.merge_state_in_place(cuda(5, 8, 64), cuda(5, 8, dtype=torch.float32),
                                          cuda(5, 8, 64), cuda(5, 8, dtype=torch.float32),
                                          mask=cuda(4, dtype=torch.uint8)), "mask"),
    ("merge_states 3-D v",
     lambda: tessera.merge_states(cuda(5, 8, 64), cuda(5, 8, dtype=torch.float32)), "v"),
    ("merge_states s of other states",
     lambda: tessera.merge_states(cuda(5, 3, 8, 64), cuda(5, 2, 8, dtype=torch.float32)), "s"),
    ("apply_rope k of another head_dim",
     lambda: tessera.apply_rope(cuda(6, 4, 128), cuda(6, 2, 64), i32(3), i32(2)), "k"),
    ("apply_rope indptr of the wrong length",
     lambda: tessera.apply_rope(cuda(6, 4, 128), cuda(6, 2, 128), i32(4), i32(2)), "indptr"),
    ("apply_rope odd rotary_dim",
     lambda: tessera.apply_rope(cuda(6, 4, 128), cuda(6, 2, 128), i32(3), i32(2),
                                rotary_dim=63), "rotary_dim"),
    ("apply_rope_pos_ids pos_ids of the wrong length",
     lambda: tessera.apply_rope_pos_ids(cuda(6, 4, 128), cuda(6, 2, 128), i32(5)), "pos_ids"),
    ("apply_rope_pos_ids_inplace float pos_ids",
     lambda: tessera.apply_rope_pos_ids_inplace(cuda(6, 4, 128), cuda(6, 2, 128),
                                                cuda(6, dtype=torch.float32)), "pos_ids"),
    ("cos/sin cache in fp16",
     lambda: tessera.apply_rope_with_cos_sin_cache(i32(6), cuda(6, 512), cuda(6, 256), 128,
                                                   cuda(64, 128)), "cos_sin_cache"),
    ("cos/sin cache wider than the head",
     lambda: tessera.apply_rope_with_cos_sin_cache(i32(6), cuda(6, 512), cuda(6, 256), 128,
                                                   cuda(64, 256, dtype=torch.float32)),
     "cos_sin_cache"),
    ("query not a multiple of head_size",
     lambda: tessera.apply_rope_with_cos_sin_cache(i32(6), cuda(6, 500), cuda(6, 256), 128,
                                                   cuda(64, 128, dtype=torch.float32)), "query"),
    ("0.2.0 cos_cache and sin_cache of other shapes",
     lambda: tessera.apply_rope_with_cos_sin_cache(
         cuda(6, 4, 128), cuda(6, 2, 128), cuda(64, 128, dtype=torch.float32),
         cuda(64, 64, dtype=torch.float32), i32(6)), "sin_cache"),
    ("get_batch_indices_positions seq_lens of the wrong length",
     lambda: tessera.get_batch_indices_positions(i32(4), i32(2), 10), "append_indptr"),
    ("append_paged_kv_cache key of other heads",
     lambda: tessera.append_paged_kv_cache(cuda(5, 4, 64), cuda(5, 4, 64), i32(5), i32(5),
                                           cuda(8, 2, 16, 2, 64), i32(8), i32(3), i32(2)),
     "append_key"),
    ("append_paged_kv_cache value of another shape",
     lambda: tessera.append_paged_kv_cache(cuda(5, 2, 64), cuda(4, 2, 64), i32(5), i32(5),
                                           cuda(8, 2, 16, 2, 64), i32(8), i32(3), i32(2)),
     "append_value"),
    ("single_decode fp32 q",
     lambda: tessera.single_decode_with_kv_cache(cuda(8, 128, dtype=torch.float32),
                                                 cuda(50, 8, 128), cuda(50, 8, 128)), "q"),
    ("single_decode heads that do not divide",
     lambda: tessera.single_decode_with_kv_cache(cuda(8, 128), cuda(50, 3, 128),
                                                 cuda(50, 3, 128)), "k"),
    ("single_decode v of another length",
     lambda: tessera.single_decode_with_kv_cache(cuda(8, 128), cuda(50, 2, 128),
                                                 cuda(49, 2, 128)), "v"),
    ("single_decode alibi_slopes of other heads",
     lambda: tessera.single_decode_with_kv_cache(cuda(8, 128), cuda(50, 2, 128),
                                                 cuda(50, 2, 128), pos_encoding_mode="ALIBI",
                                                 alibi_slopes=cuda(4, dtype=torch.float32)),
     "alibi_slopes"),
    ("single_prefill k of another head_dim",
     lambda: tessera.single_prefill_with_kv_cache(cuda(7, 8, 128), cuda(9, 2, 64),
                                                  cuda(9, 2, 64)), "k"),
    ("single_prefill fp16 alibi_slopes",
     lambda: tessera.single_prefill_with_kv_cache(cuda(7, 8, 128), cuda(9, 2, 128),
                                                  cuda(9, 2, 128), pos_encoding_mode="ALIBI",
                                                  alibi_slopes=cuda(8)), "alibi_slopes"),
    ("ragged run op kv_indptr of the wrong length",
     lambda: torch.ops.tessera.batch_prefill_ragged_run(
         1, cuda(30, 8, 64), cuda(50, 2, 64), cuda(50, 2, 64), i32(3), i32(4), cuda(30, 8, 64),
         None, 0.0, 0.0, -1, 0, 0.0, 0.0, 0.0, 0.0), "kv_indptr"),
    ("ragged run op lse of another shape",
     lambda: torch.ops.tessera.batch_prefill_ragged_run(
         1, cuda(30, 8, 64), cuda(50, 2, 64), cuda(50, 2, 64), i32(3), i32(3), cuda(30, 8, 64),
         cuda(30, 4, dtype=torch.float32), 0.0, 0.0, -1, 0, 0.0, 0.0, 0.0, 0.0), "lse"),
    ("paged run op 4-D combined cache",
     lambda: torch.ops.tessera.batch_prefill_paged_run(
         1, cuda(30, 8, 64), cuda(4, 16, 2, 64), None, 0, i32(4), i32(3), i32(3), i32(2),
         cuda(30, 8, 64), None, 0.0, 0.0, -1, 0, 0.0, 0.0, 0.0, 0.0), "paged_kv_cache"),
    ("paged run op cache of another head_dim",
     lambda: torch.ops.tessera.batch_prefill_paged_run(
         1, cuda(30, 8, 64), cuda(4, 2, 16, 2, 128), None, 0, i32(4), i32(3), i32(3), i32(2),
         cuda(30, 8, 64), None, 0.0, 0.0, -1, 0, 0.0, 0.0, 0.0, 0.0), "paged_kv_cache"),
    ("block-sparse run op v of another length",
     lambda: torch.ops.tessera.block_sparse_run(
         1, cuda(32, 8, 64), cuda(64, 2, 64), cuda(48, 2, 64), i32(3), i32(4), cuda(32, 8, 64),
         None, 0.0, 0.0, -1, 0, 0.0, 0.0), "v"),
    ("block-sparse run op packed mask of bools",
     lambda: torch.ops.tessera.block_sparse_run(
         1, cuda(32, 8, 64), cuda(64, 2, 64), cuda(64, 2, 64), i32(3), i32(4), cuda(32, 8, 64),
         None, 0.0, 0.0, -1, 0, 0.0, 0.0, cuda(16, dtype=torch.bool)), "custom_mask"),
    ("decode run op (k, v) caches of other shapes",
     lambda: torch.ops.tessera.batch_decode_run(
         1, cuda(3, 8, 64), cuda(4, 16, 2, 64), cuda(4, 16, 2, 32), 0, i32(4), i32(4), i32(3),
         cuda(3, 8, 64), None, 0.0, 0.0, -1, 0, 0.0, 0.0, 0.0, 0.0, 0), "paged_kv_cache[1]"),
    ("decode run op int64 indices",
     lambda: torch.ops.tessera.batch_decode_run(
         1, cuda(3, 8, 64), cuda(4, 2, 16, 2, 64), None, 0, cuda(4, dtype=torch.int64), i32(4),
         i32(3), cuda(3, 8, 64), None, 0.0, 0.0, -1, 0, 0.0, 0.0, 0.0, 0.0, 0), "kv_indices"),
]


@pytest.mark.parametrize("call,argument", [case[1:] for case in FAKE_CASES],
                         ids=[case[0] for case in FAKE_CASES])
def test_fake_kernels_reject_what_the_library_would(call, argument):
    with FakeTensorMode():
        with pytest.raises(TesseraArgumentError, match=re.escape(f"argument '{argument}'")):
            call()


def test_well_formed_calls_still_trace():
    with FakeTensorMode():
        assert tessera.rmsnorm(cuda(4, 64), cuda(64)).shape == (4, 64)
        assert tessera.silu_and_mul(cuda(2, 3, 64)).shape == (2, 3, 32)
        v, s = tessera.merge_states(cuda(5, 3, 8, 64), cuda(5, 3, 8, dtype=torch.float32))
        assert v.shape == (5, 8, 64) and s.shape == (5, 8)
        q, k = tessera.apply_rope_with_cos_sin_cache(i32(6), cuda(6, 512), cuda(6, 256), 128,
                                                     cuda(64, 128, dtype=torch.float32))
        assert q.shape == (6, 512) and k.shape == (6, 256)
        fp8 = cuda(50, 2, 128, dtype=torch.float8_e5m2)
        out = tessera.single_decode_with_kv_cache(cuda(8, 128), fp8, fp8)
        assert out.shape == (8, 128)
        tessera.append_paged_kv_cache(cuda(5, 2, 64), cuda(5, 2, 64), i32(5), i32(5),
                                      cuda(8, 2, 2, 16, 64), i32(8), i32(3), i32(2),
                                      kv_layout="HND")


@pytest.mark.parametrize("head_dim", [80, 96, 112])
def test_phi_and_stablelm_head_dims_trace(head_dim):
    # Their kernels are JIT-served (the library checks head dims, not Python).
    with FakeTensorMode():
        out = tessera.single_prefill_with_kv_cache(cuda(7, 8, head_dim), cuda(9, 2, head_dim),
                                                   cuda(9, 2, head_dim), causal=True)
        assert out.shape == (7, 8, head_dim)
        out = tessera.single_decode_with_kv_cache(cuda(8, head_dim), cuda(50, 2, head_dim),
                                                  cuda(50, 2, head_dim))
        assert out.shape == (8, head_dim)


def capture_graph(graph_module, example_inputs):
    return graph_module.forward


def test_torch_compile_rejects_an_fp32_rmsnorm_while_tracing():
    with FakeTensorMode():
        x, weight = cuda(4, 64, dtype=torch.float32), cuda(64, dtype=torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, w: tessera.rmsnorm(x, w) * 2, fullgraph=True,
                             backend=capture_graph)
    with pytest.raises(Exception, match="argument 'input'.*float16 or bfloat16"):
        compiled(x, weight)


def test_torch_compile_rejects_an_odd_gated_width_while_tracing():
    with FakeTensorMode():
        x = cuda(4, 33)
    torch._dynamo.reset()
    compiled = torch.compile(tessera.silu_and_mul, fullgraph=True, backend=capture_graph)
    with pytest.raises(Exception, match="argument 'input'.*even last dim"):
        compiled(x)


def test_torch_export_rejects_a_weight_of_another_length():
    class Norm(torch.nn.Module):
        def forward(self, x, weight):
            return tessera.rmsnorm(x, weight)

    with FakeTensorMode(allow_non_fake_inputs=True):
        x, weight = cuda(4, 64), cuda(48)
        with pytest.raises(Exception, match="argument 'weight'.*size 64"):
            torch.export.export(Norm(), (x, weight), strict=False)


# ---- eager calls: the same checks name the argument before the library


def cpu(*shape, dtype=torch.float16):
    return torch.zeros(shape, dtype=dtype)


@pytest.mark.parametrize("call,argument", [
    (lambda: tessera.rmsnorm(cpu(4, 64, dtype=torch.float32), cpu(64, dtype=torch.float32)),
     "input"),
    (lambda: tessera.silu_and_mul(cpu(4, 63)), "input"),
    (lambda: tessera.merge_states(cpu(5, 8, 64), cpu(5, 8, dtype=torch.float32)), "v"),
], ids=["rmsnorm fp32", "silu odd width", "merge_states 3-D v"])
def test_eager_calls_run_the_fake_kernels_checks(call, argument):
    with pytest.raises(TesseraArgumentError, match=f"argument '{argument}'"):
        call()
    with FakeTensorMode(allow_non_fake_inputs=True):  # the same message from the fake
        with pytest.raises(TesseraArgumentError, match=f"argument '{argument}'"):
            call()


@pytest.mark.parametrize("call,argument", [
    (lambda: tessera.merge_states(None, cpu(5, 2, 8, dtype=torch.float32)), "v"),
    (lambda: tessera.merge_states(cpu(5, 2, 8, 64), None), "s"),
    (lambda: tessera.merge_state(cpu(5, 8, 64), cpu(5, 8, dtype=torch.float32), None,
                                 cpu(5, 8, dtype=torch.float32)), "v_b"),
    (lambda: tessera.merge_state_in_place(cpu(5, 8, 64), None, cpu(5, 8, 64),
                                          cpu(5, 8, dtype=torch.float32)), "s"),
    (lambda: tessera.rmsnorm(None, cpu(64)), "input"),
    (lambda: tessera.rmsnorm(cpu(4, 64), None), "weight"),
    (lambda: tessera.fused_add_rmsnorm(cpu(4, 64), None, cpu(64)), "residual"),
    (lambda: tessera.silu_and_mul(None), "input"),
    (lambda: tessera.apply_rope(cpu(3, 4, 64), cpu(3, 2, 64), None, cpu(1)), "indptr"),
    (lambda: tessera.apply_rope_pos_ids(None, cpu(3, 2, 64), cpu(3)), "q"),
    (lambda: tessera.apply_rope_with_cos_sin_cache(cpu(3, dtype=torch.int32), cpu(3, 256),
                                                   cpu(3, 128), None, cpu(8, 64)), "head_size"),
    (lambda: tessera.apply_rope_with_cos_sin_cache(cpu(3, dtype=torch.int32), cpu(3, 256),
                                                   cpu(3, 128), 64.5, cpu(8, 64)), "head_size"),
    (lambda: tessera.apply_rope_with_cos_sin_cache_inplace(
        cpu(3, dtype=torch.int32), cpu(3, 256), cpu(3, 128), 64, None), "cos_sin_cache"),
    (lambda: tessera.get_batch_indices_positions(None, cpu(2, dtype=torch.int32), 4),
     "append_indptr"),
    (lambda: tessera.get_batch_indices_positions(cpu(3, dtype=torch.int32),
                                                 cpu(2, dtype=torch.int32), None), "nnz"),
    (lambda: tessera.append_paged_kv_cache(cpu(2, 2, 64), cpu(2, 2, 64), None,
                                           cpu(2, dtype=torch.int32), cpu(4, 2, 16, 2, 64),
                                           cpu(4, dtype=torch.int32), cpu(2, dtype=torch.int32),
                                           cpu(1, dtype=torch.int32)), "batch_indices"),
    (lambda: tessera.single_decode_with_kv_cache(None, cpu(5, 2, 64), cpu(5, 2, 64)), "q"),
    (lambda: tessera.single_prefill_with_kv_cache(cpu(3, 4, 64), cpu(5, 2, 64), None), "v"),
    (lambda: tessera.get_seq_lens(None, cpu(2, dtype=torch.int32), 16), "kv_indptr"),
    (lambda: tessera.get_seq_lens(cpu(3, dtype=torch.int32), cpu(2, dtype=torch.int32), None),
     "page_size"),
    (lambda: tessera.single_decode_with_kv_cache(cpu(8, 64), cpu(5, 2, 64), cpu(5, 2, 64),
                                                 sm_scale="0.1"), "sm_scale"),
    (lambda: tessera.single_prefill_with_kv_cache(cpu(3, 4, 64), cpu(5, 2, 64), cpu(5, 2, 64),
                                                  window_left=2.5), "window_left"),
    (lambda: tessera.single_prefill_with_kv_cache(cpu(3, 4, 64), cpu(5, 2, 64), cpu(5, 2, 64),
                                                  logits_soft_cap=float("nan")),
     "logits_soft_cap"),
], ids=["merge_states v", "merge_states s", "merge_state v_b", "merge_state_in_place s",
        "rmsnorm input", "rmsnorm weight", "fused_add_rmsnorm residual", "silu input",
        "apply_rope indptr", "apply_rope_pos_ids q", "cos_sin head_size None",
        "cos_sin head_size float", "cos_sin cache", "batch_indices append_indptr",
        "batch_indices nnz", "append batch_indices", "single_decode q", "single_prefill v",
        "get_seq_lens kv_indptr", "get_seq_lens page_size", "decode sm_scale string",
        "prefill window_left float", "prefill soft cap nan"])
def test_none_and_non_tensor_arguments_are_named(call, argument):
    with pytest.raises(TesseraArgumentError, match=f"argument '{argument}'"):
        call()


def test_argument_errors_are_value_errors():
    # FlashInfer raises ValueError for bad arguments; callers catching it keep working.
    assert issubclass(TesseraArgumentError, ValueError)
    with pytest.raises(ValueError):
        tessera.merge_states(cpu(5, 8, 64), cpu(5, 8, dtype=torch.float32))


# ---- wrappers: plan() arguments


def test_plan_integer_arguments_are_named():
    decode = tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="argument 'num_kv_heads'"):
        decode.plan([0, 1], [0], [1], 8, None, 128, 16)
    with pytest.raises(TesseraArgumentError, match="argument 'page_size'"):
        decode.plan([0, 1], [0], [1], 8, 2, 128, 0)
    with pytest.raises(TesseraArgumentError, match="argument 'indptr'"):
        decode.plan([0, 1, 2], [0], [1], 8, 2, 128, 16)
    ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="argument 'num_qo_heads'"):
        ragged.plan([0, 4], [0, 4], "8", 8, 128)
    paged = tessera.BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="argument 'page_size'"):
        paged.plan([0, 4], [0, 1], [0], [4], 8, 8, 64)


def test_decode_wrapper_checks_backend_and_workspace_like_prefill():
    with pytest.raises(TesseraArgumentError, match="argument 'backend'"):
        tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8),
                                                   backend="cudnn")
    with pytest.raises(TesseraArgumentError, match="argument 'float_workspace_buffer'"):
        tessera.BatchDecodeWithPagedKVCacheWrapper(None)
    for backend in ("auto", "fa2", "fa3", "trtllm-gen"):
        tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8),
                                                   backend=backend)
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    with pytest.raises(TesseraArgumentError, match="float_workspace_buffer.*CUDA"):
        wrapper.plan([0, 1], [0], [1], 8, 2, 128, 16)  # as the prefill wrappers' plan()
    with pytest.raises(TesseraArgumentError, match="argument 'float_workspace_buffer'"):
        tessera.BatchPrefillWithPagedKVCacheWrapper(None)


def test_cuda_graph_buffers_must_be_int32():
    with pytest.raises(TesseraArgumentError, match="argument 'paged_kv_indices_buffer'"):
        tessera.BatchDecodeWithPagedKVCacheWrapper(
            torch.empty(8, dtype=torch.uint8), use_cuda_graph=True,
            paged_kv_indptr_buffer=torch.zeros(3, dtype=torch.int32),
            paged_kv_indices_buffer=torch.zeros(3, dtype=torch.int64),
            paged_kv_last_page_len_buffer=torch.zeros(2, dtype=torch.int32))
