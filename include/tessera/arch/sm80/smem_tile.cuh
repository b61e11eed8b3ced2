// Swizzled shared-memory tiles for ldmatrix (sm80+): a tile of rows of
// 16-byte chunks whose chunk column is XOR-ed with a function of the row, so
// that the eight row addresses of one ldmatrix phase (eight rows, one chunk
// column) and a warp's row-wise 16-byte stores fall in distinct bank groups.
// Device header: compiles under nvcc and NVRTC.
#pragma once

namespace tessera::sm80 {

inline constexpr int kChunkBytes = 16;

// Chunk index (in units of 16 bytes from the tile's start) of chunk `chunk`
// of row `row`, for tiles of kChunks chunks per row.
//   kChunks >= 8 (rows of 128 bytes or more): chunk ^ (row % 8), within
//     the row's aligned group of 8 chunks;
//   kChunks == 4 (64-byte rows, two per 128-byte line): chunk ^ ((row / 2)
//     % 4), so rows 0..7 cover the line's 8 bank groups once each.
template <int kChunks>
__device__ __forceinline__ int swizzled_chunk(int row, int chunk) {
  static_assert(kChunks == 4 || (kChunks >= 8 && kChunks % 8 == 0),
                "swizzled tiles have 4 or a multiple of 8 chunks per row");
  if constexpr (kChunks == 4) {
    return row * kChunks + (chunk ^ ((row >> 1) & 3));
  } else {
    return row * kChunks + (chunk ^ (row & 7));
  }
}

}  // namespace tessera::sm80
