// The Hopper (sm_90a) MLA kernel, first cut (docs/mla.md): warpgroup 0
// gathers Q and latent K/V rows (load_sm90.cuh); warpgroups 1 and 2 each
// compute the tile's S = Q K^T over all 576 values (both the same 64 rows:
// redundant, which costs the compute-bound rows ~35% of tensor time and
// nothing in memory-bound decode; sharing P through shared memory is the
// next step), the online softmax, and their own 256 columns of O += P V,
// with prefill_sm90's mainloop pieces. Split units write float32 partial
// rows for the prefill merge.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include "tessera/arch/sm80/mma.cuh"
#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/arch/sm90/wgmma.cuh"
#include "tessera/attention/mla/epilogue.cuh"
#include "tessera/attention/mla/load_sm90.cuh"
#include "tessera/attention/mla/traits_sm90.cuh"
#include "tessera/attention/prefill_sm90/mainloop.cuh"

namespace tessera::mla_sm90 {

template <typename T>
__device__ __forceinline__ void consume(SharedStorage& s, const Params<T>& p) {
  using Tr = Traits<T>;
  using prefill_sm90::opaque;
  const int consumer = sm90::warpgroup_index() - 1;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = (static_cast<int>(threadIdx.x) / 32) % 4;
  const int g = lane / 4;
  const int t = lane % 4;
  const bool causal = p.schedule.header->causal != 0;
  const uint32_t q_tile = sm80::shared_address(s.q);
  sm90::RingPosition<kStages> ring;
  for (int j = 0;; ++j) {
    sm90::barrier_wait(&s.q_full, j & 1);
    const int job = __shfl_sync(0xffffffffu, *static_cast<volatile int32_t*>(&s.job[j & 1]), 0);
    if (job < 0) break;
    // cp.async lands through the generic proxy and wgmma reads through the
    // async one: order them in the reading thread.
    sm90::fence_shared_to_async();
    const PrefillWorkUnit u = p.schedule.work_units[job];
    const UnitSpan span = unit_span(u, p.num_heads, causal);
    // This thread's rows g and g + 8 of its warp's 16 (tile rows) and the
    // KV positions each sees.
    int row[2];
    int limit[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      row[i] = warp * 16 + g + 8 * i;
      limit[i] = mla::row_kv_limit(u, span, row[i], p.num_heads, causal);
    }
    prefill_sm90::RowState<Tr> st;
    st.init();
    uint32_t pfrag[Tr::kPvSteps][4];
    if (span.num_tiles == 0) prefill_sm90::release(&s.q_empty);
    for (int tile = 0; tile < span.num_tiles; ++tile) {
      sm90::barrier_wait(&s.kv_full[ring.slot], ring.parity);
      sm90::fence_shared_to_async();
      const uint32_t kv_tile = sm80::shared_address(s.kv[ring.slot]);
      float sacc[Tr::kSRegs];
      sm90::wgmma_fence();
      prefill_sm90::issue_qk<Tr>(sacc, opaque(q_tile), opaque(kv_tile), 0);
      sm90::wgmma_wait<0>();
      sm90::fence_registers(sacc);
      if (tile + 1 == span.num_tiles) prefill_sm90::release(&s.q_empty);  // Q's last reader
      // Positions past a row's limit (and the zero-filled rows past kv_end).
      mla::mask_past_limits<kBlockN>(sacc, limit, span.kv_begin + tile * kBlockN, t);
      float factor[2] = {1.f, 1.f};
      prefill_sm90::online_softmax<Tr, true>(sacc, st, p.sm_scale_log2, factor);
      prefill_sm90::rescale<Tr>(st.o, factor);
      prefill_sm90::pack_p<Tr>(sacc, pfrag);
      sm90::wgmma_fence();
      prefill_sm90::issue_pv<Tr>(st.o, pfrag, opaque(kv_tile + consumer * (kOutColumns / 64) *
                                                                  kPanelBytes));
      sm90::wgmma_wait<0>();
      sm90::fence_registers(st.o);
      sm90::fence_registers(pfrag);
      prefill_sm90::release(&s.kv_empty[ring.slot]);
      ring.advance();
    }
    mla::write_rows(p, u, st.o, st.m, st.d, row, consumer * kOutColumns, consumer == 0, t);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
    mla_sm90_kernel(const __grid_constant__ Params<T> p) {
#if TESSERA_SM90A_ENABLED
  extern __shared__ __align__(1024) unsigned char shared_raw[];
  auto& s = *reinterpret_cast<SharedStorage*>((reinterpret_cast<uintptr_t>(shared_raw) + 1023) &
                                              ~uintptr_t{1023});
  constexpr uint32_t kEmptyArrivals = kConsumers * 4;  // lane 0 of each consumer warp
  if (threadIdx.x == 0) {
    sm90::barrier_init(&s.q_full, kQFullArrivals);
    sm90::barrier_init(&s.q_empty, kEmptyArrivals);
#pragma unroll
    for (int i = 0; i < kStages; ++i) {
      sm90::barrier_init(&s.kv_full[i], kKvFullArrivals);
      sm90::barrier_init(&s.kv_empty[i], kEmptyArrivals);
    }
    sm90::barrier_init_fence();
  }
  __syncthreads();
  if (sm90::warpgroup_index() == 0) {
    sm90::registers_decrease<prefill_sm90::kProducerRegisters>();
    produce(s, p);
  } else {
    sm90::registers_increase<prefill_sm90::kConsumerRegisters>();
    consume(s, p);
    if (threadIdx.x == 128) finish_cta(p);
  }
#else
  __trap();  // built without sm_90a code: never leave out unwritten silently
#endif
}

}  // namespace tessera::mla_sm90
