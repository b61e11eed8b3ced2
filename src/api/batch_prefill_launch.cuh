// The batch prefill launcher, one template for both K/V kinds (ragged and
// paged, instantiated in batch_prefill_{ragged,paged}.cu so they compile in
// parallel): dispatch over dtype x head_dim x variant, then the prefill
// kernel on grid (ctas, heads_y) and, when the plan split KV (or a graph is
// being captured), the merge kernel on grid (merge tiles, heads_y); both
// counts the bounds while capturing, else the plan's (plan_run.h grid_units).
// Kernels per K/V kind: {bf16, fp16} x head_dim {64, 80, 96, 112, 128, 256} x {plain,
// soft-cap, window, soft-cap + window, ALiBi, RoPE-Llama}; those on the AOT list
// (aot_kernels.h) are compiled in, the rest come from the JIT on first use.
#pragma once

#include <cuda/std/type_traits>
#include <string>

#include "api/aot_kernels.h"
#include "api/attention_variant.h"
#include "api/batch_prefill_plan.h"
#include "api/builtin_jit.h"
#include "api/kernel_types.cuh"
#include "api/plan_run.h"
#include "api/prefill_backend.h"
#include "tessera/attention/merge.cuh"
#include "tessera/attention/prefill_sm80.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera::detail {

template <typename T>
prefill::RaggedKv<T> make_kv(const BatchPrefillLaunch& l, prefill::RaggedKv<T>*) {
  return {static_cast<const T*>(l.k), static_cast<const T*>(l.v), l.stride_entry, l.stride_head,
          l.v_stride_entry, l.v_stride_head};
}

template <typename T>
prefill::PagedKv<T> make_kv(const BatchPrefillLaunch& l, prefill::PagedKv<T>*) {
  return {static_cast<const T*>(l.k),
          static_cast<const T*>(l.v),
          l.stride_page,
          l.stride_entry,
          l.stride_head,
          l.kv_indices,
          FastDivmod::make(static_cast<int32_t>(l.page_size)),
          {.page = l.row_units.page,
           .entry = l.row_units.entry,
           .head = l.row_units.head,
           .bytes = l.row_units.bytes},
          {.page = l.v_row_units.page,
           .entry = l.v_row_units.entry,
           .head = l.v_row_units.head,
           .bytes = l.v_row_units.bytes}};
}

template <typename T>
void launch_prefill_merge(const BatchPrefillLaunch& l, cudaStream_t stream) {
  using attention::kMergeBlockThreads;
  constexpr int kWide = 4;  // float4 partial loads
  attention::PrefillMergeParams<T> m{};
  m.schedule = l.schedule;
  m.qo_indptr = l.qo_indptr;
  m.out = static_cast<T*>(l.out);
  m.out_stride_token = l.out_stride_token;
  m.out_stride_head = l.out_stride_head;
  m.lse = l.lse;
  m.num_qo_heads = l.num_qo_heads;
  const int64_t heads_y = l.num_kv_heads;  // GQA packed
  m.heads_y = heads_y;
  m.rows_per_token = l.rows_per_token;
  m.head_dim = l.head_dim_vo;  // the partial and output rows' width
  m.lanes_per_item = attention::merge_lanes_per_item(l.head_dim_vo, kWide);
  m.sum_states = l.sum_states;
  const int64_t tiles = grid_units(l.capturing, l.max_merge_tiles, l.planned_merge_tiles);
  // While capturing, the slices of the largest tile any later plan may take
  // (the graph replays them); blocks past a smaller tile's rows exit.
  static_assert(kSm90QTileRows <= prefill::kMaxQTile, "the largest q tile of both back ends");
  const int64_t slices = plan::prefill_merge_row_slices(
      l.capturing ? prefill::kMaxQTile : l.q_tile_rows, kMergeBlockThreads / m.lanes_per_item);
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(heads_y),
                  static_cast<unsigned>(slices));
  attention::prefill_merge_kernel<T, kWide><<<grid, kMergeBlockThreads, 0, stream>>>(m);
  TESSERA_CHECK_LAUNCH();
}

// The built-in variant's kernel: compiled in when on the AOT list, else from
// the JIT on first use.
template <typename Traits, typename Variant, typename T, typename Kv, bool kCustomMask>
const void* builtin_batch_kernel() {
  using KVT = typename Kv::Element;
  constexpr auto kKind = variant_kind_of<Variant>();
  if constexpr (aot_prefill_kernel(kKind, dtype_of<T>(), dtype_of<KVT>(), Traits::kHeadDimQk,
                                   kCustomMask)) {
    return reinterpret_cast<const void*>(
        prefill::batch_prefill_kernel<Traits, Variant, T, Kv, kCustomMask>);
  } else {
    constexpr bool kRagged = cuda::std::is_same_v<Kv, prefill::RaggedKv<KVT>>;
    return builtin_jit_variant(
               kRagged ? jit::KernelKind::kBatchPrefillRagged : jit::KernelKind::kBatchPrefillPaged,
               kKind, dtype_of<T>(), dtype_of<KVT>(), Traits::kHeadDimQk, kCustomMask)
        .kernel();
  }
}

// The batch kernels' parameters both back ends share (FA2's
// BatchPrefillParams, the Hopper kernel's Params): outputs, K/V, heads,
// schedule, mask and variant.
// T: q's and out's type (K/V may be fp8).
template <typename T, typename Kv, typename Params>
void fill_batch_params(Params& p, const BatchPrefillLaunch& l,
                       const attention::VariantParams& variant) {
  p.out = static_cast<T*>(l.out);
  p.out_stride_token = l.out_stride_token;
  p.out_stride_head = l.out_stride_head;
  p.lse = l.lse;
  p.kv = make_kv(l, static_cast<Kv*>(nullptr));
  p.num_qo_heads = static_cast<int32_t>(l.num_qo_heads);
  p.heads_y = static_cast<int32_t>(l.num_kv_heads);
  p.group_size = static_cast<int32_t>(l.num_qo_heads / l.num_kv_heads);
  p.per_token = FastDivmod::make(static_cast<int32_t>(l.rows_per_token));
  p.schedule = l.schedule;
  p.custom_mask = l.custom_mask;
  p.variant = variant;
}

template <typename T, int kHeadDim, typename Variant, typename Kv, int kHeadDimVo = kHeadDim>
void launch_prefill_instance(const BatchPrefillLaunch& l, const attention::VariantParams& variant,
                             cudaStream_t stream) {
  using Traits = prefill::PrefillTraits<T, kHeadDim, kHeadDimVo>;
  prefill::BatchPrefillParams<T, Kv> p{};
  p.q = static_cast<const T*>(l.q);
  p.q_stride_token = l.q_stride_token;
  p.q_stride_head = l.q_stride_head;
  p.head_dim = kHeadDimVo;  // the partial rows' width
  fill_batch_params<T, Kv>(p, l, variant);
  const void* kernel = l.jit_kernel;
  if (kernel == nullptr) {
    kernel = l.custom_mask != nullptr ? builtin_batch_kernel<Traits, Variant, T, Kv, true>()
                                      : builtin_batch_kernel<Traits, Variant, T, Kv, false>();
  }
  // Sized for the largest q tile this device's plans use (Q sits last).
  const int shared_bytes = static_cast<int>(l.shared_bytes);
  TESSERA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          shared_bytes));
  // One CTA per unit, also on a Hopper plan of unit lists (auto running FA2
  // for a call the Hopper kernels do not serve).
  const int64_t ctas = grid_units(l.capturing, l.max_ctas, l.planned_units);
  const dim3 grid(static_cast<unsigned>(ctas), static_cast<unsigned>(l.num_kv_heads));
  void* args[] = {&p};
  TESSERA_CUDA_CHECK(
      cudaLaunchKernel(kernel, grid, dim3(prefill::kThreads), args, shared_bytes, stream));
  if (l.split || l.capturing) launch_prefill_merge<T>(l, stream);
}

// kFp8Kv: this K/V kind also has float8 (e4m3, e5m2) K/V kernels (head_dim 128).
template <template <typename> class KvOf, bool kFp8Kv, typename Variant>
void dispatch_prefill_types(const BatchPrefillLaunch& l, const attention::VariantParams& variant,
                            cudaStream_t stream) {
  const auto by_dim = [&]<typename T>() {
    if (is_float8(l.kv_dtype)) {
      if constexpr (kFp8Kv) {
        if (l.head_dim == 128 && l.kv_dtype == DType::kFloat8E4M3) {
          return launch_prefill_instance<T, 128, Variant, KvOf<fp8_e4m3_t>>(l, variant, stream);
        }
        if (l.head_dim == 128) {
          return launch_prefill_instance<T, 128, Variant, KvOf<fp8_e5m2_t>>(l, variant, stream);
        }
      }
      throw Error("tessera: batch prefill: no float8 K/V kernel for head_dim " +
                  std::to_string(l.head_dim));
    }
    if (l.head_dim == 64)
      return launch_prefill_instance<T, 64, Variant, KvOf<T>>(l, variant, stream);
    if (l.head_dim == 80)
      return launch_prefill_instance<T, 80, Variant, KvOf<T>>(l, variant, stream);
    if (l.head_dim == 96)
      return launch_prefill_instance<T, 96, Variant, KvOf<T>>(l, variant, stream);
    if (l.head_dim == 112)
      return launch_prefill_instance<T, 112, Variant, KvOf<T>>(l, variant, stream);
    if (l.head_dim == 128)
      return launch_prefill_instance<T, 128, Variant, KvOf<T>>(l, variant, stream);
    if (l.head_dim == 256)
      return launch_prefill_instance<T, 256, Variant, KvOf<T>>(l, variant, stream);
    if (l.head_dim == 192 && l.head_dim_vo == 128)
      return launch_prefill_instance<T, 192, Variant, KvOf<T>, 128>(l, variant, stream);
    throw Error("tessera: batch prefill: head_dim " + std::to_string(l.head_dim) +
                " has no kernel (64, 80, 96, 112, 128, 256; 192 with head_dim_vo 128)");
  };
  if (l.dtype == DType::kBFloat16) return by_dim.template operator()<bfloat16_t>();
  return by_dim.template operator()<half_t>();
}

template <template <typename> class KvOf, bool kFp8Kv>
void launch_batch_prefill(const BatchPrefillLaunch& l, cudaStream_t stream) {
  // (kJit: l.jit_kernel set by run(); plain supplies the parameter types.)
  visit_variant_kind(l.variant_kind, [&]<typename Variant>() {
    dispatch_prefill_types<KvOf, kFp8Kv, Variant>(l, l.variant, stream);
  });
}

}  // namespace tessera::detail
