#include "api/prefill_backend.h"

#include <cuda_runtime_api.h>

#include <array>
#include <mutex>

#include "api/aot_kernels.h"
#include "api/attention_variant.h"
#include "tessera/api/prefill.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera::detail {

bool device_runs_sm90a(int device_id) {
  constexpr int kMaxDevices = 64;
  static std::array<int, kMaxDevices> cached{};  // 0 unknown, 1 no, 2 yes
  static std::mutex mutex;
  if (device_id < 0 || device_id >= kMaxDevices) return false;
  std::lock_guard<std::mutex> lock(mutex);
  if (cached[static_cast<std::size_t>(device_id)] == 0) {
    int major = 0;
    int minor = 0;
    TESSERA_CUDA_CHECK(
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_id));
    TESSERA_CUDA_CHECK(
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_id));
    cached[static_cast<std::size_t>(device_id)] = major == 9 && minor == 0 ? 2 : 1;
  }
  return cached[static_cast<std::size_t>(device_id)] == 2;
}

std::string sm90_prefill_unsupported(const PrefillCase& c) {
  if (!device_runs_sm90a(c.device_id)) return "a GPU of compute capability 9.0 (sm_90a)";
  if (c.jit_variant) {
    if (!c.jit_hopper_kernel) {
      return "a JIT variant compiled for sm_90a with K/V of q's dtype, head_dim 64 or 128, "
             "softmax and no q / k transform (LoadedVariant::hopper_kernel)";
    }
  } else if (!aot_prefill_sm90_kernel(c.variant, c.dtype, c.kv_dtype, c.head_dim,
                                      c.custom_mask)) {
    return "fp16 / bf16 q and K/V of one dtype (or a float8_e4m3fn paged cache with bf16 q, "
           "head_dim 128, plain or sliding window), head_dim 64, 128 or 256, the plain, "
           "soft-cap, sliding-window or soft-cap + window variant or ALiBi at head_dim 128, a "
           "custom mask only with the plain variant at head_dim 128 (src/api/aot_kernels.h)";
  }
  if (c.rows_per_token < 1 || c.rows_per_token > 128 || 128 % c.rows_per_token != 0) {
    return "a GQA group (num_qo_heads / num_kv_heads) dividing 128";
  }
  if (c.q_tile_rows != 128) return "a plan made for it (128-row query tiles)";
  if (!(c.query_scale > 0.0)) return "a positive sm_scale * k_scale";
  return {};
}

bool auto_prefers_sm90(int64_t head_dim) { return head_dim != 256; }

// kAuto shapes a plan for the Hopper kernels wherever the device and
// head_dim allow them, so that its schedule does not depend on the lengths
// (a captured graph replays any later plan of the wrapper); a call they do
// not serve (variant, dtype, mask) runs FA2 on that plan. Not at head_dim
// 256: FA2 runs 64-row tiles only there, so an auto plan stays FA2's (fa3
// refuses it: "a plan made for it") and only kFa3 plans 128-row tiles.
bool plan_for_sm90(PrefillBackend backend, int device_id, int64_t head_dim) {
  const bool wanted = backend == PrefillBackend::kFa3 ||
                      (backend == PrefillBackend::kAuto && auto_prefers_sm90(head_dim));
  return wanted && sm90_prefill_head_dim(head_dim) && device_runs_sm90a(device_id);
}

PrefillBackend resolve_prefill_backend(PrefillBackend requested, const PrefillCase& c) {
  if (requested == PrefillBackend::kFa2) return PrefillBackend::kFa2;
  // head_dim 256 runs on the Hopper kernels only when asked for by name:
  // they trail FA2 at <= 1k tokens per request (H100, 0.5-0.96x) and lead
  // above (1.2-1.8x), and batch plans for auto are FA2's there
  // (plan_for_sm90), so one plan serves every length.
  if (requested == PrefillBackend::kAuto && !auto_prefers_sm90(c.head_dim)) {
    return PrefillBackend::kFa2;
  }
  const std::string why = sm90_prefill_unsupported(c);
  if (why.empty()) return PrefillBackend::kFa3;
  TESSERA_CHECK_ARG(requested != PrefillBackend::kFa3, "backend",
                    "\"fa3\" only for " + why + " (\"auto\" picks fa2 here)", "\"fa3\"");
  return PrefillBackend::kFa2;
}

}  // namespace tessera::detail

namespace tessera {

PrefillBackendSupport prefill_backend_support_sm90(PosEncodingMode pos_encoding_mode,
                                                   bool soft_cap, bool sliding_window,
                                                   bool custom_mask, DType q_dtype,
                                                   DType kv_dtype, int64_t head_dim) {
  TESSERA_CHECK_ARG(head_dim >= 0, "head_dim", ">= 0 (0: every head_dim)",
                    std::to_string(head_dim));
  AttentionOptions options;
  options.pos_encoding_mode = pos_encoding_mode;
  options.logits_soft_cap = soft_cap ? 1.0 : 0.0;
  options.window_left = sliding_window ? 1 : -1;
  const attention::VariantKind kind = detail::select_variant(options);
  const auto at = [&](int64_t d) {
    PrefillBackendSupport s;
    s.fa3_serves = detail::aot_prefill_sm90_kernel(kind, q_dtype, kv_dtype, d, custom_mask);
    s.auto_takes_fa3 = s.fa3_serves && detail::auto_prefers_sm90(d);
    return s;
  };
  if (head_dim > 0) return at(head_dim);
  PrefillBackendSupport every{true, true};
  for (const int64_t d : detail::kSm90PrefillHeadDims) {
    const PrefillBackendSupport s = at(d);
    every.fa3_serves = every.fa3_serves && s.fa3_serves;
    every.auto_takes_fa3 = every.auto_takes_fa3 && s.auto_takes_fa3;
  }
  return every;
}

}  // namespace tessera
