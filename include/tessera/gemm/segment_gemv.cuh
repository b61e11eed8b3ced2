// Segment GEMM for segments of a few rows (multi-LoRA decode: one row per
// adapter), column-major weights (W[w] stored [d_out, d_in], k contiguous):
//
//   y[r, n] = sum_k x[r, k] W[w_i][n, k]      for the rows r of segment i
//
// Memory bound on W (one multiply-add per weight for a one-row segment), so
// it runs on CUDA cores and is shaped for loads in flight: a column's dot
// product belongs to a group of G lanes (G = the power of two that covers
// d_in / 8 16-byte chunks, at most 32), each lane streaming every G-th
// chunk of the column's W row and of the segment's x rows, then a shuffle
// reduction within the group; a warp holds 32 / G columns. Segments longer
// than kGemvRows rows take passes of kGemvRows rows (correct, slower: W is
// reread from L2 each pass; the API sends only short segments here).
//
// Grid: (batch_size + 1, ceil(d_out / columns per CTA)) CTAs of
// kGemvThreads; blockIdx.x = batch_size writes zeros into the rows past the
// last segment (as the tiled kernels' tail pseudo-segment). The segment's
// rows come from seg_indptr or seg_lens on the device (the lengths form sums
// the lengths before it, block-wide), so a captured graph replays for any
// lengths. No shared memory beyond that sum; no cross-CTA reduction.
// Limits: those of segment_gemm_sm80.cuh.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/mma.cuh"
#include "tessera/gemm/segment_gemm_params.h"
#include "tessera/gemm/segment_schedule.cuh"

namespace tessera::gemm {

inline constexpr int kGemvThreads = 128;
inline constexpr int kGemvWarps = kGemvThreads / 32;
inline constexpr int kGemvRows = 4;            // rows of a segment per pass
inline constexpr int kGemvChunkElems = 8;      // 16-bit values per 16-byte load
inline constexpr int kGemvChunksInFlight = 8;  // per lane and column, per step

// Lanes per column for d_in: the power of two >= d_in / 8, at most 32.
__host__ __device__ constexpr int gemv_group_lanes(int d_in) {
  int lanes = 1;
  while (lanes < 32 && lanes * kGemvChunkElems < d_in) lanes *= 2;
  return lanes;
}

// Rows [*begin, *end) of segment `s` (s == batch_size: from the last
// segment's end to total_rows), clamped as SegmentCursor clamps them. The
// whole CTA calls it (the lengths form sums the lengths before s).
template <typename T>
__device__ __forceinline__ void gemv_segment_rows(const SegmentGemmParams<T>& p, int s,
                                                  int64_t* begin, int64_t* end) {
  __shared__ int64_t warp_sums[kGemvWarps];
  const bool tail = s == p.batch_size;
  int64_t b = 0;
  int64_t e = 0;
  if (p.segment_form == SegmentForm::kIndptr) {
    b = load_index(p.segments, s, p.segments_int64);
    e = tail ? p.total_rows : load_index(p.segments, s + 1, p.segments_int64);
  } else {
    int64_t partial = 0;
    for (int i = static_cast<int>(threadIdx.x); i < s; i += kGemvThreads) {
      partial += max(load_index(p.segments, i, p.segments_int64), int64_t{0});
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      partial += __shfl_xor_sync(kFullWarp, partial, offset);
    }
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = partial;
    __syncthreads();
    b = 0;
#pragma unroll
    for (int w = 0; w < kGemvWarps; ++w) b += warp_sums[w];
    e = tail ? p.total_rows : b + max(load_index(p.segments, s, p.segments_int64), int64_t{0});
  }
  const int64_t total = p.total_rows;
  b = min(max(b, int64_t{0}), total);
  *begin = b;
  *end = min(max(e, b), total);
}

// Adds x chunk (8 values) . W chunk (8 values) to `sum`, in float32.
template <typename T>
__device__ __forceinline__ float dot_chunk(const uint4& x, const uint4& w, float sum) {
  const T* xv = reinterpret_cast<const T*>(&x);
  const T* wv = reinterpret_cast<const T*>(&w);
#pragma unroll
  for (int i = 0; i < kGemvChunkElems; ++i) {
    sum = fmaf(to_float(xv[i]), to_float(wv[i]), sum);
  }
  return sum;
}

template <typename T>
__global__ void __launch_bounds__(kGemvThreads)
    segment_gemv_kernel(const __grid_constant__ SegmentGemmParams<T> p, int group_lanes) {
  const int s = static_cast<int>(blockIdx.x);
  int64_t row_begin = 0;
  int64_t row_end = 0;
  gemv_segment_rows(p, s, &row_begin, &row_end);
  if (row_end == row_begin) return;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int columns_per_warp = 32 / group_lanes;
  const int n =
      (static_cast<int>(blockIdx.y) * kGemvWarps + warp) * columns_per_warp + lane / group_lanes;
  const int member = lane % group_lanes;  // the lane's place in its column's group
  const bool column_valid = n < p.d_out;
  T* const y_column = p.y + (column_valid ? n : 0);
  if (s == p.batch_size) {  // rows past the last segment
    if (column_valid && member == 0) {
      for (int64_t r = row_begin; r < row_end; ++r)
        y_column[r * p.y_row_stride] = from_float<T>(0.f);
    }
    return;
  }
  const int32_t w =
      p.weight_indices == nullptr
          ? s
          : clamp_weight(load_index(p.weight_indices, s, p.weight_indices_int64), p.num_weights);
  const uint4* const w_row = reinterpret_cast<const uint4*>(
      p.weights + w * p.weight_stride + (column_valid ? n : 0) * p.weight_row_stride);
  const int chunks = p.d_in / kGemvChunkElems;
  const int step = group_lanes * kGemvChunksInFlight;
  for (int64_t r0 = row_begin; r0 < row_end; r0 += kGemvRows) {
    const int rows = static_cast<int>(min(row_end - r0, static_cast<int64_t>(kGemvRows)));
    float sum[kGemvRows] = {};
    if (column_valid) {
      for (int c0 = member; c0 < chunks; c0 += step) {
        // kGemvChunksInFlight independent W loads (and their x chunks)
        // before the first multiply-add.
        uint4 wc[kGemvChunksInFlight];
#pragma unroll
        for (int i = 0; i < kGemvChunksInFlight; ++i) {
          const int c = c0 + i * group_lanes;
          wc[i] = c < chunks ? __ldg(w_row + c) : make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r) {
          if (r >= rows) break;
          const uint4* const x_row =
              reinterpret_cast<const uint4*>(p.x + (r0 + r) * p.x_row_stride);
#pragma unroll
          for (int i = 0; i < kGemvChunksInFlight; ++i) {
            const int c = c0 + i * group_lanes;
            if (c < chunks) sum[r] = dot_chunk<T>(__ldg(x_row + c), wc[i], sum[r]);
          }
        }
      }
    }
    // The group's partial sums (every lane takes part: the shuffles span the warp).
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) {
      for (int offset = group_lanes / 2; offset > 0; offset /= 2) {
        sum[r] += __shfl_xor_sync(kFullWarp, sum[r], offset);
      }
    }
    if (column_valid && member == 0) {
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        if (r < rows) y_column[(r0 + r) * p.y_row_stride] = from_float<T>(sum[r]);
      }
    }
  }
}

}  // namespace tessera::gemm
