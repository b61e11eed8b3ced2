// The AOT list: the built-in kernels libtessera carries compiled. The kernel
// templates support more (every q / KV dtype pair x head_dim x built-in
// variant); a call outside the list JIT-compiles the same template with the
// built-in variant's own struct on first use (builtin_jit.h), so it never
// fails for want of an AOT kernel and computes bitwise what an AOT build
// would. The list is what Llama / Qwen / Mistral / Gemma serving steps run:
//   decode:  q / KV bf16 / bf16, fp16 / fp16 and bf16 / fp8 e4m3, head_dim
//            64 / 128 / 256, plain, soft-cap, sliding window, soft-cap +
//            window; ALiBi and RoPE-on-the-fly at head_dim 128.
//            JIT: fp16 q with fp8 KV, ALiBi and RoPE at head_dim 64 / 256,
//            ALiBi / RoPE with a soft cap and / or a window (every kernel).
//   prefill (single, ragged, paged): fp16 / bf16, head_dim 64 / 128, plain,
//            soft-cap, sliding window; ALiBi at head_dim 128 (JIT: at 64 and
//            soft-cap + window). Paged with an fp8 e4m3 cache (head_dim
//            128): plain and sliding window with bf16 q (JIT: the rest).
//            RoPE-Llama on the fly and head_dim 256 (prefill): JIT only.
//   prefill with a custom mask (kernels built with kCustomMask): plain, 16-bit
//            K/V, head_dim 128 (JIT: every other).
//   fp8 e5m2 K/V (decode, paged prefill): JIT only (library size).
//   head_dim 80 / 96 / 112 (Phi-2 / Phi-3 / StableLM; decode and FA2
//            prefill) and q/k 192 with v/o 128 (DeepSeek-style, FA2
//            prefill): JIT only. Each head dim adds ~1 MB and minutes of
//            nvcc per dtype x variant on a 2-core CI (the prefill TUs are
//            its longest), for models that load once and then reuse the
//            disk-cached cubin (a first compile takes seconds).
// The tensor-core decode kernel follows the CUDA-core one's entry.
// The Hopper prefill kernels (prefill_sm90/, sm_90a; no JIT yet, so this is
// also what backend fa3 serves of dtype x head_dim x variant x mask):
//            fp16 / bf16 q = K/V, head_dim 64 / 128 / 256, plain, soft-cap,
//            sliding window, soft-cap + window; ALiBi at head_dim 128; a
//            custom mask with the plain variant at head_dim 128; fp8 e4m3
//            paged K/V with bf16 q at head_dim 128, plain and sliding window.
// Host and device code (constexpr only).
#pragma once

#include <cstdint>

#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"

namespace tessera::detail {

// Head dims whose kernels come from the JIT only (see above).
// (192: prefill's q/k 192 with v/o 128, DeepSeek-style.)
constexpr bool jit_only_head_dim(int64_t head_dim) {
  return head_dim == 80 || head_dim == 96 || head_dim == 112 || head_dim == 192;
}

constexpr bool aot_decode_kernel(attention::VariantKind variant, DType q_dtype, DType kv_dtype,
                                 int64_t head_dim) {
  using attention::VariantKind;
  if (jit_only_head_dim(head_dim)) return false;
  const bool dtypes =
      kv_dtype == q_dtype || (q_dtype == DType::kBFloat16 && kv_dtype == DType::kFloat8E4M3);
  switch (variant) {
    case VariantKind::kPlain:
    case VariantKind::kSoftCap:
    case VariantKind::kSlidingWindow:
    case VariantKind::kSoftCapSlidingWindow:
      return dtypes;
    case VariantKind::kAlibi:
    case VariantKind::kRopeLlama:
      return dtypes && head_dim == 128;
    default:
      return false;  // the positional combinations and JIT
  }
}

// The fp8 paged K/V prefill kernels both families carry (widened to q's
// type in shared memory): e4m3 with bf16 q at head_dim 128, plain and
// sliding window, no custom mask.
constexpr bool aot_fp8_kv_prefill_kernel(attention::VariantKind variant, DType q_dtype,
                                         DType kv_dtype, int64_t head_dim) {
  using attention::VariantKind;
  return q_dtype == DType::kBFloat16 && kv_dtype == DType::kFloat8E4M3 && head_dim == 128 &&
         (variant == VariantKind::kPlain || variant == VariantKind::kSlidingWindow);
}

constexpr bool aot_prefill_kernel(attention::VariantKind variant, DType q_dtype, DType kv_dtype,
                                  int64_t head_dim, bool custom_mask) {
  using attention::VariantKind;
  if (head_dim == 256 || jit_only_head_dim(head_dim)) return false;  // JIT-served (library size)
  if (custom_mask) {
    return variant == VariantKind::kPlain && kv_dtype == q_dtype && head_dim == 128;
  }
  if (kv_dtype != q_dtype) return aot_fp8_kv_prefill_kernel(variant, q_dtype, kv_dtype, head_dim);
  switch (variant) {
    case VariantKind::kPlain:
    case VariantKind::kSoftCap:
    case VariantKind::kSlidingWindow:
      return true;
    case VariantKind::kAlibi:
      return head_dim == 128;
    default:
      return false;  // no prefill kernel (soft-cap + window, RoPE) or JIT
  }
}

// The head dims the Hopper prefill kernels have.
inline constexpr int64_t kSm90PrefillHeadDims[] = {64, 128, 256};

constexpr bool sm90_prefill_head_dim(int64_t head_dim) {
  for (const int64_t d : kSm90PrefillHeadDims) {
    if (d == head_dim) return true;
  }
  return false;
}

constexpr bool aot_prefill_sm90_kernel(attention::VariantKind variant, DType q_dtype,
                                       DType kv_dtype, int64_t head_dim, bool custom_mask) {
  using attention::VariantKind;
  if (q_dtype != DType::kFloat16 && q_dtype != DType::kBFloat16) return false;
  if (!sm90_prefill_head_dim(head_dim)) return false;
  if (kv_dtype != q_dtype) {  // fp8 paged K/V (widened by the gather)
    return !custom_mask && aot_fp8_kv_prefill_kernel(variant, q_dtype, kv_dtype, head_dim);
  }
  if (custom_mask) return variant == VariantKind::kPlain && head_dim == 128;
  switch (variant) {
    case VariantKind::kPlain:
    case VariantKind::kSoftCap:
    case VariantKind::kSlidingWindow:
    case VariantKind::kSoftCapSlidingWindow:
      return true;
    case VariantKind::kAlibi:
      return head_dim == 128;
    default:
      return false;  // RoPE (a q / k transform), the positional combinations, JIT
  }
}

}  // namespace tessera::detail
