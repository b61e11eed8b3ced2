// The producer warpgroup: Q of each unit through TMA, then the unit's K/V
// tiles into the stage ring, each stage's "full" barrier completing when
// the tile has landed and its "empty" barrier when both consumer warpgroups
// are done with it.
//   TmaKvLoader: contiguous K/V (single prefill, ragged batch): one thread
//     issues a bulk tensor copy per 64-column panel; the barrier counts bytes.
//   GatherKvLoader: paged K/V (any page size) and block-sparse: the 128
//     producer threads publish a tile's row offsets (one page-id load per
//     row), then copy 16-byte chunks with cp.async into the swizzled layout;
//     each thread waits for its copies one tile later, fences them for the
//     wgmma (async proxy) and arrives.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/tma.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/attention/prefill_sm90/traits.cuh"

namespace tessera::prefill_sm90 {

inline constexpr int kProducerBarrier = 1;  // named barrier of the producer warpgroup

// Q rows [row_begin, row_begin + 128) of a unit: g = rows_per_token heads of
// 128 / g tokens, one box per 64-column panel.
template <typename Tr>
__device__ __forceinline__ void load_q(SharedStorage<Tr>& s, const sm90::TensorMap* q_map,
                                       const Unit& u, int head_base, int rows_per_token) {
  sm90::barrier_arrive_expect_bytes(&s.q_full, Tr::kQBytes);
  const int token0 = u.qo_begin + u.row_begin / rows_per_token;
#pragma unroll
  for (int p = 0; p < Tr::kPanels; ++p) {
    sm90::tma_load_3d(s.q + p * Tr::kQPanelBytes, q_map, p * kPanelElems, head_base, token0,
                      &s.q_full);
  }
}

template <typename Tr>
struct TmaKvLoader {
  static constexpr int kFullArrivals = 1;
  const sm90::TensorMap* k_map;
  const sm90::TensorMap* v_map;
  int kv_head;

  __device__ __forceinline__ void load_tile(SharedStorage<Tr>& s, bool value, int slot,
                                            int first_token) const {
    uint64_t* full = value ? &s.v_full[slot] : &s.k_full[slot];
    unsigned char* tile = value ? s.v[slot] : s.k[slot];
    sm90::barrier_arrive_expect_bytes(full, Tr::kKvTileBytes);
#pragma unroll
    for (int p = 0; p < Tr::kPanels; ++p) {
      sm90::tma_load_3d(tile + p * Tr::kKvPanelBytes, value ? v_map : k_map, p * kPanelElems,
                        kv_head, first_token, full);
    }
  }

  // Every tile of a unit; one thread (the caller's elected one) runs this.
  template <int kStages>
  __device__ __forceinline__ void load_unit(SharedStorage<Tr>& s, const Unit& u,
                                            const UnitTiles& tiles,
                                            sm90::RingPosition<kStages>& ring) const {
    for (int t = 0; t < tiles.num_tiles; ++t) {
      const int first_token = u.kv_start + tiles.kv_begin + t * Tr::kBlockN;
      sm90::barrier_wait(&s.k_empty[ring.slot], ring.parity ^ 1u);
      load_tile(s, false, ring.slot, first_token);
      sm90::barrier_wait(&s.v_empty[ring.slot], ring.parity ^ 1u);
      load_tile(s, true, ring.slot, first_token);
      ring.advance();
    }
  }
};

template <typename Tr, typename KVT>
struct GatherKvLoader {
  static constexpr int kFullArrivals = 128;
  static constexpr int kChunks = Tr::kHeadDim / 8;  // 16-byte chunks per row
  static_assert(128 % kChunks == 0, "whole rows per pass");
  static constexpr int kRowStep = 128 / kChunks;
  static constexpr int kRowsPerThread = Tr::kBlockN / kRowStep;
  prefill::PagedKvRows<KVT> kv;  // the request's pages, this KV head

  __device__ __forceinline__ void copy_tile(unsigned char* tile, const KVT* base,
                                            const uint32_t* table, int rows_left) const {
    const int tid = static_cast<int>(threadIdx.x) % 128;
    const int chunk = tid % kChunks;
    const int r0 = tid / kChunks;
    const uint32_t tile_address = sm80::shared_address(tile);
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
      const int r = r0 + i * kRowStep;
      const bool valid = r < rows_left;
      const KVT* source = reinterpret_cast<const KVT*>(
          reinterpret_cast<const char*>(base + chunk * 8) +
          static_cast<uint64_t>(valid ? table[r] : 0u) * kv.units.bytes);
      sm80::cp_async_16_zfill(
          tile_address + static_cast<uint32_t>(swizzled_offset(Tr::kBlockN, r, chunk * 8)), source,
          valid);
    }
  }

  // Tile t's copies are waited for (and announced) while tile t + 1's run.
  __device__ __forceinline__ static void land(SharedStorage<Tr>& s, int slot) {
    sm90::fence_shared_to_async();
    sm90::barrier_arrive(&s.k_full[slot]);
    sm90::barrier_arrive(&s.v_full[slot]);
  }

  // All 128 producer threads run this. Tile t's K copies are issued once
  // its K slot is free, then tile t - 1 lands, then tile t's V copies wait
  // for their slot: consumers free a V slot only after the next tile's
  // S = Q K^T (mainloop order), so tile t - 1 must land before that wait.
  template <int kStages>
  __device__ __forceinline__ void load_unit(SharedStorage<Tr>& s, const Unit& /*u*/,
                                            const UnitTiles& tiles,
                                            sm90::RingPosition<kStages>& ring) const {
    const int tid = static_cast<int>(threadIdx.x) % 128;
    int previous_slot = -1;
    for (int t = 0; t < tiles.num_tiles; ++t) {
      const int pos0 = tiles.kv_begin + t * Tr::kBlockN;
      const int32_t page = kv.page_of(pos0 + tid, tiles.kv_end);
      // (Every thread finished reading this slot's table two tiles ago: it
      // has passed the named barrier of the tile between.)
      sm90::barrier_wait(&s.k_empty[ring.slot], ring.parity ^ 1u);
      s.row_table[ring.slot][tid] = kv.units_from_start(page, pos0 + tid);
      sm90::named_barrier_sync(kProducerBarrier, 128);
      const int rows_left = tiles.kv_end - pos0;
      copy_tile(s.k[ring.slot], kv.k_data, s.row_table[ring.slot], rows_left);
      sm80::cp_async_commit();
      if (previous_slot >= 0) {
        sm80::cp_async_wait_group<1>();
        land(s, previous_slot);
      }
      sm90::barrier_wait(&s.v_empty[ring.slot], ring.parity ^ 1u);
      copy_tile(s.v[ring.slot], kv.v_data, s.row_table[ring.slot], rows_left);
      sm80::cp_async_commit();
      previous_slot = ring.slot;
      ring.advance();
    }
    if (previous_slot >= 0) {
      sm80::cp_async_wait_group<0>();
      land(s, previous_slot);
    }
  }
};

}  // namespace tessera::prefill_sm90
