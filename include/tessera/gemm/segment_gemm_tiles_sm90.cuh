// The pieces of the Hopper segment GEMM (segment_gemm_sm90.cuh): its tile
// shape, shared memory, the producer's bulk tensor copies of one k slice,
// the consumers' wgmma over a slice, and the epilogue that writes a
// consumer's rows of y.
//
// Shared-memory tiles, 16-bit values, 128-byte swizzled rows of 64 values
// (arch/sm90/wgmma.cuh), written by TMA with CU_TENSOR_MAP_SWIZZLE_128B:
//   x:  kBlockM rows (m) of the slice's 64 k values            K-major A
//   W column-major ([d_out, d_in], k contiguous):
//       kBlockN rows (n) of 64 k values                         K-major B
//   W row-major ([d_in, d_out], n contiguous):
//       kBlockN / 64 panels of 64 rows (k) of 64 n values       MN-major B
// Each is one box per slice (row-major W: one per 64-column panel); boxes
// reaching past d_in, d_out or the rows of x land as zeros, and rows of x
// past the tile's segment land too (they feed only output rows the
// epilogue never writes).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/mma.cuh"
#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/tma.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/arch/sm90/wgmma.cuh"
#include "tessera/gemm/segment_gemm_params.h"

namespace tessera::gemm {

// A CTA tile of kBlockM x kBlockN outputs: one producer warpgroup, two
// consumer warpgroups of 64 rows each (wgmma M), k slices of 64 (one
// swizzle row) in a kStages-deep ring.
template <int kBlockN_, int kStages_>
struct Sm90TileShape {
  static constexpr int kConsumers = 2;
  static constexpr int kConsumerRows = 64;  // wgmma M
  static constexpr int kBlockM = kConsumers * kConsumerRows;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kBlockK = 64;     // 16-bit values per 128-byte swizzled row
  static constexpr int kRowBytes = 128;  // of a swizzled tile
  static constexpr int kStages = kStages_;
  static constexpr int kThreads = (1 + kConsumers) * sm90::kWarpgroupThreads;
  static constexpr int kMmaK = 16;
  static constexpr int kKSteps = kBlockK / kMmaK;
  static constexpr int kAccumulators = kBlockN / 2;  // float32 per consumer thread
  static constexpr int kXTileBytes = kBlockM * kRowBytes;
  static constexpr int kWTileBytes = kBlockN * kRowBytes;
  static constexpr int kStageBytes = kXTileBytes + kWTileBytes;  // a full barrier's bytes
  static constexpr int kWPanelElems = 64;                        // row-major W: n per panel
  static constexpr int kWPanels = kBlockN / kWPanelElems;
  static constexpr int kWPanelBytes = kBlockK * kRowBytes;  // 64 k rows
  static constexpr int kConsumerXBytes = kConsumerRows * kRowBytes;
  static constexpr uint32_t kEmptyArrivals = kConsumers * 4;  // one per consumer warp
  // setmaxnreg: the producer gives registers to the consumers (40 x 128 +
  // 232 x 256 = 64512 of the SM's 65536), as the Hopper prefill does.
  static constexpr int kProducerRegisters = 40;
  static constexpr int kConsumerRegisters = 232;

  static_assert(kBlockN == 64 || kBlockN == 128 || kBlockN == 256, "wgmma N 64, 128 or 256");
  static_assert(kBlockN <= 256 && kBlockM <= 256, "a TMA box dimension holds at most 256");
  static_assert(kConsumerXBytes % 1024 == 0 && kWPanelBytes % 1024 == 0,
                "operands start on 1024-byte swizzle atoms");
  static_assert(kStageBytes < (1 << 20), "an mbarrier counts fewer than 2^20 bytes");
  static_assert(kStages >= 2, "a ring of at least two stages");
  static_assert(kProducerRegisters * 128 + kConsumerRegisters * 128 * kConsumers <= 65536,
                "the register file");
};

// 128 x 256 outputs, 4 stages of 48 KB: 192 KB of shared memory, 128
// accumulators a consumer thread. At K = 4096 a tile is 64 slices against
// an epilogue of 64 stores a thread.
using SegmentGemmSm90Tile = Sm90TileShape<256, 4>;

// The ring and its barriers. full[s]: the producer's one arrival plus the
// slice's bytes; empty[s]: lane 0 of every consumer warp once its wgmma
// reading the slot completed.
template <typename Shape>
struct alignas(1024) Sm90SharedStorage {
  unsigned char x[Shape::kStages][Shape::kXTileBytes];
  unsigned char w[Shape::kStages][Shape::kWTileBytes];
  uint64_t full[Shape::kStages];
  uint64_t empty[Shape::kStages];
};

// Dynamic shared memory of a launch: the storage plus room to align its
// start to 1024 bytes (the swizzle atoms').
template <typename Shape>
inline constexpr int kSm90SharedBytes = static_cast<int>(sizeof(Sm90SharedStorage<Shape>)) + 1024;
static_assert(kSm90SharedBytes<SegmentGemmSm90Tile> <= 227 * 1024,
              "fits an H100 SM's shared memory");

// The tensor maps a launch encodes (src/api/segment_gemm_sm90.cu) beside the
// parameters the sm80 kernel takes (segments, y, sizes).
template <typename T>
struct SegmentGemmSm90Params {
  // x as (d_in, total_rows, 1), box (64, kBlockM, 1).
  sm90::TensorMap x_map;
  // Column-major W: (d_in, d_out, num_weights), box (64, kBlockN, 1);
  // row-major W: (d_out, d_in, num_weights), box (64, 64, 1).
  sm90::TensorMap w_map;
  SegmentGemmParams<T> base;
};

// One slice (k values from k0) of a tile into ring slot `slot`: waits for
// the slot to be free, announces the bytes, issues the copies. One thread.
template <typename Shape, WeightLayout kLayout>
__device__ __forceinline__ void load_slice(Sm90SharedStorage<Shape>& s,
                                           const sm90::TensorMap* x_map,
                                           const sm90::TensorMap* w_map,
                                           const sm90::RingPosition<Shape::kStages>& ring,
                                           int32_t row0, int32_t n0, int32_t weight, int32_t k0) {
  uint64_t* const full = &s.full[ring.slot];
  sm90::barrier_wait(&s.empty[ring.slot], ring.parity ^ 1u);
  sm90::barrier_arrive_expect_bytes(full, Shape::kStageBytes);
  sm90::tma_load_3d(s.x[ring.slot], x_map, k0, row0, 0, full);
  if constexpr (kLayout == WeightLayout::kColumnMajor) {
    sm90::tma_load_3d(s.w[ring.slot], w_map, k0, n0, weight, full);
  } else {
#pragma unroll
    for (int panel = 0; panel < Shape::kWPanels; ++panel) {
      sm90::tma_load_3d(s.w[ring.slot] + panel * Shape::kWPanelBytes, w_map,
                        n0 + panel * Shape::kWPanelElems, k0, weight, full);
    }
  }
}

// acc (+)= x rows of this consumer (64) x W of one slot, as one commit
// group: kKSteps wgmma of k 16. K-major operands step 32 bytes along their
// swizzled rows; MN-major W steps 16 k rows (2 KB), its 64-column panels
// kWPanelBytes apart (the descriptor's leading offset).
template <typename Shape, WeightLayout kLayout, typename T>
__device__ __forceinline__ void issue_slice(float (&acc)[Shape::kAccumulators], uint32_t x_tile,
                                            uint32_t w_tile, int consumer, bool accumulate) {
  constexpr bool kWMnMajor = kLayout == WeightLayout::kRowMajor;
  const uint64_t a0 =
      sm90::k_major_descriptor(x_tile + static_cast<uint32_t>(consumer * Shape::kConsumerXBytes));
  const uint64_t b0 = kWMnMajor ? sm90::mn_major_descriptor(w_tile, Shape::kWPanelBytes)
                                : sm90::k_major_descriptor(w_tile);
  constexpr uint32_t kAStep = Shape::kMmaK * 2;
  constexpr uint32_t kBStep = kWMnMajor ? Shape::kMmaK * Shape::kRowBytes : Shape::kMmaK * 2;
#pragma unroll
  for (int ks = 0; ks < Shape::kKSteps; ++ks) {
    sm90::wgmma_ss<T, Shape::kBlockN, kWMnMajor>(acc, sm90::descriptor_advanced(a0, ks * kAStep),
                                                 sm90::descriptor_advanced(b0, ks * kBStep),
                                                 accumulate || ks > 0);
  }
  sm90::wgmma_commit();
}

// Releases a ring slot: one arrival per consumer warp (lane 0), after the
// warp's wgmma reading it completed.
__device__ __forceinline__ void release_slot(uint64_t* empty) {
  __syncwarp();
  if (threadIdx.x % 32 == 0) sm90::barrier_arrive(empty);
}

// A consumer's rows of a finished tile into y (rows [first, rows) of the
// tile; columns below d_out), rounded to T: thread (warp w, lane 4 g + t)
// holds, per n block j of 8, columns 8 j + 2 t, + 1 of rows 16 w + g and
// 16 w + g + 8 (wgmma.cuh's accumulator layout), one 4-byte store each. d_out
// is a multiple of 8, so a pair is wholly in or out.
template <typename Shape, typename T>
__device__ __forceinline__ void store_rows(const float (&acc)[Shape::kAccumulators], T* y_tile,
                                           int64_t y_row_stride, int rows, int n0, int d_out,
                                           int consumer) {
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = (static_cast<int>(threadIdx.x) / 32) % 4;
  const int row = consumer * Shape::kConsumerRows + warp * 16 + lane / 4;
  const int col = 2 * (lane % 4);
  const int cols_left = d_out - n0;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = row + 8 * half;
    if (r >= rows) continue;
    T* const out = y_tile + r * y_row_stride + n0 + col;
#pragma unroll
    for (int j = 0; j < Shape::kBlockN / 8; ++j) {
      if (8 * j < cols_left) {
        const uint32_t packed = sm80::pack2<T>(acc[4 * j + 2 * half], acc[4 * j + 2 * half + 1]);
        *reinterpret_cast<uint32_t*>(out + 8 * j) = packed;
      }
    }
  }
}

// Zeros into a consumer's rows of a tile past the last segment, 16 bytes a
// store (no product, no ring slot).
template <typename Shape, typename T>
__device__ __forceinline__ void store_zero_rows(T* y_tile, int64_t y_row_stride, int rows, int n0,
                                                int d_out, int consumer) {
  constexpr int kChunks = Shape::kBlockN / 8;  // 16-byte chunks per row
  constexpr int kStores = Shape::kConsumerRows * kChunks / sm90::kWarpgroupThreads;
  const int thread = static_cast<int>(threadIdx.x) % sm90::kWarpgroupThreads;
#pragma unroll
  for (int i = 0; i < kStores; ++i) {
    const int index = thread + i * sm90::kWarpgroupThreads;
    const int r = consumer * Shape::kConsumerRows + index / kChunks;
    const int n = n0 + (index % kChunks) * 8;
    if (r < rows && n < d_out) {
      *reinterpret_cast<uint4*>(y_tile + r * y_row_stride + n) = make_uint4(0u, 0u, 0u, 0u);
    }
  }
}

}  // namespace tessera::gemm
