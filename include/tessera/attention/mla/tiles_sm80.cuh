// The sm80 MLA kernel's tiles (docs/mla.md): 64 rows of (token, head) pairs
// of one request, token-major as the sm90 kernel's, against K/V tiles of 32
// latent rows of 576 values (ckv 512 then kpe 64), both stored as panels of
// 64 values per 128-byte row, 16-byte chunks swizzled by the row (ldmatrix
// reads 8 rows at one chunk column without bank conflicts). V is the ckv
// panels of the K/V tile. Q 72 KB + 2 stages x 36 KB = 144 KB: one CTA per
// SM on A100 / H100 (not on sm_86 / sm_89, whose SMs hold 100 KB).
// Loads are cp.async by all 256 threads; a K/V row's page id is read once
// per row and tile, so any page size works.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/attention/mla/params.cuh"

namespace tessera::mla_sm80 {

using mla::kDimCkv;
using mla::kDimKpe;
using mla::kDimQk;
using mla::Params;

inline constexpr int kBlockM = 64;  // rows per tile (the planner's q tile)
inline constexpr int kBlockN = 32;  // latent rows per K/V tile
inline constexpr int kStages = 2;
inline constexpr int kWarps = 8;
inline constexpr int kThreads = kWarps * 32;
// Warp w owns rows [16 (w % 4), +16) and O columns [256 (w / 4), +256).
inline constexpr int kRowGroups = kBlockM / 16;
inline constexpr int kColumnGroups = kWarps / kRowGroups;
inline constexpr int kOutColumns = kDimCkv / kColumnGroups;
inline constexpr int kPanelElems = 64;
inline constexpr int kRowBytes = kPanelElems * 2;  // one panel row
inline constexpr int kChunksPerRow = kDimQk / 8;   // 16-byte chunks of a 576-wide row
inline constexpr int kQPanelBytes = kBlockM * kRowBytes;
inline constexpr int kKvPanelBytes = kBlockN * kRowBytes;
inline constexpr int kQBytes = (kDimQk / kPanelElems) * kQPanelBytes;
inline constexpr int kKvBytes = (kDimQk / kPanelElems) * kKvPanelBytes;
inline constexpr int kSharedBytes = kQBytes + kStages * kKvBytes;
static_assert(kWarps % kRowGroups == 0 && kDimCkv % kColumnGroups == 0, "warps tile the block");
static_assert(kSharedBytes <= 163 * 1024, "fits an A100 SM's shared memory");

// Byte offset of 16-byte chunk `chunk` (0 .. 71) of row `row` in a tile of
// kRows rows.
template <int kRows>
__device__ __forceinline__ uint32_t chunk_offset(int row, int chunk) {
  return static_cast<uint32_t>((chunk / 8) * kRows * kRowBytes + row * kRowBytes +
                               (((chunk % 8) ^ (row % 8)) * 16));
}

// Chunks first, first + kStep, ... (first < kStep) of a 576-wide row:
// ckv / q_nope chunks 0 .. 63, then kpe / q_pe 64 .. 71; zeros when !valid
// (padding rows, positions past the span: P = 0 times garbage could be NaN).
template <int kRows, int kStep, typename T>
__device__ __forceinline__ void copy_row(uint32_t tile, int row, int first, const T* wide,
                                         const T* narrow, bool valid) {
  static_assert(kChunksPerRow % kStep == 0 && (kDimCkv / 8) % kStep == 0, "whole passes");
#pragma unroll
  for (int i = 0; i < kChunksPerRow / kStep; ++i) {
    const int chunk = first + i * kStep;
    const T* source =
        i < kDimCkv / 8 / kStep ? wide + chunk * 8 : narrow + (chunk - kDimCkv / 8) * 8;
    sm80::cp_async_16_zfill(tile + chunk_offset<kRows>(row, chunk), source, valid);
  }
}

// The unit's Q rows: four threads per row, 18 chunks each.
template <typename T>
__device__ __forceinline__ void load_q(uint32_t tile, const Params<T>& p,
                                       const PrefillWorkUnit& u) {
  constexpr int kPerRow = kThreads / kBlockM;
  const int row = static_cast<int>(threadIdx.x) / kPerRow;
  const bool valid = row < u.qo_rows;
  const int r = u.qo_tile_begin + (valid ? row : 0);
  const int64_t token = u.qo_begin + r / p.num_heads;
  const int64_t head = r % p.num_heads;
  copy_row<kBlockM, kPerRow>(tile, row, static_cast<int>(threadIdx.x) % kPerRow,
                             p.q_nope + token * p.q_nope_stride_token + head * p.q_nope_stride_head,
                             p.q_pe + token * p.q_pe_stride_token + head * p.q_pe_stride_head,
                             valid);
}

// K/V tile rows [position0, position0 + 32) of the unit's request: eight
// threads per row, nine chunks each (eight of ckv, one of kpe: each
// instruction of a row's threads reads 128 contiguous bytes).
template <typename T>
__device__ __forceinline__ void load_kv(uint32_t tile, const Params<T>& p, const PrefillWorkUnit& u,
                                        int position0, int kv_end) {
  constexpr int kPerRow = kThreads / kBlockN;
  static_assert(kChunksPerRow % kPerRow == 0, "whole rows per pass");
  const int row = static_cast<int>(threadIdx.x) / kPerRow;
  const int position = position0 + row;
  const bool valid = position < kv_end;
  const int64_t page = valid ? p.kv_indices[u.kv_start + position / p.page_size] : 0;
  const int64_t entry = valid ? position % p.page_size : 0;
  copy_row<kBlockN, kPerRow>(tile, row, static_cast<int>(threadIdx.x) % kPerRow,
                             p.ckv + page * p.ckv_stride_page + entry * p.ckv_stride_entry,
                             p.kpe + page * p.kpe_stride_page + entry * p.kpe_stride_entry, valid);
}

}  // namespace tessera::mla_sm80
