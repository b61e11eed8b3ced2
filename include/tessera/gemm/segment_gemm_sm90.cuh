// Segment (grouped) GEMM on Hopper (sm_90a), the "sm90" back end:
//
//   y[rows of segment i] = x[rows of segment i] @ W[w_i]
//
// the same product as segment_gemm_sm80.cuh (fp16 / bf16 in, float32
// accumulation, one rounding to the output), with TMA and wgmma.
//
// Grid: persistent, min(SMs, a host bound on the tile count) CTAs of 384
// threads, one per SM. Tiles (Shape::kBlockM x kBlockN outputs) are found
// on the device from the segment bounds (segment_schedule.cuh: m tile
// fastest, then n tile, then segment; a tail pseudo-segment of zero tiles
// for rows past the last segment), CTA b taking tiles b, b + gridDim.x, ...
// so a captured CUDA graph replays for any device-side lengths. Every warp
// that needs a tile runs the same scan and reaches the same tile; the
// producer and the consumers meet only at the ring's barriers.
//
// Roles (segment_gemm_tiles_sm90.cuh holds the pieces):
//   warpgroup 0, producer (40 registers): warp 0 scans, its lane 0 issues
//     each tile's k slices into the ring (wait empty, expect bytes, TMA x
//     box and W box(es)); warps 1-3 exit.
//   warpgroups 1 and 2, consumers (232 registers): rows 0-63 and 64-127 of
//     the tile. Per slice: wait full, issue 4 wgmma m64nNk16 (N = kBlockN)
//     as one group, wait for the previous slice's group, release its slot.
//     Then the rows that lie in the segment go to y straight from the
//     accumulators. A consumer whose rows are all past the segment's end
//     (short segments) releases the slices without multiplying.
// Shared memory: kStages x (x 16 KB + W 32 KB) = 192 KB plus barriers.
// Limits (checked by the API layer): those of the sm80 kernel, plus
// matrix strides TMA can describe (positive multiples of 16 bytes).
// Device header: compiles under nvcc and NVRTC; the kernel body exists only
// in sm_90a code (elsewhere it traps: the host picks this kernel from the
// device's compute capability, not from the fatbinary's contents).
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/tma.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/arch/sm90/wgmma.cuh"
#include "tessera/gemm/segment_gemm_params.h"
#include "tessera/gemm/segment_gemm_tiles_sm90.cuh"
#include "tessera/gemm/segment_schedule.cuh"

namespace tessera::gemm {

// Producer: warp 0 walks the CTA's tiles; lane 0 loads their slices in
// the order the consumers take them. Waits for: empty slots. Signals: full.
template <typename Shape, WeightLayout kLayout, typename T>
__device__ __forceinline__ void produce(Sm90SharedStorage<Shape>& s,
                                        const SegmentGemmSm90Params<T>& p) {
  if (threadIdx.x >= 32) return;  // warps 1-3: nothing to do
  const SegmentGemmParams<T>& base = p.base;
  const int n_tiles = (base.d_out + Shape::kBlockN - 1) / Shape::kBlockN;
  const int slices = (base.d_in + Shape::kBlockK - 1) / Shape::kBlockK;
  SegmentCursor<Shape::kBlockM> cursor;
  sm90::RingPosition<Shape::kStages> ring;
  for (int64_t tile_index = blockIdx.x;; tile_index += gridDim.x) {
    SegmentTile tile;
    if (!cursor.find(base, n_tiles, tile_index, &tile)) break;
    if (tile.zero_fill) continue;  // the consumers write zeros without slices
    if (threadIdx.x == 0) {
      const auto row0 = static_cast<int32_t>(tile.row0);
      const int32_t n0 = tile.n_tile * Shape::kBlockN;
      for (int slice = 0; slice < slices; ++slice) {
        load_slice<Shape, kLayout>(s, &p.x_map, &p.w_map, ring, row0, n0, tile.weight,
                                   slice * Shape::kBlockK);
        ring.advance();
      }
    }
    __syncwarp();  // the cursor's shuffles take the whole warp
  }
}

// A consumer's k loop over one tile: slice i's wgmma is issued before
// slice i - 1's is waited for, so the tensor cores always hold the next
// group; a slot is released once the group reading it completed.
template <typename Shape, WeightLayout kLayout, typename T>
__device__ __forceinline__ void multiply_tile(Sm90SharedStorage<Shape>& s,
                                              sm90::RingPosition<Shape::kStages>& ring,
                                              float (&acc)[Shape::kAccumulators], int slices,
                                              int consumer) {
  int previous_slot = 0;
  for (int slice = 0; slice < slices; ++slice) {
    sm90::barrier_wait(&s.full[ring.slot], ring.parity);
    sm90::wgmma_fence();
    issue_slice<Shape, kLayout, T>(acc, sm80::shared_address(s.x[ring.slot]),
                                   sm80::shared_address(s.w[ring.slot]), consumer, slice > 0);
    sm90::wgmma_wait<1>();
    if (slice > 0) release_slot(&s.empty[previous_slot]);
    previous_slot = ring.slot;
    ring.advance();
  }
  sm90::wgmma_wait<0>();
  sm90::fence_registers(acc);
  release_slot(&s.empty[previous_slot]);
}

// A consumer with no rows in the tile: its share of every slot's release.
template <typename Shape>
__device__ __forceinline__ void skip_tile(Sm90SharedStorage<Shape>& s,
                                          sm90::RingPosition<Shape::kStages>& ring, int slices) {
  for (int slice = 0; slice < slices; ++slice) {
    // The slot's full phase first: an arrival for a use the producer has
    // not issued yet would count toward the slot's current use.
    sm90::barrier_wait(&s.full[ring.slot], ring.parity);
    release_slot(&s.empty[ring.slot]);
    ring.advance();
  }
}

// Consumer warpgroup `consumer` (0 or 1): rows [64 c, 64 c + 64) of each
// tile. Waits for: full slots. Signals: empty slots.
template <typename Shape, WeightLayout kLayout, typename T>
__device__ __forceinline__ void consume(Sm90SharedStorage<Shape>& s,
                                        const SegmentGemmSm90Params<T>& p, int consumer) {
  const SegmentGemmParams<T>& base = p.base;
  const int n_tiles = (base.d_out + Shape::kBlockN - 1) / Shape::kBlockN;
  const int slices = (base.d_in + Shape::kBlockK - 1) / Shape::kBlockK;
  SegmentCursor<Shape::kBlockM> cursor;
  sm90::RingPosition<Shape::kStages> ring;
  for (int64_t tile_index = blockIdx.x;; tile_index += gridDim.x) {
    SegmentTile tile;
    if (!cursor.find(base, n_tiles, tile_index, &tile)) break;
    const int n0 = tile.n_tile * Shape::kBlockN;
    T* const y_tile = base.y + tile.row0 * base.y_row_stride;
    if (tile.zero_fill) {
      store_zero_rows<Shape>(y_tile, base.y_row_stride, tile.rows, n0, base.d_out, consumer);
      continue;
    }
    if (tile.rows <= consumer * Shape::kConsumerRows) {
      skip_tile(s, ring, slices);
      continue;
    }
    float acc[Shape::kAccumulators];
    multiply_tile<Shape, kLayout, T>(s, ring, acc, slices, consumer);
    store_rows<Shape>(acc, y_tile, base.y_row_stride, tile.rows, n0, base.d_out, consumer);
  }
}

template <typename T, typename Shape, WeightLayout kLayout>
__global__ void __launch_bounds__(Shape::kThreads, 1)
    segment_gemm_sm90_kernel(const __grid_constant__ SegmentGemmSm90Params<T> p) {
#if TESSERA_SM90A_ENABLED
  extern __shared__ __align__(1024) unsigned char shared_raw[];
  auto& s = *reinterpret_cast<Sm90SharedStorage<Shape>*>(
      (reinterpret_cast<uintptr_t>(shared_raw) + 1023) & ~uintptr_t{1023});
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < Shape::kStages; ++i) {
      sm90::barrier_init(&s.full[i], 1);
      sm90::barrier_init(&s.empty[i], Shape::kEmptyArrivals);
    }
    sm90::barrier_init_fence();
    sm90::tma_prefetch_map(&p.x_map);
    sm90::tma_prefetch_map(&p.w_map);
  }
  __syncthreads();
  if (sm90::warpgroup_index() == 0) {
    sm90::registers_decrease<Shape::kProducerRegisters>();
    produce<Shape, kLayout>(s, p);
  } else {
    sm90::registers_increase<Shape::kConsumerRegisters>();
    consume<Shape, kLayout>(s, p, sm90::warpgroup_index() - 1);
  }
#else
  // Built without sm_90a code (an arch list such as "80" or "90" that the
  // driver JIT-compiles for a Hopper GPU): the body above does not exist, so
  // fail loudly rather than return with y unwritten.
  __trap();
#endif
}

}  // namespace tessera::gemm
