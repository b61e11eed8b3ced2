// The MLA split-KV merge: for every row of a split q tile (merge tile of the
// plan), folds the row's float32 partials (out [512], lse base 2) of its
// num_chunks KV chunks into out (q's dtype) and lse, as the prefill merge
// does, but shaped for MLA's splits: few rows (16 at H=16 decode), many
// chunks (up to a wave, ~128) and 512 columns.
//
// Why not prefill_merge_kernel: it gives a merge tile one block and a row
// one warp, whose lanes walk the 512 columns in 4 steps and the chunks 8 at
// a time, each step two dependent loads (lse, then values): one request of
// 32k split 128 ways is 16 rows x 4 x 16 x 2 = 2,048 round trips on one
// block, ~256 of them in a row per warp, ~200 us at DRAM latency against
// ~15-20 us of latent read (issue 22's B=1 L=32k row: 167 GB/s).
//
// Work item: (merge tile, tile row, column slice of kSliceColumns). Grid:
// a fixed number of kThreads blocks striding over the items (the host's
// plan::mla_merge_blocks: the plan's items, or while a graph is captured a
// bound that serves any plan, the count being read from the header); rows
// past a tile's qo_rows leave at once. In a block, warp w folds chunks w, w
// + kWarps, ... (lane l owns kVec columns), every partial slot being
// written by the MLA kernels (so values load beside their lse: one round
// trip per kUnroll chunks); warp 0 then combines the kWarps running states
// from shared memory in warp order (deterministic) and stores.
// Shared memory: kWarps x (2 + 128) floats = 4,160 B; 2 blocks per SM
// (96 registers, no spill on sm_90a; 64 spilled). No limits beyond the
// plan's (num_chunks >= 2).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/attention/merge.cuh"
#include "tessera/attention/mla/params.cuh"

namespace tessera::mla {

inline constexpr int kMergeWarps = 8;
inline constexpr int kMergeThreads = kMergeWarps * 32;
inline constexpr int kMergeMinBlocksPerSm = 2;
inline constexpr int kMergeVec = 4;  // floats per lane and load (16 B)
inline constexpr int kMergeSliceColumns = 32 * kMergeVec;
inline constexpr int kMergeSlices = kDimCkv / kMergeSliceColumns;
inline constexpr int kMergeTileRows = 64;  // the planner's MLA q tile (item rows per tile)
// Chunks a warp loads per round: 8 x 16 B of values in flight per lane.
inline constexpr int kMergeUnroll = attention::kDecodeMergeUnroll;
static_assert(kDimCkv % kMergeSliceColumns == 0, "whole slices per latent row");

template <typename T>
struct MergeParams {
  PrefillScheduleView schedule;
  const int32_t* __restrict__ qo_indptr;  // device, the plan's
  T* __restrict__ out;
  int64_t out_stride_token;
  int64_t out_stride_head;
  float* __restrict__ lse;  // null, or contiguous [tokens, num_heads]
  int32_t num_heads;
};

struct MergeItem {
  int tile;
  int row;
  int slice;
};

__device__ __forceinline__ MergeItem merge_item(int64_t item) {
  MergeItem m;
  m.slice = static_cast<int>(item % kMergeSlices);
  const int64_t tile_row = item / kMergeSlices;
  m.row = static_cast<int>(tile_row % kMergeTileRows);
  m.tile = static_cast<int>(tile_row / kMergeTileRows);
  return m;
}

// One item: warp `warp` folds its chunks into `merged` (lane's kMergeVec
// columns from `column`).
__device__ __forceinline__ void fold_chunks(attention::MergeAccumulator<kMergeVec>& merged,
                                            const PrefillScheduleView& schedule,
                                            const PrefillMergeTile& tile, int row, int column,
                                            int warp) {
  const int64_t first = tile.partial_begin + row;
  const int64_t count = (tile.num_chunks - warp + kMergeWarps - 1) / kMergeWarps;
  const auto partial = [&](int64_t i) {
    return first + (warp + i * kMergeWarps) * static_cast<int64_t>(tile.qo_rows);
  };
  attention::accumulate_states<float, kMergeVec, kMergeUnroll, true>(
      merged, count, [&](int64_t i) { return schedule.partial_lse[partial(i)]; },
      [&](int64_t i) { return schedule.partial_out + partial(i) * kDimCkv + column; });
}

template <typename T>
__global__ void __launch_bounds__(kMergeThreads, kMergeMinBlocksPerSm)
    mla_merge_kernel(const MergeParams<T> p) {
  // Per warp: running max, denominator, then its slice's accumulators.
  __shared__ float scratch[kMergeWarps][2 + kMergeSliceColumns];
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t items =
      static_cast<int64_t>(p.schedule.header->num_merge_tiles) * kMergeTileRows * kMergeSlices;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const MergeItem m = merge_item(item);
    const PrefillMergeTile tile = p.schedule.merge_tiles[m.tile];
    if (m.row >= tile.qo_rows) continue;  // the whole block: no barrier skipped by a part
    const int column = m.slice * kMergeSliceColumns + lane * kMergeVec;
    attention::MergeAccumulator<kMergeVec> merged;
    merged.init();
    fold_chunks(merged, p.schedule, tile, m.row, column, warp);
#pragma unroll
    for (int i = 0; i < kMergeVec; ++i) scratch[warp][2 + lane * kMergeVec + i] = merged.acc[i];
    if (lane == 0) {
      scratch[warp][0] = merged.max_lse;
      scratch[warp][1] = merged.denom;
    }
    __syncthreads();
    if (warp == 0) {
      float max_lse = -INFINITY;
#pragma unroll
      for (int w = 0; w < kMergeWarps; ++w) max_lse = fmaxf(max_lse, scratch[w][0]);
      float weight[kMergeWarps];
      float denom = 0.f;
#pragma unroll
      for (int w = 0; w < kMergeWarps; ++w) {
        // A warp with no (non-empty) chunk has max -inf and denominator 0.
        weight[w] = scratch[w][0] == -INFINITY ? 0.f : exp2f(scratch[w][0] - max_lse);
        denom += scratch[w][1] * weight[w];
      }
      const bool empty = !(denom > 0.f);
      const float inv = empty ? 0.f : 1.f / denom;
      FloatVec<kMergeVec> v;
#pragma unroll
      for (int i = 0; i < kMergeVec; ++i) {
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < kMergeWarps; ++w) {
          if (weight[w] != 0.f) sum = fmaf(scratch[w][2 + lane * kMergeVec + i], weight[w], sum);
        }
        v[i] = sum * inv;
      }
      const int r = tile.qo_row_begin + m.row;
      const int64_t token = p.qo_indptr[tile.request] + r / p.num_heads;
      const int head = r % p.num_heads;
      attention::store_chunk<T, kMergeVec>(
          p.out + token * p.out_stride_token + head * p.out_stride_head + column, v);
      if (m.slice == 0 && lane == 0 && p.lse != nullptr) {
        p.lse[token * p.num_heads + head] = empty ? -INFINITY : max_lse + log2f(denom);
      }
    }
    __syncthreads();  // scratch is reused by the block's next item
  }
}

}  // namespace tessera::mla
