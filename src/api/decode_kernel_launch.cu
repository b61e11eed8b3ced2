// launch_decode (api/decode_launch.h): picks the decode kernel for (q dtype,
// KV dtype, head_dim, variant) and launches it. The dispatch below spans what
// the templates support: q/KV in {bf16/bf16, fp16/fp16, bf16/fp8, fp16/fp8}
// (fp8 e4m3fn or e5m2) x head_dim {64, 80, 96, 112, 128, 256} x the six
// built-in variants, with tensor-core kernels (decode_mma.cuh) for 16-bit
// K/V x head_dim {64, 80, 96, 112, 128} x the five variants without RoPE. Entries on the AOT
// list (aot_kernels.h) are instantiated here; the rest come from the JIT
// (builtin_jit.h) on first use. Anything else is rejected here (and
// earlier, with the argument's name, by the API).
#include <cstddef>
#include <cstdint>
#include <cuda/std/type_traits>
#include <string>

#include "api/aot_kernels.h"
#include "api/attention_variant.h"
#include "api/batch_decode_args.h"
#include "api/builtin_jit.h"
#include "api/decode_launch.h"
#include "api/kernel_types.cuh"
#include "api/plan_run.h"
#include "tessera/attention/decode.cuh"
#include "tessera/attention/decode_mma.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

// The planner's wave size (host code, batch_decode_args.h) must be the
// kernel's residency (its launch bounds).
static_assert(tessera::detail::kDecodeCtasPerSm == tessera::decode::kMinCtasPerSm &&
                  tessera::detail::kDecodeCtasPerSm == tessera::decode_mma::kMinCtasPerSm,
              "batch_decode_args.h kDecodeCtasPerSm must equal both decode kernels' residency");

namespace tessera::detail {

namespace {

using attention::VariantKind;

// The instances with a tensor-core kernel (decode_mma.cuh): 16-bit K/V of
// q's dtype, head_dim up to 128, no q/k transform (RoPE on the fly).
template <typename QT, typename KVT, int kHeadDim, typename Variant>
inline constexpr bool kTensorCoreInstance =
    cuda::std::is_same_v<QT, KVT> && kHeadDim <= 128 && !Variant::kHasQueryKeyTransform;
// kAuto takes tensor cores from this group size up (below it the CUDA-core
// kernel's per-head work is small and the mma rows mostly padding).
constexpr int64_t kTensorCoreMinGroup = 4;

// The kernels of a JIT-compiled variant (the caller's, or a built-in one off
// the AOT list): CUDA-core, and tensor-core when the variant has one.
struct JitKernels {
  const void* kernel = nullptr;
  const void* mma_kernel = nullptr;
};

[[noreturn]] void throw_no_tensor_cores(const DecodeLaunch& l, const JitKernels& jit) {
  throw Error("backend",
              "kTensorCores only with 16-bit K/V of q's dtype, head_dim 64 to 128, "
              "num_qo_heads / num_kv_heads <= " +
                  std::to_string(decode_mma::kRows) +
                  ", a built-in variant other than RoPE or a JIT softmax variant without a "
                  "q/k transform",
              std::string("KV ") + dtype_name(l.kv.dtype) + ", head_dim " +
                  std::to_string(l.head_dim) + ", group " +
                  std::to_string(l.num_qo_heads / l.num_kv_heads) +
                  (l.options.pos_encoding_mode == PosEncodingMode::kRopeLlama ? ", RoPE" : "") +
                  (jit.kernel != nullptr && jit.mma_kernel == nullptr
                       ? ", a JIT variant the tensor-core kernel cannot run"
                       : ""));
}

// For an instance that has a tensor-core kernel: whether this call takes it.
bool use_tensor_cores(const DecodeLaunch& l, const JitKernels& jit) {
  const int64_t group = l.num_qo_heads / l.num_kv_heads;
  const bool applies =
      (jit.kernel == nullptr || jit.mma_kernel != nullptr) && group <= decode_mma::kRows;
  switch (l.backend) {
    case DecodeBackend::kCudaCores: return false;
    case DecodeBackend::kTensorCores:
      if (!applies) throw_no_tensor_cores(l, jit);
      return true;
    case DecodeBackend::kAuto: break;
  }
  return applies && group >= kTensorCoreMinGroup;
}

template <typename QT, typename KVT, int kHeadDim, typename Variant>
void launch_instance(const DecodeLaunch& l, const attention::VariantParams& variant, JitKernels jit,
                     cudaStream_t stream) {
  using Traits = decode::DecodeTraits<QT, KVT, kHeadDim>;
  decode::DecodeParams<QT, KVT> p{};
  p.q = static_cast<const QT*>(l.q);
  p.q_stride_batch = l.q_stride_batch;
  p.q_stride_head = l.q_stride_head;
  p.out = static_cast<QT*>(l.out);
  p.out_stride_batch = l.out_stride_batch;
  p.out_stride_head = l.out_stride_head;
  p.lse = l.lse;
  p.kv.k_data = static_cast<const KVT*>(l.kv.k_data);
  p.kv.v_data = static_cast<const KVT*>(l.kv.v_data);
  p.kv.stride_page = l.kv.stride_page;
  p.kv.stride_entry = l.kv.stride_entry;
  p.kv.stride_head = l.kv.stride_head;
  p.kv.page_size = static_cast<int32_t>(l.kv.page_size);
  p.page_div = FastDivmod::make(p.kv.page_size);
  p.kv.num_heads = static_cast<int32_t>(l.kv.num_heads);
  p.kv.head_dim = static_cast<int32_t>(l.kv.head_dim);
  p.kv_indices = l.kv_indices;
  p.num_qo_heads = static_cast<int32_t>(l.num_qo_heads);
  p.num_kv_heads = static_cast<int32_t>(l.num_kv_heads);
  p.group_size = static_cast<int32_t>(l.num_qo_heads / l.num_kv_heads);
  p.schedule = l.schedule;
  p.variant = variant;

  // A built-in variant off the AOT list comes from the JIT (compiled and
  // loaded on first use); only listed instances are compiled into the library.
  constexpr bool kAot =
      aot_decode_kernel(variant_kind_of<Variant>(), dtype_of<QT>(), dtype_of<KVT>(), kHeadDim);
  if constexpr (!kAot) {
    if (jit.kernel == nullptr) {
      const jit::LoadedVariant& built =
          builtin_jit_variant(jit::KernelKind::kBatchDecode, variant_kind_of<Variant>(),
                              dtype_of<QT>(), dtype_of<KVT>(), kHeadDim);
      jit = {built.kernel(), built.mma_kernel()};
    }
  }
  // A JIT variant's kernel takes the same parameters (only the variant type
  // differs), so it launches exactly like the AOT one.
  const void* kernel = jit.kernel;
  if constexpr (kAot) {
    if (kernel == nullptr)
      kernel = reinterpret_cast<const void*>(decode::decode_kernel<Traits, Variant>);
  }
  int threads = decode::kThreads;
  int shared_bytes = Traits::kSharedBytes;
  if constexpr (kTensorCoreInstance<QT, KVT, kHeadDim, Variant>) {
    if (use_tensor_cores(l, jit)) {
      using MmaTraits = decode_mma::DecodeMmaTraits<QT, kHeadDim>;
      kernel = jit.mma_kernel;
      if constexpr (kAot) {
        if (jit.kernel == nullptr) {
          kernel = reinterpret_cast<const void*>(decode_mma::decode_mma_kernel<MmaTraits, Variant>);
        }
      }
      threads = decode_mma::kThreads;
      shared_bytes = MmaTraits::kSharedBytes;
    }
  } else {
    if (l.backend == DecodeBackend::kTensorCores) throw_no_tensor_cores(l, jit);
  }
  // Above 48 KB of dynamic shared memory a kernel must opt in (per device).
  TESSERA_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared_bytes));
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unit_grid_ctas(l.grid_units, l.num_kv_heads, "decode"));
  config.blockDim = dim3(threads);
  config.dynamicSmemBytes = static_cast<std::size_t>(shared_bytes);
  config.stream = stream;
  // sm90+: a programmatic dependent of the kernel before it (decode.cuh):
  // its CTAs start under that kernel's tail instead of after a launch gap.
  cudaLaunchAttribute dependent{};
  launch_as_programmatic_dependent(config, dependent, l.kv.device.device_id);
  void* args[] = {&p};
  TESSERA_CUDA_CHECK(cudaLaunchKernelExC(&config, kernel, args));
}

template <typename QT, typename KVT, typename Variant>
void dispatch_head_dim(const DecodeLaunch& l, const attention::VariantParams& variant,
                       const JitKernels& jit, cudaStream_t stream) {
  switch (l.head_dim) {
    case 64:
      return launch_instance<QT, KVT, 64, Variant>(l, variant, jit, stream);
    case 80:
      return launch_instance<QT, KVT, 80, Variant>(l, variant, jit, stream);
    case 96:
      return launch_instance<QT, KVT, 96, Variant>(l, variant, jit, stream);
    case 112:
      return launch_instance<QT, KVT, 112, Variant>(l, variant, jit, stream);
    case 128:
      return launch_instance<QT, KVT, 128, Variant>(l, variant, jit, stream);
    case 256:
      return launch_instance<QT, KVT, 256, Variant>(l, variant, jit, stream);
    default:
      throw Error("tessera: decode: head_dim " + std::to_string(l.head_dim) +
                  " has no kernel (64, 80, 96, 112, 128, 256)");
  }
}

template <typename Variant>
void dispatch_dtypes(const DecodeLaunch& l, const attention::VariantParams& variant,
                     cudaStream_t stream, const JitKernels& jit = {}) {
  const bool e4m3 = l.kv.dtype == DType::kFloat8E4M3;
  const bool e5m2 = l.kv.dtype == DType::kFloat8E5M2;
  if (l.q_dtype == DType::kBFloat16 && (e4m3 || e5m2 || l.kv.dtype == DType::kBFloat16)) {
    if (e4m3) return dispatch_head_dim<bfloat16_t, fp8_e4m3_t, Variant>(l, variant, jit, stream);
    if (e5m2) return dispatch_head_dim<bfloat16_t, fp8_e5m2_t, Variant>(l, variant, jit, stream);
    return dispatch_head_dim<bfloat16_t, bfloat16_t, Variant>(l, variant, jit, stream);
  }
  if (l.q_dtype == DType::kFloat16 && (e4m3 || e5m2 || l.kv.dtype == DType::kFloat16)) {
    if (e4m3) return dispatch_head_dim<half_t, fp8_e4m3_t, Variant>(l, variant, jit, stream);
    if (e5m2) return dispatch_head_dim<half_t, fp8_e5m2_t, Variant>(l, variant, jit, stream);
    return dispatch_head_dim<half_t, half_t, Variant>(l, variant, jit, stream);
  }
  throw Error(std::string("tessera: decode: no kernel for q ") + dtype_name(l.q_dtype) +
              " with KV " + dtype_name(l.kv.dtype));
}

}  // namespace

void launch_decode(const DecodeLaunch& l, cudaStream_t stream) {
  // Defensive: the entry points validate with argument names; these are the
  // kernel's own hard requirements (16-byte cp.async rows, whole GQA groups).
  if (l.num_kv_heads < 1 || l.num_qo_heads % l.num_kv_heads != 0) {
    throw Error("tessera: decode: num_qo_heads " + std::to_string(l.num_qo_heads) +
                " is not a multiple of num_kv_heads " + std::to_string(l.num_kv_heads));
  }
  expect_rows_aligned16(l.kv);
  const ResolvedVariant variant =
      resolve_variant(l.options, l.head_dim, l.num_qo_heads, l.kv.device);
  attention::VariantParams params = variant.params;
  params.alibi_slopes = l.alibi_slopes;  // the caller's device slopes (or null: standard)
  if (variant.kind == VariantKind::kJit) {
    // The plain instantiation only supplies the parameter types.
    return dispatch_dtypes<attention::PlainVariant>(
        l, params, stream, {l.jit_kernel, l.options.jit_variant->mma_kernel()});
  }
  visit_variant_kind(variant.kind, [&]<typename Variant>() {
    dispatch_dtypes<Variant>(l, params, stream);
  });
}

}  // namespace tessera::detail
