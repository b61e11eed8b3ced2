// The Hopper MLA kernel's producer warpgroup: takes the CTA's jobs (work
// units of the plan) from the schedule's counter and gathers each job's Q
// rows and K/V latent rows with cp.async, two threads per row (36 chunks of
// 16 bytes each), every thread's copies arriving on the slot's full barrier
// as they land (kQFullArrivals: those plus thread 0's arrival after it wrote
// the job index). Any page size: a row's page id is read per tile.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/atomic>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/attention/mla/traits_sm90.cuh"

namespace tessera::mla_sm90 {

inline constexpr uint32_t kQFullArrivals = 128 + 1;
inline constexpr uint32_t kKvFullArrivals = 128;

// The CTA's next job from the plan's counter (one thread), or -1.
template <typename T>
__device__ __forceinline__ int take_job(const Params<T>& p) {
  cuda::atomic_ref<int32_t, cuda::thread_scope_device> next(p.job_counters[0]);
  const int job = next.fetch_add(1, cuda::std::memory_order_relaxed);
  return job < p.schedule.header->num_work_units ? job : -1;
}

// After the CTA's last job (one thread): the last CTA resets the counters
// for the next launch (a captured graph replays them from 0).
template <typename T>
__device__ __forceinline__ void finish_cta(const Params<T>& p) {
  cuda::atomic_ref<int32_t, cuda::thread_scope_device> next(p.job_counters[0]);
  cuda::atomic_ref<int32_t, cuda::thread_scope_device> finished(p.job_counters[1]);
  if (finished.fetch_add(1, cuda::std::memory_order_acq_rel) == static_cast<int>(gridDim.x) - 1) {
    next.store(0, cuda::std::memory_order_relaxed);
    finished.store(0, cuda::std::memory_order_relaxed);
  }
}

// This thread's 36 chunks of a 576-wide row (ckv / q_nope chunks 0 .. 63,
// then kpe / q_pe 64 .. 71) into `tile`; zeros when !valid.
template <typename T>
__device__ __forceinline__ void copy_row_half(uint32_t tile, int row, int half, const T* wide,
                                              const T* narrow, bool valid) {
  constexpr int kHalf = kChunksPerRow / 2;
#pragma unroll 4
  for (int i = 0; i < kHalf; ++i) {
    const int chunk = half * kHalf + i;
    const T* source = chunk < kDimCkv / 8 ? wide + chunk * 8 : narrow + (chunk - kDimCkv / 8) * 8;
    sm80::cp_async_16_zfill(tile + chunk_offset(row, chunk), source, valid);
  }
}

template <typename T>
__device__ __forceinline__ void produce(SharedStorage& s, const Params<T>& p) {
  const int tid = static_cast<int>(threadIdx.x) % 128;
  const int row = tid / 2;  // the tile row this thread copies half of
  const int half = tid % 2;
  const bool causal = p.schedule.header->causal != 0;
  const uint32_t q_tile = sm80::shared_address(s.q);
  sm90::RingPosition<kStages> ring;
  for (int j = 0;; ++j) {
    // Job j once the consumers' last S of job j - 1 read Q.
    sm90::barrier_wait(&s.q_empty, (j & 1) ^ 1u);
    if (tid == 0) {
      // Written before an ordinary arrival (release) on Q full, which the
      // consumers' wait acquires; the copies' arrivals order no such write.
      *static_cast<volatile int32_t*>(&s.job[j & 1]) = take_job(p);
      sm90::barrier_arrive(&s.q_full);
    }
    __syncwarp();  // bar.sync is .aligned: lanes may leave the spin and branch above apart
    sm90::named_barrier_sync(prefill_sm90::kProducerBarrier, 128);
    const int job = *static_cast<volatile int32_t*>(&s.job[j & 1]);
    if (job < 0) {
      sm90::barrier_arrive(&s.q_full);  // no copies: the consumers see -1 and stop
      return;
    }
    const PrefillWorkUnit u = p.schedule.work_units[job];
    {
      const int r = u.qo_tile_begin + row;
      const bool valid = row < u.qo_rows;
      const int token = valid ? u.qo_begin + r / p.num_heads : 0;
      const int head = valid ? r % p.num_heads : 0;
      copy_row_half(q_tile, row, half,
                    p.q_nope + token * p.q_nope_stride_token + head * p.q_nope_stride_head,
                    p.q_pe + token * p.q_pe_stride_token + head * p.q_pe_stride_head, valid);
      sm90::barrier_arrive_when_copies_land(&s.q_full);
    }
    const UnitSpan span = unit_span(u, p.num_heads, causal);
    for (int t = 0; t < span.num_tiles; ++t) {
      sm90::barrier_wait(&s.kv_empty[ring.slot], ring.parity ^ 1u);
      const int position = span.kv_begin + t * kBlockN + row;
      const bool valid = position < span.kv_end;
      const int64_t page = valid ? p.kv_indices[u.kv_start + position / p.page_size] : 0;
      const int64_t entry = valid ? position % p.page_size : 0;
      copy_row_half(sm80::shared_address(s.kv[ring.slot]), row, half,
                    p.ckv + page * p.ckv_stride_page + entry * p.ckv_stride_entry,
                    p.kpe + page * p.kpe_stride_page + entry * p.kpe_stride_entry, valid);
      sm90::barrier_arrive_when_copies_land(&s.kv_full[ring.slot]);
      ring.advance();
    }
  }
}

}  // namespace tessera::mla_sm90
