// Where a tile of the segment GEMM lies, found on the device from the
// segment bounds the caller gave (seg_indptr or seg_lens, never seen by the
// host), so a launch needs no host sync and a captured CUDA graph replays
// for any lengths.
//
// Tile space: segment after segment, each contributing ceil(rows / kBlockM)
// x n_tiles tiles (m tile fastest, so CTAs that run at the same time share
// a weight column block, read once from DRAM, while the segment's rows stay
// in L2), followed by one pseudo-segment for the rows of y past the last
// segment (written with zeros). A persistent CTA visits tiles blockIdx.x,
// blockIdx.x + gridDim.x, ... in increasing order, so its cursor only moves
// forward: a warp scans 32 segments at a time (lane i reads segment base +
// i, a warp prefix sum of tile counts, a ballot finds the segment holding
// the tile). Every warp of the CTA runs the same scan and reaches the same
// answer, so no shared memory or barrier is needed. Cost: one 32-segment
// step per tile plus one per 32 segments skipped, against a tile's
// kBlockM x kBlockN x d_in multiply-adds.
//
// Robustness: lengths are clamped to >= 0, every segment to the rows of x
// and weight indices to the weights, so unvalidated device arrays can make
// results wrong but never send an access outside x, y or the weights
// (validation mode checks them on the host).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/gemm/segment_gemm_params.h"

namespace tessera::gemm {

inline constexpr int kCursorLanes = 32;
inline constexpr unsigned kFullWarp = 0xffffffffu;

// One tile: rows [row0, row0 + rows) of x / y (rows <= kBlockM), output
// columns [n_tile * kBlockN, ...), weight matrix `weight`. zero_fill: the
// pseudo-segment past the last segment (no weight).
struct SegmentTile {
  int64_t row0;
  int32_t rows;
  int32_t n_tile;
  int32_t weight;
  bool zero_fill;
};

__device__ __forceinline__ int64_t load_index(const void* array, int64_t i, bool is_int64) {
  return is_int64 ? static_cast<const int64_t*>(array)[i]
                  : static_cast<int64_t>(static_cast<const int32_t*>(array)[i]);
}

// An unvalidated weight index in range, so a bad one gives a wrong result,
// never a read outside the weights (validation mode names it).
__device__ __forceinline__ int32_t clamp_weight(int64_t index, int32_t num_weights) {
  return static_cast<int32_t>(index < 0 ? 0 : index >= num_weights ? num_weights - 1 : index);
}

template <typename V>
__device__ __forceinline__ V warp_inclusive_sum(V value, int lane) {
#pragma unroll
  for (int offset = 1; offset < kCursorLanes; offset *= 2) {
    const V other = __shfl_up_sync(kFullWarp, value, offset);
    if (lane >= offset) value += other;
  }
  return value;
}

template <int kBlockM>
class SegmentCursor {
 public:
  // The tile with index `tile_index` (never smaller than the previous call's);
  // false when it lies past every tile.
  template <typename T>
  __device__ bool find(const SegmentGemmParams<T>& p, int n_tiles, int64_t tile_index,
                       SegmentTile* tile) {
    const int lane = static_cast<int>(threadIdx.x) % kCursorLanes;
    while (chunk_base_ <= p.batch_size) {  // segment batch_size is the zero tail
      const int segment = chunk_base_ + lane;
      int64_t start = 0;
      int64_t length = 0;
      segment_rows(p, segment, lane, &start, &length);
      const int64_t m_tiles = (length + kBlockM - 1) / kBlockM;
      const int64_t tiles = m_tiles * n_tiles;
      const int64_t tiles_through = tiles_before_ + warp_inclusive_sum(tiles, lane);
      const unsigned holding = __ballot_sync(kFullWarp, tiles_through > tile_index);
      if (holding != 0) {
        const int owner = __ffs(holding) - 1;
        const int64_t first_tile = __shfl_sync(kFullWarp, tiles_through - tiles, owner);
        const int64_t owner_m_tiles = __shfl_sync(kFullWarp, m_tiles, owner);
        const int64_t owner_start = __shfl_sync(kFullWarp, start, owner);
        const int64_t owner_length = __shfl_sync(kFullWarp, length, owner);
        const int64_t local = tile_index - first_tile;
        const int64_t m_tile = local % owner_m_tiles;
        const int owner_segment = chunk_base_ + owner;
        tile->row0 = owner_start + m_tile * kBlockM;
        tile->rows = static_cast<int32_t>(
            min(owner_length - m_tile * kBlockM, static_cast<int64_t>(kBlockM)));
        tile->n_tile = static_cast<int32_t>(local / owner_m_tiles);
        tile->zero_fill = owner_segment == p.batch_size;
        tile->weight = tile->zero_fill
                           ? 0
                           : (p.weight_indices == nullptr
                                  ? owner_segment
                                  : clamp_weight(load_index(p.weight_indices, owner_segment,
                                                            p.weight_indices_int64),
                                                 p.num_weights));
        return true;
      }
      tiles_before_ = __shfl_sync(kFullWarp, tiles_through, kCursorLanes - 1);
      rows_before_ = __shfl_sync(kFullWarp, chunk_rows_end_, kCursorLanes - 1);
      chunk_base_ += kCursorLanes;
    }
    return false;
  }

 private:
  // Rows [start, start + length) of `segment`, clamped to [0, total_rows);
  // the tail pseudo-segment (segment == batch_size) runs from the end of the
  // last segment to total_rows; segments past it are empty. In the lengths
  // form the starts are a running sum (rows_before_ + a warp prefix sum),
  // which all lanes take part in.
  template <typename T>
  __device__ void segment_rows(const SegmentGemmParams<T>& p, int segment, int lane, int64_t* start,
                               int64_t* length) {
    const bool real = segment < p.batch_size;
    const bool tail = segment == p.batch_size;
    int64_t begin = 0;
    int64_t end = 0;
    if (p.segment_form == SegmentForm::kIndptr) {
      if (real || tail) begin = load_index(p.segments, segment, p.segments_int64);
      end = real ? load_index(p.segments, segment + 1, p.segments_int64) : p.total_rows;
    } else {
      const int64_t own =
          real ? max(load_index(p.segments, segment, p.segments_int64), int64_t{0}) : 0;
      chunk_rows_end_ = rows_before_ + warp_inclusive_sum(own, lane);
      begin = chunk_rows_end_ - own;
      end = real ? chunk_rows_end_ : p.total_rows;
    }
    if (!real && !tail) end = begin;
    begin = min(max(begin, int64_t{0}), static_cast<int64_t>(p.total_rows));
    end = min(max(end, begin), static_cast<int64_t>(p.total_rows));
    *start = begin;
    *length = end - begin;
  }

  int chunk_base_ = 0;          // first segment of the chunk being scanned
  int64_t tiles_before_ = 0;    // tiles of the segments before chunk_base_
  int64_t rows_before_ = 0;     // lengths form: rows of the segments before chunk_base_
  int64_t chunk_rows_end_ = 0;  // lengths form: this lane's running row total
};

}  // namespace tessera::gemm
