// Decode attention over a paged KV cache: one query token per request.
//
// Computes, for request b and query head h of KV head g = h / group_size:
//   out[b, h] = sum_j softmax_j(logit_j) * (v_j * v_scale),  lse = log2-sum-exp2
// over the KV tokens [kv_begin, kv_end) of one DecodeWorkUnit, with logits
// shaped by the Variant (variant.cuh). A work unit with partial_index < 0
// writes out (q dtype) and lse; otherwise it writes its normalised float32
// partial (out, lse) to the schedule's workspace for the merge pass.
//
// Grid: units x num_kv_heads CTAs, unit-major (unit_grid.cuh): units is the
// plan's count, or max_work_units while a graph is captured; CTAs of units
// >= header->num_work_units exit at once (one captured graph serves any plan).
// Block: kThreads = 256. A head row of D elements is owned by
// kRowThreads = D / 8 threads (8 elements each; D = 80 / 96 / 112: the next
// power of two, 16, of which the last 6 / 4 / 2 hold no dims: zero q, no
// stores, so the shuffle sums keep their power-of-two shape); the
// remaining kLanes = 256 / kRowThreads "lanes" are split into (head slot) x (token lane). A
// thread keeps the query slice and softmax state of up to kMaxHeads query
// heads of the GQA group (a head slot), so each K/V slice it reads from
// shared memory is converted to float once and used for all of them; the
// instruction count per KV byte, not DRAM, bounds this kernel. Groups larger
// than kLanes * kMaxHeads run in rounds (each round re-reads the KV range).
// The token loop is compiled per head count (1..kMaxHeads, no per-head
// branches); a row's dot products are summed with one transposing butterfly
// for all (head, token) pairs of a step (plain and window variants), and a
// head's state is rescaled only when its running max grows.
// Pipeline: K and V tiles of kTileTokens rows (up to 8 KB each) gathered page by
// page (page = kv_indices[indptr[b] + t / page_size], slot = t % page_size,
// any page size >= 1, divided with a host-made multiply-shift) with 16-byte
// cp.async into kStages = 4 stages; a thread's page ids are loaded one tile
// ahead so the copy issue never waits on them. While a tile is computed,
// kStages - 1 tiles (48 KB) are in flight per CTA.
// Shared memory: kStages x 16 KB = 64 KB dynamic (the cross-lane merge at
// the end, a log2(token lanes) pairwise tree, reuses it). Two CTAs per SM
// (launch bounds: <= 128 registers for the per-head state), 96 KB in flight.
// Limits: D in {64, 80, 96, 112, 128, 256}; K/V rows 16-byte aligned (checked on the
// host); q/out accessed element-wise (any alignment); no output transform
// (split requests are finished by the merge pass, which would skip it).
// Non-softmax variants (kUseSoftmax false) weigh each token by its logit
// and write lse 0, so partial states sum (the merge runs in sum mode);
// transform_key must not depend on the query head
// (it runs once per key for all heads of a thread).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm90/grid_dependency.cuh"
#include "tessera/attention/decode_schedule.cuh"
#include "tessera/attention/kv_cache.cuh"
#include "tessera/attention/state.cuh"
#include "tessera/attention/unit_grid.cuh"
#include "tessera/attention/variant.cuh"
#include "tessera/core/fast_divmod.cuh"
#include "tessera/core/numeric.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::decode {

inline constexpr int kThreads = 256;
// 2 x 64 KB of stages per SM (96 KB in flight); caps registers at 128, room
// for the state of kMaxHeads query heads per thread.
inline constexpr int kMinCtasPerSm = 2;
inline constexpr int kStages = 4;
inline constexpr int kStageTensorBytes = 8192;  // one K (or V) tile of one stage
inline constexpr int kCopyBytes = 16;           // one cp.async
inline constexpr int kComputeVec = 8;           // elements of a head row per thread
// Query heads whose (q slice, m, d, o slice) one thread keeps in registers.
inline constexpr int kMaxHeads = 4;
// Tokens a thread scores before one (lazy) rescale of its state; one for
// variants whose per-head hooks need the registers (RoPE's rotation, soft
// cap + window: kMaxHeads copies of both parameters) to stay spill-free.
template <typename Variant>
inline constexpr int kTokensPerStep =
    Variant::kHasQueryKeyTransform || (Variant::kHasLogitsTransform && Variant::kHasLogitsMask)
        ? 1
        : 2;

template <typename QT_, typename KVT_, int kHeadDim_>
struct DecodeTraits {
  using QT = QT_;
  using KVT = KVT_;
  static constexpr int kHeadDim = kHeadDim_;
  // Threads holding dims, and threads per row (a power of two: the sums are
  // xor butterflies); threads dim_threads.. of a row are padding.
  static constexpr int kDimThreads = kHeadDim / kComputeVec;
  static constexpr int kRowThreads = kDimThreads <= 8 ? 8 : kDimThreads <= 16 ? 16 : 32;
  static constexpr int kLanes = kThreads / kRowThreads;
  static constexpr int kRowBytes = kHeadDim * static_cast<int>(sizeof(KVT));
  static constexpr int kTileTokens = kStageTensorBytes / kRowBytes;  // 8 KB or just under
  static constexpr int kChunksPerRow = kRowBytes / kCopyBytes;
  static constexpr int kElemsPerChunk = kCopyBytes / static_cast<int>(sizeof(KVT));
  static constexpr int kTileChunks = kTileTokens * kChunksPerRow;
  // Copy c of a thread is chunk tid + c * kThreads of the row-major tile;
  // with rows of 80 / 96 / 112 elements the last copy of some threads is
  // past the tile (kTileChunks % kThreads != 0) and copies nothing.
  static constexpr int kChunksPerThread = (kTileChunks + kThreads - 1) / kThreads;
  static constexpr int kSharedBytes = kStages * 2 * kStageTensorBytes;

  static_assert(kHeadDim == 64 || kHeadDim == 80 || kHeadDim == 96 || kHeadDim == 112 ||
                    kHeadDim == 128 || kHeadDim == 256,
                "head_dim 64, 80, 96, 112, 128 or 256");
  static_assert(kDimThreads * kComputeVec == kHeadDim, "a thread's slice is whole");
  static_assert(kDimThreads <= kRowThreads && kRowThreads <= 32 && 32 % kRowThreads == 0,
                "a head row sits inside one warp");
  static_assert(kRowBytes % kCopyBytes == 0, "rows are whole 16-byte chunks");
  static_assert(kTileTokens * kRowBytes <= kStageTensorBytes, "tiles fit a stage");
  static_assert(kTileTokens >= kLanes, "each token lane gets a token of every tile");
  static_assert(sizeof(KVT) * kComputeVec <= 16, "a thread's slice is one shared-memory load");
  // The cross-lane merge stores every lane's (o slice, m, d) in the stages.
  static_assert(kLanes * kMaxHeads * (kHeadDim + 2) * 4 <= kSharedBytes,
                "merge scratch fits the stages");
};

template <typename QT, typename KVT>
struct DecodeParams {
  const QT* __restrict__ q;
  int64_t q_stride_batch;
  int64_t q_stride_head;
  QT* __restrict__ out;
  int64_t out_stride_batch;
  int64_t out_stride_head;
  float* __restrict__ lse;  // null or [batch, num_qo_heads]
  PagedKVView<const KVT> kv;
  // A request's pages from kv_indices[work unit's page_begin] on (the work
  // unit carries its kv_indptr entry and KV length, decode_schedule.cuh).
  const int32_t* __restrict__ kv_indices;
  int32_t num_qo_heads;
  int32_t num_kv_heads;  // the grid's heads (unit_grid.cuh)
  int32_t group_size;    // num_qo_heads / num_kv_heads
  FastDivmod page_div;  // by kv.page_size
  DecodeScheduleView schedule;
  attention::VariantParams variant;
};

// Programmatic dependent launch (sm90; arch/sm90/grid_dependency.cuh): the
// decode kernels are launched as dependents of whatever kernel precedes them
// in the stream (the previous step's merge or decode, an append), so their
// CTAs are resident and have read their work unit when that kernel ends.
// Only the schedule may be read before the wait: plan() uploads it with a
// stream-ordered copy, which a kernel never runs beside (programmatic
// serialization applies between kernels only), and no kernel writes it. q,
// the KV cache, its page table and the variant's tensors may come from the
// kernel before, and out / lse / partials may still be read by it (the
// previous step's merge reads the partials this grid overwrites), so all of
// those wait. Returns whether this CTA has a work unit; CTA 0 waits even
// without one, so that this grid never finishes before the one before it
// (the kernel after this one waits for this grid only).
// A CTA lets the next kernel launch (allow_dependent_launch) once its KV
// reads are done, not at its start: the next kernel's CTAs are then placed
// on SMs that this grid is leaving. Let at the start, the next step's decode
// was placed beside this one's CTAs while they ran: 2 CTAs on some SMs and
// none on others (a 1-CTA-per-SM plan read 7% slower).
__device__ __forceinline__ bool wait_for_prior_grid_if_working(int unit,
                                                               const DecodeScheduleView& schedule) {
  const bool working = unit < schedule.header->num_work_units;
  if (working || blockIdx.x == 0) sm90::wait_for_prior_grid();
  return working;
}

// The Variants of a thread's query heads first_head + i, i < N (clamped to
// last_head, so a slot with fewer heads duplicates its last one). Indexed
// only with unrolled-loop constants, so it lives in registers.
template <typename Variant, int N>
struct HeadVariants {
  Variant first;
  HeadVariants<Variant, N - 1> rest;
  __device__ __forceinline__ HeadVariants(const attention::VariantParams& p, int first_head,
                                          int last_head, int q_pos)
      : first(p, min(first_head, last_head), q_pos), rest(p, first_head + 1, last_head, q_pos) {}
  __device__ __forceinline__ const Variant& operator[](int i) const {
    return i == 0 ? first : rest[i - 1];
  }
};
template <typename Variant>
struct HeadVariants<Variant, 1> {
  Variant first;
  __device__ __forceinline__ HeadVariants(const attention::VariantParams& p, int first_head,
                                          int last_head, int q_pos)
      : first(p, min(first_head, last_head), q_pos) {}
  __device__ __forceinline__ const Variant& operator[](int) const { return first; }
};

// One level of the transposing row reduction: threads kOffset apart swap
// halves, so each keeps kHalf values summed over twice as many threads.
template <int kRowThreads, int kValues, int kHalf>
__device__ __forceinline__ void transpose_sum_level(float (&y)[kValues], int tx) {
  if constexpr (kHalf >= 1) {
    constexpr int kOffset = kRowThreads * kHalf / kValues;
    const bool upper = (tx & kOffset) != 0;
#pragma unroll
    for (int i = 0; i < kHalf; ++i) {
      const float send = upper ? y[i] : y[i + kHalf];
      const float keep = upper ? y[i + kHalf] : y[i];
      y[i] = keep + __shfl_xor_sync(0xffffffffu, send, kOffset);
    }
    transpose_sum_level<kRowThreads, kValues, kHalf / 2>(y, tx);
  }
}

// Sums each of a thread's kValues partials over the kRowThreads threads of
// its row (aligned groups of a warp); every thread gets all kValues sums, the
// same bits in every thread. A power-of-two count up to kRowThreads uses a
// transposing butterfly: kValues - 1 + log2(kRowThreads / kValues) exchanges
// leave sum v in threads v * kRowThreads / kValues + [0, kRowThreads /
// kValues), then kValues broadcasts, instead of kValues * log2(kRowThreads)
// shuffles (16 instead of 32 for 4 heads x 2 tokens over 16 threads).
template <int kRowThreads, bool kAllowTransposed, int kValues>
__device__ __forceinline__ void row_sum(float (&x)[kValues], int tx) {
  if constexpr (kAllowTransposed && kValues >= 2 && (kValues & (kValues - 1)) == 0 &&
                kValues <= kRowThreads) {
    constexpr int kOwners = kRowThreads / kValues;  // threads left holding each sum
    transpose_sum_level<kRowThreads, kValues, kValues / 2>(x, tx);
    float total = x[0];
#pragma unroll
    for (int offset = kOwners / 2; offset > 0; offset /= 2) {
      total += __shfl_xor_sync(0xffffffffu, total, offset);
    }
#pragma unroll
    for (int v = 0; v < kValues; ++v) {
      x[v] = __shfl_sync(0xffffffffu, total, v * kOwners, kRowThreads);
    }
  } else {
#pragma unroll
    for (int v = 0; v < kValues; ++v) {
#pragma unroll
      for (int offset = kRowThreads / 2; offset > 0; offset /= 2) {
        x[v] += __shfl_xor_sync(0xffffffffu, x[v], offset);
      }
    }
  }
}

// Calls f(integral_constant<int, heads>) for 1 <= heads <= kMax.
template <int kMax, typename F>
__device__ __forceinline__ void dispatch_heads(int heads, F& f) {
  if constexpr (kMax > 1) {
    if (heads < kMax) {
      dispatch_heads<kMax - 1>(heads, f);
      return;
    }
  }
  f(cuda::std::integral_constant<int, kMax>{});
}

// Page ids of one tile's rows for this thread's chunks, loaded a tile ahead
// of their cp.async (the load latency hides behind a tile of compute).
template <typename Traits>
struct TilePages {
  int32_t page[Traits::kChunksPerThread];
  int32_t slot[Traits::kChunksPerThread];
};

// Tile row of copy c of this thread (constant divisions: shifts when the
// row's chunk count is a power of two).
template <typename Traits>
__device__ __forceinline__ int copy_row(int c) {
  return (static_cast<int>(threadIdx.x) + c * kThreads) / Traits::kChunksPerRow;
}
template <typename Traits>
__device__ __forceinline__ int copy_chunk(int c) {
  return (static_cast<int>(threadIdx.x) + c * kThreads) % Traits::kChunksPerRow;
}
// Whether copy c of this thread is inside the tile (always, but for the
// last copy at head_dim 80 / 96 / 112).
template <typename Traits>
__device__ __forceinline__ bool copy_in_tile(int c) {
  return Traits::kTileChunks % kThreads == 0 ||
         static_cast<int>(threadIdx.x) + c * kThreads < Traits::kTileChunks;
}

template <typename Traits, typename KVT>
__device__ __forceinline__ void fetch_pages(TilePages<Traits>& pages,
                                            const int32_t* __restrict__ kv_indices,
                                            int32_t page_begin, const FastDivmod& page_div,
                                            int tile_first_token, int kv_hi) {
#pragma unroll
  for (int c = 0; c < Traits::kChunksPerThread; ++c) {
    const int token = tile_first_token + copy_row<Traits>(c);
    const bool live = copy_in_tile<Traits>(c) && token < kv_hi;
    const int in_range = live ? token : 0;  // rows past kv_hi are zero-filled
    const int page_index = page_div.div(in_range);
    pages.slot[c] = in_range - page_index * static_cast<int>(page_div.divisor);
    pages.page[c] = live ? kv_indices[page_begin + page_index] : 0;
  }
}

// Issues the cp.async copies of one K/V tile (or zero-fills rows past the
// range, so the compute never reads stale or NaN data). Always commits a
// group, empty or not, so group counting stays uniform.
template <typename Traits, typename KVT>
__device__ __forceinline__ void issue_tile(const PagedKVView<const KVT>& kv,
                                           const TilePages<Traits>& pages, int64_t head_offset,
                                           int tile_first_token, int kv_hi,
                                           unsigned char* k_stage, unsigned char* v_stage) {
#pragma unroll
  for (int c = 0; c < Traits::kChunksPerThread; ++c) {
    if (!copy_in_tile<Traits>(c)) continue;
    const int shared_offset = (static_cast<int>(threadIdx.x) + c * kThreads) * kCopyBytes;
    if (tile_first_token + copy_row<Traits>(c) < kv_hi) {
      const int64_t offset = static_cast<int64_t>(pages.page[c]) * kv.stride_page +
                             static_cast<int64_t>(pages.slot[c]) * kv.stride_entry + head_offset +
                             copy_chunk<Traits>(c) * Traits::kElemsPerChunk;
      sm80::cp_async_16(k_stage + shared_offset, kv.k_data + offset);
      sm80::cp_async_16(v_stage + shared_offset, kv.v_data + offset);
    } else {
      *reinterpret_cast<uint4*>(k_stage + shared_offset) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(v_stage + shared_offset) = make_uint4(0, 0, 0, 0);
    }
  }
  sm80::cp_async_commit();
}

template <typename Traits, typename Variant>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    decode_kernel(const DecodeParams<typename Traits::QT, typename Traits::KVT> params) {
  using QT = typename Traits::QT;
  using KVT = typename Traits::KVT;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kRowThreads = Traits::kRowThreads;
  constexpr int kLanes = Traits::kLanes;
  constexpr int kTileTokens = Traits::kTileTokens;
  constexpr bool kSoftmax = Variant::kUseSoftmax;
  static_assert(!Variant::kHasOutputTransform, "split decode has no output-transform pass");

  extern __shared__ __align__(16) unsigned char shared[];

  const DecodeScheduleView& schedule = params.schedule;
  const attention::UnitHead cta = attention::unit_head_of_cta(params.num_kv_heads);
  if (!wait_for_prior_grid_if_working(cta.unit, schedule)) return;
  const DecodeWorkUnit unit = schedule.work_units[cta.unit];
  const int kv_head = cta.head;
  const int request = unit.request;
  const int32_t page_begin = unit.page_begin;
  const int kv_len = unit.kv_len;
  const int q_pos = kv_len - 1;  // the decode token follows the cache

  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % kRowThreads;
  const int lane = tid / kRowThreads;
  // Padding threads of a row (tx >= kDimThreads) read the last slice (in
  // bounds) with a zero query and store nothing.
  const bool holds_dims = tx < Traits::kDimThreads;
  const int dim0 = min(tx, Traits::kDimThreads - 1) * kComputeVec;
  const int group_size = params.group_size;
  const int64_t head_offset = static_cast<int64_t>(kv_head) * params.kv.stride_head;

  for (int head_base = 0; head_base < group_size; head_base += kLanes * kMaxHeads) {
    // Round layout (uniform over the CTA): `slots` head slots of `heads`
    // query heads each (the last slot may hold fewer), token_lanes lanes per slot.
    const int round_heads = min(group_size - head_base, kLanes * kMaxHeads);
    const int slots = (round_heads + kMaxHeads - 1) / kMaxHeads;
    const int heads = (round_heads + slots - 1) / slots;
    const int token_lanes = kLanes / slots;
    const int head_slot = lane % slots;
    const int token_lane = lane / slots;
    const bool active = token_lane < token_lanes;
    const int slot_first = head_slot * heads;  // within the round
    const int round_qo_base = kv_head * group_size + head_base;
    const HeadVariants<Variant, kMaxHeads> variants(params.variant, round_qo_base + slot_first,
                                                    round_qo_base + round_heads - 1, q_pos);

    // The query slices, pre-multiplied by the variant's scale (log2 units).
    FloatVec<kComputeVec> q[kMaxHeads];
    int first_kv = 0x7fffffff;
#pragma unroll
    for (int h = 0; h < kMaxHeads; ++h) {
      if (h < heads) {
        const int qo_head = round_qo_base + min(slot_first + h, round_heads - 1);
        const QT* q_row =
            params.q + request * params.q_stride_batch + qo_head * params.q_stride_head;
#pragma unroll
        for (int i = 0; i < kComputeVec; ++i) q[h][i] = to_float(q_row[dim0 + i]);
        if constexpr (Variant::kHasQueryKeyTransform) {
          variants[h].template transform_query<kHeadDim>(q[h], dim0, Traits::kDimThreads / 2);
        }
        const float scale = holds_dims ? variants[h].query_scale() : 0.f;
#pragma unroll
        for (int i = 0; i < kComputeVec; ++i) q[h][i] *= scale;
        first_kv = min(first_kv, variants[h].first_kv_position());
      }
    }

    // Tokens before first_kv_position() are masked anyway (windows): never
    // loaded. The bound must be uniform over the CTA, so take the minimum of
    // all the round's heads (the mask handles the rest).
    {
      int* scratch = reinterpret_cast<int*>(shared);
      if (tid == 0) *scratch = 0x7fffffff;
      __syncthreads();
      atomicMin(scratch, first_kv);
      __syncthreads();
      first_kv = *scratch;
      __syncthreads();
    }
    const int kv_lo = max(unit.kv_begin, first_kv);
    const int kv_hi = unit.kv_end;
    const int num_tiles = kv_hi > kv_lo ? (kv_hi - kv_lo + kTileTokens - 1) / kTileTokens : 0;
    const int tokens_per_lane = (kTileTokens + token_lanes - 1) / token_lanes;

    attention::SoftmaxState<kComputeVec> state[kMaxHeads];
#pragma unroll
    for (int h = 0; h < kMaxHeads; ++h) {
      state[h].init();
      // Without softmax the running max stays 0, so the lane merge below
      // (factors 2^0 = 1) sums the states.
      if constexpr (!kSoftmax) state[h].m = 0.f;
    }

    auto stage_k = [&](int tile) { return shared + (tile % kStages) * 2 * kStageTensorBytes; };
    auto tile_first_token = [&](int tile) { return kv_lo + tile * kTileTokens; };
    TilePages<Traits> pages;
    fetch_pages<Traits, KVT>(pages, params.kv_indices, page_begin, params.page_div,
                             tile_first_token(0), kv_hi);
    // Issues tile `tile` from `pages`, then loads the page ids of tile + 1.
    auto issue = [&](int tile) {
      if (tile < num_tiles) {
        unsigned char* k_stage = stage_k(tile);
        issue_tile<Traits>(params.kv, pages, head_offset, tile_first_token(tile), kv_hi, k_stage,
                           k_stage + kStageTensorBytes);
        if (tile + 1 < num_tiles) {
          fetch_pages<Traits, KVT>(pages, params.kv_indices, page_begin, params.page_div,
                                   tile_first_token(tile + 1), kv_hi);
        }
      } else {
        sm80::cp_async_commit();
      }
    };

#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) issue(s);

    // The token loop, compiled once per head count so the G = kMaxHeads (and
    // smaller) paths carry no per-head branches.
    auto run_tiles = [&](auto heads_constant) {
      constexpr int kHeads = decltype(heads_constant)::value;
      for (int tile = 0; tile < num_tiles; ++tile) {
        // Groups committed so far: tiles 0 .. tile + kStages - 2; at most
        // kStages - 2 pending means this thread's copies of `tile` landed.
        sm80::cp_async_wait_group<kStages - 2>();
        // Everyone's copies of `tile` are visible, and everyone finished
        // computing tile - 1, whose stage the next issue overwrites.
        __syncthreads();
        issue(tile + kStages - 1);

        const KVT* k_tile = reinterpret_cast<const KVT*>(stage_k(tile));
        const KVT* v_tile = reinterpret_cast<const KVT*>(stage_k(tile) + kStageTensorBytes);
        const int tile_first = kv_lo + tile * kTileTokens;
        const int tile_tokens = min(kTileTokens, kv_hi - tile_first);

        // Trip count is uniform over the CTA, so whole warps stay converged for
        // the shuffles; lanes without a token compute on row 0 and mask it.
        for (int step = 0; step < tokens_per_lane; step += kTokensPerStep<Variant>) {
          constexpr int kSteps = kTokensPerStep<Variant>;
          float logits[kMaxHeads][kSteps];
          float dots[kHeads * kSteps];  // [head][token] partial dot products
          int rows[kSteps];
          bool valid[kSteps];
#pragma unroll
          for (int u = 0; u < kSteps; ++u) {
            const int j = token_lane + (step + u) * token_lanes;
            valid[u] = active && j < tile_tokens;
            rows[u] = valid[u] ? j : 0;
            Vec<KVT, kComputeVec> k_raw;
            k_raw.load(k_tile + rows[u] * kHeadDim + dim0);
            FloatVec<kComputeVec> k = to_float(k_raw);
            if constexpr (Variant::kHasQueryKeyTransform) {
              // Head-independent by contract: once for all heads.
              variants[0].template transform_key<kHeadDim>(k, tile_first + rows[u], dim0,
                                                           Traits::kDimThreads / 2);
            }
#pragma unroll
            for (int h = 0; h < kHeads; ++h) {
              float dot = 0.f;
#pragma unroll
              for (int i = 0; i < kComputeVec; ++i) dot = fmaf(q[h][i], k[i], dot);
              dots[h * kSteps + u] = dot;
            }
          }
          // The transposed sum keeps every partial live at once: only for
          // variants without per-head hooks in the loop (spill-free).
          constexpr bool kTransposed =
              !Variant::kHasQueryKeyTransform && !Variant::kHasLogitsTransform;
          row_sum<kRowThreads, kTransposed>(dots, tx);
#pragma unroll
          for (int u = 0; u < kSteps; ++u) {
            [[maybe_unused]] const int kv_pos = tile_first + token_lane + (step + u) * token_lanes;
#pragma unroll
            for (int h = 0; h < kHeads; ++h) {
              float dot = dots[h * kSteps + u];
              if constexpr (Variant::kHasLogitsTransform) {
                dot = variants[h].logits_transform(dot, kv_pos);
              }
              bool keep = valid[u];
              if constexpr (Variant::kHasLogitsMask) {
                keep = keep && variants[h].logits_mask(kv_pos);
              }
              // A masked token weighs 0: 2^-inf with softmax, 0 without.
              logits[h][u] = keep ? dot : (kSoftmax ? attention::negative_infinity() : 0.f);
            }
          }
          // Lazy rescale: only a head whose running max grew pays for it
          // (exact: with an unchanged max the factor would be 1, or d = o = 0).
          float reference[kMaxHeads];
#pragma unroll
          for (int h = 0; h < kMaxHeads; ++h) {
            if (kSoftmax && h < kHeads) {
              float m_new = state[h].m;
#pragma unroll
              for (int u = 0; u < kTokensPerStep<Variant>; ++u) m_new = fmaxf(m_new, logits[h][u]);
              if (m_new > state[h].m) state[h].rescale_to(m_new);
              reference[h] = attention::safe_max(state[h].m);
            }
          }
#pragma unroll
          for (int u = 0; u < kTokensPerStep<Variant>; ++u) {
            Vec<KVT, kComputeVec> v_raw;
            v_raw.load(v_tile + rows[u] * kHeadDim + dim0);
            const FloatVec<kComputeVec> v = to_float(v_raw);
#pragma unroll
            for (int h = 0; h < kMaxHeads; ++h) {
              if (h < kHeads) {
                const float p =
                    kSoftmax ? attention::fast_exp2(logits[h][u] - reference[h]) : logits[h][u];
                state[h].d += p;
#pragma unroll
                for (int i = 0; i < kComputeVec; ++i) state[h].o[i] = fmaf(p, v[i], state[h].o[i]);
              }
            }
          }
        }
      }
    };
    dispatch_heads<kMaxHeads>(heads, run_tiles);
    sm80::cp_async_wait_all();  // only empty groups remain; the stages become scratch
    // The KV reads are done: the next kernel may be scheduled (see the
    // programmatic dependent launch note above; a later round repeats it).
    sm90::allow_dependent_launch();
    __syncthreads();

    // Token lanes of one head slot merge pairwise into token lane 0 through
    // shared memory (log2(token_lanes) rounds).
    float* merge_o = reinterpret_cast<float*>(shared);      // [kLanes][kMaxHeads][kHeadDim]
    float* merge_md = merge_o + kLanes * kMaxHeads * kHeadDim;  // [kLanes][kMaxHeads][2]
    for (int stride = 1; stride < token_lanes; stride *= 2) {
      const int position = token_lane % (2 * stride);
      if (active && position == stride) {
#pragma unroll
        for (int h = 0; h < kMaxHeads; ++h) {
          if (h < heads && holds_dims) {
            float* o_row = merge_o + (lane * kMaxHeads + h) * kHeadDim + dim0;
#pragma unroll
            for (int i = 0; i < kComputeVec; i += 4) {
              *reinterpret_cast<float4*>(o_row + i) = make_float4(
                  state[h].o[i], state[h].o[i + 1], state[h].o[i + 2], state[h].o[i + 3]);
            }
            if (tx == 0) {
              merge_md[2 * (lane * kMaxHeads + h)] = state[h].m;
              merge_md[2 * (lane * kMaxHeads + h) + 1] = state[h].d;
            }
          }
        }
      }
      __syncthreads();
      if (active && position == 0 && token_lane + stride < token_lanes) {
        const int other_lane = (token_lane + stride) * slots + head_slot;
#pragma unroll
        for (int h = 0; h < kMaxHeads; ++h) {
          if (h < heads) {
            const float* o_row = merge_o + (other_lane * kMaxHeads + h) * kHeadDim + dim0;
            float other_o[kComputeVec];
#pragma unroll
            for (int i = 0; i < kComputeVec; i += 4) {
              const float4 chunk = *reinterpret_cast<const float4*>(o_row + i);
              other_o[i] = chunk.x;
              other_o[i + 1] = chunk.y;
              other_o[i + 2] = chunk.z;
              other_o[i + 3] = chunk.w;
            }
            state[h].merge(merge_md[2 * (other_lane * kMaxHeads + h)],
                           merge_md[2 * (other_lane * kMaxHeads + h) + 1], other_o);
          }
        }
      }
      __syncthreads();
    }
    if (active && token_lane == 0 && holds_dims) {
#pragma unroll
      for (int h = 0; h < kMaxHeads; ++h) {
        if (h < heads && slot_first + h < round_heads) {
          const int qo_head = round_qo_base + slot_first + h;
          const float scale = (kSoftmax ? state[h].normalizer() : 1.f) * params.variant.v_scale;
          const float lse = kSoftmax ? state[h].lse() : 0.f;
          if (unit.partial_index < 0) {
            QT* out_row =
                params.out + request * params.out_stride_batch + qo_head * params.out_stride_head;
#pragma unroll
            for (int i = 0; i < kComputeVec; ++i) {
              out_row[dim0 + i] = from_float<QT>(state[h].o[i] * scale);
            }
            if (params.lse != nullptr && tx == 0) {
              params.lse[static_cast<int64_t>(request) * params.num_qo_heads + qo_head] = lse;
            }
          } else {
            const int64_t slot =
                static_cast<int64_t>(unit.partial_index) * params.num_qo_heads + qo_head;
            float* partial = schedule.partial_out + slot * kHeadDim + dim0;
#pragma unroll
            for (int i = 0; i < kComputeVec; ++i) partial[i] = state[h].o[i] * scale;
            if (tx == 0) schedule.partial_lse[slot] = lse;
          }
        }
      }
    }
    __syncthreads();  // the next round reuses the stages
  }
}

}  // namespace tessera::decode
