// single_prefill_with_kv_cache: validates every argument, views K/V as a
// paged cache with one page (slot = kv position, as single decode does) and
// launches the FA2-style prefill kernel (attention/prefill_sm80.cuh).
// Kernels: {bf16, fp16} x head_dim {64, 80, 96, 112, 128, 256} x {plain, soft-cap, window,
// soft-cap + window, ALiBi, RoPE-Llama}, those on the AOT list (aot_kernels.h) compiled
// in, the rest JIT-compiled on first use; causal is a run-time flag inside
// the kernel.
#include <cstdint>
#include <limits>
#include <string>

#include "api/aot_kernels.h"
#include "api/attention_variant.h"
#include "api/builtin_jit.h"
#include "api/contiguous_kv.h"
#include "api/kernel_types.cuh"
#include "api/prefill_backend.h"
#include "api/prefill_device_fit.h"
#include "api/prefill_sm90_launch.h"
#include "plan/prefill_planner.h"
#include "tessera/api/prefill.h"
#include "tessera/attention/prefill_sm80.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/attention/head_dims.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxGridY = 65535;

void check_kv_tensor(const TensorView& t, const TensorView& q) {
  t.expect_ndim(3).expect_cuda().expect_last_dim_contiguous();
  TESSERA_CHECK_ARG(t.dtype() == q.dtype(), t.name(),
                    std::string("dtype ") + dtype_name(q.dtype()) + " (as q)",
                    dtype_name(t.dtype()));
  expect_same_device(q, t);
  detail::expect_rows_aligned16(t);
}

struct Launch : detail::SinglePrefillTensors {
  int64_t v_stride_entry;  // v's (k's but at q/k 192, v/o 128)
  int64_t v_stride_head;
  int64_t head_dim_vo;
  int64_t q_tile_rows;   // 64 or 128 (plan::choose_q_tile_rows)
  int64_t shared_bytes;  // for q_tile_rows (detail::prefill_shared_bytes)
  // The kernel's shared-memory attribute: the same on every call on a
  // device (the fit's largest tile), so concurrent calls never lower it
  // under each other's launches.
  int64_t max_shared_bytes;
  const void* jit_kernel;  // a JIT variant's kernel (same parameters), or null
};

// The built-in variant's kernel: compiled in when on the AOT list, else from
// the JIT on first use.
template <typename Traits, typename Variant, typename T, bool kCustomMask>
const void* builtin_kernel() {
  constexpr DType kDtype = detail::dtype_of<T>();
  constexpr auto kKind = detail::variant_kind_of<Variant>();
  if constexpr (detail::aot_prefill_kernel(kKind, kDtype, kDtype, Traits::kHeadDimQk,
                                           kCustomMask)) {
    return reinterpret_cast<const void*>(
        prefill::single_prefill_kernel<Traits, Variant, T, kCustomMask>);
  } else {
    return detail::builtin_jit_variant(jit::KernelKind::kSinglePrefill, kKind, kDtype, kDtype,
                                       Traits::kHeadDimQk, kCustomMask)
        .kernel();
  }
}

template <typename T, int kHeadDim, typename Variant>
void launch_instance(const Launch& l, cudaStream_t stream) {
  // head_dim 192 is q/k 192 with v/o 128 (the one unequal pair).
  constexpr int kHeadDimVo = kHeadDim == 192 ? 128 : kHeadDim;
  using Traits = prefill::PrefillTraits<T, kHeadDim, kHeadDimVo>;
  prefill::SinglePrefillParams<T> p{};
  p.q = static_cast<const T*>(l.q);
  p.q_stride_token = l.q_stride_token;
  p.q_stride_head = l.q_stride_head;
  p.out = static_cast<T*>(l.out);
  p.out_stride_token = l.out_stride_token;
  p.out_stride_head = l.out_stride_head;
  p.lse = l.lse;
  p.k = static_cast<const T*>(l.k);
  p.v = static_cast<const T*>(l.v);
  p.kv_stride_entry = l.kv_stride_entry;
  p.kv_stride_head = l.kv_stride_head;
  p.v_stride_entry = l.v_stride_entry;
  p.v_stride_head = l.v_stride_head;
  p.qo_len = static_cast<int32_t>(l.qo_len);
  p.kv_len = static_cast<int32_t>(l.kv_len);
  p.num_qo_heads = static_cast<int32_t>(l.num_qo_heads);
  p.group_size = static_cast<int32_t>(l.num_qo_heads / l.num_kv_heads);
  p.causal = l.causal;
  p.q_tile_rows = static_cast<int32_t>(l.q_tile_rows);
  p.custom_mask = l.custom_mask;
  p.variant = l.variant;

  const void* kernel = l.jit_kernel;
  if (kernel == nullptr) {
    kernel = l.custom_mask != nullptr ? builtin_kernel<Traits, Variant, T, true>()
                                      : builtin_kernel<Traits, Variant, T, false>();
  }
  const int shared_bytes = static_cast<int>(l.shared_bytes);
  TESSERA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(l.max_shared_bytes)));
  const dim3 grid(static_cast<unsigned>((l.qo_len + l.q_tile_rows - 1) / l.q_tile_rows),
                  static_cast<unsigned>(l.num_qo_heads));
  void* args[] = {&p};
  TESSERA_CUDA_CHECK(
      cudaLaunchKernel(kernel, grid, dim3(prefill::kThreads), args, shared_bytes, stream));
  TESSERA_CHECK_LAUNCH();
}

template <typename T, typename Variant>
void dispatch_head_dim(const Launch& l, cudaStream_t stream) {
  switch (l.head_dim) {
    case 64: return launch_instance<T, 64, Variant>(l, stream);
    case 80: return launch_instance<T, 80, Variant>(l, stream);
    case 96: return launch_instance<T, 96, Variant>(l, stream);
    case 112: return launch_instance<T, 112, Variant>(l, stream);
    case 128: return launch_instance<T, 128, Variant>(l, stream);
    case 256:
      return launch_instance<T, 256, Variant>(l, stream);
    case 192:  // (with head_dim_vo 128, checked by the caller)
      return launch_instance<T, 192, Variant>(l, stream);
    default:
      throw Error("tessera: prefill: head_dim " + std::to_string(l.head_dim) +
                  " has no kernel (64, 80, 96, 112, 128, 256; 192 with v's 128)");
  }
}

template <typename Variant>
void dispatch_dtype(const Launch& l, DType dtype, cudaStream_t stream) {
  if (dtype == DType::kBFloat16) return dispatch_head_dim<bfloat16_t, Variant>(l, stream);
  return dispatch_head_dim<half_t, Variant>(l, stream);
}

}  // namespace

void single_prefill_with_kv_cache(const DLTensor& q, const DLTensor& k, const DLTensor& v,
                                  const DLTensor& out, const DLTensor* lse, KVLayout layout,
                                  bool causal, const AttentionOptions& options,
                                  cudaStream_t stream) {
  // ---- validation: every argument, before any CUDA call
  const TensorView qv(q, "q");
  qv.expect_ndim(3).expect_dtype({DType::kFloat16, DType::kBFloat16}).expect_cuda();
  qv.expect_last_dim_contiguous();
  const int64_t qo_len = qv.size(0);
  const int64_t num_qo_heads = qv.size(1);
  const int64_t head_dim = qv.size(2);
  TESSERA_CHECK_ARG(attention::supported_head_dim(head_dim) ||
                        head_dim == attention::kSplitHeadDimQk,
                    "q", std::string(attention::kHeadDimsText) + ", or 192 (v's 128)",
                    "head_dim " + std::to_string(head_dim));
  TESSERA_CHECK_ARG(qo_len <= kInt32Max, "q", "qo_len < 2^31", std::to_string(qo_len));
  TESSERA_CHECK_ARG(num_qo_heads <= kMaxGridY, "q", "num_qo_heads <= 65535 (grid.y)",
                    std::to_string(num_qo_heads));
  detail::expect_rows_aligned16(qv);

  const TensorView kv(k, "k");
  const TensorView vv(v, "v");
  check_kv_tensor(kv, qv);
  check_kv_tensor(vv, qv);
  kv.expect_size(2, head_dim, "head_dim (as q)");
  // v's last dim is the v/o head dim: q's, or 128 beside q/k 192.
  const int64_t head_dim_vo = head_dim == attention::kSplitHeadDimQk
                                  ? int64_t{attention::kSplitHeadDimVo}
                                  : head_dim;
  vv.expect_size(2, head_dim_vo,
                 head_dim == head_dim_vo ? "head_dim (as q)" : "head_dim_vo 128 (q/k 192)");
  const detail::ContiguousKV kv_shape =
      head_dim == head_dim_vo ? detail::resolve_contiguous_kv(kv, vv, layout, num_qo_heads)
                              : detail::resolve_contiguous_kv(kv, kv, layout, num_qo_heads);
  const detail::ContiguousKV v_shape =
      head_dim == head_dim_vo ? kv_shape : detail::resolve_contiguous_kv(vv, vv, layout, num_qo_heads);
  TESSERA_CHECK_ARG(v_shape.kv_len == kv_shape.kv_len && v_shape.num_kv_heads == kv_shape.num_kv_heads,
                    "v", "k's kv_len and num_kv_heads (" + std::to_string(kv_shape.kv_len) + ", " +
                             std::to_string(kv_shape.num_kv_heads) + ")",
                    "(" + std::to_string(v_shape.kv_len) + ", " +
                        std::to_string(v_shape.num_kv_heads) + ")");
  const int64_t kv_len = kv_shape.kv_len;
  const int64_t num_kv_heads = kv_shape.num_kv_heads;

  const TensorView ov = detail::output_like_q(out, qv, head_dim_vo);
  detail::expect_rows_aligned16(ov);
  float* lse_data = nullptr;
  if (lse != nullptr) {
    const TensorView lv(*lse, "lse");
    lv.expect_dtype({DType::kFloat32}).expect_ndim(2).expect_cuda().expect_contiguous();
    lv.expect_size(0, qo_len, "qo_len").expect_size(1, num_qo_heads, "num_qo_heads");
    expect_same_device(qv, lv);
    lse_data = lv.data_as<float>();
  }
  const detail::ResolvedVariant variant =
      detail::resolve_variant(options, head_dim, num_qo_heads, qv.device());
  using attention::VariantKind;
  const void* jit_kernel = detail::jit_kernel_for(options, jit::KernelKind::kSinglePrefill,
                                                  qv.dtype(), qv.dtype(), head_dim);
  const uint8_t* custom_mask =
      detail::resolve_custom_mask(options, (qo_len * kv_len + 7) / 8, qv.device());
  if (qo_len == 0 || num_qo_heads == 0) return;  // nothing to compute

  Launch l{};
  l.jit_kernel = jit_kernel;
  l.custom_mask = custom_mask;
  l.q = qv.data();
  l.q_stride_token = qv.stride(0);
  l.q_stride_head = qv.stride(1);
  l.out = ov.data();
  l.out_stride_token = ov.stride(0);
  l.out_stride_head = ov.stride(1);
  l.lse = lse_data;
  l.k = kv.data();
  l.v = vv.data();
  l.kv_stride_entry = kv_shape.stride_entry;
  l.kv_stride_head = kv_shape.stride_head;
  l.v_stride_entry = v_shape.stride_entry;
  l.v_stride_head = v_shape.stride_head;
  l.head_dim_vo = head_dim_vo;
  l.qo_len = qo_len;
  l.kv_len = kv_len;
  l.num_qo_heads = num_qo_heads;
  l.num_kv_heads = num_kv_heads;
  l.head_dim = head_dim;
  l.causal = causal;
  l.variant = variant.params;

  DeviceGuard guard(qv.device().device_id);
  detail::PrefillCase backend_case;
  backend_case.device_id = qv.device().device_id;
  backend_case.dtype = qv.dtype();
  backend_case.kv_dtype = qv.dtype();
  backend_case.head_dim = head_dim;
  backend_case.variant = variant.kind;
  backend_case.custom_mask = custom_mask != nullptr;
  backend_case.jit_variant = jit_kernel != nullptr;
  const void* hopper_jit_kernel =
      jit_kernel != nullptr ? options.jit_variant->hopper_kernel() : nullptr;
  backend_case.jit_hopper_kernel = hopper_jit_kernel != nullptr;
  backend_case.query_scale = static_cast<double>(variant.params.sm_scale) * variant.params.k_scale;
  if (detail::resolve_prefill_backend(options.backend, backend_case) == PrefillBackend::kFa3) {
    const detail::SinglePrefillSm90Launch h{l, qv.dtype(), variant.kind, hopper_jit_kernel};
    return detail::launch_single_prefill_sm90(h, stream);
  }
  const detail::PrefillDeviceFit fit =
      detail::prefill_device_fit(head_dim, qv.device().device_id, "q", head_dim_vo);
  // The batch planner's rule for one request of one head per CTA.
  const int32_t qo_indptr[2] = {0, static_cast<int32_t>(qo_len)};
  l.q_tile_rows = plan::choose_q_tile_rows(qo_indptr, /*rows_per_token=*/1, num_qo_heads, head_dim,
                                           fit.max_q_tile_rows, fit.num_sms * fit.ctas_per_sm);
  l.shared_bytes = detail::prefill_shared_bytes(l.q_tile_rows, head_dim, head_dim_vo);
  l.max_shared_bytes = fit.shared_bytes;
  // (kJit: the plain instantiation only supplies the parameter types.)
  detail::visit_variant_kind(variant.kind, [&]<typename Variant>() {
    dispatch_dtype<Variant>(l, qv.dtype(), stream);
  });
}

}  // namespace tessera
