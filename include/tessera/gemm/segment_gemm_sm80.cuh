// Segment (grouped) GEMM on tensor cores, sm80+ (the "sm80" back end):
//
//   y[rows of segment i] = x[rows of segment i] @ W[w_i]
//
// for batch_size segments of consecutive rows (FlashInfer's SegmentGEMM),
// W[w] [d_in, d_out] row-major or [d_out, d_in] column-major, fp16 / bf16
// in, float32 accumulation, one rounding to the output.
//
// Grid: persistent, min(CTAs resident on the GPU, a host bound on the tile
// count) CTAs of Shape::kThreads threads. The segment bounds live only on
// the device; each CTA walks tile indices blockIdx.x + i * gridDim.x and
// finds each tile's segment, rows and output columns itself
// (segment_schedule.cuh), so short and long segments share the SMs and a
// captured CUDA graph replays for any lengths. Rows of y past the last
// segment form a final pseudo-segment of zero tiles.
//
// Per tile (kBlockM x kBlockN outputs): a kStages-deep cp.async ring of
// x and W k slices (kBlockK = 32) into swizzled shared memory, ldmatrix
// fragments and mma.sync m16n8k16 per warp (kWarpM x kWarpN sub-tiles),
// then the accumulators are staged through shared memory (the ring's
// space) and written as 16-byte rows of y.
//
// Shared memory: kStages x (kBlockM + kBlockN) x kBlockK x 2 bytes (64 KB
// for the large tile, 32 KB for the small one), dynamic.
// Limits (checked by the API layer): d_in a positive multiple of 8, d_out a
// multiple of 8, 16-byte aligned rows, total_rows and dims below 2^31.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/gemm/segment_gemm_params.h"
#include "tessera/gemm/segment_gemm_tiles_sm80.cuh"
#include "tessera/gemm/segment_schedule.cuh"

namespace tessera::gemm {

// The k loop of one tile: prologue fills kStages - 1 stages; step kt waits
// for slice kt, then (after the barrier that also retires slice kt - 1's
// readers) refills the stage slice kt - 1 used with slice kt + kStages - 1,
// and multiplies slice kt. Every step commits a group, empty or not, so the
// wait count stays kStages - 2.
template <typename Shape, WeightLayout kLayout, typename T>
__device__ __forceinline__ void tile_mainloop(const TileOperands<T>& op, uint32_t shared,
                                              Accumulators<Shape>& acc, int warp_m, int warp_n,
                                              int lane) {
  constexpr uint32_t kStageBytes = Shape::kStageElems * 2;
  constexpr uint32_t kWOffset = Shape::kXTileElems * 2;
  const TileLoader<Shape, kLayout, T> loader(op);
  const int k_tiles = (op.d_in + Shape::kBlockK - 1) / Shape::kBlockK;
#pragma unroll
  for (int s = 0; s < Shape::kStages - 1; ++s) {
    if (s < k_tiles) loader.load(shared + s * kStageBytes, s);
    sm80::cp_async_commit();
  }
  int read_stage = 0;
  int write_stage = Shape::kStages - 1;
  for (int kt = 0; kt < k_tiles; ++kt) {
    sm80::cp_async_wait_group<Shape::kStages - 2>();
    __syncthreads();
    const int next = kt + Shape::kStages - 1;
    if (next < k_tiles) loader.load(shared + write_stage * kStageBytes, next);
    sm80::cp_async_commit();
    const uint32_t x_tile = shared + read_stage * kStageBytes;
#pragma unroll
    for (int k_step = 0; k_step < Shape::kKSteps; ++k_step) {
      Fragments<Shape> f;
      load_x_fragments<Shape>(f, x_tile, warp_m, k_step, lane);
      load_w_fragments<Shape, kLayout>(f, x_tile + kWOffset, warp_n, k_step, lane);
      mma_step<Shape, T>(acc, f);
    }
    read_stage = read_stage == Shape::kStages - 1 ? 0 : read_stage + 1;
    write_stage = write_stage == Shape::kStages - 1 ? 0 : write_stage + 1;
  }
}

template <typename T, typename Shape, WeightLayout kLayout>
__global__ void __launch_bounds__(Shape::kThreads, Shape::kMinCtasPerSm)
    segment_gemm_kernel(const __grid_constant__ SegmentGemmParams<T> p) {
  extern __shared__ __align__(128) unsigned char shared_bytes[];
  const uint32_t shared = sm80::shared_address(shared_bytes);
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp_m = warp / Shape::kWarpsN;
  const int warp_n = warp % Shape::kWarpsN;
  const int n_tiles = (p.d_out + Shape::kBlockN - 1) / Shape::kBlockN;

  SegmentCursor<Shape::kBlockM> cursor;
  for (int64_t tile_index = blockIdx.x;; tile_index += gridDim.x) {
    SegmentTile tile;
    if (!cursor.find(p, n_tiles, tile_index, &tile)) break;
    const int n0 = tile.n_tile * Shape::kBlockN;
    T* y_rows = p.y + tile.row0 * p.y_row_stride;
    if (tile.zero_fill) {  // rows past the last segment: no product, no barrier
      store_tile<Shape>(y_rows, p.y_row_stride, tile.rows, n0, p.d_out, shared, true);
      continue;
    }
    const TileOperands<T> op{p.x + tile.row0 * p.x_row_stride,
                             p.x_row_stride,
                             tile.rows,
                             p.weights + tile.weight * p.weight_stride,
                             p.weight_row_stride,
                             n0,
                             p.d_in,
                             p.d_out};
    Accumulators<Shape> acc = {};
    tile_mainloop<Shape, kLayout>(op, shared, acc, warp_m, warp_n, lane);

    // Epilogue: the ring's last readers and pending (empty) copy groups
    // retire before the staging tile overwrites it; the second barrier lets
    // the next tile's prologue reuse it.
    sm80::cp_async_wait_all();
    __syncthreads();
    stage_accumulators<Shape, T>(acc, shared, warp_m, warp_n, lane);
    __syncthreads();
    store_tile<Shape>(y_rows, p.y_row_stride, tile.rows, n0, p.d_out, shared, false);
    __syncthreads();
  }
}

}  // namespace tessera::gemm
