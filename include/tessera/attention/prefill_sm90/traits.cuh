// The Hopper prefill kernel's shapes, roles and shared memory (FA3-style:
// one producer warpgroup loading through TMA or a row gather, two consumer
// warpgroups running wgmma on 64 query rows each).
//
// Tiles: 128 query rows (two consumer warpgroups x 64), K/V tiles of
// kBlockN positions (128; 64 at head_dim 256), kStages of each in a ring.
// Every tile is stored as head_dim / 64 panels of 64 values per 128-byte
// row, 128-byte swizzled (arch/sm90/wgmma.cuh), which is what the TMA
// writes and the wgmma descriptors read. Q is double-buffered so the next
// unit's Q lands while this one runs. head_dim 128: 2 x 32 KB Q + 2 x 32 KB
// K + 2 x 32 KB V = 192 KB (fp8 K/V: + 2 x 16 KB staging, 224 KB), one CTA
// (384 threads) per SM.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm90/tma.cuh"
#include "tessera/attention/prefill_masks.cuh"
#include "tessera/attention/prefill_rows.cuh"
#include "tessera/attention/prefill_schedule.cuh"

namespace tessera::prefill_sm90 {

inline constexpr int kBlockM = 128;       // query rows per CTA tile
inline constexpr int kConsumerRows = 64;  // per consumer warpgroup (wgmma M)
inline constexpr int kConsumers = kBlockM / kConsumerRows;
inline constexpr int kThreads = (1 + kConsumers) * 128;
inline constexpr int kPanelElems = 64;  // 16-bit values per 128-byte row
// Named barriers (0 is __syncthreads): the producer warpgroup's 128
// threads; the two consumer warpgroups' 256; consumer c's turn to issue
// wgmma (kTurnBarrier + c, mainloop.cuh).
enum NamedBarrier : int { kProducerBarrier = 1, kConsumerBarrier = 2, kTurnBarrier = 3 };
inline constexpr int kPanelRowBytes = 128;
// setmaxnreg: the producer gives registers to the consumers (40 x 128 + 232
// x 256 = 64512 of the SM's 65536; the gather producer needs its 40).
inline constexpr int kProducerRegisters = 40;
inline constexpr int kConsumerRegisters = 232;

// KVT: the K/V element in global memory; q's T, or fp8 (paged K/V only:
// the gather lands fp8 rows in a staging buffer and widens them to T).
template <typename T_, int kHeadDim_, typename KVT_ = T_>
struct Traits {
  using T = T_;
  using KVT = KVT_;
  static constexpr int kHeadDim = kHeadDim_;
  static_assert(sizeof(T) == 2, "wgmma prefill runs 16-bit inputs");
  static constexpr bool kFp8Kv = sizeof(KVT) == 1;
  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256,
                "Hopper prefill: head_dim 64, 128 or 256");
  // K/V positions per tile (S = 64 x kBlockN per warpgroup). head_dim 256
  // halves it and keeps one Q buffer: O alone is 128 registers a thread,
  // and 64 KB Q + 2 x 2 x 32 KB K/V fill the SM's shared memory.
  static constexpr int kBlockN = kHeadDim <= 128 ? 128 : 64;
  static constexpr int kStages = 2;
  static constexpr int kQBuffers = kHeadDim <= 128 ? 2 : 1;
  // Tile n's S = Q K^T and softmax overlap tile n - 1's P V (mainloop):
  // needs registers for S and tile n - 1's P beside O, which head_dim 256
  // does not have (it runs each tile's P V right after its softmax).
  static constexpr bool kOverlapSoftmaxWithPv = kHeadDim <= 128;
  // The consumer warpgroups take turns issuing a tile's wgmma (mainloop.cuh),
  // measured with the overlap (hd 64 / 128); the serial hd256 step takes none.
  static constexpr bool kTakeTurns = kOverlapSoftmaxWithPv;
  static constexpr int kRowTables = 3;  // gather: a tile's row table lives until its V copy
  static constexpr int kPanels = kHeadDim / kPanelElems;
  static constexpr int kQBytes = kBlockM * kHeadDim * 2;
  static constexpr int kKvTileBytes = kBlockN * kHeadDim * 2;
  static constexpr int kQPanelBytes = kBlockM * kPanelRowBytes;
  static constexpr int kKvPanelBytes = kBlockN * kPanelRowBytes;
  static constexpr int kKSteps = kHeadDim / 16;  // wgmma k-steps of S = Q K^T
  static constexpr int kPvSteps = kBlockN / 16;  // of O += P V
  static constexpr int kSRegs = kBlockN / 2;     // S accumulators per thread
  static constexpr int kORegs = kHeadDim / 2;    // O accumulators per thread
  // fp8 K/V: two staging buffers of one fp8 tile each (a copy in flight
  // while the one before is widened).
  static constexpr int kStagingBytes = kFp8Kv ? kBlockN * kHeadDim : 0;
};

// fp8 K/V rows as copied, each thread's chunks at fixed places (load.cuh);
// empty for 16-bit K/V.
template <int kBytes>
struct alignas(16) Fp8Staging {
  unsigned char buffer[2][kBytes];
};
template <>
struct Fp8Staging<0> {};

// Barriers: per Q buffer job full (its job index written), Q full (its Q
// landed) and empty (consumers and K/V loaders done with it); K and V full /
// empty per stage; the paged producer's row tables (tiles of row offsets).
template <typename Tr>
struct alignas(1024) SharedStorage {
  unsigned char q[Tr::kQBuffers][Tr::kQBytes];
  unsigned char k[Tr::kStages][Tr::kKvTileBytes];
  unsigned char v[Tr::kStages][Tr::kKvTileBytes];
  uint32_t row_table[Tr::kRowTables][Tr::kBlockN];
  uint64_t job_full[Tr::kQBuffers];  // the buffer's job index is written
  uint64_t q_full[Tr::kQBuffers];
  uint64_t q_empty[Tr::kQBuffers];
  uint64_t k_full[Tr::kStages];
  uint64_t k_empty[Tr::kStages];
  uint64_t v_full[Tr::kStages];
  uint64_t v_empty[Tr::kStages];
  int32_t job[Tr::kQBuffers];  // the job whose Q the buffer holds; -1: no more jobs
  Fp8Staging<Tr::kStagingBytes> staging;  // last: the barriers keep 16-bit K/V's offsets
};

// Dynamic shared memory a launch requests: the storage plus room to align
// its start to 1024 bytes (the swizzle atoms').
template <typename Tr>
inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage<Tr>)) + 1024;
static_assert(kSharedBytes<Traits<uint16_t, 128>> <= 227 * 1024, "fits an H100 SM's shared memory");
static_assert(kSharedBytes<Traits<uint16_t, 256>> <= 227 * 1024, "fits an H100 SM's shared memory");
static_assert(kSharedBytes<Traits<uint16_t, 128, uint8_t>> <= 227 * 1024,
              "fits an H100 SM's shared memory");
static_assert(kSharedBytes<Traits<uint16_t, 256, uint8_t>> <= 227 * 1024,
              "fits an H100 SM's shared memory");

// Element (row, col) of a panelled, swizzled tile of `rows` rows: byte offset.
__host__ __device__ constexpr int swizzled_offset(int rows, int row, int col) {
  return (col / kPanelElems) * rows * kPanelRowBytes + row * kPanelRowBytes +
         ((((col % kPanelElems) / 8) ^ (row % 8)) * 16) + (col % 8) * 2;
}

// The unit a CTA runs: rows [row_begin, row_end) of a request (rows of the
// request, GQA-packed) against its KV positions [kv_begin, kv_end).
struct Unit {
  int qo_begin;  // the request's first query token in q / out
  int qo_len;
  int kv_start;  // ragged: the request's first K/V token; paged: first kv_indices entry
  int kv_len;
  int row_begin;
  int row_end;
  int kv_begin;
  int kv_end;
  int partial_index;  // -1: write out / lse
  int mask_byte_begin;
};

// The K/V tiles a unit runs: from the window start of its first row (tile
// aligned to the unit's kv_begin) to the causal diagonal of its last row.
struct UnitTiles {
  int kv_begin;
  int kv_end;
  int num_tiles;
  int unmasked_end;  // positions below need no per-element mask
};

}  // namespace tessera::prefill_sm90
