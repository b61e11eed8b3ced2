"""FlashInfer 0.2 names and argument forms (docs/python.md's table): the ones
FlashInfer 0.2.0 had beside the later ones, run_return_lse, the CUDA-graph
decode wrapper, get_seq_lens, tessera.utils, ALiBi slopes and JIT variants
from Python. CPU: signatures, dispatch and plumbing (with the library
stubbed); GPU: results against float64 torch references."""

import inspect
import math
import pathlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera
from tessera import TesseraArgumentError, utils
from test_rope import rotate  # the float64 rotation the RoPE tests check against

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "jit"
LOG2E = 1.4426950408889634


def parameters(function):
    return list(inspect.signature(function).parameters)


# ------------------------------------------------------------ names (CPU)


def test_flashinfer_0_2_names_are_exported_at_the_top_level():
    for name in ("CUDAGraphBatchDecodeWithPagedKVCacheWrapper", "get_seq_lens",
                 "single_prefill_with_kv_cache_return_lse"):
        assert getattr(tessera, name) is not None
    assert tessera.decode.CUDAGraphBatchDecodeWithPagedKVCacheWrapper is \
        tessera.CUDAGraphBatchDecodeWithPagedKVCacheWrapper
    assert tessera.page.get_seq_lens is tessera.get_seq_lens
    for wrapper in (tessera.BatchDecodeWithPagedKVCacheWrapper,
                    tessera.BatchPrefillWithPagedKVCacheWrapper,
                    tessera.BatchPrefillWithRaggedKVCacheWrapper):
        assert callable(wrapper.run_return_lse)


def test_signatures_match_flashinfer():
    assert parameters(tessera.CUDAGraphBatchDecodeWithPagedKVCacheWrapper.__init__) == [
        "self", "workspace_buffer", "indptr_buffer", "indices_buffer", "last_page_len_buffer",
        "kv_layout", "use_tensor_cores"]
    assert parameters(tessera.get_seq_lens) == ["kv_indptr", "kv_last_page_len", "page_size"]
    signature = inspect.signature(tessera.single_prefill_with_kv_cache_return_lse)
    assert signature.parameters["return_lse"].default is True
    assert parameters(tessera.single_prefill_with_kv_cache)[:3] == ["q", "k", "v"]
    # FlashInfer's positions; head_dim is Tessera's keyword-only extension.
    assert parameters(utils.determine_attention_backend) == [
        "device", "pos_encoding_mode", "use_fp16_qk_reductions", "use_custom_mask", "dtype_q",
        "dtype_kv", "head_dim"]
    head_dim = inspect.signature(utils.determine_attention_backend).parameters["head_dim"]
    assert head_dim.kind is inspect.Parameter.KEYWORD_ONLY and head_dim.default is None
    for name in ("is_sm90a_supported", "is_sm100a_supported", "determine_gemm_backend",
                 "get_compute_capability"):
        assert parameters(getattr(utils, name)) == ["device"]
    # Later FlashInfer's plan() positions, with 0.2.0's names beside them.
    paged = parameters(tessera.BatchPrefillWithPagedKVCacheWrapper.plan)
    assert paged[1:10] == ["qo_indptr", "paged_kv_indptr", "paged_kv_indices",
                           "paged_kv_last_page_len", "num_qo_heads", "num_kv_heads",
                           "head_dim_qk", "page_size", "head_dim_vo"]
    assert {"head_dim", "allow_fp16_qk_reduction", "use_fp16_qk_reduction"} <= set(paged)
    ragged = parameters(tessera.BatchPrefillWithRaggedKVCacheWrapper.plan)
    assert ragged[1:7] == ["qo_indptr", "kv_indptr", "num_qo_heads", "num_kv_heads",
                           "head_dim_qk", "head_dim_vo"]
    assert "qk_indptr_buf" in parameters(tessera.BatchPrefillWithRaggedKVCacheWrapper.__init__)


def test_utils_enums_and_constants_are_flashinfers():
    assert utils.PosEncodingMode.ALIBI.value == 2 and utils.MaskMode.CUSTOM.value == 2
    assert utils.TensorLayout.HND.value == 1
    assert utils.log2e == pytest.approx(LOG2E)
    assert [utils.next_positive_power_of_2(x) for x in (0, 1, 5, 64, 65)] == [1, 1, 8, 64, 128]
    assert utils.canonicalize_torch_dtype("bfloat16") is torch.bfloat16
    assert utils.get_indptr(torch.tensor([2, 0, 3])).tolist() == [0, 2, 2, 5]


def test_alibi_slopes_are_flashinfers():
    # Powers of two: 2^(-8 h / n), h = 1..n (the library's built-in slopes).
    torch.testing.assert_close(utils.get_alibi_slopes(8),
                               torch.tensor([2.0 ** (-h) for h in range(1, 9)]))
    # Otherwise the odd steps of 2^(-4 h / n) follow, n = 8 for 12 heads.
    twelve = utils.get_alibi_slopes(12)
    assert twelve.dtype == torch.float32 and twelve.shape == (12,)
    torch.testing.assert_close(twelve[8:], torch.tensor([2.0 ** (-h / 2) for h in (1, 3, 5, 7)]))


def test_backend_questions_need_a_cuda_device():
    with pytest.raises(ValueError, match="device"):
        utils.determine_attention_backend(torch.device("cpu"), 0, False, False, torch.float16,
                                          torch.float16)
    with pytest.raises(ValueError, match="device"):
        utils.is_sm90a_supported(torch.device("cpu"))


def test_fa3_is_supported_for_the_hopper_kernels_cases():
    f16, bf16 = torch.float16, torch.bfloat16
    assert utils.is_fa3_backend_supported(0, False, False, f16, f16) is True
    assert utils.is_fa3_backend_supported(0, True, False, bf16, bf16, head_dim=64) is True
    assert utils.is_fa3_backend_supported(0, False, True, f16, f16, head_dim=128) is True
    # Position encodings, fp8 or mixed K/V, other head dims, masks off 128: fa2.
    assert utils.is_fa3_backend_supported(1, False, False, f16, f16) is False
    alibi = utils.PosEncodingMode.ALIBI.value
    assert utils.is_fa3_backend_supported(alibi, False, False, f16, f16) is False
    assert utils.is_fa3_backend_supported(alibi, False, False, f16, f16, head_dim=64) is False
    assert utils.is_fa3_backend_supported(alibi, False, True, f16, f16, head_dim=128) is False
    # ALiBi at head_dim 128 runs on the Hopper kernels.
    assert utils.is_fa3_backend_supported(alibi, False, False, f16, f16, head_dim=128) is True
    assert utils.is_fa3_backend_supported(0, False, False, f16, torch.float8_e4m3fn) is False
    # An fp8 e4m3 paged cache with bf16 q at head_dim 128 (only there).
    e4m3 = torch.float8_e4m3fn
    assert utils.is_fa3_backend_supported(0, False, False, bf16, e4m3, head_dim=128) is True
    assert utils.is_fa3_backend_supported(0, False, False, bf16, e4m3) is False
    assert utils.is_fa3_backend_supported(0, False, False, bf16, e4m3, head_dim=64) is False
    assert utils.is_fa3_backend_supported(0, False, False, f16, bf16) is False
    assert utils.is_fa3_backend_supported(0, False, False, torch.float32, torch.float32) is False
    assert utils.is_fa3_backend_supported(0, False, False, f16, f16, head_dim=96) is False
    assert utils.is_fa3_backend_supported(0, False, False, f16, f16, head_dim=256) is True
    assert utils.is_fa3_backend_supported(0, False, True, f16, f16, head_dim=64) is False
    assert utils.is_fa3_backend_supported(0, False, True, f16, f16) is False  # head_dim unknown


@pytest.mark.parametrize("capability, expected", [((9, 0), "fa3"), ((8, 0), "fa2"),
                                                  ((8, 9), "fa2"), ((10, 0), "fa2")])
def test_attention_backend_is_fa3_only_on_sm90(monkeypatch, capability, expected):
    monkeypatch.setattr(utils, "get_compute_capability", lambda device: capability)
    device = torch.device("cuda")
    assert utils.determine_attention_backend(device, 0, False, False, torch.bfloat16,
                                             torch.bfloat16, head_dim=128) == expected
    assert utils.determine_attention_backend(device, 2, False, False, torch.bfloat16,
                                             torch.bfloat16, head_dim=128) == expected  # ALiBi
    assert utils.determine_attention_backend(device, 1, False, False, torch.bfloat16,
                                             torch.bfloat16, head_dim=128) == "fa2"  # RoPE
    assert utils.determine_attention_backend(device, 0, False, False, torch.bfloat16,
                                             torch.bfloat16, head_dim=96) == "fa2"
    assert utils.determine_attention_backend(device, 0, False, False, torch.bfloat16,
                                             torch.bfloat16, head_dim=256) == "fa2"
    # An fp8 e4m3 cache at head_dim 128: the Hopper kernels widen it (bf16 q).
    assert utils.determine_attention_backend(device, 0, False, False, torch.bfloat16,
                                             torch.float8_e4m3fn, head_dim=128) == expected


@gpu
def test_backend_answers_on_the_gpu():
    device = torch.device("cuda")
    major, _ = torch.cuda.get_device_capability()
    assert utils.get_compute_capability(device) == torch.cuda.get_device_capability()
    sm90 = torch.cuda.get_device_capability() == (9, 0)
    assert utils.determine_attention_backend(device, 0, False, False, torch.float16,
                                             torch.float16) == ("fa3" if sm90 else "fa2")
    assert utils.is_sm90a_supported(device) == (major == 9)  # this CI's CUDA is >= 12.3
    assert utils.is_sm100a_supported(device) == (major == 10 and utils._cuda_at_least(12, 8))
    assert utils.determine_gemm_backend(device) == ("sm90" if major == 9 else "sm80")


# ------------------------------------------------------------ get_seq_lens


def test_get_seq_lens_is_flashinfers_formula():
    kv_indptr = torch.tensor([0, 3, 3, 4, 9], dtype=torch.int32)
    last = torch.tensor([5, 0, 16, 1], dtype=torch.int32)
    assert tessera.get_seq_lens(kv_indptr, last, 16).tolist() == [37, 0, 16, 65]


def test_get_seq_lens_traces():
    with FakeTensorMode():
        lens = tessera.get_seq_lens(torch.empty(5, dtype=torch.int32, device="cuda"),
                                    torch.empty(4, dtype=torch.int32, device="cuda"), 16)
        assert lens.shape == (4,) and lens.device.type == "cuda"


@gpu
def test_get_seq_lens_on_the_gpu():
    kv_indptr = torch.tensor([0, 2, 7, 7], dtype=torch.int32, device="cuda")
    last = torch.tensor([3, 16, 0], dtype=torch.int32, device="cuda")
    lens = tessera.get_seq_lens(kv_indptr, last, 16)
    assert lens.is_cuda and lens.tolist() == [19, 80, 0]


# ------------------------------------------- plan/run plumbing (CPU, stubbed)


def stub_library(monkeypatch):
    """Runs the wrappers' Python side on the CPU: libtessera calls are
    recorded (name, arguments), plan objects are address 1."""
    from tessera import _lib
    from tessera.decode import BatchDecodeWithPagedKVCacheWrapper
    from tessera.prefill import _PlanHandle
    from tessera import _flat
    calls = []
    monkeypatch.setattr(_lib, "call", lambda name, *arguments: calls.append((name, arguments)))
    # These check the op path's plumbing (what torch.compile records); the
    # eager fast path's C calls bypass _lib.call (test_flat.py checks them).
    monkeypatch.setattr(_flat, "eager", lambda: False)
    monkeypatch.setattr(_PlanHandle, "ensure", lambda self, shape, needed, names: 1)

    def ensure_handle(self, *arguments):
        self._handle = 1
    monkeypatch.setattr(BatchDecodeWithPagedKVCacheWrapper, "_ensure_handle", ensure_handle)
    return calls


def last_call(calls, suffix):
    found = [arguments for name, arguments in calls if name.endswith(suffix)]
    assert found, [name for name, _ in calls]
    return found[-1]


def options_of(arguments):
    return next(a for a in arguments if type(a).__name__ == "AttentionOptions")


def workspace():
    return torch.empty(8, dtype=torch.uint8)


def test_prefill_plan_takes_0_2_0_head_dim(monkeypatch):
    calls = stub_library(monkeypatch)
    ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace())
    ragged.plan([0, 4], [0, 6], 8, 2, head_dim=64, allow_fp16_qk_reduction=True,
                non_blocking=False)
    assert ragged._planned[1] == 8
    paged = tessera.BatchPrefillWithPagedKVCacheWrapper(workspace())
    seen = []
    monkeypatch.setattr(type(paged), "_ensure", lambda self, shape, batch, total: seen.append(
        shape) or 1)
    paged.plan([0, 4], [0, 1], [0], [4], 8, 2, head_dim=128, page_size=16, non_blocking=False)
    paged.plan([0, 4], [0, 1], [0], [4], 8, 2, 128, 16, non_blocking=False)  # positional
    assert seen == [(8, 2, 128, 16), (8, 2, 128, 16)]
    assert calls


def test_prefill_plan_head_dim_forms_that_conflict_are_named(monkeypatch):
    stub_library(monkeypatch)
    ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace())
    with pytest.raises(TesseraArgumentError, match="argument 'head_dim'"):
        ragged.plan([0, 4], [0, 6], 8, 2, 128, head_dim=64)
    with pytest.raises(TesseraArgumentError, match="argument 'head_dim_qk'"):
        ragged.plan([0, 4], [0, 6], 8, 2)
    # 0.2.0's positional custom_mask lands where later versions have head_dim_vo.
    with pytest.raises(TesseraArgumentError, match="argument 'head_dim_vo'.*custom_mask="):
        ragged.plan([0, 4], [0, 6], 8, 2, 64, torch.ones(24, dtype=torch.bool))


def test_qk_indptr_buf_is_0_2_0s_mask_indptr_buf(monkeypatch):
    stub_library(monkeypatch)
    i32 = dict(dtype=torch.int32)
    mask_indptr = torch.zeros(3, **i32)
    wrapper = tessera.BatchPrefillWithRaggedKVCacheWrapper(
        workspace(), use_cuda_graph=True, qo_indptr_buf=torch.zeros(3, **i32),
        kv_indptr_buf=torch.zeros(3, **i32), custom_mask_buf=torch.zeros(16, dtype=torch.uint8),
        qk_indptr_buf=mask_indptr)
    assert wrapper._mask_indptr_buf is mask_indptr
    with pytest.raises(TesseraArgumentError, match="argument 'qk_indptr_buf'"):
        tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace(), mask_indptr_buf=mask_indptr,
                                                     qk_indptr_buf=mask_indptr)


def test_prefill_run_takes_0_2_0_positional_arguments(monkeypatch):
    calls = stub_library(monkeypatch)
    half = dict(dtype=torch.float16)
    paged = tessera.BatchPrefillWithPagedKVCacheWrapper(workspace())
    paged.plan([0, 4], [0, 1], [0], [4], 8, 2, 64, 16, non_blocking=False)
    q, cache = torch.zeros(4, 8, 64, **half), torch.zeros(1, 2, 16, 2, 64, **half)
    out, lse = paged.run(q, cache, 0.5, 2.0, True)  # k_scale, v_scale, return_lse
    options = options_of(last_call(calls, "_paged_run"))
    assert (options.k_scale, options.v_scale) == (0.5, 2.0)
    assert lse.shape == (4, 8) and lse.dtype == torch.float32
    ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace())
    ragged.plan([0, 4], [0, 6], 8, 2, 64, non_blocking=False)
    kv = torch.zeros(6, 2, 64, **half)
    assert isinstance(ragged.run(q, kv, kv, True), tuple)  # return_lse
    with pytest.raises(TesseraArgumentError, match="argument 'args'"):
        ragged.run(q, kv, kv, True, 1.0)


def test_run_return_lse_returns_out_and_lse(monkeypatch):
    stub_library(monkeypatch)
    half = dict(dtype=torch.float16)
    q = torch.zeros(4, 8, 64, **half)
    ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace())
    ragged.plan([0, 4], [0, 6], 8, 2, 64, non_blocking=False)
    kv = torch.zeros(6, 2, 64, **half)
    out, lse = ragged.run_return_lse(q, kv, kv)
    assert out.shape == q.shape and lse.shape == (4, 8)
    paged = tessera.BatchPrefillWithPagedKVCacheWrapper(workspace())
    paged.plan([0, 4], [0, 1], [0], [4], 8, 2, 64, 16, non_blocking=False)
    out, lse = paged.run_return_lse(q, torch.zeros(1, 2, 16, 2, 64, **half))
    assert lse.shape == (4, 8)


def test_0_2_0_forward_replans_only_when_its_options_change(monkeypatch):
    # FlashInfer 0.2.0's deprecated forward(..., causal=..., sm_scale=...): the
    # options replace the plan's (and stay); Tessera's schedule depends on
    # causal, so a change re-plans with the same arrays, the same options do not.
    calls = stub_library(monkeypatch)
    half = dict(dtype=torch.float16)
    q, cache = torch.zeros(4, 8, 64, **half), torch.zeros(1, 2, 16, 2, 64, **half)
    paged = tessera.BatchPrefillWithPagedKVCacheWrapper(workspace())
    paged.plan([0, 4], [0, 1], [0], [4], 8, 2, 64, 16, causal=True, non_blocking=False)

    def plans():
        return [arguments for name, arguments in calls if name.endswith("_paged_plan")]
    assert len(plans()) == 1 and plans()[-1][-2] == 1  # causal
    paged.forward(q, cache, causal=True)
    assert len(plans()) == 1
    out, lse = paged.forward_return_lse(q, cache, causal=False, sm_scale=0.5,
                                        logits_soft_cap=20.0)
    assert len(plans()) == 2 and plans()[-1][-2] == 0
    options = options_of(last_call(calls, "_paged_run"))
    assert (options.sm_scale, options.logits_soft_cap) == (0.5, 20.0)
    assert lse.shape == (4, 8)
    paged.run(q, cache)  # the forward's options stay, as FlashInfer's
    assert options_of(last_call(calls, "_paged_run")).sm_scale == 0.5
    ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace())
    ragged.plan([0, 4], [0, 6], 8, 2, 64, non_blocking=False)
    kv = torch.zeros(6, 2, 64, **half)
    ragged.forward(q, kv, kv, causal=True, pos_encoding_mode="ALIBI")
    assert last_call(calls, "_ragged_plan")[-2] == 1
    assert options_of(last_call(calls, "_ragged_run")).pos_encoding_mode == 2
    decode = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace())
    try:
        decode.plan([0, 1], [0], [4], 8, 2, 64, 16, non_blocking=False)
        decode_plans = len([n for n, _ in calls if n == "tessera_batch_decode_plan"])
        # 0.2.0's positional pos_encoding_mode, then keyword options.
        decode.forward(torch.zeros(1, 8, 64, **half), cache, "ALIBI", logits_soft_cap=30.0)
        assert len([n for n, _ in calls if n == "tessera_batch_decode_plan"]) == decode_plans
        options = options_of(last_call(calls, "batch_decode_run"))
        assert (options.pos_encoding_mode, options.logits_soft_cap) == (2, 30.0)
        out, lse = decode.forward_return_lse(torch.zeros(1, 8, 64, **half), cache)
        assert options_of(last_call(calls, "batch_decode_run")).pos_encoding_mode == 0
        assert lse.shape == (1, 8)
    finally:
        decode._handle = None  # the stub's address 1 is no plan object to destroy


def test_q_scale_folds_into_the_softmax_scale(monkeypatch):
    calls = stub_library(monkeypatch)
    half = dict(dtype=torch.float16)
    paged = tessera.BatchPrefillWithPagedKVCacheWrapper(workspace())
    paged.plan([0, 4], [0, 1], [0], [4], 8, 2, 64, 16, non_blocking=False)
    paged.run(torch.zeros(4, 8, 64, **half), torch.zeros(1, 2, 16, 2, 64, **half), q_scale=0.5)
    assert options_of(last_call(calls, "_paged_run")).sm_scale == pytest.approx(0.5 / 8)
    decode = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace())
    try:
        decode.plan([0, 1], [0], [4], 8, 2, 64, 16, non_blocking=False)
        # FlashInfer 0.2.0's positional (q_scale, k_scale, v_scale, return_lse).
        out, lse = decode.run(torch.zeros(1, 8, 64, **half),
                              torch.zeros(1, 2, 16, 2, 64, **half), 2.0, None, 0.25, True)
    finally:
        decode._handle = None  # the stub's address 1 is no plan object to destroy
    options = options_of(last_call(calls, "batch_decode_run"))
    assert options.sm_scale == pytest.approx(2.0 / 8) and options.v_scale == 0.25
    assert lse.shape == (1, 8)


def test_prefill_wrappers_take_a_jit_variant(monkeypatch):
    from tessera.jit import Variant
    calls = stub_library(monkeypatch)
    variant = object.__new__(Variant)  # a loaded variant needs a GPU; the handle is all run() reads
    variant.handle = 0x1234
    half = dict(dtype=torch.float16)
    try:
        paged = tessera.BatchPrefillWithPagedKVCacheWrapper(workspace(), jit_args=variant)
        paged.plan([0, 4], [0, 1], [0], [4], 8, 2, 64, 16, non_blocking=False)
        paged.run(torch.zeros(4, 8, 64, **half), torch.zeros(1, 2, 16, 2, 64, **half))
        assert options_of(last_call(calls, "_paged_run")).jit_variant == 0x1234
        with pytest.raises(TesseraArgumentError, match="Variant.set"):
            paged.run(torch.zeros(4, 8, 64, **half), torch.zeros(1, 2, 16, 2, 64, **half), 1.0)
        q, kv = torch.zeros(4, 8, 64, **half), torch.zeros(6, 2, 64, **half)
        tessera.single_prefill_with_kv_cache(q, kv, kv, jit_variant=variant)
        assert options_of(last_call(calls, "single_prefill_with_kv_cache")).jit_variant == 0x1234
    finally:
        variant.handle = None  # no variant to destroy


@pytest.mark.parametrize("jit_args", [["batch_prefill_uri", "float16", "float16"], 7])
def test_flashinfer_jit_lists_are_rejected_by_name(jit_args):
    for wrapper in (tessera.BatchPrefillWithPagedKVCacheWrapper,
                    tessera.BatchPrefillWithRaggedKVCacheWrapper,
                    tessera.BatchDecodeWithPagedKVCacheWrapper):
        with pytest.raises(NotImplementedError, match="argument 'jit_args'.*tessera.jit.Variant"):
            wrapper(workspace(), jit_args=jit_args)
    with pytest.raises(NotImplementedError, match="argument 'jit_kwargs'"):
        tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace(), jit_kwargs={"x": 1})


def test_alibi_slopes_reach_the_library(monkeypatch):
    calls = stub_library(monkeypatch)
    half = dict(dtype=torch.float16)
    slopes = torch.rand(8)
    ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(workspace())
    ragged.plan([0, 4], [0, 6], 8, 2, 64, pos_encoding_mode="ALIBI", alibi_slopes=slopes,
                non_blocking=False)
    q, kv = torch.zeros(4, 8, 64, **half), torch.zeros(6, 2, 64, **half)
    ragged.run(q, kv, kv)
    passed = options_of(last_call(calls, "_ragged_run")).alibi_slopes.contents
    assert passed.data == slopes.data_ptr() and passed.shape[0] == 8
    tessera.single_decode_with_kv_cache(torch.zeros(8, 64, **half), kv, kv,
                                        pos_encoding_mode="ALIBI", alibi_slopes=slopes)
    passed = options_of(last_call(calls, "single_decode_with_kv_cache")).alibi_slopes.contents
    assert passed.data == slopes.data_ptr()
    # Without slopes: the library's own for a power of two, FlashInfer's otherwise.
    ragged.plan([0, 4], [0, 6], 8, 2, 64, pos_encoding_mode="ALIBI", non_blocking=False)
    assert ragged._planned[4] is None
    ragged.plan([0, 4], [0, 6], 12, 2, 64, pos_encoding_mode="ALIBI", non_blocking=False)
    torch.testing.assert_close(ragged._planned[4], utils.get_alibi_slopes(12))
    with pytest.raises(TesseraArgumentError, match="argument 'alibi_slopes'.*ALIBI"):
        ragged.plan([0, 4], [0, 6], 8, 2, 64, alibi_slopes=slopes)
    with pytest.raises(TesseraArgumentError, match="argument 'alibi_slopes'"):
        ragged.plan([0, 4], [0, 6], 8, 2, 64, pos_encoding_mode="ALIBI",
                    alibi_slopes=torch.rand(4))


def test_cuda_graph_decode_wrapper_is_the_plain_one_in_graph_mode():
    i32 = dict(dtype=torch.int32)
    indptr, indices, last = torch.zeros(5, **i32), torch.zeros(64, **i32), torch.zeros(4, **i32)
    wrapper = tessera.CUDAGraphBatchDecodeWithPagedKVCacheWrapper(workspace(), indptr, indices,
                                                                  last, "HND")
    assert isinstance(wrapper, tessera.BatchDecodeWithPagedKVCacheWrapper)
    assert wrapper.is_cuda_graph_enabled and wrapper._max_batch == 4
    assert wrapper._indices_buffer is indices and wrapper._kv_layout == 1
    with pytest.raises(TesseraArgumentError, match="argument 'indices_buffer'"):
        tessera.CUDAGraphBatchDecodeWithPagedKVCacheWrapper(workspace(), indptr, None, last)


# ------------------------------------------------------------ RoPE forms (CPU)


def test_cos_sin_cache_form_is_told_by_arguments():
    from tessera.rope import _is_form_020
    name = "apply_rope_with_cos_sin_cache"
    q, pos = torch.zeros(3, 2, 8), torch.zeros(3, dtype=torch.int32)
    assert _is_form_020(name, (q, q, q, q, pos), {})
    assert not _is_form_020(name, (pos, q, q, 8, q), {})
    assert _is_form_020(name, (), dict(q=q, k=q, cos_cache=q, sin_cache=q, pos_ids=pos))
    assert not _is_form_020(name, (pos, q, q), dict(head_size=8, cos_sin_cache=q))
    assert _is_form_020(name, (q, q, q), dict(sin_cache=q, pos_ids=pos))
    with pytest.raises(TesseraArgumentError, match="argument 'interleave'.*is_neox"):
        _is_form_020(name, (), dict(interleave=True, is_neox=True))


def test_0_2_0_cache_becomes_a_per_token_pair_table():
    from tessera.rope import _rows_cache
    rotary_dim, max_pos = 8, 10
    angles = torch.arange(max_pos, dtype=torch.float32)[:, None] * torch.arange(
        1, rotary_dim // 2 + 1, dtype=torch.float32)
    neox = torch.cat([angles, angles], dim=-1)  # HF layout: each angle at j and j + half
    inter = angles.repeat_interleave(2, dim=-1)  # interleaved: at 2j and 2j + 1
    q = torch.zeros(3, 2, 16)
    pos_ids = torch.tensor([7, 0, 3])
    for cache, interleave in ((neox, False), (inter, True)):
        positions, table = _rows_cache(q, cache.cos(), cache.sin(), pos_ids, interleave)
        assert positions.tolist() == [0, 1, 2] and positions.dtype == torch.int32
        want = torch.cat([angles[pos_ids].cos(), angles[pos_ids].sin()], dim=-1)
        torch.testing.assert_close(table, want, atol=0, rtol=0)


def test_0_2_0_cos_sin_form_traces_into_one_graph():
    captured = []
    mode = FakeTensorMode()

    def capture(graph_module, example_inputs):
        captured.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "call_function")

        def run(*args):
            with mode:  # the graph makes tensors (the per-token table): fake ones here
                return graph_module.forward(*args)
        return run

    def step(q, k, cos_cache, sin_cache, pos_ids):
        q_rope, k_rope = tessera.apply_rope_with_cos_sin_cache(q, k, cos_cache, sin_cache,
                                                               pos_ids, interleave=True)
        tessera.apply_rope_with_cos_sin_cache_inplace(q_rope, k_rope, cos_cache, sin_cache,
                                                      pos_ids)
        return q_rope, k_rope

    with mode:
        q = torch.empty(6, 4, 128, dtype=torch.bfloat16, device="cuda")
        k = torch.empty(6, 2, 128, dtype=torch.bfloat16, device="cuda")
        cos_cache = torch.empty(64, 64, dtype=torch.float32, device="cuda")
        pos_ids = torch.empty(6, dtype=torch.int32, device="cuda")
    torch._dynamo.reset()
    q_rope, k_rope = torch.compile(step, fullgraph=True, backend=capture)(q, k, cos_cache,
                                                                          cos_cache, pos_ids)
    assert q_rope.shape == q.shape and k_rope.shape == k.shape
    assert torch.ops.tessera.apply_rope_with_cos_sin_cache in captured
    assert torch.ops.tessera.apply_rope_with_cos_sin_cache_inplace in captured


def test_0_2_0_cos_sin_form_checks_its_caches():
    with FakeTensorMode():
        q = torch.empty(6, 4, 128, dtype=torch.float16, device="cuda")
        pos_ids = torch.empty(6, dtype=torch.int32, device="cuda")
        half_cache = torch.empty(64, 128, dtype=torch.float16, device="cuda")
        with pytest.raises(TesseraArgumentError, match="argument 'cos_cache'.*float32"):
            tessera.apply_rope_with_cos_sin_cache(q, q, half_cache, half_cache, pos_ids)


# ------------------------------------------------------------- GPU references


def reference_attention(q, k, v, causal=False, alibi_slopes=None, soft_cap=None):
    """q [Lq, H, D], k/v [Lk, Hk, D] (NHD), float64. Query i sits at KV
    position Lk - Lq + i. ALiBi adds slope_h * (kv_pos - q_pos) to the scaled
    logit, then the soft cap applies (FlashInfer's order). Returns out [Lq, H,
    D] and lse [Lq, H] in base 2 (float64)."""
    qo_len, h, d = q.shape
    kv_len, hk, _ = k.shape
    kf = k.double().repeat_interleave(h // hk, dim=1)
    vf = v.double().repeat_interleave(h // hk, dim=1)
    logits = torch.einsum("qhd,khd->hqk", q.double(), kf) * d ** -0.5
    q_pos = torch.arange(qo_len, device=q.device, dtype=torch.float64) + (kv_len - qo_len)
    k_pos = torch.arange(kv_len, device=q.device, dtype=torch.float64)
    if alibi_slopes is not None:
        logits = logits + alibi_slopes.double()[:, None, None] * (k_pos[None, None, :]
                                                                  - q_pos[None, :, None])
    if soft_cap:  # after the bias, as FlashInfer
        logits = soft_cap * torch.tanh(logits / soft_cap)
    if causal:
        logits = logits.masked_fill(k_pos[None, None, :] > q_pos[None, :, None], -math.inf)
    lse = (torch.logsumexp(logits, dim=-1) / math.log(2.0)).transpose(0, 1)
    out = torch.einsum("hqk,khd->qhd", torch.softmax(logits, dim=-1).nan_to_num(0.0), vf)
    return out, lse


def tolerance(dtype):
    # Inputs in 16 bits; P rounded to 16 bits before P @ V; float32 accumulation.
    return dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=5e-3, rtol=5e-3)


LSE_TOLERANCE = dict(atol=2e-3, rtol=2e-3)  # float32 softmax statistics


def randn(*shape, dtype=torch.float16, generator=None):
    return torch.randn(shape, dtype=dtype, device="cuda", generator=generator)


def gpu_workspace():
    return torch.empty(128 << 20, dtype=torch.uint8, device="cuda")


def cumulative(lengths):
    return torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)


LENGTHS = [(1, 1), (17, 100), (64, 64), (3, 250), (100, 131)]  # (qo_len, kv_len)


def batch(lengths, num_qo_heads, num_kv_heads, head_dim, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    requests = [(randn(qo, num_qo_heads, head_dim, dtype=dtype, generator=g),
                 randn(kv, num_kv_heads, head_dim, dtype=dtype, generator=g),
                 randn(kv, num_kv_heads, head_dim, dtype=dtype, generator=g))
                for qo, kv in lengths]
    return requests, [torch.cat([r[i] for r in requests]) for i in range(3)]


def check_requests(out, lse, requests, dtype, **reference):
    start = 0
    for q, k, v in requests:
        ref_out, ref_lse = reference_attention(q, k, v, **reference)
        rows = slice(start, start + q.shape[0])
        torch.testing.assert_close(out[rows].double(), ref_out, **tolerance(dtype))
        torch.testing.assert_close(lse[rows].double(), ref_lse, **LSE_TOLERANCE)
        start += q.shape[0]


def to_pages(requests, page_size, generator):
    """A combined NHD cache holding each request's K/V on shuffled pages, and
    its CPU page table (indptr, indices, last_page_len)."""
    _, k0, _ = requests[0]
    pages = [max(1, -(-k.shape[0] // page_size)) for _, k, _ in requests]
    num_pages = sum(pages) + 3
    cache = randn(num_pages, 2, page_size, *k0.shape[1:], dtype=k0.dtype, generator=generator)
    order = torch.randperm(num_pages, generator=torch.Generator().manual_seed(num_pages))
    indices, last, used = [], [], 0
    for (_, k, v), n in zip(requests, pages):
        for p in range(n):
            page = int(order[used])
            used += 1
            indices.append(page)
            rows = slice(p * page_size, min((p + 1) * page_size, k.shape[0]))
            cache[page, 0, :rows.stop - rows.start] = k[rows]
            cache[page, 1, :rows.stop - rows.start] = v[rows]
        last.append(k.shape[0] - (n - 1) * page_size)
    i32 = dict(dtype=torch.int32)
    return cache, (cumulative(pages), torch.tensor(indices, **i32), torch.tensor(last, **i32))


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
def test_ragged_run_return_lse_matches_reference(dtype, causal):
    requests, (q, k, v) = batch(LENGTHS, 16, 4, 128, dtype, seed=21)
    wrapper = tessera.BatchPrefillWithRaggedKVCacheWrapper(gpu_workspace())
    wrapper.plan(cumulative([l[0] for l in LENGTHS]), cumulative([l[1] for l in LENGTHS]), 16, 4,
                 head_dim=128, causal=causal)  # FlashInfer 0.2.0's keyword
    out, lse = wrapper.run_return_lse(q, k, v)
    check_requests(out, lse, requests, dtype, causal=causal)


@gpu
@pytest.mark.parametrize("page_size", [1, 16])
def test_paged_run_return_lse_matches_reference(page_size):
    dtype = torch.bfloat16
    requests, (q, _, _) = batch(LENGTHS, 8, 8, 64, dtype, seed=22)
    cache, (indptr, indices, last) = to_pages(requests, page_size,
                                              torch.Generator(device="cuda").manual_seed(5))
    wrapper = tessera.BatchPrefillWithPagedKVCacheWrapper(gpu_workspace())
    wrapper.plan(cumulative([l[0] for l in LENGTHS]), indptr, indices, last, 8, 8, 64,
                 page_size, causal=True)
    out, lse = wrapper.run_return_lse(q, cache)
    check_requests(out, lse, requests, dtype, causal=True)
    # FlashInfer 0.2.0's positional run(q, paged_kv_cache, k_scale, v_scale, return_lse).
    out2, lse2 = wrapper.run(q, cache, None, None, True)
    assert torch.equal(out, out2) and torch.equal(lse, lse2)


@gpu
def test_0_2_0_forward_with_per_call_causal_matches_reference():
    # An engine written for 0.2.0: plan without causal, forward(causal=True),
    # then forward(causal=False) on the same plan.
    dtype = torch.float16
    requests, (q, k, v) = batch(LENGTHS, 16, 4, 128, dtype, seed=24)
    wrapper = tessera.BatchPrefillWithRaggedKVCacheWrapper(gpu_workspace())
    wrapper.begin_forward(cumulative([l[0] for l in LENGTHS]), cumulative([l[1] for l in LENGTHS]),
                          16, 4, 128)
    out, lse = wrapper.forward_return_lse(q, k, v, causal=True)
    check_requests(out, lse, requests, dtype, causal=True)
    out, lse = wrapper.forward_return_lse(q, k, v, causal=False, logits_soft_cap=8.0)
    check_requests(out, lse, requests, dtype, causal=False, soft_cap=8.0)


@gpu
def test_single_prefill_return_lse_matches_reference():
    requests, _ = batch([(37, 200)], 8, 2, 128, torch.float16, seed=23)
    q, k, v = requests[0]
    out, lse = tessera.single_prefill_with_kv_cache_return_lse(q, k, v, causal=True)
    ref_out, ref_lse = reference_attention(q, k, v, causal=True)
    torch.testing.assert_close(out.double(), ref_out, **tolerance(torch.float16))
    torch.testing.assert_close(lse.double(), ref_lse, **LSE_TOLERANCE)


@gpu
def test_cuda_graph_decode_wrapper_replays_a_later_plan():
    g = torch.Generator(device="cuda").manual_seed(24)
    num_qo_heads, num_kv_heads, head_dim, page_size, dtype = 32, 8, 128, 16, torch.float16
    max_batch, max_pages = 8, 1024
    i32 = dict(dtype=torch.int32, device="cuda")
    wrapper = tessera.CUDAGraphBatchDecodeWithPagedKVCacheWrapper(
        gpu_workspace(), torch.zeros(max_batch + 1, **i32), torch.zeros(max_pages, **i32),
        torch.zeros(max_batch, **i32), "NHD")

    def decode_batch(lengths, seed):
        requests, _ = batch([(1, n) for n in lengths], num_qo_heads, num_kv_heads, head_dim,
                            dtype, seed)
        return requests

    first = decode_batch([40] * max_batch, 25)
    cache = randn(max_pages, 2, page_size, num_kv_heads, head_dim, dtype=dtype, generator=g)
    small, table = to_pages(first, page_size, g)
    cache[:small.shape[0]] = small
    q = randn(max_batch, num_qo_heads, head_dim, dtype=dtype, generator=g)
    out = torch.empty_like(q)
    wrapper.plan(*table, num_qo_heads, num_kv_heads, head_dim, page_size)
    wrapper.run(q, cache, out=out)  # warm-up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        wrapper.run(q, cache, out=out)
    later = decode_batch([700, 3, 2000, 1, 64], 26)
    small, table = to_pages(later, page_size, g)
    cache[:small.shape[0]] = small
    wrapper.plan(*table, num_qo_heads, num_kv_heads, head_dim, page_size)
    q[:len(later)] = torch.cat([r[0] for r in later])
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    for b, (q_b, k_b, v_b) in enumerate(later):
        ref, _ = reference_attention(q[b:b + 1], k_b, v_b)
        torch.testing.assert_close(out[b:b + 1].double(), ref, **tolerance(dtype))
    assert torch.all(torch.isnan(out[len(later):].float()))  # rows past the batch untouched


@gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("rotary_dim", [128, 64])
def test_rope_0_2_0_cos_sin_form_matches_reference(dtype, interleave, rotary_dim):
    g = torch.Generator(device="cuda").manual_seed(27)
    nnz, max_pos, head_dim = 37, 4096, 128
    inv_freq = 1.0 / 1e4 ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    angles = torch.arange(max_pos, dtype=torch.float64)[:, None] * inv_freq  # [pos, rd / 2]
    per_element = (angles.repeat_interleave(2, dim=-1) if interleave
                   else torch.cat([angles, angles], dim=-1))
    cos_cache = per_element.cos().float().cuda()
    sin_cache = per_element.sin().float().cuda()
    q = randn(nnz, 8, head_dim, dtype=dtype, generator=g)
    k = randn(nnz, 2, head_dim, dtype=dtype, generator=g)
    pos_ids = torch.randint(0, max_pos, (nnz,), dtype=torch.int32, device="cuda", generator=g)
    q_rope, k_rope = tessera.apply_rope_with_cos_sin_cache(q, k, cos_cache, sin_cache, pos_ids,
                                                           interleave=interleave)
    # The reference rotates by the float32 cache's own values, as the kernel reads them.
    rows = angles[pos_ids.long().cpu()].cuda()
    tol = dict(atol=4e-3, rtol=4e-3) if dtype == torch.float16 else dict(atol=1.6e-2,
                                                                         rtol=1.6e-2)
    torch.testing.assert_close(q_rope.double(),
                               rotate(q, rows.cos(), rows.sin(), rotary_dim, interleave), **tol)
    torch.testing.assert_close(k_rope.double(),
                               rotate(k, rows.cos(), rows.sin(), rotary_dim, interleave), **tol)
    q2, k2 = q.clone(), k.clone()
    tessera.apply_rope_with_cos_sin_cache_inplace(q2, k2, cos_cache, sin_cache, pos_ids,
                                                  interleave)
    assert torch.equal(q2, q_rope) and torch.equal(k2, k_rope)
    # The same rotation through the later form (positions, query, key, head_size, cos_sin_cache).
    table = torch.cat([angles.cos(), angles.sin()], dim=-1).float().cuda()
    query, key = tessera.apply_rope_with_cos_sin_cache(pos_ids, q, k, head_dim, table,
                                                       is_neox=not interleave)
    torch.testing.assert_close(query, q_rope, atol=0, rtol=0)
    torch.testing.assert_close(key, k_rope, atol=0, rtol=0)


def random_slopes(num_heads, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.rand(num_heads, device="cuda", generator=g) * 0.5 + 0.01


@gpu
@pytest.mark.parametrize("num_qo_heads,num_kv_heads", [(8, 2), (12, 4)])
def test_alibi_slopes_from_python_match_reference(num_qo_heads, num_kv_heads):
    dtype, head_dim = torch.float16, 128
    slopes = random_slopes(num_qo_heads, 28)
    requests, (q, k, v) = batch(LENGTHS, num_qo_heads, num_kv_heads, head_dim, dtype, seed=29)
    # single prefill
    q0, k0, v0 = requests[3]
    out, lse = tessera.single_prefill_with_kv_cache(q0, k0, v0, causal=True,
                                                    pos_encoding_mode="ALIBI",
                                                    alibi_slopes=slopes, return_lse=True)
    ref_out, ref_lse = reference_attention(q0, k0, v0, causal=True, alibi_slopes=slopes)
    torch.testing.assert_close(out.double(), ref_out, **tolerance(dtype))
    torch.testing.assert_close(lse.double(), ref_lse, **LSE_TOLERANCE)
    # ragged batch
    wrapper = tessera.BatchPrefillWithRaggedKVCacheWrapper(gpu_workspace())
    wrapper.plan(cumulative([l[0] for l in LENGTHS]), cumulative([l[1] for l in LENGTHS]),
                 num_qo_heads, num_kv_heads, head_dim, causal=True, pos_encoding_mode="ALIBI",
                 alibi_slopes=slopes)
    out = torch.full_like(q, float("nan"))
    lse = torch.full(q.shape[:2], float("nan"), dtype=torch.float32, device="cuda")
    wrapper.run(q, k, v, out=out, lse=lse)
    check_requests(out, lse, requests, dtype, causal=True, alibi_slopes=slopes)
    # single decode (the query at the last position)
    q1 = q0[-1]
    out = tessera.single_decode_with_kv_cache(q1, k0, v0, pos_encoding_mode="ALIBI",
                                              alibi_slopes=slopes)
    ref_out, _ = reference_attention(q1[None], k0, v0, alibi_slopes=slopes)
    torch.testing.assert_close(out.double(), ref_out[0], **tolerance(dtype))


@gpu
def test_alibi_with_soft_cap_and_window_from_python_match_reference():
    # Combinations FlashInfer accepts (JIT-served here): ALiBi + soft cap
    # (bias before the cap) in a paged batch; ALiBi + soft cap + window in
    # single prefill.
    dtype, heads, kv_heads, cap = torch.bfloat16, 8, 2, 6.0
    slopes = random_slopes(heads, 31)
    requests, (q, _, _) = batch(LENGTHS, heads, kv_heads, 128, dtype, seed=32)
    cache, (indptr, indices, last) = to_pages(requests, 16,
                                              torch.Generator(device="cuda").manual_seed(33))
    wrapper = tessera.BatchPrefillWithPagedKVCacheWrapper(gpu_workspace())
    wrapper.plan(cumulative([l[0] for l in LENGTHS]), indptr, indices, last, heads, kv_heads,
                 128, 16, causal=True, pos_encoding_mode="ALIBI", alibi_slopes=slopes,
                 logits_soft_cap=cap)
    out, lse = wrapper.run_return_lse(q, cache)
    check_requests(out, lse, requests, dtype, causal=True, alibi_slopes=slopes, soft_cap=cap)
    q0, k0, v0 = requests[3]
    window = 40
    out, lse = tessera.single_prefill_with_kv_cache(q0, k0, v0, causal=True,
                                                    pos_encoding_mode="ALIBI",
                                                    alibi_slopes=slopes, logits_soft_cap=cap,
                                                    window_left=window, return_lse=True)
    # Row by row against the reference over the row's window [q_pos - window,
    # q_pos] as one query at the end of its keys: the ALiBi distances
    # kv_pos - q_pos are the same as in the full request.
    qo_len, kv_len = q0.shape[0], k0.shape[0]
    for row in range(qo_len):
        q_pos = kv_len - qo_len + row
        keys = slice(max(0, q_pos - window), q_pos + 1)
        ref_out, ref_lse = reference_attention(q0[row:row + 1], k0[keys], v0[keys],
                                               alibi_slopes=slopes, soft_cap=cap)
        torch.testing.assert_close(out[row:row + 1].double(), ref_out, **tolerance(dtype))
        torch.testing.assert_close(lse[row:row + 1].double(), ref_lse, **LSE_TOLERANCE)


@gpu
def test_alibi_without_slopes_uses_flashinfers_for_any_head_count():
    # 12 heads: not a power of two, so the library has no built-in slopes;
    # FlashInfer's get_alibi_slopes(12) are passed for it.
    dtype = torch.bfloat16
    requests, _ = batch([(20, 300)], 12, 4, 128, dtype, seed=30)
    q, k, v = requests[0]
    out = tessera.single_prefill_with_kv_cache(q, k, v, causal=True, pos_encoding_mode="ALIBI")
    ref, _ = reference_attention(q, k, v, causal=True,
                                 alibi_slopes=utils.get_alibi_slopes(12).cuda())
    torch.testing.assert_close(out.double(), ref, **tolerance(dtype))


@gpu
def test_batch_decode_plan_takes_alibi_slopes():
    dtype, num_qo_heads, num_kv_heads, head_dim, page_size = torch.float16, 8, 2, 128, 16
    slopes = random_slopes(num_qo_heads, 31)
    lengths = [1, 33, 500]
    requests, _ = batch([(1, n) for n in lengths], num_qo_heads, num_kv_heads, head_dim, dtype,
                        seed=32)
    cache, table = to_pages(requests, page_size, torch.Generator(device="cuda").manual_seed(6))
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(gpu_workspace())
    wrapper.plan(*table, num_qo_heads, num_kv_heads, head_dim, page_size,
                 pos_encoding_mode="ALIBI", alibi_slopes=slopes)
    q = torch.cat([r[0] for r in requests])
    out, lse = wrapper.run_return_lse(q, cache)
    check_requests(out, lse, requests, dtype, alibi_slopes=slopes)


@gpu
def test_prefill_wrapper_runs_a_jit_variant():
    # examples/jit/soft_cap.cuh compiled for the ragged prefill kernel against
    # the built-in soft cap and a float64 reference.
    from tessera import jit
    dtype, cap = torch.float16, 30.0
    requests, (q, k, v) = batch(LENGTHS, 8, 2, 128, dtype, seed=33)
    spec = jit.VariantSpec("SoftCap", (EXAMPLES / "soft_cap.cuh").read_text(),
                           kernel="batch_prefill_ragged", q_dtype=dtype, head_dim=128)
    indptrs = (cumulative([l[0] for l in LENGTHS]), cumulative([l[1] for l in LENGTHS]))
    jitted = tessera.BatchPrefillWithRaggedKVCacheWrapper(gpu_workspace(),
                                                          jit_args=jit.Variant(spec))
    jitted.plan(*indptrs, 8, 2, 128, causal=True, logits_soft_cap=cap)
    out, lse = jitted.run_return_lse(q, k, v)
    check_requests(out, lse, requests, dtype, causal=True, soft_cap=cap)
    built_in = tessera.BatchPrefillWithRaggedKVCacheWrapper(gpu_workspace())
    built_in.plan(*indptrs, 8, 2, 128, causal=True, logits_soft_cap=cap)
    torch.testing.assert_close(out, built_in.run(q, k, v), **tolerance(dtype))
