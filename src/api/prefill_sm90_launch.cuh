// Launches of the Hopper prefill kernel (attention/prefill_sm90/kernel.cuh)
// for batch prefill (ragged K/V through TMA, paged K/V gathered) and single
// prefill: tensor maps, parameters, the dispatch over dtype x head_dim x
// variant (prefill_backend.cpp says which cases reach it), and the merge of
// split tiles. Instantiated per K/V kind in prefill_sm90_{ragged,paged,
// single}.cu so the three compile in parallel; only sm_90a code carries the
// kernel bodies.
#pragma once

#include <algorithm>
#include <limits>
#include <string>

#include "api/aot_kernels.h"
#include "api/batch_prefill_launch.cuh"
#include "api/batch_prefill_plan.h"
#include "api/kernel_types.cuh"
#include "api/prefill_sm90_launch.h"
#include "api/tma_descriptor.h"
#include "tessera/attention/prefill_sm90/kernel.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera::detail {

// The kernel's traits for q's T and the K/V kind (its element: T or fp8).
template <typename T, int kHeadDim, typename Kv>
using Sm90Traits = prefill_sm90::Traits<T, kHeadDim, typename Kv::Element>;

// The built-in variant's compiled-in Hopper kernel.
template <typename T, int kHeadDim, typename Variant, typename Kv>
const void* aot_sm90_kernel(bool custom_mask) {
  using Tr = Sm90Traits<T, kHeadDim, Kv>;
  if (!custom_mask) {
    return reinterpret_cast<const void*>(
        prefill_sm90::prefill_sm90_kernel<Tr, Variant, T, Kv, false>);
  }
  if constexpr (aot_prefill_sm90_kernel(variant_kind_of<Variant>(), dtype_of<T>(),
                                        dtype_of<typename Kv::Element>(), kHeadDim, true)) {
    return reinterpret_cast<const void*>(
        prefill_sm90::prefill_sm90_kernel<Tr, Variant, T, Kv, true>);
  }
  throw Error("tessera: prefill backend fa3: no custom-mask kernel for this variant");
}

// Launches `kernel` (an AOT instantiation or a JIT variant's Hopper kernel:
// the same parameters) with the shared memory of its traits.
template <typename T, int kHeadDim, typename Kv>
void launch_sm90_kernel(const void* kernel, prefill_sm90::Params<T, Kv>& p, dim3 grid,
                        cudaStream_t stream) {
  using Tr = Sm90Traits<T, kHeadDim, Kv>;
  constexpr int kShared = prefill_sm90::kSharedBytes<Tr>;
  TESSERA_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared));
  void* args[] = {&p};
  TESSERA_CUDA_CHECK(
      cudaLaunchKernel(kernel, grid, dim3(prefill_sm90::kThreads), args, kShared, stream));
}

// Contiguous K and V ([tokens, heads, D], strides in elements) as tensor
// maps with one K/V tile per box.
template <typename T, int kHeadDim, typename Kv>
void encode_kv_maps(prefill_sm90::Params<T, Kv>& p, const void* k, const void* v, int64_t heads,
                    int64_t tokens, int64_t stride_head, int64_t stride_token) {
  constexpr int64_t kElement = 2;
  constexpr int kTileRows = prefill_sm90::Traits<T, kHeadDim>::kBlockN;
  p.k_map = encode_rows_tensor_map(k, kHeadDim, heads, tokens, stride_head * kElement,
                                   stride_token * kElement, 1, kTileRows, "k");
  p.v_map = encode_rows_tensor_map(v, kHeadDim, heads, tokens, stride_head * kElement,
                                   stride_token * kElement, 1, kTileRows, "v");
}

// The kernel a call runs: a JIT variant's Hopper kernel (jit_kernel), else
// the built-in variant's, one of those aot_kernels.h lists for this dtype
// and head_dim (prefill_backend.cpp keeps the rest away). Every variant's
// kernel takes the same Params<T, Kv>.
template <typename T, int kHeadDim, typename Kv>
const void* sm90_kernel(attention::VariantKind kind, const void* jit_kernel, bool custom_mask) {
  if (jit_kernel != nullptr) return jit_kernel;
  if (kind == attention::VariantKind::kJit) {
    throw Error("tessera: prefill backend fa3: no kernel for this variant");
  }
  return visit_variant_kind(kind, [&]<typename Variant>() -> const void* {
    if constexpr (aot_prefill_sm90_kernel(variant_kind_of<Variant>(), dtype_of<T>(),
                                          dtype_of<typename Kv::Element>(), kHeadDim, false)) {
      return aot_sm90_kernel<T, kHeadDim, Variant, Kv>(custom_mask);
    } else {
      throw Error("tessera: prefill backend fa3: no kernel for this variant");
    }
  });
}

template <typename F>
void dispatch_sm90_types(DType dtype, int64_t head_dim, F&& f) {
  const auto by_dim = [&]<typename T>() {
    if (head_dim == 64) return f.template operator()<T, 64>();
    if (head_dim == 128) return f.template operator()<T, 128>();
    if (head_dim == 256) return f.template operator()<T, 256>();
    throw Error("tessera: prefill backend fa3: head_dim " + std::to_string(head_dim));
  };
  if (dtype == DType::kBFloat16) return by_dim.template operator()<bfloat16_t>();
  return by_dim.template operator()<half_t>();
}

// Batch prefill on the Hopper kernel: one CTA per SM taking jobs, then the
// merge when the plan split (or a graph is captured).
template <typename T, int kHeadDim, typename Kv>
void launch_batch_prefill_sm90_on(const BatchPrefillLaunch& l, cudaStream_t stream) {
  constexpr bool kRagged = std::is_same_v<Kv, prefill::RaggedKv<T>>;
  prefill_sm90::Params<T, Kv> p{};
  const int64_t element = 2;
  const int64_t g = l.rows_per_token;
  p.q_map = encode_rows_tensor_map(l.q, kHeadDim, l.num_qo_heads, l.q_tokens,
                                   l.q_stride_head * element, l.q_stride_token * element,
                                   static_cast<int>(g), static_cast<int>(128 / g), "q");
  if constexpr (kRagged) {
    encode_kv_maps<T, kHeadDim>(p, l.k, l.v, l.num_kv_heads, l.kv_tokens, l.stride_head,
                                l.stride_entry);
  }
  fill_batch_params<T, Kv>(p, l, l.variant);
  p.single_qo_len = -1;
  // One CTA per SM takes the plan's (unit, head) jobs from the header's
  // counter; fewer when the plan has fewer jobs (all while capturing).
  p.job_counters = const_cast<int32_t*>(&l.schedule.header->next_job);
  // Job indices (and the counter's overshoot, one take per CTA past the
  // end) stay in int32.
  if (l.max_ctas * l.num_kv_heads > std::numeric_limits<int32_t>::max() - l.num_sms) {
    throw Error("tessera: prefill backend fa3: more than 2^31 (unit, head) jobs");
  }
  const int64_t jobs = grid_units(l.capturing, l.max_ctas, l.planned_units) * l.num_kv_heads;
  const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, std::min(l.num_sms, jobs))));
  const void* kernel = sm90_kernel<T, kHeadDim, Kv>(l.variant_kind, l.hopper_jit_kernel,
                                                    l.custom_mask != nullptr);
  launch_sm90_kernel<T, kHeadDim, Kv>(kernel, p, grid, stream);
  if (l.split || l.capturing) launch_prefill_merge<T>(l, stream);
}

// K/V of q's dtype, or (paged) the fp8 e4m3 case aot_kernels.h lists.
template <template <typename> class KvOf>
void launch_batch_prefill_sm90(const BatchPrefillLaunch& l, cudaStream_t stream) {
  constexpr bool kRagged = std::is_same_v<KvOf<half_t>, prefill::RaggedKv<half_t>>;
  dispatch_sm90_types(l.dtype, l.head_dim, [&]<typename T, int kHeadDim>() {
    if (l.kv_dtype == dtype_of<T>()) {
      return launch_batch_prefill_sm90_on<T, kHeadDim, KvOf<T>>(l, stream);
    }
    // (The table's fp8 set; plain stands for its variants, one kernel each.)
    if constexpr (!kRagged && aot_fp8_kv_prefill_kernel(attention::VariantKind::kPlain,
                                                        dtype_of<T>(), DType::kFloat8E4M3,
                                                        kHeadDim)) {
      if (l.kv_dtype == DType::kFloat8E4M3) {
        return launch_batch_prefill_sm90_on<T, kHeadDim, KvOf<fp8_e4m3_t>>(l, stream);
      }
    }
    throw Error(std::string("tessera: prefill backend fa3: no kernel for ") +
                dtype_name(l.kv_dtype) + " K/V with " + dtype_name(l.dtype) + " q");
  });
}

}  // namespace tessera::detail
