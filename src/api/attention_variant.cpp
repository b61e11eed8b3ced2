#include "api/attention_variant.h"

#include <cmath>
#include <limits>
#include <string>

#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera::detail {

namespace {

constexpr const char* kOptions = "options";

void check_finite_at_least(double value, double lowest, bool strictly, const char* field) {
  const bool ok = std::isfinite(value) && (strictly ? value > lowest : value >= lowest);
  TESSERA_CHECK_ARG(ok, kOptions,
                    std::string(field) + (strictly ? " finite and > " : " finite and >= ") +
                        std::to_string(lowest),
                    std::to_string(value));
}

}  // namespace

bool uses_alibi(attention::VariantKind kind) {
  using attention::VariantKind;
  return kind == VariantKind::kAlibi || kind == VariantKind::kAlibiSoftCap ||
         kind == VariantKind::kAlibiSlidingWindow ||
         kind == VariantKind::kAlibiSoftCapSlidingWindow;
}

attention::VariantKind select_variant(const AttentionOptions& options) {
  using attention::VariantKind;
  check_finite_at_least(options.sm_scale, 0.0, false, "sm_scale");
  check_finite_at_least(options.logits_soft_cap, 0.0, false, "logits_soft_cap");
  check_finite_at_least(options.k_scale, 0.0, true, "k_scale");
  check_finite_at_least(options.v_scale, 0.0, true, "v_scale");
  TESSERA_CHECK_ARG(options.window_left >= -1 &&
                        options.window_left <= std::numeric_limits<int32_t>::max(),
                    kOptions, "window_left -1 (off) or in [0, 2^31)",
                    std::to_string(options.window_left));
  const bool soft_cap = options.logits_soft_cap > 0;
  const bool window = options.window_left >= 0;
  TESSERA_CHECK_ARG(options.alibi_slopes == nullptr ||
                        options.pos_encoding_mode == PosEncodingMode::kAlibi,
                    kOptions, "alibi_slopes only with pos_encoding_mode kAlibi",
                    "alibi_slopes without kAlibi");
  if (options.jit_variant != nullptr) {
    TESSERA_CHECK_ARG(options.pos_encoding_mode == PosEncodingMode::kNone, kOptions,
                      "pos_encoding_mode kNone with a jit_variant (the variant is the encoding)",
                      "another pos_encoding_mode");
    return VariantKind::kJit;
  }
  switch (options.pos_encoding_mode) {
    case PosEncodingMode::kNone:
      if (soft_cap && window) return VariantKind::kSoftCapSlidingWindow;
      if (soft_cap) return VariantKind::kSoftCap;
      if (window) return VariantKind::kSlidingWindow;
      return VariantKind::kPlain;
    case PosEncodingMode::kAlibi:
      if (soft_cap && window) return VariantKind::kAlibiSoftCapSlidingWindow;
      if (soft_cap) return VariantKind::kAlibiSoftCap;
      if (window) return VariantKind::kAlibiSlidingWindow;
      return VariantKind::kAlibi;
    case PosEncodingMode::kRopeLlama:
      check_finite_at_least(options.rope_scale, 0.0, true, "rope_scale");
      check_finite_at_least(options.rope_theta, 0.0, true, "rope_theta");
      if (soft_cap && window) return VariantKind::kRopeLlamaSoftCapSlidingWindow;
      if (soft_cap) return VariantKind::kRopeLlamaSoftCap;
      if (window) return VariantKind::kRopeLlamaSlidingWindow;
      return VariantKind::kRopeLlama;
  }
  throw_argument_error(kOptions, "a known pos_encoding_mode",
                       std::to_string(static_cast<int>(options.pos_encoding_mode)));
}

double resolved_sm_scale(const AttentionOptions& options, int64_t head_dim) {
  return options.sm_scale > 0 ? options.sm_scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

ResolvedVariant resolve_variant(const AttentionOptions& options, int64_t head_dim,
                                int64_t num_qo_heads, DLDevice device) {
  ResolvedVariant out{};
  out.kind = select_variant(options);
  attention::VariantParams& p = out.params;
  p.sm_scale = static_cast<float>(resolved_sm_scale(options, head_dim));
  p.k_scale = static_cast<float>(options.k_scale);
  p.v_scale = static_cast<float>(options.v_scale);
  p.logits_soft_cap = static_cast<float>(options.logits_soft_cap);
  p.window_left = static_cast<int32_t>(options.window_left);
  p.num_qo_heads = static_cast<int32_t>(num_qo_heads);
  p.alibi_slopes = nullptr;
  p.rope_rcp_scale = static_cast<float>(1.0 / options.rope_scale);
  p.rope_log2_theta = static_cast<float>(std::log2(options.rope_theta));
  if (out.kind == attention::VariantKind::kJit) {
    options.jit_variant->extra_params().copy_to(p.extra);  // names an unset parameter
  }
  if (uses_alibi(out.kind)) {
    if (options.alibi_slopes != nullptr) {
      const TensorView slopes(*options.alibi_slopes, "alibi_slopes");
      slopes.expect_dtype({DType::kFloat32}).expect_ndim(1).expect_cuda().expect_contiguous();
      slopes.expect_size(0, num_qo_heads, "num_qo_heads");
      TESSERA_CHECK_ARG(slopes.device().device_id == device.device_id, "alibi_slopes",
                        "the device of q (" + device_name(device) + ")",
                        device_name(slopes.device()));
      p.alibi_slopes = slopes.data_as<const float>();
    } else {
      const bool power_of_two = num_qo_heads > 0 && (num_qo_heads & (num_qo_heads - 1)) == 0;
      TESSERA_CHECK_ARG(power_of_two, kOptions,
                        "alibi_slopes, or a power-of-two num_qo_heads for the standard slopes",
                        "num_qo_heads " + std::to_string(num_qo_heads));
    }
  }
  return out;
}

const char* variant_name(attention::VariantKind kind) {
  switch (kind) {
    case attention::VariantKind::kPlain: return "plain";
    case attention::VariantKind::kSoftCap: return "soft-cap";
    case attention::VariantKind::kSlidingWindow: return "sliding window";
    case attention::VariantKind::kSoftCapSlidingWindow: return "soft-cap + sliding window";
    case attention::VariantKind::kAlibi: return "ALiBi";
    case attention::VariantKind::kRopeLlama: return "RoPE-Llama";
    case attention::VariantKind::kJit: return "JIT";
    case attention::VariantKind::kAlibiSoftCap:
      return "ALiBi + soft-cap";
    case attention::VariantKind::kAlibiSlidingWindow:
      return "ALiBi + sliding window";
    case attention::VariantKind::kAlibiSoftCapSlidingWindow:
      return "ALiBi + soft-cap + sliding window";
    case attention::VariantKind::kRopeLlamaSoftCap:
      return "RoPE-Llama + soft-cap";
    case attention::VariantKind::kRopeLlamaSlidingWindow:
      return "RoPE-Llama + sliding window";
    case attention::VariantKind::kRopeLlamaSoftCapSlidingWindow:
      return "RoPE-Llama + soft-cap + sliding window";
  }
  return "unknown";
}

const uint8_t* resolve_custom_mask(const AttentionOptions& options, int64_t required_bytes,
                                   DLDevice device) {
  if (options.custom_mask == nullptr) return nullptr;
  const TensorView mask(*options.custom_mask, "custom_mask");
  mask.expect_ndim(1).expect_dtype({DType::kUInt8}).expect_cuda().expect_contiguous();
  TESSERA_CHECK_ARG(mask.device().device_id == device.device_id, "custom_mask",
                    "the device of q (cuda:" + std::to_string(device.device_id) + ")",
                    "cuda:" + std::to_string(mask.device().device_id));
  TESSERA_CHECK_ARG(required_bytes <= std::numeric_limits<int32_t>::max(), "custom_mask",
                    "a packed mask under 2^31 bytes", std::to_string(required_bytes) + " bytes");
  TESSERA_CHECK_ARG(mask.size(0) >= required_bytes, "custom_mask",
                    "at least " + std::to_string(required_bytes) +
                        " bytes (sum of ceil(qo_len * kv_len / 8) over the requests)",
                    std::to_string(mask.size(0)) + " bytes");
  return mask.data_as<const uint8_t>();
}

void expect_no_custom_mask(const AttentionOptions& options) {
  TESSERA_CHECK_ARG(options.custom_mask == nullptr, "custom_mask",
                    "no custom mask in decode (prefill only)", "a custom_mask");
}

bool sums_partial_states(const AttentionOptions& options) {
  return options.jit_variant != nullptr && !options.jit_variant->spec().use_softmax;
}

const void* jit_kernel_for(const AttentionOptions& options, jit::KernelKind kernel, DType q_dtype,
                           DType kv_dtype, int64_t head_dim) {
  if (options.jit_variant == nullptr) return nullptr;
  const jit::VariantSpec& spec = options.jit_variant->spec();
  const bool masked = options.custom_mask != nullptr;
  if (spec.kernel == kernel && spec.q_dtype == q_dtype && spec.kv_dtype == kv_dtype &&
      spec.head_dim == head_dim && spec.custom_mask == masked) {
    return options.jit_variant->kernel();  // run() path: no strings unless it fails
  }
  const auto describe = [](jit::KernelKind k, DType q, DType kv, int64_t d, bool mask) {
    return std::string(jit::kernel_kind_name(k)) + ", q " + dtype_name(q) + ", kv " +
           dtype_name(kv) + ", head_dim " + std::to_string(d) +
           (mask ? ", custom_mask" : ", no custom_mask");
  };
  const std::string wanted = describe(kernel, q_dtype, kv_dtype, head_dim, masked);
  const std::string got =
      describe(spec.kernel, spec.q_dtype, spec.kv_dtype, spec.head_dim, spec.custom_mask);
  TESSERA_CHECK_ARG(wanted == got, kOptions, "a jit_variant compiled for " + wanted,
                    "one compiled for " + got);
  return options.jit_variant->kernel();
}

}  // namespace tessera::detail
