// The pieces of the sm80 segment GEMM (segment_gemm_sm80.cuh): tile shapes,
// the cp.async copies of x and W tiles into swizzled shared memory, the
// ldmatrix fragment loads for mma.sync m16n8k16, and the epilogue that
// stages a finished tile in shared memory and writes 16-byte rows of y.
//
// Shared-memory tiles (16-bit elements, 16-byte chunks, sm80/smem_tile.cuh):
//   x:  [kBlockM][kBlockK]  k contiguous           (ldmatrix)
//   W column-major (W^T stored, [d_out, d_in]): [kBlockN][kBlockK]   (ldmatrix)
//   W row-major ([d_in, d_out]):                [kBlockK][kBlockN]   (ldmatrix.trans)
// Rows or chunks past the segment, d_in or d_out are zero-filled by the copy
// (d_in and d_out are multiples of 8, so a 16-byte chunk is wholly in or out).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/arch/sm80/smem_tile.cuh"
#include "tessera/core/numeric.cuh"
#include "tessera/gemm/segment_gemm_params.h"
#include "tessera/gemm/segment_schedule.cuh"

namespace tessera::gemm {

inline constexpr int kChunkElems = 8;  // 16-bit elements per 16-byte chunk
inline constexpr int kMmaM = 16;
inline constexpr int kMmaN = 8;
inline constexpr int kMmaK = 16;

// A CTA tile of kBlockM x kBlockN outputs, kWarpsM x kWarpsN warps, a
// kStages-deep cp.async ring of kBlockK-wide k slices.
template <int kBlockM_, int kBlockN_, int kWarpsM_, int kWarpsN_, int kStages_, int kMinCtas_>
struct SegmentGemmTileShape {
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kBlockK = 32;
  static constexpr int kWarpsM = kWarpsM_;
  static constexpr int kWarpsN = kWarpsN_;
  static constexpr int kStages = kStages_;
  static constexpr int kMinCtasPerSm = kMinCtas_;
  static constexpr int kThreads = kWarpsM * kWarpsN * 32;
  static constexpr int kWarpM = kBlockM / kWarpsM;  // rows of one warp's sub-tile
  static constexpr int kWarpN = kBlockN / kWarpsN;
  static constexpr int kMBlocks = kWarpM / kMmaM;
  static constexpr int kNBlocks = kWarpN / kMmaN;
  static constexpr int kKSteps = kBlockK / kMmaK;
  static constexpr int kKChunks = kBlockK / kChunkElems;  // chunks per x row / W^T row
  static constexpr int kNChunks = kBlockN / kChunkElems;  // chunks per W row / y row
  static constexpr int kXTileElems = kBlockM * kBlockK;
  static constexpr int kWTileElems = kBlockN * kBlockK;
  static constexpr int kStageElems = kXTileElems + kWTileElems;
  static constexpr int kPipelineBytes = kStages * kStageElems * 2;
  static constexpr int kEpilogueBytes = kBlockM * kBlockN * 2;  // y tile staging
  static constexpr int kSharedBytes =
      kPipelineBytes > kEpilogueBytes ? kPipelineBytes : kEpilogueBytes;

  static_assert(kBlockM % (kWarpsM * kMmaM) == 0, "whole m16 blocks per warp");
  static_assert(kBlockN % (kWarpsN * 2 * kMmaN) == 0, "ldmatrix.x4 loads two n8 blocks");
  static_assert(kBlockK % kMmaK == 0 && kKChunks == 4, "k slices of 32 (64-byte rows)");
  static_assert(kNChunks % 8 == 0, "W row-major / y tiles of 128-byte multiples");
  static_assert((kBlockM * kKChunks) % kThreads == 0 && (kBlockN * kKChunks) % kThreads == 0,
                "tile copies split evenly over the threads");
  static_assert((kBlockM * kNChunks) % kThreads == 0, "epilogue rows split evenly");
  static_assert(kStages >= 2, "a pipeline of at least two stages");
};

// MoE and long-segment shapes: 4 warps of 64 x 64 (128 float32 accumulators
// a thread), 4 stages of 16 KB. Two CTAs per SM fit the registers.
using SegmentGemmLargeTile = SegmentGemmTileShape<128, 128, 2, 2, 4, 2>;
// Short segments (LoRA, many experts) and narrow outputs: 4 warps of 32 x 32,
// 4 stages of 8 KB, so more CTAs share the SMs and fewer rows are padding.
using SegmentGemmSmallTile = SegmentGemmTileShape<64, 64, 2, 2, 4, 4>;

// Global-memory view of one tile's operands.
template <typename T>
struct TileOperands {
  const T* x_rows;  // first row of the tile in x
  int64_t x_row_stride;
  int32_t rows;     // valid rows (<= kBlockM)
  const T* weight;  // W[w]
  int64_t weight_row_stride;
  int32_t n0;  // first output column
  int32_t d_in;
  int32_t d_out;
};

// One operand's copies by this thread: kCopies 16-byte chunks of one chunk
// column, in rows kRowStep apart (a multiple of the swizzle period, so
// every row has the same swizzle and the destinations differ by
// immediates). Built once per tile; a k slice adds an offset and a bound.
template <typename T, int kCopies, int kRowStep, int kChunksPerRow>
struct ChunkStream {
  static_assert(kRowStep % 8 == 0, "rows of one swizzle phase");
  const T* source;   // copy 0 of k slice 0
  int64_t row_step;  // elements between copy i and copy i + 1
  uint32_t shared;   // shared byte offset of copy 0 within a stage

  // Copy i is valid when chunk_ok and i * kRowStep < row_limit; invalid
  // copies write zeros and read nothing (their address is never used).
  __device__ __forceinline__ void issue(uint32_t stage, int64_t slice_offset, int row_limit,
                                        bool chunk_ok) const {
#pragma unroll
    for (int i = 0; i < kCopies; ++i) {
      sm80::cp_async_16_zfill(stage + shared + i * kRowStep * kChunksPerRow * sm80::kChunkBytes,
                              source + slice_offset + i * row_step,
                              chunk_ok && i * kRowStep < row_limit);
    }
  }
};

// This thread's copies of a tile's k slices: x rows (k contiguous) and W
// (rows n with k contiguous, or rows k with n contiguous).
template <typename Shape, WeightLayout kLayout, typename T>
struct TileLoader {
  static constexpr bool kWKMajor = kLayout == WeightLayout::kColumnMajor;
  static constexpr int kWChunks = kWKMajor ? Shape::kKChunks : Shape::kNChunks;
  static constexpr int kXRowStep = Shape::kThreads / Shape::kKChunks;
  static constexpr int kWRowStep = Shape::kThreads / kWChunks;
  using XStream = ChunkStream<T, Shape::kBlockM / kXRowStep, kXRowStep, Shape::kKChunks>;
  using WStream =
      ChunkStream<T, (kWKMajor ? Shape::kBlockN : Shape::kBlockK) / kWRowStep, kWRowStep, kWChunks>;

  XStream x;
  WStream w;
  int x_row_limit;  // rows of the tile left from this thread's first x row
  int x_k;          // this thread's k within a slice (x and W^T chunk column)
  int w_first;      // W: first n row (k-major) or first k row (n-major) of this thread
  int w_n_limit;    // k-major: d_out rows left from this thread's first row
  bool w_n_ok;      // n-major: this thread's chunk column lies below d_out
  int d_in;
  int64_t w_slice_step;  // n-major: elements between k slices (kBlockK rows)

  __device__ __forceinline__ TileLoader(const TileOperands<T>& op) : d_in(op.d_in) {
    const int thread = static_cast<int>(threadIdx.x);
    const int x_row = thread / Shape::kKChunks;
    const int x_chunk = thread % Shape::kKChunks;
    x_k = x_chunk * kChunkElems;
    x = {op.x_rows + x_row * op.x_row_stride + x_k, kXRowStep * op.x_row_stride,
         static_cast<uint32_t>(sm80::swizzled_chunk<Shape::kKChunks>(x_row, x_chunk) *
                               sm80::kChunkBytes)};
    x_row_limit = op.rows - x_row;
    w_first = thread / kWChunks;
    const int w_chunk = thread % kWChunks;
    const uint32_t w_shared =
        static_cast<uint32_t>(Shape::kXTileElems * 2 +
                              sm80::swizzled_chunk<kWChunks>(w_first, w_chunk) * sm80::kChunkBytes);
    if constexpr (kWKMajor) {
      w = {op.weight + static_cast<int64_t>(op.n0 + w_first) * op.weight_row_stride +
               w_chunk * kChunkElems,
           kWRowStep * op.weight_row_stride, w_shared};
      w_n_limit = op.d_out - op.n0 - w_first;
      w_n_ok = true;
      w_slice_step = Shape::kBlockK;
    } else {
      const int n = op.n0 + w_chunk * kChunkElems;
      w = {op.weight + w_first * op.weight_row_stride + n, kWRowStep * op.weight_row_stride,
           w_shared};
      w_n_limit = 0;
      w_n_ok = n < op.d_out;
      w_slice_step = Shape::kBlockK * op.weight_row_stride;
    }
  }

  // k slice `slice` (k from slice * kBlockK) into the stage at shared byte
  // address `stage`.
  __device__ __forceinline__ void load(uint32_t stage, int slice) const {
    const int k0 = slice * Shape::kBlockK;
    const bool k_ok = k0 + x_k < d_in;
    x.issue(stage, k0, x_row_limit, k_ok);
    if constexpr (kWKMajor) {
      w.issue(stage, k0, w_n_limit, k_ok);
    } else {
      w.issue(stage, slice * w_slice_step, d_in - k0 - w_first, w_n_ok);
    }
  }
};

// A warp's fragments of one k step (16 deep) of a stage.
template <typename Shape>
struct Fragments {
  uint32_t a[Shape::kMBlocks][4];
  uint32_t b[Shape::kNBlocks][2];
};

// x fragments: row block mb of the warp, ldmatrix.x4 of (rows 0-7 | 8-15) x
// (k 0-7 | 8-15): lane l addresses row l % 16 at chunk 2 k_step + l / 16.
template <typename Shape>
__device__ __forceinline__ void load_x_fragments(Fragments<Shape>& f, uint32_t x_tile, int warp_m,
                                                 int k_step, int lane) {
#pragma unroll
  for (int mb = 0; mb < Shape::kMBlocks; ++mb) {
    const int row = warp_m * Shape::kWarpM + mb * kMmaM + lane % 16;
    const int chunk = 2 * k_step + lane / 16;
    sm80::ldmatrix_x4(
        f.a[mb], x_tile + sm80::swizzled_chunk<Shape::kKChunks>(row, chunk) * sm80::kChunkBytes);
  }
}

// W fragments of n blocks 2p and 2p + 1: registers {b0, b1} of block 2p, then
// of block 2p + 1. Lane l addresses matrix i = l / 8 (row l % 8 of it).
template <typename Shape, WeightLayout kLayout>
__device__ __forceinline__ void load_w_fragments(Fragments<Shape>& f, uint32_t w_tile, int warp_n,
                                                 int k_step, int lane) {
  const int matrix = lane / 8;
#pragma unroll
  for (int p = 0; p < Shape::kNBlocks / 2; ++p) {
    const int n_base = warp_n * Shape::kWarpN + p * 2 * kMmaN;
    uint32_t r[4];
    if constexpr (kLayout == WeightLayout::kColumnMajor) {
      // Tile rows are n, k contiguous: matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
      // (n 8-15, k 0-7), (n 8-15, k 8-15); a lane gets (n g, k 2t..2t+1) = b.
      const int n = n_base + (matrix >> 1) * 8 + lane % 8;
      const int chunk = 2 * k_step + (matrix & 1);
      sm80::ldmatrix_x4(
          r, w_tile + sm80::swizzled_chunk<Shape::kKChunks>(n, chunk) * sm80::kChunkBytes);
    } else {
      // Tile rows are k, n contiguous: transposed loads of (k 0-7 | 8-15) x
      // (n 0-7 | 8-15) give a lane (k 2t..2t+1, n g) = b.
      const int k_row = k_step * kMmaK + (matrix & 1) * 8 + lane % 8;
      const int chunk = n_base / kChunkElems + (matrix >> 1);
      sm80::ldmatrix_x4_trans(
          r, w_tile + sm80::swizzled_chunk<Shape::kNChunks>(k_row, chunk) * sm80::kChunkBytes);
    }
    f.b[2 * p][0] = r[0];
    f.b[2 * p][1] = r[1];
    f.b[2 * p + 1][0] = r[2];
    f.b[2 * p + 1][1] = r[3];
  }
}

template <typename Shape>
using Accumulators = float[Shape::kMBlocks][Shape::kNBlocks][4];

template <typename Shape, typename T>
__device__ __forceinline__ void mma_step(Accumulators<Shape>& acc, const Fragments<Shape>& f) {
#pragma unroll
  for (int mb = 0; mb < Shape::kMBlocks; ++mb) {
#pragma unroll
    for (int nb = 0; nb < Shape::kNBlocks; ++nb) {
      sm80::mma_16816<T>(acc[mb][nb], f.a[mb], f.b[nb][0], f.b[nb][1]);
    }
  }
}

// The warp's accumulators, rounded to T, into the [kBlockM][kBlockN]
// staging tile (swizzled by 16-byte chunks): c0,c1 at (g, 2t..2t+1), c2,c3
// at (g + 8, ...), one 4-byte store each.
template <typename Shape, typename T>
__device__ __forceinline__ void stage_accumulators(const Accumulators<Shape>& acc, uint32_t tile,
                                                   int warp_m, int warp_n, int lane) {
  const int g = lane / 4;
  const int t = lane % 4;
#pragma unroll
  for (int mb = 0; mb < Shape::kMBlocks; ++mb) {
#pragma unroll
    for (int nb = 0; nb < Shape::kNBlocks; ++nb) {
      const int col = warp_n * Shape::kWarpN + nb * kMmaN + 2 * t;
      const int chunk = col / kChunkElems;
      const uint32_t in_chunk = static_cast<uint32_t>(col % kChunkElems) * 2;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = warp_m * Shape::kWarpM + mb * kMmaM + g + 8 * half;
        const uint32_t address =
            tile + sm80::swizzled_chunk<Shape::kNChunks>(row, chunk) * sm80::kChunkBytes + in_chunk;
        const uint32_t packed = sm80::pack2<T>(acc[mb][nb][2 * half], acc[mb][nb][2 * half + 1]);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(address), "r"(packed) : "memory");
      }
    }
  }
}

// The staged tile's valid rows and columns into y, 16 bytes per store
// (zero_fill: zeros, without reading the staging tile).
template <typename Shape, typename T>
__device__ __forceinline__ void store_tile(T* y_rows, int64_t y_row_stride, int rows, int n0,
                                           int d_out, uint32_t tile, bool zero_fill) {
  constexpr int kStores = Shape::kBlockM * Shape::kNChunks / Shape::kThreads;
#pragma unroll
  for (int i = 0; i < kStores; ++i) {
    const int index = static_cast<int>(threadIdx.x) + i * Shape::kThreads;
    const int row = index / Shape::kNChunks;
    const int chunk = index % Shape::kNChunks;
    const int n = n0 + chunk * kChunkElems;
    if (row < rows && n < d_out) {
      const uint4 value =
          zero_fill
              ? make_uint4(0, 0, 0, 0)
              : sm80::load_shared_16(tile + sm80::swizzled_chunk<Shape::kNChunks>(row, chunk) *
                                                sm80::kChunkBytes);
      *reinterpret_cast<uint4*>(y_rows + row * y_row_stride + n) = value;
    }
  }
}

}  // namespace tessera::gemm
