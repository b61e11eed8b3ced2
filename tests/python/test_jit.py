"""tessera.jit: variants from C++ source, compiled with NVRTC in-process.
Compiling needs no GPU (runs here and in CI); loading and running need one."""

import pathlib

import pytest
import torch

import tessera
import tessera.jit as jit
from tessera import TesseraArgumentError, TesseraError

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "jit"


def example(name):
    return (EXAMPLES / name).read_text()


def test_compile_gives_a_cubin_and_the_memory_cache_hits():
    spec = jit.VariantSpec("SoftCap", example("soft_cap.cuh"), kernel="batch_decode",
                           q_dtype=torch.float16, head_dim=128)
    first = jit.compile(spec, use_disk_cache=False)
    assert len(first.key) >= 16 and first.cubin_bytes > 0
    second = jit.compile(spec, use_disk_cache=False)
    assert second.key == first.key and second.from_memory


def test_extra_parameters_change_the_key():
    source = example("per_head_bias.cuh")
    spec = jit.VariantSpec("PerHeadBias", source, kernel="single_prefill",
                           params=[("bias", "float"), ("head_bias", "float*")])
    info = jit.compile(spec, use_disk_cache=False)
    other = jit.compile(jit.VariantSpec("PerHeadBias", source, kernel="batch_prefill_paged",
                                        params=[("bias", "float"), ("head_bias", "float*")]),
                        use_disk_cache=False)
    assert info.key != other.key


def test_compile_errors_carry_the_nvrtc_log():
    spec = jit.VariantSpec("Broken", "struct Broken : VariantBase { int x = ; };")
    with pytest.raises(TesseraError, match="Broken|error"):
        jit.compile(spec, use_disk_cache=False)


def test_bad_spec_fields_name_the_argument():
    with pytest.raises(TesseraArgumentError, match="kernel"):
        jit.compile(jit.VariantSpec("X", "struct X {};", kernel="decode"))
    with pytest.raises(TesseraArgumentError, match="bias"):
        jit.compile(jit.VariantSpec("X", "struct X {};", params=[("bias", "double")]))


def test_wrappers_reject_flashinfer_style_jit_args():
    with pytest.raises(NotImplementedError, match="jit_args"):
        tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(16, dtype=torch.uint8),
                                                   jit_args=["uri", "float16"])


@gpu
def test_jit_soft_cap_equals_the_built_in_one_bitwise():
    # Group 1: both run on the CUDA-core decode kernel (JIT decode variants do).
    torch.manual_seed(0)
    q = torch.randn(8, 128, dtype=torch.float16, device="cuda")
    k = torch.randn(900, 8, 128, dtype=torch.float16, device="cuda")
    v = torch.randn(900, 8, 128, dtype=torch.float16, device="cuda")
    variant = jit.Variant(jit.VariantSpec("SoftCap", example("soft_cap.cuh"),
                                          q_dtype=torch.float16, head_dim=128))
    built_in = tessera.single_decode_with_kv_cache(q, k, v, logits_soft_cap=30.0)
    jitted = tessera.single_decode_with_kv_cache(q, k, v, logits_soft_cap=30.0,
                                                 jit_variant=variant)
    assert torch.equal(built_in, jitted)


@gpu
def test_jit_variant_with_a_tensor_parameter_matches_reference():
    torch.manual_seed(1)
    heads, kv_len = 8, 300
    q = torch.randn(heads, 128, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(kv_len, heads, 128, dtype=torch.bfloat16, device="cuda")
    v = torch.randn(kv_len, heads, 128, dtype=torch.bfloat16, device="cuda")
    head_bias = torch.randn(heads, device="cuda")
    variant = jit.Variant(jit.VariantSpec("PerHeadBias", example("per_head_bias.cuh"),
                                          params=[("bias", "float"), ("head_bias", "float*")]))
    variant.set("bias", 0.25).set("head_bias", head_bias)
    out, lse = tessera.single_decode_with_kv_cache(q, k, v, jit_variant=variant, return_lse=True)
    ref, ref_lse = tessera.single_decode_with_kv_cache(q, k, v, return_lse=True)
    # A per-head constant added to every logit leaves softmax unchanged and
    # moves the lse (base 2) by the constant times log2(e).
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)
    shift = (0.25 + head_bias) * 1.4426950408889634
    torch.testing.assert_close(lse, ref_lse + shift, atol=1e-3, rtol=1e-3)


def test_use_softmax_is_part_of_the_spec_and_must_match_the_variant():
    source = example("flash_sigmoid.cuh")
    params = [("bias", "float")]
    with pytest.raises(TesseraArgumentError, match="use_softmax"):
        jit.compile(jit.VariantSpec("FlashSigmoid", source, params=params), use_disk_cache=False)
    info = jit.compile(jit.VariantSpec("FlashSigmoid", source, params=params, use_softmax=False),
                       use_disk_cache=False)
    assert info.cubin_bytes > 0


@gpu
def test_sigmoid_attention_decode_matches_a_float64_reference():
    # One 5000-token request on the whole GPU: the KV is split and the
    # partials are summed (no softmax), lse is 0.
    torch.manual_seed(2)
    heads, kv_heads, kv_len, bias = 8, 2, 5000, -3.0
    q = torch.randn(heads, 128, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(kv_len, kv_heads, 128, dtype=torch.bfloat16, device="cuda")
    v = torch.randn(kv_len, kv_heads, 128, dtype=torch.bfloat16, device="cuda")
    variant = jit.Variant(jit.VariantSpec("FlashSigmoid", example("flash_sigmoid.cuh"),
                                          params=[("bias", "float")], use_softmax=False))
    variant.set("bias", bias)
    out, lse = tessera.single_decode_with_kv_cache(q, k, v, jit_variant=variant, return_lse=True)
    kk = k.double().repeat_interleave(heads // kv_heads, dim=1)  # [kv, heads, d]
    vv = v.double().repeat_interleave(heads // kv_heads, dim=1)
    w = torch.sigmoid(torch.einsum("hd,khd->hk", q.double(), kk) / 128 ** 0.5 + bias)
    ref = torch.einsum("hk,khd->hd", w, vv)
    torch.testing.assert_close(out.double(), ref, atol=5e-2, rtol=2e-2)
    assert torch.count_nonzero(lse) == 0
