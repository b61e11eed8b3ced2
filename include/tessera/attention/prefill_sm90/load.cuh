// The producer warpgroup: Q of each unit through TMA, then the unit's K/V
// tiles into the stage ring in the order the consumers use them (K of tile
// t, then V of tile t - 1: S of tile t is issued before P V of tile t - 1),
// each stage's "full" barrier completing when the tile has landed and its
// "empty" barrier when both consumer warpgroups are done with it.
//   TmaKvLoader: contiguous K/V (single prefill, ragged batch): one thread
//     issues a bulk tensor copy per 64-column panel; the barrier counts bytes.
//   GatherKvLoader: paged K/V (any page size): the 128 producer threads
//     publish a tile's row offsets (one page-id load per row) with its K,
//     then copy 16-byte chunks with cp.async into the swizzled layout; each
//     thread waits for a copy once it has issued the next one (across
//     units too), fences it for the wgmma (async proxy) and arrives. fp8
//     K/V: the chunks land unswizzled in a staging buffer (two alternate)
//     and each thread widens the ones it copied into the tile when it
//     lands them (no barrier: a thread reads only its own copies).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/tma.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/attention/fp8_widen.cuh"
#include "tessera/attention/prefill_sm90/traits.cuh"

namespace tessera::prefill_sm90 {

// Q rows [row_begin, row_begin + 128) of a unit into Q buffer `buffer`:
// g = rows_per_token heads of 128 / g tokens, one box per 64-column panel.
template <typename Tr>
__device__ __forceinline__ void load_q(SharedStorage<Tr>& s, int buffer,
                                       const sm90::TensorMap* q_map, const Unit& u, int head_base,
                                       int rows_per_token) {
  sm90::barrier_arrive_expect_bytes(&s.q_full[buffer], Tr::kQBytes);
  const int token0 = u.qo_begin + u.row_begin / rows_per_token;
#pragma unroll
  for (int p = 0; p < Tr::kPanels; ++p) {
    sm90::tma_load_3d(s.q[buffer] + p * Tr::kQPanelBytes, q_map, p * kPanelElems, head_base,
                      token0, &s.q_full[buffer]);
  }
}

// Where the producer stands in its rings; lives across units.
template <int kStages>
struct ProducerRings {
  sm90::RingPosition<kStages> k;
  sm90::RingPosition<kStages> v;
  int next_table = 0;           // gather: the row table the next K tile publishes into
  uint64_t* pending = nullptr;  // gather: the full barrier of the copy not yet landed
  unsigned char* pending_tile = nullptr;  // gather, fp8: the tile it widens into
  int pending_staging = 1;                // gather, fp8: its staging buffer
};

// A unit's loads in the consumers' order: K0, K1, V0, K2, V1, ..., V(n-1).
template <typename Loader, int kStages>
__device__ __forceinline__ void load_unit(const Loader& loader, ProducerRings<kStages>& rings,
                                          int num_tiles) {
  int previous_table = 0;
  for (int t = 0; t < num_tiles; ++t) {
    const int table = loader.load_k(t, rings);
    if (t > 0) loader.load_v(t - 1, previous_table, rings);
    previous_table = table;
  }
  if (num_tiles > 0) loader.load_v(num_tiles - 1, previous_table, rings);
}

template <typename Tr>
struct TmaKvLoader {
  SharedStorage<Tr>& s;
  const sm90::TensorMap* k_map;
  const sm90::TensorMap* v_map;
  int kv_head;
  int first_token;  // of the unit's first tile

  __device__ __forceinline__ void load_tile(bool value, sm90::RingPosition<Tr::kStages>& ring,
                                            int t) const {
    uint64_t* const full = value ? &s.v_full[ring.slot] : &s.k_full[ring.slot];
    sm90::barrier_wait(value ? &s.v_empty[ring.slot] : &s.k_empty[ring.slot], ring.parity ^ 1u);
    unsigned char* const tile = value ? s.v[ring.slot] : s.k[ring.slot];
    sm90::barrier_arrive_expect_bytes(full, Tr::kKvTileBytes);
#pragma unroll
    for (int p = 0; p < Tr::kPanels; ++p) {
      sm90::tma_load_3d(tile + p * Tr::kKvPanelBytes, value ? v_map : k_map, p * kPanelElems,
                        kv_head, first_token + t * Tr::kBlockN, full);
    }
    ring.advance();
  }
  // One thread (the caller's elected one) runs these.
  __device__ __forceinline__ int load_k(int t, ProducerRings<Tr::kStages>& rings) const {
    load_tile(false, rings.k, t);
    return 0;
  }
  __device__ __forceinline__ void load_v(int t, int /*table*/,
                                         ProducerRings<Tr::kStages>& rings) const {
    load_tile(true, rings.v, t);
  }
};

template <typename Tr>
struct GatherKvLoader {
  using T = typename Tr::T;
  using KVT = typename Tr::KVT;
  static constexpr bool kFp8 = Tr::kFp8Kv;
  static constexpr int kChunkElems = 16 / static_cast<int>(sizeof(KVT));
  static constexpr int kChunks = Tr::kHeadDim / kChunkElems;  // 16-byte chunks per row
  static_assert(128 % kChunks == 0, "whole rows per pass");
  static constexpr int kRowStep = 128 / kChunks;
  static constexpr int kRowsPerThread = Tr::kBlockN / kRowStep;
  SharedStorage<Tr>& s;
  prefill::PagedKvRows<KVT> kv;  // the request's pages, this KV head
  int kv_begin;                  // the unit's first tile position
  int kv_end;

  // This thread's chunk of its row i (fp8: where it lands in staging).
  __device__ __forceinline__ static int own_chunk() {
    return static_cast<int>(threadIdx.x) % kChunks;
  }
  __device__ __forceinline__ static int own_row(int i) {
    return static_cast<int>(threadIdx.x) % 128 / kChunks + i * kRowStep;
  }
  __device__ __forceinline__ static int staging_offset(int i) {
    return (own_row(i) * kChunks + own_chunk()) * 16;
  }

  // 16-bit K/V into the swizzled tile; fp8 into staging buffer `staging`.
  // The row offsets are read four rows at a time through 32-bit shared
  // addresses before their copies (a copy's asm is a memory clobber: an
  // offset read between copies would wait for its load each time), and
  // rows kRowStep apart share one swizzle where kRowStep is a multiple of
  // the swizzle period, so their destinations are a base plus constants.
  __device__ __forceinline__ void copy_tile(unsigned char* tile, int staging, const KVT* base,
                                            const uint32_t* table, int rows_left) const {
    constexpr int kBatch = 4;
    static_assert(kRowsPerThread % kBatch == 0, "whole batches of rows");
    constexpr bool kOneSwizzle = kFp8 || kRowStep % 8 == 0;
    const int chunk = own_chunk();
    uint32_t destination0;
    if constexpr (kFp8) {
      destination0 = sm80::shared_address(s.staging.buffer[staging]) + staging_offset(0);
    } else {
      destination0 = sm80::shared_address(tile) +
                     static_cast<uint32_t>(swizzled_offset(Tr::kBlockN, own_row(0), chunk * 8));
    }
    constexpr int kDestinationStep = kFp8 ? kRowStep * kChunks * 16 : kRowStep * kPanelRowBytes;
    const uint32_t table_address = sm80::shared_address(table) + own_row(0) * 4;
    const char* const source0 = reinterpret_cast<const char*>(base + chunk * kChunkElems);
    // Partly unrolled: the producer runs on kProducerRegisters registers.
#pragma unroll 1
    for (int i0 = 0; i0 < kRowsPerThread; i0 += kBatch) {
      uint32_t offset[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        offset[j] = sm80::load_shared_4(table_address + (i0 + j) * kRowStep * 4);
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int i = i0 + j;
        const bool valid = own_row(i) < rows_left;
        const KVT* const source = reinterpret_cast<const KVT*>(
            source0 + static_cast<uint64_t>(valid ? offset[j] : 0u) * kv.units.bytes);
        uint32_t destination;
        if constexpr (kOneSwizzle) {
          destination = destination0 + static_cast<uint32_t>(i * kDestinationStep);
        } else {
          destination = sm80::shared_address(tile) + static_cast<uint32_t>(swizzled_offset(
                                                         Tr::kBlockN, own_row(i), chunk * 8));
        }
        sm80::cp_async_16_zfill(destination, source, valid);
      }
    }
  }

  // fp8: the chunks this thread copied into `staging` (landed), widened
  // into the tile's swizzled layout; zero-filled rows stay zeros. The
  // thread's rows are kRowStep apart, a multiple of the swizzle period, so
  // every row has the same swizzle: each address is a base plus a constant.
  __device__ __forceinline__ static void widen_own(SharedStorage<Tr>& s, int staging,
                                                   unsigned char* tile) {
    static_assert(kRowStep % 8 == 0, "one swizzle for all of a thread's rows");
    const int chunk = own_chunk();
    const uint32_t from = sm80::shared_address(s.staging.buffer[staging]) + staging_offset(0);
    const uint32_t to = sm80::shared_address(tile);
    const uint32_t to_low = to + swizzled_offset(Tr::kBlockN, own_row(0), chunk * 16);
    const uint32_t to_high = to + swizzled_offset(Tr::kBlockN, own_row(0), chunk * 16 + 8);
#pragma unroll 2
    for (int i = 0; i < kRowsPerThread; ++i) {
      const uint4 narrow = sm80::load_shared_16(from + i * kRowStep * kChunks * 16);
      uint4 low;
      uint4 high;
      attention::widen_fp8_chunk<T, KVT>(narrow, low, high);
      sm80::store_shared_16(to_low + i * kRowStep * kPanelRowBytes, low);
      sm80::store_shared_16(to_high + i * kRowStep * kPanelRowBytes, high);
    }
  }

  // The pending copy (its cp.async group complete): widened if fp8, fenced
  // for the async proxy, arrived on its full barrier.
  __device__ __forceinline__ static void land_pending(SharedStorage<Tr>& s,
                                                      ProducerRings<Tr::kStages>& rings) {
    if constexpr (kFp8) widen_own(s, rings.pending_staging, rings.pending_tile);
    sm90::fence_shared_to_async();
    sm90::barrier_arrive(rings.pending);
  }

  // Commits this copy, then lands the one before it: waits for this
  // thread's part, fences it for the async proxy and arrives.
  __device__ __forceinline__ void commit_and_land_previous(
      uint64_t* full, unsigned char* tile, int staging, ProducerRings<Tr::kStages>& rings) const {
    sm80::cp_async_commit();
    if (rings.pending != nullptr) {
      sm80::cp_async_wait_group<1>();
      land_pending(s, rings);
    }
    rings.pending = full;
    rings.pending_tile = tile;
    rings.pending_staging = staging;
  }

  // Copy into the tile: 16-bit K/V straight into it, fp8 into the staging
  // buffer the pending copy does not use.
  __device__ __forceinline__ void copy(unsigned char* tile, uint64_t* full, const KVT* base,
                                       const uint32_t* table, int rows_left,
                                       ProducerRings<Tr::kStages>& rings) const {
    const int staging = kFp8 ? rings.pending_staging ^ 1 : 0;
    copy_tile(tile, staging, base, table, rows_left);
    commit_and_land_previous(full, tile, staging, rings);
  }

  // All 128 producer threads run these. The row table of tile t is written
  // with its K and read again by its V copy, issued after tile t + 1's K; a
  // table is rewritten three K tiles later, when every thread has passed the
  // named barrier of the tile between (so its reads of it are done).
  __device__ __forceinline__ int load_k(int t, ProducerRings<Tr::kStages>& rings) const {
    const int tid = static_cast<int>(threadIdx.x) % 128;
    const int pos0 = kv_begin + t * Tr::kBlockN;
    // One row of the tile per thread (kBlockN <= 128 rows).
    const int32_t page = tid < Tr::kBlockN ? kv.page_of(pos0 + tid, kv_end) : 0;
    const int table = rings.next_table;
    rings.next_table = table + 1 == Tr::kRowTables ? 0 : table + 1;
    sm90::RingPosition<Tr::kStages>& ring = rings.k;
    sm90::barrier_wait(&s.k_empty[ring.slot], ring.parity ^ 1u);
    if (tid < Tr::kBlockN) s.row_table[table][tid] = kv.units_from_start(page, pos0 + tid);
    __syncwarp();  // bar.sync is .aligned: lanes left the mbarrier spin (and thread 0 the Q load) apart
    sm90::named_barrier_sync(kProducerBarrier, 128);
    copy(s.k[ring.slot], &s.k_full[ring.slot], kv.k_data, s.row_table[table], kv_end - pos0,
         rings);
    ring.advance();
    return table;
  }
  __device__ __forceinline__ void load_v(int t, int table,
                                         ProducerRings<Tr::kStages>& rings) const {
    sm90::RingPosition<Tr::kStages>& ring = rings.v;
    sm90::barrier_wait(&s.v_empty[ring.slot], ring.parity ^ 1u);
    copy(s.v[ring.slot], &s.v_full[ring.slot], kv.v_data, s.row_table[table],
         kv_end - kv_begin - t * Tr::kBlockN, rings);
    ring.advance();
  }

  // After the last unit: lands the copy still pending.
  __device__ __forceinline__ static void finish(SharedStorage<Tr>& s,
                                                ProducerRings<Tr::kStages>& rings) {
    if (rings.pending != nullptr) {
      sm80::cp_async_wait_group<0>();
      land_pending(s, rings);
      rings.pending = nullptr;
    }
  }
};

}  // namespace tessera::prefill_sm90
