// RMSNorm and fused add + RMSNorm, one template for both (and for the Gemma
// variants, which differ only by a run-time weight offset of 1).
//
//   plain:  out[t] = x / sqrt(mean(x^2) + eps) * (weight_offset + w),  x = input[t]
//   fused:  x = float(input[t]) + float(residual[t])   (float32, never rounded)
//           residual[t] = T(x); out[t] (== input[t]) = the same normalisation of x
//
// Grid: one CTA per row (gridDim.x = num_tokens). Block: blockDim.x threads, a
// multiple of 32 chosen by the host so that blockDim.x * kItems vectors cover
// the row. Each thread keeps its kItems vectors (kVecElems elements each) in
// registers, so the row is read from global memory exactly once and written
// exactly once; the only other traffic is the weight (L2-resident, shared by
// every row). Vector v of the row belongs to thread v % blockDim.x, item
// v / blockDim.x, so every item's load is one coalesced 512-byte warp access
// on the 16-byte path.
// Shared memory: one float per warp for the block reduction.
// Limits: hidden <= kRmsNormMaxHidden; the 16-byte path needs hidden % 8 == 0
// and 16-byte aligned rows (the host picks the scalar path, kVecElems = 1,
// otherwise). Registers (sm_90a, bf16): 16-byte path 28-112, no spills; the
// scalar fused 32-item kernel (odd hidden > 4064 only) spills ~70 bytes.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/core/numeric.cuh"
#include "tessera/core/reduce.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::norm {

// The widest row the register-resident design takes: 256 threads x 8 items x
// 8 elements on the 16-byte path, 512 threads x 32 elements on the scalar path.
inline constexpr int kRmsNormMaxHidden = 16384;
inline constexpr int kRmsNormVecBytes = 16;

// Most threads a CTA may have when each holds `elements_per_thread` values:
// the float32 copies (and, fused, the float32 sums) must fit the register
// budget __launch_bounds__ gives (65536 / threads registers) without spilling.
__host__ __device__ constexpr int rmsnorm_max_threads(int elements_per_thread) {
  return elements_per_thread <= 16 ? 1024 : (elements_per_thread <= 32 ? 512 : 256);
}

template <typename T>
struct RmsNormParams {
  // No __restrict__ on the row pointers: out may be input (in place), and in
  // the fused form out is input. Each element is read by one thread before
  // that same thread writes it, so aliasing is safe.
  const T* input;
  T* out;
  T* residual;  // fused only; read and written
  const T* __restrict__ weight;
  int64_t input_row_stride;  // elements
  int64_t out_row_stride;
  int64_t residual_row_stride;
  int hidden;
  float eps;
  float weight_offset;  // 0 for RMSNorm, 1 for Gemma's (1 + weight)
};

template <typename T, int kVecElems, int kItems, bool kFused>
__global__ void __launch_bounds__(rmsnorm_max_threads(kVecElems * kItems))
    rmsnorm_kernel(const RmsNormParams<T> params) {
  static_assert(kVecElems * static_cast<int>(sizeof(T)) <= kRmsNormVecBytes,
                "a vector is at most one 16-byte transaction");
  static_assert(kItems >= 1 && kItems <= 32, "items per thread out of the tuned range");
  constexpr int kMaxWarps = rmsnorm_max_threads(kVecElems * kItems) / kWarpSize;
  using VecT = Vec<T, kVecElems>;

  __shared__ float warp_partials[kMaxWarps];

  const int64_t row = blockIdx.x;
  const T* input_row = params.input + row * params.input_row_stride;
  T* out_row = params.out + row * params.out_row_stride;
  T* residual_row = params.residual + row * params.residual_row_stride;
  const int num_vecs = params.hidden / kVecElems;
  const int stride = blockDim.x;
  // Items i < my_items are inside the row. Comparing i with one integer
  // (rather than keeping kItems predicates live across the barrier) keeps the
  // guards in plain registers; the store loop's own `v < num_vecs` test is
  // what ptxas allocated best (no spill on the 16-byte path, sm_90a).
  const int my_items = (num_vecs - static_cast<int>(threadIdx.x) + stride - 1) / stride;

  // Issue every load of the row before any arithmetic so that all kItems
  // (x2 when fused) transactions are in flight together.
  VecT input_raw[kItems];
  VecT residual_raw[kFused ? kItems : 1];
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int v = threadIdx.x + i * stride;
    if (i < my_items) {
      input_raw[i].load(input_row + v * kVecElems);
      if constexpr (kFused) residual_raw[i].load(residual_row + v * kVecElems);
    }
  }

  // Plain form: the row stays in registers as loaded (16-bit, half the
  // registers of float32) and is converted again for the output. Fused form:
  // the float32 sums are what is normalised, so they are what is kept.
  FloatVec<kVecElems> sum[kFused ? kItems : 1];
  float sum_squares = 0.f;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int v = threadIdx.x + i * stride;
    if (i < my_items) {
      FloatVec<kVecElems> x = to_float(input_raw[i]);
      if constexpr (kFused) {
        const FloatVec<kVecElems> r = to_float(residual_raw[i]);
#pragma unroll
        for (int k = 0; k < kVecElems; ++k) x[k] += r[k];
        // The residual stream keeps its dtype; the norm below uses the
        // unrounded float32 sum.
        from_float<T>(x).store(residual_row + v * kVecElems);
        sum[i] = x;
      }
#pragma unroll
      for (int k = 0; k < kVecElems; ++k) sum_squares += x[k] * x[k];
    }
  }

  const float total = block_sum<kMaxWarps>(sum_squares, warp_partials);
  const float inv_rms = rsqrtf(total / static_cast<float>(params.hidden) + params.eps);

  // The weight is read after the reduction: loading it earlier would hold
  // kItems more vectors in registers across the barrier, costing occupancy,
  // while its latency (an L1/L2 hit: every row reads the same weight) is
  // hidden by the other row CTAs on the SM.
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int v = threadIdx.x + i * stride;
    if (v < num_vecs) {
      VecT weight_raw;
      weight_raw.load(params.weight + v * kVecElems);
      FloatVec<kVecElems> x;
      if constexpr (kFused) {
        x = sum[i];
      } else {
        x = to_float(input_raw[i]);
      }
      FloatVec<kVecElems> y;
#pragma unroll
      for (int k = 0; k < kVecElems; ++k) {
        y[k] = x[k] * inv_rms * (to_float(weight_raw[k]) + params.weight_offset);
      }
      from_float<T>(y).store(out_row + v * kVecElems);
    }
  }
}

}  // namespace tessera::norm
