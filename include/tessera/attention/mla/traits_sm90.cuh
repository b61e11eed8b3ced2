// The Hopper MLA kernel's shapes, shared memory and arguments (docs/mla.md).
// Rows of a tile are (token, head) pairs of one request, token-major (row =
// token x heads + head), 64 of them: the wgmma M. A K/V tile is 64 latent
// rows of 576 values (ckv 512 then kpe 64) stored as 9 panels of 64 values
// per 128-byte swizzled row, as the fa3 prefill stores its tiles; V is the
// ckv panels of the same tile. Consumer warpgroup c owns O columns [256 c,
// 256 c + 256). Q 72 KB + 2 K/V stages x 72 KB = 216 KB: one CTA per SM.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/attention/mla/params.cuh"
#include "tessera/attention/prefill_schedule.cuh"
#include "tessera/attention/prefill_sm90/traits.cuh"

namespace tessera::mla_sm90 {

using mla::kDimCkv;
using mla::kDimKpe;
using mla::kDimQk;
using mla::Params;
using mla::UnitSpan;
inline constexpr int kBlockM = 64;  // rows per tile
inline constexpr int kBlockN = 64;  // latent rows per K/V tile
inline constexpr int kStages = 2;
inline constexpr int kConsumers = 2;
inline constexpr int kThreads = (1 + kConsumers) * 128;
inline constexpr int kPanels = kDimQk / prefill_sm90::kPanelElems;  // 8 ckv + 1 kpe
inline constexpr int kPanelBytes = kBlockN * prefill_sm90::kPanelRowBytes;
inline constexpr int kTileBytes = kPanels * kPanelBytes;
inline constexpr int kChunksPerRow = kDimQk / 8;  // 16-byte chunks of a 576-wide row
inline constexpr int kOutColumns = kDimCkv / kConsumers;
static_assert(kBlockM == kBlockN, "Q and K/V tiles share the panel size");

// What prefill_sm90's mainloop pieces read of a traits type, for one
// consumer warpgroup: S = Q K^T over 576 (36 k-steps, N = kBlockN) and its
// half of O += P V (N = 256 = kHeadDim there, 4 k-steps of 16 positions).
template <typename T_>
struct Traits {
  using T = T_;
  static constexpr int kHeadDim = kOutColumns;
  static constexpr int kBlockN = mla_sm90::kBlockN;
  static constexpr int kKSteps = kDimQk / 16;
  static constexpr int kPvSteps = kBlockN / 16;
  static constexpr int kSRegs = kBlockN / 2;
  static constexpr int kORegs = kHeadDim / 2;
  static constexpr int kQPanelBytes = kPanelBytes;
  static constexpr int kKvPanelBytes = kPanelBytes;
};

// Barriers: Q full (its copies landed; the job index is written before)
// and empty (the consumers' last S of the job read it), K/V full / empty
// per stage. job[j % 2]: the index of the CTA's j-th job (-1: none), two
// slots so the producer never writes one a reader may not have read.
struct alignas(1024) SharedStorage {
  unsigned char q[kTileBytes];
  unsigned char kv[kStages][kTileBytes];
  uint64_t q_full;
  uint64_t q_empty;
  uint64_t kv_full[kStages];
  uint64_t kv_empty[kStages];
  int32_t job[2];
};

inline constexpr int kSharedBytes = static_cast<int>(sizeof(SharedStorage)) + 1024;
static_assert(kSharedBytes <= 227 * 1024, "fits an H100 SM's shared memory");

// A unit's K/V tiles in this kernel's tile size.
__device__ __forceinline__ mla::UnitSpan unit_span(const PrefillWorkUnit& u, int num_heads,
                                                   bool causal) {
  return mla::unit_span<kBlockN>(u, num_heads, causal);
}

// Byte offset of 16-byte chunk `chunk` (0 .. 71) of row `row` in a 64-row
// panelled, 128-byte swizzled tile.
__device__ __forceinline__ uint32_t chunk_offset(int row, int chunk) {
  return static_cast<uint32_t>((chunk / 8) * kPanelBytes + row * prefill_sm90::kPanelRowBytes +
                               (((chunk % 8) ^ (row % 8)) * 16));
}

}  // namespace tessera::mla_sm90
