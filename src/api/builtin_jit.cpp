#include "api/builtin_jit.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <tuple>

#include "api/aot_kernels.h"
#include "core/once_map.h"
#include "jit/codegen.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera {

namespace jit {

bool has_aot_kernel(KernelKind kernel, attention::VariantKind variant, DType q_dtype,
                    DType kv_dtype, int64_t head_dim, bool custom_mask) {
  // Only for kernels the templates have (codegen's rules).
  if (!jit::detail::has_kernel_template(kernel, q_dtype, kv_dtype, head_dim, custom_mask)) {
    return false;
  }
  if (kernel == KernelKind::kBatchDecode) {
    return tessera::detail::aot_decode_kernel(variant, q_dtype, kv_dtype, head_dim);
  }
  return tessera::detail::aot_prefill_kernel(variant, q_dtype, kv_dtype, head_dim, custom_mask);
}

VariantSpec builtin_variant_spec(KernelKind kernel, attention::VariantKind variant, DType q_dtype,
                                 DType kv_dtype, int64_t head_dim, bool custom_mask) {
  using attention::VariantKind;
  const char* base = nullptr;
  switch (variant) {
    case VariantKind::kPlain:
      base = "PlainVariant";
      break;
    case VariantKind::kSoftCap:
      base = "SoftCapVariant";
      break;
    case VariantKind::kSlidingWindow:
      base = "SlidingWindowVariant";
      break;
    case VariantKind::kSoftCapSlidingWindow:
      base = "SoftCapSlidingWindowVariant";
      break;
    case VariantKind::kAlibi:
      base = "AlibiVariant";
      break;
    case VariantKind::kRopeLlama:
      base = "RopeLlamaVariant";
      break;
    case VariantKind::kAlibiSoftCap:
      base = "AlibiSoftCapVariant";
      break;
    case VariantKind::kAlibiSlidingWindow:
      base = "AlibiSlidingWindowVariant";
      break;
    case VariantKind::kAlibiSoftCapSlidingWindow:
      base = "AlibiSoftCapSlidingWindowVariant";
      break;
    case VariantKind::kRopeLlamaSoftCap:
      base = "RopeLlamaSoftCapVariant";
      break;
    case VariantKind::kRopeLlamaSlidingWindow:
      base = "RopeLlamaSlidingWindowVariant";
      break;
    case VariantKind::kRopeLlamaSoftCapSlidingWindow:
      base = "RopeLlamaSoftCapSlidingWindowVariant";
      break;
    case VariantKind::kJit:
      break;
  }
  TESSERA_CHECK_ARG(base != nullptr, "variant", "a built-in variant kind", "kJit");
  // A struct deriving from the built-in one: the kernel reads the same
  // members and hooks, so it compiles to the AOT kernel's code.
  const std::string b = base;
  VariantSpec spec;
  spec.name = "Builtin" + b;
  spec.source = "struct Builtin" + b + " : " + b + " {\n  __device__ __forceinline__ Builtin" + b +
                "(const VariantParams& p, int qo_head, int q_pos)\n      : " + b +
                "(p, qo_head, q_pos) {}\n};\n";
  spec.kernel = kernel;
  spec.q_dtype = q_dtype;
  spec.kv_dtype = kv_dtype;
  spec.head_dim = head_dim;
  spec.custom_mask = custom_mask;
  return spec;
}

}  // namespace jit

namespace detail {

namespace {

// Restores this thread's capture mode on scope exit.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { TESSERA_CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode_)); }
  ~RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

}  // namespace

const jit::LoadedVariant& builtin_jit_variant(jit::KernelKind kernel,
                                              attention::VariantKind variant, DType q_dtype,
                                              DType kv_dtype, int64_t head_dim, bool custom_mask) {
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  // Never destroyed: unloading at exit could run after the CUDA runtime's
  // teardown. The arch is read once per device, not per launch.
  static auto& arch_of_device = *new OnceMap<int, std::string>();
  const std::string& arch = arch_of_device.get(
      device, [&] { return std::make_unique<std::string>(jit::device_arch(device)); });
  using Key = std::tuple<int, int, int, int, int64_t, bool, std::string>;
  static auto& loaded = *new OnceMap<Key, jit::LoadedVariant>();
  const Key key{static_cast<int>(kernel),
                static_cast<int>(variant),
                static_cast<int>(q_dtype),
                static_cast<int>(kv_dtype),
                head_dim,
                custom_mask,
                arch};
  // A first compile (1-2 s) holds only its own key: launches of other,
  // already loaded kernels go on meanwhile; callers of the same key wait.
  return loaded.get(key, [&] {
    const RelaxedCaptureMode relaxed;
    return std::make_unique<jit::LoadedVariant>(
        jit::builtin_variant_spec(kernel, variant, q_dtype, kv_dtype, head_dim, custom_mask),
        jit::CompileOptions{arch});
  });
}

}  // namespace detail
}  // namespace tessera
