// Variant spec -> the translation unit NVRTC compiles, and the name
// expression of the kernel it instantiates. Plain string work, CPU-tested.
#pragma once

#include <string>

#include "tessera/jit/jit.h"

namespace tessera::jit::detail {

// The user's struct lives in this namespace (with tessera::attention in
// scope); its source is preceded by `#line 1 "variant"`, so NVRTC reports
// errors in it as variant(LINE) with the user's own line numbers.
inline constexpr const char* kUserNamespace = "tessera_jit_user";
inline constexpr const char* kVariantFileName = "variant";

struct GeneratedSource {
  std::string text;
  std::string name_expression;  // "&ns::kernel<...>" for nvrtcAddNameExpression
  // The variant's second kernel in the same cubin, else empty. Batch decode
  // with 16-bit K/V of q's dtype and head_dim 64 / 128: the tensor-core
  // kernel (decode_mma.cuh). Prefill compiled for sm_90a with 16-bit K/V of
  // q's dtype and head_dim 64 / 128: the Hopper kernel (prefill_sm90/). Its
  // lowered name holds kUserNamespace only when the kernel runs the variant
  // (the JitVariantFor of either).
  std::string mma_name_expression;
};

// What the kernel templates have, the one source of these rules for
// generate()'s checks and jit::has_aot_kernel: q fp16 / bf16; K/V of q's
// dtype, or fp8 (e4m3fn, e5m2) for decode and for paged prefill at head_dim 128;
// head_dim 64 / 128 / 256 (decode) or 64 / 128 (prefill); custom masks in
// prefill only.
bool q_dtype_supported(DType q_dtype);
bool kv_dtype_supported(KernelKind kernel, DType q_dtype, DType kv_dtype, int64_t head_dim);
bool head_dim_supported(KernelKind kernel, int64_t head_dim);
bool has_kernel_template(KernelKind kernel, DType q_dtype, DType kv_dtype, int64_t head_dim,
                         bool custom_mask);

// Whether a lowered mma kernel name instantiates the user's variant.
bool instantiates_user_variant(const std::string& lowered_name);

// Throws tessera::Error naming "variant" for an invalid spec (name not an
// identifier, empty source, dtype / head_dim the kernel has no template for).
// arch: the NVRTC architecture (the Hopper prefill kernel only for sm_90a).
GeneratedSource generate(const VariantSpec& spec, const std::string& arch = "");

bool is_identifier(const std::string& name);

}  // namespace tessera::jit::detail
