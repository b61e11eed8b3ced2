// The Hopper (sm_90a) prefill kernel, FA3-style: warpgroup 0 produces (Q by
// TMA; K/V by TMA or a row gather, load.cuh), warpgroups 1 and 2 consume 64
// query rows each (mainloop.cuh, epilogue.cuh). A CTA runs jobs (Jobs: batch
// prefill takes them from a counter, one CTA per SM; single prefill has one
// per CTA); the producer takes each with its Q and passes its index with the
// Q buffer, and producer and consumers meet only at the barriers.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/atomic>

#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/tma.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/attention/prefill_sm90/epilogue.cuh"
#include "tessera/attention/prefill_sm90/load.cuh"
#include "tessera/attention/prefill_sm90/mainloop.cuh"
#include "tessera/attention/prefill_sm90/traits.cuh"

namespace tessera::prefill_sm90 {

// Kv: prefill::RaggedKv<T> (TMA; kv maps over [tokens, heads, D]) or
// prefill::PagedKv<T or fp8> (gather; Tr::KVT is its element). Single
// prefill is a batch of one request without a schedule (single_qo_len >= 0).
template <typename T, typename Kv>
struct Params {
  sm90::TensorMap q_map;  // [tokens, num_qo_heads, D], box (64, g, 128 / g)
  sm90::TensorMap k_map;  // contiguous K/V: [tokens, num_kv_heads, D], box (64, 1, kBlockN)
  sm90::TensorMap v_map;
  T* out;
  int64_t out_stride_token;
  int64_t out_stride_head;
  float* lse;  // null or [total_qo, num_qo_heads]
  Kv kv;
  int32_t num_qo_heads;
  int32_t heads_y;
  FastDivmod per_token;  // by rows_per_token (the GQA group; 1 in single prefill)
  int32_t group_size;    // num_qo_heads / num_kv_heads
  PrefillScheduleView schedule;
  int32_t* job_counters;  // batch: &schedule.header->next_job (next_job, finished_ctas)
  int32_t single_qo_len;  // >= 0: single prefill of this many queries (no schedule)
  int32_t single_kv_len;
  bool single_causal;
  const uint8_t* custom_mask;
  attention::VariantParams variant;
};

// A CTA's jobs, one (unit, head) pair each. Batch prefill: taken one at a
// time from the plan's counter (header.next_job) over its units, heaviest
// first, head by head (job k: unit k % units of head k / units), so the CTAs
// resident at once share a head's K/V in L2 and a CTA loads its next job's Q
// and K/V while it computes the current one. Single prefill: one job per
// CTA, q tile x reversed (the longest causal tiles first) of qo head y.
template <typename T, typename Kv>
struct Jobs {
  const Params<T, Kv>& p;

  __device__ __forceinline__ bool single() const { return p.single_qo_len >= 0; }
  // The CTA's j-th job (j = 0, 1, ... in order, from one thread), or -1.
  __device__ __forceinline__ int take(int j) const {
    if (single()) {
      const int tile = static_cast<int>(gridDim.x - 1 - blockIdx.x);
      return j == 0 ? static_cast<int>(blockIdx.y * gridDim.x) + tile : -1;
    }
    cuda::atomic_ref<int32_t, cuda::thread_scope_device> next(p.job_counters[0]);
    const int job = next.fetch_add(1, cuda::std::memory_order_relaxed);
    return job < p.schedule.header->num_work_units * p.heads_y ? job : -1;
  }
  // Called once per CTA after its last job: the last CTA to finish resets
  // the counters for the next launch (every CTA has taken its last job by
  // then: each took it before its consumers saw the end).
  __device__ __forceinline__ void finish_cta() const {
    if (single()) return;
    cuda::atomic_ref<int32_t, cuda::thread_scope_device> next(p.job_counters[0]);
    cuda::atomic_ref<int32_t, cuda::thread_scope_device> finished(p.job_counters[1]);
    const int ctas = static_cast<int>(gridDim.x * gridDim.y);
    if (finished.fetch_add(1, cuda::std::memory_order_acq_rel) == ctas - 1) {
      next.store(0, cuda::std::memory_order_relaxed);
      finished.store(0, cuda::std::memory_order_relaxed);
    }
  }
  __device__ __forceinline__ int units() const {
    return single() ? static_cast<int>(gridDim.x) : p.schedule.header->num_work_units;
  }
  // Head index y of a job: the KV head (batch, GQA-packed rows) or the qo head (single).
  __device__ __forceinline__ int head_y(int job) const { return job / units(); }
  __device__ __forceinline__ int head_base(int job) const {
    const int y = head_y(job);
    return single() ? y : y * static_cast<int>(p.per_token.divisor);
  }
  __device__ __forceinline__ int kv_head(int job) const {
    const int y = head_y(job);
    return single() ? y / p.group_size : y;
  }
  __device__ __forceinline__ bool causal() const {
    return single() ? p.single_causal : p.schedule.header->causal != 0;
  }
  __device__ __forceinline__ Unit unit(int job) const {
    const int index = job % units();
    if (single()) {
      const int row0 = index * kBlockM;
      return {0,    p.single_qo_len,
              0,    p.single_kv_len,
              row0, min(row0 + kBlockM, p.single_qo_len),
              0,    p.single_kv_len,
              -1,   0};
    }
    const PrefillWorkUnit w = p.schedule.work_units[index];
    return {w.qo_begin,       w.qo_len,        w.kv_start,
            w.kv_len,         w.qo_tile_begin, w.qo_tile_begin + w.qo_rows,
            w.kv_begin,       w.kv_end,        w.partial_index,
            w.mask_byte_begin};
  }
};

// The job of the CTA's j-th Q buffer use (-1: none): consumers wait for its
// Q to land (the job index is written before), the K/V loaders only for the
// index.
template <typename Tr>
__device__ __forceinline__ int wait_job(SharedStorage<Tr>& s, int j, bool with_q) {
  const int buffer = j % Tr::kQBuffers;
  sm90::barrier_wait(with_q ? &s.q_full[buffer] : &s.job_full[buffer], (j / Tr::kQBuffers) & 1);
  return *static_cast<volatile int32_t*>(&s.job[buffer]);
}

template <typename Variant, typename T>
__device__ __forceinline__ UnitTiles unit_tiles(const Unit& u, const prefill::QueryRows<T>& rows,
                                                const attention::VariantParams& params, bool causal,
                                                int block_n) {
  const int delta = u.kv_len - u.qo_len;
  const int first_pos = delta + rows.token(u.row_begin);
  const int last_pos = delta + rows.token(u.row_end - 1);
  UnitTiles tiles;
  tiles.kv_end = causal ? min(u.kv_end, last_pos + 1) : u.kv_end;
  const Variant first(params, rows.head(u.row_begin), first_pos);
  tiles.kv_begin = max(u.kv_begin, first.first_kv_position());
  tiles.num_tiles =
      tiles.kv_end > tiles.kv_begin ? (tiles.kv_end - tiles.kv_begin + block_n - 1) / block_n : 0;
  tiles.unmasked_end = causal ? min(tiles.kv_end, first_pos + 1) : tiles.kv_end;
  return tiles;
}

template <typename T, typename Kv>
__device__ __forceinline__ prefill::QueryRows<T> query_rows(const Params<T, Kv>& p, const Unit&,
                                                            int head_base) {
  return {nullptr, 0, 0, p.per_token, head_base};
}

template <typename Tr, typename Variant, typename T, typename Kv, bool kCustomMask>
__device__ __forceinline__ void consume(SharedStorage<Tr>& s, const Params<T, Kv>& p,
                                        const Jobs<T, Kv>& jobs) {
  constexpr bool kSoftmax = Variant::kUseSoftmax;
  constexpr bool kFoldScale = kSoftmax && !Variant::kHasLogitsTransform;
  const int consumer = sm90::warpgroup_index() - 1;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = (static_cast<int>(threadIdx.x) / 32) % 4;
  const int g = lane / 4;
  const int t = lane % 4;
  const bool causal = jobs.causal();
  sm90::RingPosition<Tr::kStages> k_ring;
  sm90::RingPosition<Tr::kStages> v_ring;
  if (Tr::kTakeTurns && consumer == 1) pass_turn(consumer);  // consumer 0 goes first
  for (int i = 0;; ++i) {
    // The job comes with its Q (the producer takes it as it loads Q).
    // Broadcast from lane 0: the compiler then knows the job (and the loop
    // exit on it) to be warp-uniform and keeps the tile loop's descriptor
    // math on the uniform datapath (read from shared memory as it is, the
    // hot loop grew by 6% and the epilogue spilled).
    const int job = __shfl_sync(0xffffffffu, wait_job(s, i, true), 0);
    if (job < 0) break;
    const Unit u = jobs.unit(job);
    const int q_buffer = i % Tr::kQBuffers;
    const uint32_t q_base = sm80::shared_address(s.q[q_buffer]);
    const prefill::QueryRows<T> rows = query_rows(p, u, jobs.head_base(job));
    const UnitTiles tiles = unit_tiles<Variant>(u, rows, p.variant, causal, Tr::kBlockN);
    const int delta = u.kv_len - u.qo_len;
    RowContext<Variant, kCustomMask> rc{prefill::make_row_variants<Variant, 2>([&](int k) {
      const int r =
          min(u.row_begin + consumer * kConsumerRows + warp * 16 + g + 8 * k, u.row_end - 1);
      return Variant(p.variant, rows.head(r), delta + rows.token(r));
    })};
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int r = u.row_begin + consumer * kConsumerRows + warp * 16 + g + 8 * k;
      rc.pos[k] = delta + rows.token(r);
      rc.limit[k] = causal ? min(rc.pos[k] + 1, tiles.kv_end) : tiles.kv_end;
      rc.mask_row[k] = r < u.row_end ? static_cast<int64_t>(rows.token(r)) * u.kv_len : int64_t{-1};
    }
    rc.mask = kCustomMask ? p.custom_mask + u.mask_byte_begin : nullptr;
    rc.causal = causal;
    rc.q_scale = rc.var.v[0].query_scale();

    RowState<Tr> st;
    st.init();
    // Tile n's S = Q K^T is issued before tile n - 1's O += P V, and its
    // softmax runs while that P V is in flight (P of tile n - 1 stays in
    // registers until it completes); K slots are released a tile before
    // the V slot of the same stage.
    uint32_t pfrag[Tr::kPvSteps][4];
    // Logits, masks and softmax of a tile whose S landed; returns the
    // accumulators' rescale factors.
    const auto softmax_tile = [&](auto mask_tag, float(&sacc)[Tr::kSRegs], int tile,
                                  float(&factor)[2]) {
      constexpr bool kMask = decltype(mask_tag)::value;
      const int kv0 = tiles.kv_begin + tile * Tr::kBlockN;
      apply_logits<Tr, Variant, kCustomMask, kMask, kFoldScale>(sacc, rc, kv0, tiles.kv_end, t);
      if constexpr (kSoftmax) online_softmax<Tr, kFoldScale>(sacc, st, rc.q_scale, factor);
    };
    // The first tile has no P V before it (peeled, so that every wgmma
    // wait in the steady loop is unconditional and ptxas keeps the
    // wgmma pipelined).
    // Once the next K tile landed and in this warpgroup's turn (passed by
    // the caller after whatever else the turn issues): S = Q K^T of it.
    const auto issue_s_in_turn = [&](float(&sacc)[Tr::kSRegs]) {
      sm90::barrier_wait(&s.k_full[k_ring.slot], k_ring.parity);
      if constexpr (Tr::kTakeTurns) wait_turn(consumer);
      sm90::wgmma_fence();
      issue_qk<Tr>(sacc, opaque(q_base), opaque(sm80::shared_address(s.k[k_ring.slot])), consumer);
    };
    // S = Q K^T of the next K tile with nothing else in flight, waited for.
    const auto s_alone = [&](float(&sacc)[Tr::kSRegs]) {
      issue_s_in_turn(sacc);
      if constexpr (Tr::kTakeTurns) pass_turn(consumer);
      sm90::wgmma_wait<0>();
      sm90::fence_registers(sacc);
      release(&s.k_empty[k_ring.slot]);
      k_ring.advance();
    };
    const auto first_tile = [&](auto mask_tag) {
      float sacc[Tr::kSRegs];
      s_alone(sacc);
      float factor[2] = {1.f, 1.f};
      softmax_tile(mask_tag, sacc, 0, factor);
      pack_p<Tr>(sacc, pfrag);
    };
    const auto next_tile = [&](auto mask_tag, int tile) {
      float sacc[Tr::kSRegs];
      issue_s_in_turn(sacc);
      sm90::barrier_wait(&s.v_full[v_ring.slot], v_ring.parity);
      issue_pv<Tr>(st.o, pfrag, opaque(sm80::shared_address(s.v[v_ring.slot])));
      if constexpr (Tr::kTakeTurns) pass_turn(consumer);
      sm90::wgmma_wait<1>();
      sm90::fence_registers(sacc);
      release(&s.k_empty[k_ring.slot]);
      k_ring.advance();
      float factor[2] = {1.f, 1.f};
      softmax_tile(mask_tag, sacc, tile, factor);
      sm90::wgmma_wait<0>();
      sm90::fence_registers(st.o);
      sm90::fence_registers(pfrag);
      release(&s.v_empty[v_ring.slot]);
      v_ring.advance();
      rescale<Tr>(st.o, factor);
      pack_p<Tr>(sacc, pfrag);
    };
    // P V of the tile whose P is in pfrag, waited for (last: the unit's last
    // tile, whose V rows past the keys a TMA box may have filled).
    const auto pv_tile = [&](bool last) {
      sm90::barrier_wait(&s.v_full[v_ring.slot], v_ring.parity);
      if constexpr (cuda::std::is_same_v<Kv, prefill::RaggedKv<T>>) {  // (the gather zero-fills)
        const int rows = tiles.kv_end - (tiles.kv_begin + (tiles.num_tiles - 1) * Tr::kBlockN);
        if (last && rows < Tr::kBlockN) zero_v_rows_from<Tr>(s.v[v_ring.slot], rows, consumer);
      }
      sm90::wgmma_fence();
      issue_pv<Tr>(st.o, pfrag, opaque(sm80::shared_address(s.v[v_ring.slot])));
      sm90::wgmma_wait<0>();
      sm90::fence_registers(st.o);
      sm90::fence_registers(pfrag);
      release(&s.v_empty[v_ring.slot]);
      v_ring.advance();
    };
    // Without the overlap: each tile's S, softmax, then its P V.
    const auto serial_tile = [&](auto mask_tag, int tile) {
      float sacc[Tr::kSRegs];
      s_alone(sacc);
      float factor[2] = {1.f, 1.f};
      softmax_tile(mask_tag, sacc, tile, factor);
      rescale<Tr>(st.o, factor);
      pack_p<Tr>(sacc, pfrag);
      pv_tile(tile + 1 == tiles.num_tiles);
    };
    int unmasked = 0;
    if constexpr (!Variant::kHasLogitsMask && !kCustomMask) {
      unmasked = tiles.unmasked_end > tiles.kv_begin
                     ? min(tiles.num_tiles, (tiles.unmasked_end - tiles.kv_begin) / Tr::kBlockN)
                     : 0;
    }
    if constexpr (Tr::kOverlapSoftmaxWithPv) {
      if (tiles.num_tiles > 0) {
        if (unmasked > 0) {
          first_tile(cuda::std::false_type{});
        } else {
          first_tile(cuda::std::true_type{});
        }
      }
      int tile = 1;
      for (; tile < unmasked; ++tile) next_tile(cuda::std::false_type{}, tile);
      for (; tile < tiles.num_tiles; ++tile) next_tile(cuda::std::true_type{}, tile);
      if (tiles.num_tiles > 0) pv_tile(true);  // the last tile's P V
    } else {
      int tile = 0;
      for (; tile < unmasked; ++tile) serial_tile(cuda::std::false_type{}, tile);
      for (; tile < tiles.num_tiles; ++tile) serial_tile(cuda::std::true_type{}, tile);
    }

    prefill::OutputRows<T> output{p.out + u.qo_begin * p.out_stride_token,
                                  p.out_stride_token,
                                  p.out_stride_head,
                                  p.lse == nullptr ? nullptr : p.lse + u.qo_begin * p.num_qo_heads,
                                  p.num_qo_heads,
                                  nullptr,
                                  nullptr,
                                  0,
                                  0};
    if (u.partial_index >= 0) {
      const int64_t first = static_cast<int64_t>(u.partial_index) * p.heads_y + jobs.head_y(job);
      output.partial_out = p.schedule.partial_out + first * Tr::kHeadDim;
      output.partial_lse = p.schedule.partial_lse + first;
      output.partial_stride = static_cast<int64_t>(p.heads_y) * Tr::kHeadDim;
      output.partial_lse_stride = p.heads_y;
    }
    write_unit_output<Tr, Variant, kFoldScale>(s.q[q_buffer], st, rc.var, rc.q_scale,
                                               p.variant.v_scale, rows, output, u, consumer);
    // The Q buffer (and this warp's staged output in it) may be reloaded.
    sm90::fence_shared_to_async();
    release(&s.q_empty[q_buffer]);
  }
}

template <typename Tr, typename Variant, typename T, typename Kv>
__device__ __forceinline__ void produce(SharedStorage<Tr>& s, const Params<T, Kv>& p,
                                        const Jobs<T, Kv>& jobs) {
  constexpr bool kGather = !cuda::std::is_same_v<Kv, prefill::RaggedKv<T>>;
  using Gather = GatherKvLoader<Tr>;
  const int rows_per_token = static_cast<int>(p.per_token.divisor);
  // Job j (taken only now, once the consumers are done with job j -
  // kQBuffers, so a CTA holds at most one job it has not started) and its Q
  // into buffer j % kQBuffers; -1 and no Q after the last.
  const auto take_and_load_q = [&](int j) {
    const int q_buffer = j % Tr::kQBuffers;
    sm90::barrier_wait(&s.q_empty[q_buffer], ((j / Tr::kQBuffers) & 1) ^ 1u);
    const int job = jobs.take(j);
    *static_cast<volatile int32_t*>(&s.job[q_buffer]) = job;
    sm90::barrier_arrive(&s.job_full[q_buffer]);
    if (job < 0) {
      sm90::barrier_arrive(&s.q_full[q_buffer]);  // completes the phase: no bytes
    } else {
      load_q<Tr>(s, q_buffer, &p.q_map, jobs.unit(job), jobs.head_base(job), rows_per_token);
    }
    return job;
  };
  // The K/V loaders' side: job j's index, and (one arrival per loading warp)
  // that they have read it, which the buffer's next take waits for: without
  // it a loader stalled before its wait could miss a whole phase when the
  // consumers run through jobs without K/V tiles.
  const auto job_for_kv = [&](int j) {
    const int job = wait_job(s, j, false);
    if constexpr (kGather) __syncwarp();
    if (threadIdx.x % 32 == 0) sm90::barrier_arrive(&s.q_empty[j % Tr::kQBuffers]);
    return job;
  };
  // Contiguous K/V: thread 32 (another warp) takes the jobs and loads their
  // Q as soon as a buffer is free, thread 0 their K/V; the rest of the
  // warpgroup is idle. The gather keeps both with thread 0 at each unit's
  // start (its Q wait needs the unit before last landed, which the unit
  // before's copies did).
  const bool elected = threadIdx.x == 0;
  if constexpr (!kGather) {
    if (threadIdx.x == 32) {
      for (int j = 0; take_and_load_q(j) >= 0; ++j) {
      }
    }
    if (!elected) return;
  }
  const bool causal = jobs.causal();
  ProducerRings<Tr::kStages> rings;
  for (int i = 0;; ++i) {
    if constexpr (kGather && Tr::kQBuffers == 1) {
      // One Q buffer: this unit's Q waits for the previous unit to finish,
      // whose last copy lands only once a later one is issued; land it now.
      if (i > 0) Gather::finish(s, rings);
    }
    if (kGather && elected) take_and_load_q(i);
    const int job = job_for_kv(i);
    if (job < 0) break;
    const Unit u = jobs.unit(job);
    const UnitTiles tiles = unit_tiles<Variant>(u, query_rows(p, u, jobs.head_base(job)),
                                                p.variant, causal, Tr::kBlockN);
    if constexpr (kGather) {
      if (tiles.num_tiles == 0) {
        // A copy lands only once a later one is issued, and the next unit's
        // Q waits for the previous unit to finish: a unit without tiles
        // lands what is pending itself (else that Q wait would deadlock).
        Gather::finish(s, rings);
        continue;
      }
      const Gather loader{s, p.kv.rows(u.kv_start, jobs.kv_head(job)), tiles.kv_begin,
                          tiles.kv_end};
      load_unit(loader, rings, tiles.num_tiles);
    } else {
      const TmaKvLoader<Tr> loader{s, &p.k_map, &p.v_map, jobs.kv_head(job),
                                   u.kv_start + tiles.kv_begin};
      load_unit(loader, rings, tiles.num_tiles);
    }
  }
  if constexpr (kGather) Gather::finish(s, rings);
}

// Whether the Hopper kernel runs a variant: softmax ones without q / k
// transforms (RoPE on the fly stays on FA2).
template <typename Variant>
inline constexpr bool kRunsVariant = Variant::kUseSoftmax && !Variant::kHasQueryKeyTransform;

// A JIT-compiled variant's Hopper kernel: the variant where the kernel runs
// it, else PlainVariant (a kernel never launched; the host sees from its
// lowered name that the user's type is absent).
template <typename Variant>
using JitVariantFor =
    cuda::std::conditional_t<kRunsVariant<Variant>, Variant, attention::PlainVariant>;

template <typename Tr, typename Variant, typename T, typename Kv, bool kCustomMask = false>
__global__ void __launch_bounds__(kThreads, 1)
    prefill_sm90_kernel(const __grid_constant__ Params<T, Kv> p) {
#if TESSERA_SM90A_ENABLED
  static_assert(!Variant::kHasQueryKeyTransform, "RoPE on the fly runs on the FA2 kernels");
  static_assert(cuda::std::is_same_v<typename Tr::KVT, typename Kv::Element>, "traits of Kv");
  extern __shared__ __align__(1024) unsigned char shared_raw[];
  auto& s = *reinterpret_cast<SharedStorage<Tr>*>((reinterpret_cast<uintptr_t>(shared_raw) + 1023) &
                                                  ~uintptr_t{1023});
  constexpr bool kGather = !cuda::std::is_same_v<Kv, prefill::RaggedKv<T>>;
  constexpr uint32_t kFullArrivals = kGather ? 128 : 1;
  constexpr uint32_t kEmptyArrivals = kConsumers * 4;  // lane 0 of each consumer warp
  // Q buffers: also the K/V loaders (thread 0, or lane 0 of each gathering warp).
  constexpr uint32_t kQEmptyArrivals = kEmptyArrivals + (kGather ? 4 : 1);
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < Tr::kQBuffers; ++i) {
      sm90::barrier_init(&s.job_full[i], 1);
      sm90::barrier_init(&s.q_full[i], 1);
      sm90::barrier_init(&s.q_empty[i], kQEmptyArrivals);
    }
#pragma unroll
    for (int i = 0; i < Tr::kStages; ++i) {
      sm90::barrier_init(&s.k_full[i], kFullArrivals);
      sm90::barrier_init(&s.v_full[i], kFullArrivals);
      sm90::barrier_init(&s.k_empty[i], kEmptyArrivals);
      sm90::barrier_init(&s.v_empty[i], kEmptyArrivals);
    }
    sm90::barrier_init_fence();
    sm90::tma_prefetch_map(&p.q_map);
    if constexpr (!kGather) {
      sm90::tma_prefetch_map(&p.k_map);
      sm90::tma_prefetch_map(&p.v_map);
    }
  }
  __syncthreads();
  const Jobs<T, Kv> jobs{p};
  if (sm90::warpgroup_index() == 0) {
    sm90::registers_decrease<kProducerRegisters>();
    produce<Tr, Variant>(s, p, jobs);
  } else {
    sm90::registers_increase<kConsumerRegisters>();
    consume<Tr, Variant, T, Kv, kCustomMask>(s, p, jobs);
    if (threadIdx.x == 128) jobs.finish_cta();
  }
#else
  __trap();  // built without sm_90a code: fail loudly rather than leave out unwritten
#endif
}

}  // namespace tessera::prefill_sm90
