// The FA2-style kernels' shared-memory tiles and their loaders (sm80+:
// cp.async, ldmatrix-friendly XOR swizzle), used by FA2 prefill
// (prefill_sm80.cuh) and the tensor-core decode (decode_mma.cuh): tile
// shapes (TileShape, PrefillTraits), the swizzle, Q and K/V tile copies
// (contiguous, paged through a row table, fp8 widened in place).
// Head dims: 64 / 128 / 192 / 256 rows (8 / 16 / 24 / 32 chunks of 16 bytes)
// are XOR-swizzled within groups of 8 chunks (chunk ^ row % 8 stays in its
// group, and a pitch that is a multiple of 8 chunks puts eight rows at one
// chunk column in eight distinct bank groups; 192 is q/k only, beside v/o
// 128); 80 / 96 / 112 (10 / 12 / 14 chunks,
// Phi / StableLM) have rows padded to an odd pitch of chunks (11 / 13 / 15):
// eight rows at one chunk column then fall in eight distinct 16-byte bank
// groups (an odd pitch is invertible mod 8), so ldmatrix and the output
// staging stay conflict-free with 7-10% more shared memory and no padding of
// the math (5 / 6 / 7 mma k-steps, 10 / 12 / 14 n8 blocks of O). Their
// chunk counts (and 192's 24) do not divide the 128 threads, so a thread's copies are items
// tid + i * 128 of the tile (TileCopy::kRegular false).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/attention/fp8_widen.cuh"
#include "tessera/attention/prefill_rows.cuh"
#include "tessera/core/numeric.cuh"

namespace tessera::prefill {

inline constexpr int kWarps = 4;
inline constexpr int kThreads = kWarps * 32;
// Q tiles of 64 rows (16 per warp) or 128 (32 per warp), a run-time choice
// of the plan (q_tile_rows) between two bodies of one kernel, so a captured
// graph replays whichever a later plan picks; shared memory holds the larger.
inline constexpr int kSmallQTile = 64;
inline constexpr int kMaxQTile = 128;
inline constexpr int kKvTile = 64;  // K/V tile rows up to head_dim 128
// K/V tile rows per (q/k, v/o) head dims: head_dim 256 takes 32-row tiles,
// so that its K/V stages (64 KB) and Q tile (32 KB) leave room for two CTAs
// per SM (64-row tiles made 160 KB: one CTA, 4 warps per SM). q/k 192 with
// v/o 128 keeps 64 rows (FA2's 64 x 64 at d 192): its stages are 80 KB and
// its 64-row Q tile 24 KB, 104.5 KB a CTA, two per SM on sm90 (228 KB), one
// on A100 (164 KB); 32-row tiles would halve the math between barriers.
__host__ __device__ constexpr int kv_tile_rows(int head_dim_qk, int head_dim_vo) {
  return head_dim_qk <= 128 || head_dim_vo <= 128 ? kKvTile : kKvTile / 2;
}
__host__ __device__ constexpr int kv_tile_rows(int head_dim) {
  return kv_tile_rows(head_dim, head_dim);
}
inline constexpr int kChunkElems = 8;   // 16 bytes of a 16-bit type
inline constexpr int kSwizzleRows = 8;  // ldmatrix reads 8 rows at a time
inline constexpr int kMinCtasPerSm = 2;
// Paged K/V's row-offset table (PagedRowTable): two tiles of 32-bit offsets.
// (V has a second table where its strides differ from K's: q/k 192, v/o 128.)
inline constexpr int kRowTableBytes = 2 * kKvTile * 4;

// Shared-memory row pitch, in 16-byte chunks, of a tile with kChunks chunks
// per row: XOR-swizzled rows (a multiple of 8 chunks: head_dim 64 / 128 /
// 192 / 256) keep their width; others (an even count: head_dim 80 / 96 /
// 112) take the next odd count.
__host__ __device__ constexpr int row_pitch_chunks(int chunks) {
  return chunks % kSwizzleRows == 0 ? chunks : chunks + 1;
}

// The shape of one shared-memory tile family: kKvTile rows (K or V; the Q
// tile and the output staging share the pitch) of kHeadDim 16-bit values.
// What the tile loaders (TileCopy, load_kv_tile, PagedRowTable) and the
// fragment addressing need to know; a 16-bit element type throughout.
template <int kHeadDim_, int kKvTile_>
struct TileShape {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kKvTile = kKvTile_;
  static constexpr int kChunks = kHeadDim / kChunkElems;  // 16-byte chunks per row
  static_assert(kHeadDim % (2 * kChunkElems) == 0, "whole mma k-steps / ldmatrix.x4 pairs");
  static_assert(kChunks >= kSwizzleRows, "the XOR swizzle needs >= 8 chunks per row");
  static constexpr int kRowElems = row_pitch_chunks(kChunks) * kChunkElems;  // shared row pitch
  static constexpr int kTileElems = kKvTile * kRowElems;
};

// The FA2 prefill kernel's shapes for q/k head dim kHeadDimQk and v/o head
// dim kHeadDimVo (equal, or q/k 192 with v/o 128: DeepSeek-style prefill,
// whose keys carry 128 "nope" + 64 RoPE dims and values 128). Q and K
// tiles are QkTile rows, V tiles, the output staging and the O accumulator
// VoTile rows: S = Q K^T runs kKSteps = qk / 16 mma k-steps, O += P V
// kDBlocks = vo / 8 n-blocks.
template <typename T_, int kHeadDimQk_, int kHeadDimVo_ = kHeadDimQk_>
struct PrefillTraits {
  using T = T_;
  static constexpr int kHeadDimQk = kHeadDimQk_;
  static constexpr int kHeadDimVo = kHeadDimVo_;
  static_assert(sizeof(T) == 2, "prefill runs 16-bit mma inputs");
  static_assert((kHeadDimQk == kHeadDimVo &&
                 (kHeadDimQk == 64 || kHeadDimQk == 80 || kHeadDimQk == 96 ||
                  kHeadDimQk == 112 || kHeadDimQk == 128 || kHeadDimQk == 256)) ||
                    (kHeadDimQk == 192 && kHeadDimVo == 128),
                "prefill head_dim 64, 80, 96, 112, 128 or 256, or q/k 192 with v/o 128");
  static constexpr bool kSquare = kHeadDimQk == kHeadDimVo;
  static constexpr int kKvTile = kv_tile_rows(kHeadDimQk, kHeadDimVo);
  using QkTile = TileShape<kHeadDimQk, kKvTile>;  // Q and K tiles
  using VoTile = TileShape<kHeadDimVo, kKvTile>;  // V tiles and the output staging
  // 32 rows per warp (kMaxMBlocks 2) up to head_dim 128 only: at 256 they
  // would need 256 accumulator registers per thread; at q/k 192 the 32 rows'
  // S (64) and O (128) registers plus K fragments leave none for the rest.
  static constexpr int kMaxMBlocks = kHeadDimQk <= 128 ? 2 : 1;
  static constexpr int kQRows = kWarps * 16 * kMaxMBlocks;
  // Q as A fragments in registers (64-row tiles) up to q/k 128: 4 registers
  // per k-step. At q/k 192 (48 of them beside 64 of O) the bf16 kernels hit
  // 255 registers and spill 60-68 bytes (ragged 128 B of loads); re-read
  // from shared per k-step (FA2's way, one ldmatrix.x4 per 8 mma) they
  // spill 0 (single), 8 (paged), 20 (ragged) bytes (nvcc 13.0, sm_90a).
  // At 256 Q is re-read too (64 registers beside 128 of O).
  static constexpr bool kQFitsRegisters = kHeadDimQk <= 128;
  static constexpr int kQElems = kQRows * QkTile::kRowElems;
  // Paged V rows have their own offsets (their strides are not K's) when
  // the head dims differ: a second row table.
  static constexpr int kRowTables = kSquare ? 1 : 2;
  static constexpr int kRowTableRegionBytes = kRowTables * kRowTableBytes;
  // For the largest tile; api/prefill_device_fit.cu computes the same for
  // the tile a device runs (and checks it against these).
  static constexpr int kSharedBytes =
      (2 * QkTile::kTileElems + 2 * VoTile::kTileElems + kQElems) * static_cast<int>(sizeof(T)) +
      kRowTableRegionBytes;
  static constexpr int kKSteps = kHeadDimQk / 16;  // mma k-steps of S = Q K^T
  static constexpr int kSBlocks = kKvTile / 8;     // n-blocks of S
  static constexpr int kKvSteps = kKvTile / 16;    // mma k-steps of O = P V
  static constexpr int kDBlocks = kHeadDimVo / 8;  // n-blocks of O
  static_assert(kSBlocks % 2 == 0 && kDBlocks % 2 == 0, "ldmatrix.x4 loads two n-blocks");
  static_assert((kSmallQTile * QkTile::kChunks) % kThreads == 0, "Q tile loads split evenly");
  static_assert((kKvTile * QkTile::kChunks) % kThreads == 0 &&
                    (kKvTile * VoTile::kChunks) % kThreads == 0,
                "K/V tile loads split evenly");
  static_assert(kSmallQTile * VoTile::kRowElems <= kSmallQTile * QkTile::kRowElems,
                "the output staging fits the Q region");
};

// Element offset of 16-byte chunk `chunk` of tile row `row` (see the file
// comment: XOR swizzle, or an odd row pitch).
template <int kChunks>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  if constexpr (kChunks % kSwizzleRows == 0) {
    return (row * kChunks + (chunk ^ (row % kSwizzleRows))) * kChunkElems;
  } else {
    static_assert(row_pitch_chunks(kChunks) % 2 == 1, "padded rows have an odd pitch");
    return (row * row_pitch_chunks(kChunks) + chunk) * kChunkElems;
  }
}

// A lane's ldmatrix row addresses in a swizzled tile, for the fragment
// loops: the lane reads row row0 + lane_row (row0 a multiple of 8, so the
// row's swizzle is lane_row % 8) at chunk 2 k + lane_bit. (2 k + lane_bit)
// ^ r = 2 k ^ x with x = lane_bit ^ r < 8, which for k = 4 m + j is 8 m +
// (2 j ^ x): four per-lane addresses, to which row0 and m add offsets
// (immediates, but for the run-time stage of a K/V tile). The compiler
// otherwise keeps one register per k, and at 32 rows per warp those spill.
// Padded (odd-pitch) tiles need one base: every offset is an immediate.
template <int kChunks>
struct LaneTileAddress {
  static constexpr bool kXor = kChunks % kSwizzleRows == 0;
  static constexpr int kPitch = row_pitch_chunks(kChunks);
  uint32_t base[kXor ? 4 : 1];
  __device__ __forceinline__ LaneTileAddress(const void* tile, int lane_row, int lane_bit) {
    const uint32_t tile_address = sm80::shared_address(tile);
    if constexpr (kXor) {
      const int x = lane_bit ^ (lane_row % kSwizzleRows);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        base[j] = tile_address + static_cast<uint32_t>((lane_row * kChunks + ((2 * j) ^ x)) * 16);
      }
    } else {
      base[0] = tile_address + static_cast<uint32_t>((lane_row * kPitch + lane_bit) * 16);
    }
  }
  __device__ __forceinline__ uint32_t at(int row0, int k) const {
    if constexpr (kXor) {
      return base[k % 4] + static_cast<uint32_t>((row0 * kChunks + (k / 4) * 8) * 16);
    } else {
      return base[0] + static_cast<uint32_t>((row0 * kPitch + 2 * k) * 16);
    }
  }
};

// Which 16-byte chunks of a tile a thread copies; the tile's rows hold
// head_dim elements of `Element` (q's type for Q and 16-bit K/V; fp8 K/V
// rows are half as many chunks). Copy i of a thread is chunk item tid + i *
// kThreads of the row-major tile: row item / kChunks, chunk item % kChunks.
// Regular (kChunks divides kThreads): a thread copies one chunk column of
// rows first_row(), + kRowStep, ...; the loaders use that structure (one
// address register plus immediates). Otherwise (head_dim 80 / 96 / 112,
// and q/k 192: 24 chunks) row(i) and chunk(i) vary per copy.
template <typename Shape, typename Element>
struct TileCopy {
  static constexpr int kChunks = Shape::kHeadDim * static_cast<int>(sizeof(Element)) / 16;
  static constexpr bool kRegular = kThreads % kChunks == 0;
  static constexpr int kRowStep = kRegular ? kThreads / kChunks : 0;  // regular only
  static constexpr int kKvCopies = Shape::kKvTile * kChunks / kThreads;  // per K or V tile
  static_assert(Shape::kKvTile * kChunks % kThreads == 0, "K/V tile copies split evenly");
  static_assert(Shape::kKvTile % (kRegular ? kRowStep : 1) == 0, "whole rows per pass");
  __device__ __forceinline__ static int chunk() { return static_cast<int>(threadIdx.x) % kChunks; }
  __device__ __forceinline__ static int first_row() {
    return static_cast<int>(threadIdx.x) / kChunks;
  }
  __device__ __forceinline__ static int row(int i) {
    return (static_cast<int>(threadIdx.x) + i * kThreads) / kChunks;
  }
  __device__ __forceinline__ static int chunk(int i) {
    return (static_cast<int>(threadIdx.x) + i * kThreads) % kChunks;
  }
};

// The Q tile: rows [row0, row0 + kQTile) of the request; rows >= row_end
// become zeros.
template <typename Shape, int kQTile, typename T>
__device__ __forceinline__ void load_q_tile(T* tile, const QueryRows<T>& rows, int row0,
                                            int row_end) {
  using Copy = TileCopy<Shape, T>;
  if constexpr (Copy::kRegular) {
    const int chunk = Copy::chunk();
#pragma unroll
    for (int r = Copy::first_row(); r < kQTile; r += Copy::kRowStep) {
      const bool valid = row0 + r < row_end;
      const T* source = rows.q + (valid ? rows.offset(row0 + r) : 0) + chunk * kChunkElems;
      sm80::cp_async_16_zfill(tile + swizzled<Shape::kChunks>(r, chunk), source, valid);
    }
  } else {
    static_assert(kQTile * Copy::kChunks % kThreads == 0, "Q tile copies split evenly");
#pragma unroll
    for (int i = 0; i < kQTile * Copy::kChunks / kThreads; ++i) {
      const int r = Copy::row(i);
      const int chunk = Copy::chunk(i);
      const bool valid = row0 + r < row_end;
      const T* source = rows.q + (valid ? rows.offset(row0 + r) : 0) + chunk * kChunkElems;
      sm80::cp_async_16_zfill(tile + swizzled<Shape::kChunks>(r, chunk), source, valid);
    }
  }
}

// This thread's rows of the K/V tile at pos0 (page ids fetched for paged KV).
template <typename Shape, typename KvRows>
__device__ __forceinline__ auto fetch_kv_rows(const KvRows& kv, int pos0, int pos_end) {
  using Copy = TileCopy<Shape, typename KvRows::Element>;
  if constexpr (Copy::kRegular) {
    return kv.template fetch<Copy::kKvCopies, Copy::kRowStep>(pos0 + Copy::first_row(), pos_end);
  } else {
    return kv.template fetch_at<Copy::kKvCopies>([&](int i) { return pos0 + Copy::row(i); },
                                                 pos_end);
  }
}

// K or V positions [pos0, pos0 + kKvTile) into a swizzled tile, with the
// thread's rows from fetch_kv_rows(pos0); positions >= pos_end become zeros
// (so padded V rows never turn a zero probability into NaN). fp8 rows land
// unswizzled in the upper half of the 16-bit tile (fp8_staging) and
// Fp8TileWidener turns them into the swizzled 16-bit tile once landed.
template <typename Shape, typename T>
__device__ __forceinline__ unsigned char* fp8_staging(T* tile) {
  return reinterpret_cast<unsigned char*>(tile) + Shape::kTileElems * sizeof(T) / 2;
}

// The copies of one K/V tile; row_source(i, pos, chunk_elems) -> this
// thread's chunk (chunk_elems elements into the row) of its row i, at kv
// position pos, in global memory. The source adds the chunk, so that the
// paged row table (PagedRowTable) adds it to its base once per tile and
// each copy's address is one multiply-add of the row's offset.
// Regular copies (TileCopy::kRegular): a chunk column of rows per thread.
template <typename Shape, typename T, typename KVT, typename RowSource>
__device__ __forceinline__ void copy_kv_tile_columns(T* tile, const RowSource& row_source,
                                                     int pos0, int pos_end) {
  using Copy = TileCopy<Shape, KVT>;
  static_assert(Copy::kRegular, "one chunk column per thread");
  constexpr int kChunkKv = 16 / static_cast<int>(sizeof(KVT));  // elements per chunk
  constexpr bool kFp8 = sizeof(KVT) != sizeof(T);
  // Shared byte offset of this thread's row i. The thread's rows are
  // kRowStep apart; when that is a multiple of the swizzle period every row
  // has the same swizzle, so the offsets are one register plus immediates
  // (the copy addressing was ~16 instructions per 16-byte copy at 255
  // registers, rematerialised each tile).
  const int chunk = Copy::chunk();
  const int r0 = Copy::first_row();
  const uint32_t tile_address = sm80::shared_address(
      kFp8 ? static_cast<void*>(fp8_staging<Shape>(tile)) : static_cast<void*>(tile));
  const auto destination = [&](int i) -> uint32_t {
    const int r = r0 + i * Copy::kRowStep;
    if constexpr (kFp8) {
      return tile_address + static_cast<uint32_t>((r * Copy::kChunks + chunk) * 16);
    } else if constexpr (Copy::kRowStep % kSwizzleRows == 0) {
      return tile_address + static_cast<uint32_t>(swizzled<Shape::kChunks>(r0, chunk) * sizeof(T) +
                                                  i * Copy::kRowStep * Shape::kChunks * 16);
    } else {
      return tile_address + static_cast<uint32_t>(swizzled<Shape::kChunks>(r, chunk) * sizeof(T));
    }
  };
  // Every source first: a row_source that reads memory (the paged row
  // table) cannot move across the copies' asm (a memory clobber), so reads
  // interleaved with them would wait one after another.
  const KVT* source[Copy::kKvCopies];
#pragma unroll
  for (int i = 0; i < Copy::kKvCopies; ++i) {
    source[i] = row_source(i, pos0 + r0 + i * Copy::kRowStep, chunk * kChunkKv);
  }
  // Rows past pos_end copy nothing (ignore-src, zero-filled): their address
  // may be anything, past the tensor or on page 0. Row i is valid when
  // i * kRowStep < rows_left: one compare with an immediate per row (the
  // compiler kept an add and a compare).
  const int rows_left = pos_end - pos0 - r0;
#pragma unroll
  for (int i = 0; i < Copy::kKvCopies; ++i) {
    sm80::cp_async_16_zfill(destination(i), source[i], i * Copy::kRowStep < rows_left);
  }
}

// copy_kv_tile for irregular copies (TileCopy::kRegular false: head_dim 80 /
// 96 / 112, 16-bit K/V): copy i of a thread is row row(i), chunk chunk(i);
// row_source gets the same (i, pos, chunk_elems) as in copy_kv_tile.
template <typename Shape, typename T, typename KVT, typename RowSource>
__device__ __forceinline__ void copy_kv_tile_items(T* tile, const RowSource& row_source, int pos0,
                                                   int pos_end) {
  using Copy = TileCopy<Shape, KVT>;
  static_assert(sizeof(KVT) == sizeof(T), "fp8 K/V tiles are regular (head_dim 128)");
  const uint32_t tile_address = sm80::shared_address(tile);
  const KVT* source[Copy::kKvCopies];
#pragma unroll
  for (int i = 0; i < Copy::kKvCopies; ++i) {
    source[i] = row_source(i, pos0 + Copy::row(i), Copy::chunk(i) * kChunkElems);
  }
  const int rows_left = pos_end - pos0;
#pragma unroll
  for (int i = 0; i < Copy::kKvCopies; ++i) {
    const uint32_t destination =
        tile_address +
        static_cast<uint32_t>(swizzled<Shape::kChunks>(Copy::row(i), Copy::chunk(i)) * sizeof(T));
    sm80::cp_async_16_zfill(destination, source[i], Copy::row(i) < rows_left);
  }
}

template <typename Shape, typename T, typename KVT, typename RowSource>
__device__ __forceinline__ void copy_kv_tile(T* tile, const RowSource& row_source, int pos0,
                                             int pos_end) {
  if constexpr (TileCopy<Shape, KVT>::kRegular) {
    copy_kv_tile_columns<Shape, T, KVT>(tile, row_source, pos0, pos_end);
  } else {
    copy_kv_tile_items<Shape, T, KVT>(tile, row_source, pos0, pos_end);
  }
}

template <typename Shape, typename T, typename KVT, typename KvRows, typename TileRows>
__device__ __forceinline__ void load_kv_tile(T* tile, const KVT* base, const KvRows& kv,
                                             const TileRows& rows, int pos0, int pos_end) {
  using Copy = TileCopy<Shape, KVT>;
  if constexpr (KvRows::kContiguous && !Copy::kRegular) {
    copy_kv_tile<Shape, T, KVT>(
        tile,
        [&](int, int pos, int chunk_elems) {
          return base + chunk_elems + static_cast<int64_t>(pos) * kv.stride;
        },
        pos0, pos_end);
  } else if constexpr (KvRows::kContiguous) {
    // Row i is i * kRowStep * stride past row 0: one multiply per tile.
    const KVT* first = base + static_cast<int64_t>(pos0 + Copy::first_row()) * kv.stride;
    const int64_t step = Copy::kRowStep * kv.stride;
    copy_kv_tile<Shape, T, KVT>(
        tile, [&](int i, int, int chunk_elems) { return first + chunk_elems + i * step; }, pos0,
        pos_end);
  } else {
    copy_kv_tile<Shape, T, KVT>(
        tile,
        [&](int i, int pos, int chunk_elems) {
          return base + chunk_elems + kv.offset(rows, i, pos);
        },
        pos0, pos_end);
  }
}

// Paged K/V in prefill: the offsets of a tile's kKvTile rows in a
// shared-memory table of two slots (tile t in slot t % 2), each row's offset
// computed once, by thread `row` (one page-id load, one divide, one
// multiply-add), and published a tile ahead of its copies. Per-thread page
// ids (PagedKvRows::fetch) cost that work for each of a row's kChunks
// copying threads, for K and for V again, and 8 id registers: paged ran at
// 0.80x of ragged (H200, 6970c15) with ~360 more instructions per tile.
// Entries are 32-bit counts of units.bytes (PagedRowUnits), stored so that
// a copying thread's rows are adjacent: its offsets are one or two 16-byte
// shared loads, and each copy's address one IMAD.WIDE (int64 byte offsets
// took a 64-bit load and two adds per copy).
template <typename Shape, typename KvRows>
struct PagedRowTable {
  using Copy = TileCopy<Shape, typename KvRows::Element>;
  static constexpr int kKvTile = Shape::kKvTile;
  static constexpr int kRows = Copy::kKvCopies;  // adjacent entries per thread (regular)
  static_assert(2 * kKvTile * 4 <= kRowTableBytes, "the table's region holds two tiles");
  static_assert(!Copy::kRegular || kRows % 4 == 0 || kRows == 2,
                "a thread's entries load as uint4 or uint2");
  uint32_t* table;  // [2][kKvTile] in shared memory
  // Row r of a tile is entry i = r / kRowStep of the threads with first_row
  // r % kRowStep. Irregular copies (head_dim 80 / 96 / 112, q/k 192) read
  // row r at entry r, one 4-byte shared load per copy.
  __device__ __forceinline__ static int index(int r) {
    if constexpr (Copy::kRegular) {
      return (r % Copy::kRowStep) * kRows + r / Copy::kRowStep;
    } else {
      return r;
    }
  }
  // This thread's row (threads < kKvTile) of the tile at pos0: its page id.
  __device__ __forceinline__ int32_t fetch(const KvRows& kv, int pos0, int pos_end) const {
    return threadIdx.x < kKvTile ? kv.page_of(pos0 + static_cast<int>(threadIdx.x), pos_end) : 0;
  }
  // Writes the rows' offsets of the tile at pos0 (page ids from fetch), in
  // `units` (K's, or V's own where V has other strides), into `slot`;
  // visible to the copies after the next barrier.
  __device__ __forceinline__ void publish(const KvRows& kv, const PagedRowUnits& units, int slot,
                                          int pos0, int32_t page_id) const {
    if (threadIdx.x < kKvTile) {
      const int r = static_cast<int>(threadIdx.x);
      table[slot * kKvTile + index(r)] = kv.units_from_start(units, page_id, pos0 + r);
    }
  }
  template <typename T, typename KVT>
  __device__ __forceinline__ void load(T* tile, const KVT* base, const PagedRowUnits& units,
                                       int slot, int pos0, int pos_end) const {
    if constexpr (!Copy::kRegular) {
      const uint32_t* const slot_table = table + slot * kKvTile;
      copy_kv_tile<Shape, T, KVT>(
          tile,
          [&](int, int pos, int chunk_elems) {
            return reinterpret_cast<const KVT*>(
                reinterpret_cast<const char*>(base + chunk_elems) +
                static_cast<uint64_t>(slot_table[pos - pos0]) * units.bytes);
          },
          pos0, pos_end);
    } else {
      load_columns<T>(tile, base, units, slot, pos0, pos_end);
    }
  }
  // Regular copies: a thread's entries are adjacent (one or two vector loads).
  template <typename T, typename KVT>
  __device__ __forceinline__ void load_columns(T* tile, const KVT* base, const PagedRowUnits& units,
                                               int slot, int pos0, int pos_end) const {
    const uint32_t* const mine = table + slot * kKvTile + Copy::first_row() * kRows;
    uint32_t offsets[kRows];
#pragma unroll
    for (int i = 0; i < kRows; i += (kRows % 4 == 0 ? 4 : 2)) {
      if constexpr (kRows % 4 == 0) {
        const uint4 four = *reinterpret_cast<const uint4*>(mine + i);
        offsets[i] = four.x;
        offsets[i + 1] = four.y;
        offsets[i + 2] = four.z;
        offsets[i + 3] = four.w;
      } else {
        const uint2 two = *reinterpret_cast<const uint2*>(mine + i);
        offsets[i] = two.x;
        offsets[i + 1] = two.y;
      }
    }
    copy_kv_tile<Shape, T, KVT>(
        tile,
        [&](int i, int, int chunk_elems) {
          return reinterpret_cast<const KVT*>(reinterpret_cast<const char*>(base + chunk_elems) +
                                              static_cast<uint64_t>(offsets[i]) * units.bytes);
        },
        pos0, pos_end);
  }
};

// Widens an fp8 K/V tile in place: each thread reads the chunks it copied
// (visible to it once its cp.async group completed), the CTA synchronises
// (nobody overwrites staging still unread), then each thread writes its
// chunks as 16-bit values into the swizzled layout (fp8_widen.cuh).
template <typename Shape, typename T, typename Fp8>
struct Fp8TileWidener {
  using Copy = TileCopy<Shape, Fp8>;
  static_assert(sizeof(Fp8) == sizeof(T) || Copy::kRegular, "fp8 K/V runs head_dim 128");
  uint4 chunks[Copy::kKvCopies];

  __device__ __forceinline__ void read_own(T* tile) {
    const unsigned char* staging = fp8_staging<Shape>(tile);
#pragma unroll
    for (int i = 0; i < Copy::kKvCopies; ++i) {
      const int r = Copy::first_row() + i * Copy::kRowStep;
      chunks[i] =
          *reinterpret_cast<const uint4*>(staging + (r * Copy::kChunks + Copy::chunk()) * 16);
    }
  }

  __device__ __forceinline__ void write(T* tile) const {
#pragma unroll
    for (int i = 0; i < Copy::kKvCopies; ++i) {
      const int r = Copy::first_row() + i * Copy::kRowStep;
      T* const row_chunk0 = tile + swizzled<Shape::kChunks>(r, 2 * Copy::chunk());
      T* const row_chunk1 = tile + swizzled<Shape::kChunks>(r, 2 * Copy::chunk() + 1);
      attention::widen_fp8_chunk<T, Fp8>(chunks[i], *reinterpret_cast<uint4*>(row_chunk0),
                                         *reinterpret_cast<uint4*>(row_chunk1));
    }
  }
};

}  // namespace tessera::prefill
