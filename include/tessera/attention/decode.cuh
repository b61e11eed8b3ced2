// Decode attention over a paged KV cache: one query token per request.
//
// Computes, for request b and query head h of KV head g = h / group_size:
//   out[b, h] = sum_j softmax_j(logit_j) * (v_j * v_scale),  lse = log2-sum-exp2
// over the KV tokens [kv_begin, kv_end) of one DecodeWorkUnit, with logits
// shaped by the Variant (variant.cuh). A work unit with partial_index < 0
// writes out (q dtype) and lse; otherwise it writes its normalised float32
// partial (out, lse) to the schedule's workspace for the merge pass.
//
// Grid: (max_work_units, num_kv_heads); CTAs with blockIdx.x >=
// header->num_work_units exit at once (one captured graph serves any plan).
// Block: kThreads = 256. A head row of D elements is owned by
// kRowThreads = D / 8 threads (8 elements each); the remaining kLanes =
// 256 / kRowThreads "lanes" are split into (query head of the GQA group) x
// (token lane), so every query head of the group reads each K/V row from
// shared memory and the row is read from global memory once. Groups larger
// than kLanes run in rounds (each round re-reads the KV range).
// Pipeline: K and V tiles of kTileTokens rows (8 KB each) gathered page by
// page (page = kv_indices[indptr[b] + t / page_size], slot = t % page_size,
// any page size >= 1) with 16-byte cp.async into kStages = 4 stages; while a
// tile is computed, kStages - 1 tiles (48 KB) are in flight per CTA.
// Shared memory: kStages x 16 KB = 64 KB dynamic (the cross-lane merge at
// the end reuses it). Three CTAs per SM (launch bounds): ~144 KB in flight.
// Limits: D in {64, 128, 256}; K/V rows 16-byte aligned (checked on the
// host); q/out accessed element-wise (any alignment); Variant::kUseSoftmax
// and no output transform (split requests are finished by the merge pass,
// which would skip it).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/attention/decode_schedule.cuh"
#include "tessera/attention/kv_cache.cuh"
#include "tessera/attention/state.cuh"
#include "tessera/attention/variant.cuh"
#include "tessera/core/numeric.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::decode {

inline constexpr int kThreads = 256;
// 3 x 64 KB of stages fit the 227 KB of an H100 / A100 SM; caps registers at 85.
inline constexpr int kMinCtasPerSm = 3;
inline constexpr int kStages = 4;
inline constexpr int kStageTensorBytes = 8192;  // one K (or V) tile of one stage
inline constexpr int kCopyBytes = 16;           // one cp.async
inline constexpr int kComputeVec = 8;           // elements of a head row per thread
// Tokens a thread scores before one rescale of its state: two independent
// dot-product / shuffle chains in flight.
inline constexpr int kTokensPerStep = 2;

template <typename QT_, typename KVT_, int kHeadDim_>
struct DecodeTraits {
  using QT = QT_;
  using KVT = KVT_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kRowThreads = kHeadDim / kComputeVec;
  static constexpr int kLanes = kThreads / kRowThreads;
  static constexpr int kRowBytes = kHeadDim * static_cast<int>(sizeof(KVT));
  static constexpr int kTileTokens = kStageTensorBytes / kRowBytes;
  static constexpr int kChunksPerRow = kRowBytes / kCopyBytes;
  static constexpr int kElemsPerChunk = kCopyBytes / static_cast<int>(sizeof(KVT));
  static constexpr int kChunksPerThread = kTileTokens * kChunksPerRow / kThreads;
  static constexpr int kSharedBytes = kStages * 2 * kStageTensorBytes;

  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "head_dim 64, 128 or 256");
  static_assert(kRowThreads <= 32 && 32 % kRowThreads == 0, "a head row sits inside one warp");
  static_assert(kRowBytes % kCopyBytes == 0, "rows are whole 16-byte chunks");
  static_assert(kTileTokens * kRowBytes == kStageTensorBytes, "tiles are whole rows");
  static_assert(kChunksPerThread >= 1 &&
                    kChunksPerThread * kThreads == kTileTokens * kChunksPerRow,
                "every thread copies the same number of chunks");
  static_assert(kTileTokens >= kLanes, "each token lane gets a token of every tile");
  static_assert(sizeof(KVT) * kComputeVec <= 16, "a thread's slice is one shared-memory load");
  // The cross-lane merge stores every lane's (o slice, m, d) in the stages.
  static_assert(kLanes * (kHeadDim + 2) * 4 <= kSharedBytes, "merge scratch fits the stages");
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
  const int32_t* __restrict__ kv_indices;
  const int32_t* __restrict__ kv_indptr;
  const int32_t* __restrict__ kv_last_page_len;
  int32_t num_qo_heads;
  int32_t group_size;  // num_qo_heads / num_kv_heads
  DecodeScheduleView schedule;
  attention::VariantParams variant;
};

// Issues the cp.async copies of one K/V tile (or zero-fills rows past the
// range, so the compute never reads stale or NaN data). Always commits a
// group, empty or not, so group counting stays uniform.
template <typename Traits, typename KVT>
__device__ __forceinline__ void issue_tile(const PagedKVView<const KVT>& kv,
                                           const int32_t* __restrict__ kv_indices,
                                           int32_t page_begin, int kv_head, int tile_first_token,
                                           int kv_hi, unsigned char* k_stage,
                                           unsigned char* v_stage) {
#pragma unroll
  for (int c = 0; c < Traits::kChunksPerThread; ++c) {
    const int chunk = static_cast<int>(threadIdx.x) + c * kThreads;
    const int row = chunk / Traits::kChunksPerRow;
    const int column = chunk % Traits::kChunksPerRow;
    const int token = tile_first_token + row;
    const int shared_offset = chunk * kCopyBytes;  // rows are contiguous in the stage
    if (token < kv_hi) {
      const int64_t page = kv_indices[page_begin + token / kv.page_size];
      const int64_t offset =
          kv.offset(page, token % kv.page_size, kv_head) + column * Traits::kElemsPerChunk;
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
  static_assert(Variant::kUseSoftmax, "decode supports softmax variants only");
  static_assert(!Variant::kHasOutputTransform, "split decode has no output-transform pass");

  extern __shared__ __align__(16) unsigned char shared[];

  const DecodeScheduleView& schedule = params.schedule;
  if (static_cast<int>(blockIdx.x) >= schedule.header->num_work_units) return;
  const DecodeWorkUnit unit = schedule.work_units[blockIdx.x];
  const int kv_head = static_cast<int>(blockIdx.y);
  const int request = unit.request;
  const int32_t page_begin = params.kv_indptr[request];
  const int32_t num_pages = params.kv_indptr[request + 1] - page_begin;
  const int kv_len =
      num_pages > 0 ? (num_pages - 1) * params.kv.page_size + params.kv_last_page_len[request] : 0;
  const int q_pos = kv_len - 1;  // the decode token follows the cache

  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % kRowThreads;
  const int lane = tid / kRowThreads;
  const int dim0 = tx * kComputeVec;
  const int group_size = params.group_size;

  for (int head_base = 0; head_base < group_size; head_base += kLanes) {
    const int heads = min(group_size - head_base, kLanes);
    const int token_lanes = kLanes / heads;
    const int head_slot = lane % heads;
    const int token_lane = lane / heads;
    const bool active = token_lane < token_lanes;
    const int qo_head = kv_head * group_size + head_base + head_slot;
    const Variant variant(params.variant, qo_head, q_pos);

    // The query slice, pre-multiplied by the variant's scale (log2 units).
    FloatVec<kComputeVec> q;
    {
      const QT* q_row = params.q + request * params.q_stride_batch + qo_head * params.q_stride_head;
#pragma unroll
      for (int i = 0; i < kComputeVec; ++i) q[i] = to_float(q_row[dim0 + i]);
      if constexpr (Variant::kHasQueryKeyTransform) {
        variant.template transform_query<kHeadDim>(q, dim0, kRowThreads / 2);
      }
      const float scale = variant.query_scale();
#pragma unroll
      for (int i = 0; i < kComputeVec; ++i) q[i] *= scale;
    }

    // Tokens before first_kv_position() are masked for the whole request
    // (windows): never loaded. The bound is the same for every head.
    const int kv_lo = max(unit.kv_begin, variant.first_kv_position());
    const int kv_hi = unit.kv_end;
    const int num_tiles = kv_hi > kv_lo ? (kv_hi - kv_lo + kTileTokens - 1) / kTileTokens : 0;
    const int tokens_per_lane = (kTileTokens + token_lanes - 1) / token_lanes;

    attention::SoftmaxState<kComputeVec> state;
    state.init();

    auto stage_k = [&](int tile) { return shared + (tile % kStages) * 2 * kStageTensorBytes; };
    auto issue = [&](int tile) {
      if (tile < num_tiles) {
        unsigned char* k_stage = stage_k(tile);
        issue_tile<Traits>(params.kv, params.kv_indices, page_begin, kv_head,
                           kv_lo + tile * kTileTokens, kv_hi, k_stage, k_stage + kStageTensorBytes);
      } else {
        sm80::cp_async_commit();
      }
    };

#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) issue(s);

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
      for (int step = 0; step < tokens_per_lane; step += kTokensPerStep) {
        float logits[kTokensPerStep];
        int rows[kTokensPerStep];
#pragma unroll
        for (int u = 0; u < kTokensPerStep; ++u) {
          const int j = token_lane + (step + u) * token_lanes;
          const bool valid = active && j < tile_tokens;
          rows[u] = valid ? j : 0;
          Vec<KVT, kComputeVec> k_raw;
          k_raw.load(k_tile + rows[u] * kHeadDim + dim0);
          FloatVec<kComputeVec> k = to_float(k_raw);
          const int kv_pos = tile_first + j;
          if constexpr (Variant::kHasQueryKeyTransform) {
            variant.template transform_key<kHeadDim>(k, tile_first + rows[u], dim0,
                                                     kRowThreads / 2);
          }
          float dot = 0.f;
#pragma unroll
          for (int i = 0; i < kComputeVec; ++i) dot = fmaf(q[i], k[i], dot);
#pragma unroll
          for (int offset = kRowThreads / 2; offset > 0; offset /= 2) {
            dot += __shfl_xor_sync(0xffffffffu, dot, offset);
          }
          if constexpr (Variant::kHasLogitsTransform) dot = variant.logits_transform(dot, kv_pos);
          bool keep = valid;
          if constexpr (Variant::kHasLogitsMask) keep = keep && variant.logits_mask(kv_pos);
          logits[u] = keep ? dot : attention::negative_infinity();
        }
        float m_new = state.m;
#pragma unroll
        for (int u = 0; u < kTokensPerStep; ++u) m_new = fmaxf(m_new, logits[u]);
        const float reference = state.rescale_to(m_new);
#pragma unroll
        for (int u = 0; u < kTokensPerStep; ++u) {
          const float p = attention::fast_exp2(logits[u] - reference);
          state.d += p;
          Vec<KVT, kComputeVec> v_raw;
          v_raw.load(v_tile + rows[u] * kHeadDim + dim0);
          const FloatVec<kComputeVec> v = to_float(v_raw);
#pragma unroll
          for (int i = 0; i < kComputeVec; ++i) state.o[i] = fmaf(p, v[i], state.o[i]);
        }
      }
    }
    sm80::cp_async_wait_all();  // only empty groups remain; the stages become scratch
    __syncthreads();

    // Token lanes of one head merge into token lane 0 through shared memory.
    float* merge_o = reinterpret_cast<float*>(shared);        // [kLanes][kHeadDim]
    float* merge_md = merge_o + kLanes * kHeadDim;            // [kLanes][2]
    if (active && token_lane > 0) {
#pragma unroll
      for (int i = 0; i < kComputeVec; ++i) merge_o[lane * kHeadDim + dim0 + i] = state.o[i];
      if (tx == 0) {
        merge_md[2 * lane] = state.m;
        merge_md[2 * lane + 1] = state.d;
      }
    }
    __syncthreads();
    if (active && token_lane == 0) {
      for (int other = 1; other < token_lanes; ++other) {
        const int other_lane = other * heads + head_slot;
        float other_o[kComputeVec];
#pragma unroll
        for (int i = 0; i < kComputeVec; ++i) other_o[i] = merge_o[other_lane * kHeadDim + dim0 + i];
        state.merge(merge_md[2 * other_lane], merge_md[2 * other_lane + 1], other_o);
      }
      const float scale = state.normalizer() * params.variant.v_scale;
      if (unit.partial_index < 0) {
        QT* out_row =
            params.out + request * params.out_stride_batch + qo_head * params.out_stride_head;
#pragma unroll
        for (int i = 0; i < kComputeVec; ++i) out_row[dim0 + i] = from_float<QT>(state.o[i] * scale);
        if (params.lse != nullptr && tx == 0) {
          params.lse[static_cast<int64_t>(request) * params.num_qo_heads + qo_head] = state.lse();
        }
      } else {
        const int64_t slot = static_cast<int64_t>(unit.partial_index) * params.num_qo_heads + qo_head;
        float* partial = schedule.partial_out + slot * kHeadDim + dim0;
#pragma unroll
        for (int i = 0; i < kComputeVec; ++i) partial[i] = state.o[i] * scale;
        if (tx == 0) schedule.partial_lse[slot] = state.lse();
      }
    }
    __syncthreads();  // the next round reuses the stages
  }
}

}  // namespace tessera::decode
