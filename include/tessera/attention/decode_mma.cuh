// Decode attention on tensor cores (mma.sync m16n8k16): the GQA group of a
// KV head is the M dimension of the mma, so all query heads sharing a KV
// stream are scored against 8 tokens x 16 dims of a K tile by one
// instruction, instead of one FMA per (head, token, dim).
//
// Why: decode does 1 FLOP per K/V byte per query head (4 at GQA 4). On CUDA
// cores (decode.cuh) that is ~45 warp instructions per token of one KV head
// at GQA 4 (our count from the source), which on an H200 (4.3 TB/s)
// saturates the issue rate before the memory (measured 0.69-0.76x cuDNN);
// here a warp spends 32 mma + 16 ldmatrix + the tile copies per 16 tokens.
//
// Same contract, schedule and partial layout as decode_kernel (decode.cuh):
// grid (max_work_units, num_kv_heads), CTA = (work unit, KV head); CTAs past
// header->num_work_units exit; split units write normalised float32 partials
// that decode_merge_kernel combines.
// Block: 4 warps. K/V tiles of kKvTile = 64 tokens go through kStages = 3
// shared-memory stages filled with 16-byte cp.async (page ids fetched one
// tile ahead, any page size >= 1; the tile loaders are prefill's). Warp w
// scores tokens [16 w, 16 w + 16) of every tile for all 16 rows (query heads
// of the group; rows >= group_size are zero and ignored) with its own online
// softmax state; at the end the 4 warp states merge through shared memory in
// a fixed order (deterministic).
// Shared memory: kStages x (K + V) x 64 x head_dim x 2 B = 48 KB (hd 64),
// 96 KB (hd 128); head_dim 80 / 96 / 112 rows are padded to 88 / 104 / 120
// elements (prefill_tiles_sm80.cuh): 66 / 78 / 90 KB. Two CTAs per SM, 4
// tiles (128 KB at hd 128) in flight.
// Limits: 16-bit q = K = V dtype, head_dim 64 / 80 / 96 / 112 / 128, group_size <= 16,
// softmax variants without q/k or output transforms (the host picks
// decode_kernel otherwise).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/arch/sm90/grid_dependency.cuh"
#include "tessera/attention/decode.cuh"
#include "tessera/attention/prefill_tiles_sm80.cuh"
#include "tessera/attention/state.cuh"
#include "tessera/attention/variant.cuh"

namespace tessera::decode_mma {

inline constexpr int kWarps = prefill::kWarps;        // the tile loaders' thread count
inline constexpr int kThreads = prefill::kThreads;
inline constexpr int kKvTile = prefill::kKvTile;      // tokens per stage
inline constexpr int kRows = 16;                      // mma M: query heads of one group
inline constexpr int kTokensPerWarp = kKvTile / kWarps;
inline constexpr int kStages = 3;
inline constexpr int kMinCtasPerSm = 2;
static_assert(kTokensPerWarp == 16, "a warp scores one mma k-step of tokens per tile");
static_assert(kMinCtasPerSm == decode::kMinCtasPerSm,
              "the decode planner sizes one wave for both decode kernels");

template <typename T_, int kHeadDim_>
struct DecodeMmaTraits {
  using T = T_;
  static constexpr int kHeadDim = kHeadDim_;
  using Copy = prefill::TileShape<kHeadDim, kKvTile>;  // swizzled 64-row tiles
  static_assert(Copy::kKvTile == kKvTile, "the copy tiles are this kernel's stages");
  static constexpr int kChunks = Copy::kChunks;
  static constexpr int kTileElems = Copy::kTileElems;
  static constexpr int kKSteps = kHeadDim / 16;  // mma k-steps of S = Q K^T
  static constexpr int kDBlocks = kHeadDim / 8;  // n-blocks of O = P V
  static constexpr int kSharedBytes = kStages * 2 * kTileElems * static_cast<int>(sizeof(T));
  // Merge scratch: each warp's (o rows, padded against bank conflicts) + (m, d).
  static constexpr int kScratchRowFloats = kHeadDim + 8;
  static constexpr int kScratchBytes =
      (kWarps * kRows * kScratchRowFloats + kWarps * kRows * 2) * 4;
  static_assert(kScratchBytes <= kSharedBytes, "merge scratch fits the stages");
  static_assert(kDBlocks % 2 == 0, "ldmatrix.x4 loads two n-blocks of V");
};

// Whether this kernel can run a variant (the host, and the JIT's code
// generation, fall back to decode_kernel otherwise).
template <typename Variant>
inline constexpr bool kRunsVariant =
    Variant::kUseSoftmax && !Variant::kHasQueryKeyTransform && !Variant::kHasOutputTransform;

// The variant a JIT build instantiates this kernel with: Variant itself when
// the kernel runs it, else PlainVariant (a kernel that is never launched;
// the host sees from its lowered name that the user's type is absent).
template <typename Variant>
using JitVariantFor =
    cuda::std::conditional_t<kRunsVariant<Variant>, Variant, attention::PlainVariant>;

template <typename Traits, typename Variant>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    decode_mma_kernel(const decode::DecodeParams<typename Traits::T, typename Traits::T> params) {
  using T = typename Traits::T;
  constexpr int kHeadDim = Traits::kHeadDim;
  constexpr int kChunks = Traits::kChunks;
  static_assert(kRunsVariant<Variant>,
                "tensor-core decode runs softmax variants without q/k or output transforms");
  extern __shared__ __align__(128) unsigned char shared_raw[];
  T* const stages = reinterpret_cast<T*>(shared_raw);

  // Programmatic dependent launch both ways (decode.cuh explains): only the
  // schedule is read before the wait; the next kernel may launch once the
  // KV reads are done.
  const auto& schedule = params.schedule;
  const attention::UnitHead cta = attention::unit_head_of_cta(params.num_kv_heads);
  if (!decode::wait_for_prior_grid_if_working(cta.unit, schedule)) return;
  const DecodeWorkUnit unit = schedule.work_units[cta.unit];
  const int kv_head = cta.head;
  const int request = unit.request;
  const int32_t page_begin = unit.page_begin;
  const int kv_len = unit.kv_len;
  const int q_pos = kv_len - 1;  // the decode token follows the cache
  const int group = params.group_size;

  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int g = lane / 4;  // mma row group: rows g and g + 8
  const int t = lane % 4;  // mma column pair
  const int head0 = kv_head * group;
  const int row_a = g;
  const int row_b = g + 8;
  // Rows past the group compute on zero queries with the last head's
  // variant (valid parameters); their results are never stored.
  const Variant var_a(params.variant, head0 + min(row_a, group - 1), q_pos);
  const Variant var_b(params.variant, head0 + min(row_b, group - 1), q_pos);
  const float scale_a = var_a.query_scale();
  const float scale_b = var_b.query_scale();

  // Q as mma A fragments straight from global memory (once per CTA; q rows
  // have any alignment, so element loads).
  uint32_t q_frag[Traits::kKSteps][4];
  {
    const T* q_a = params.q + request * params.q_stride_batch +
                   (head0 + min(row_a, group - 1)) * params.q_stride_head;
    const T* q_b = params.q + request * params.q_stride_batch +
                   (head0 + min(row_b, group - 1)) * params.q_stride_head;
    const bool live_a = row_a < group;
    const bool live_b = row_b < group;
    auto pair = [](const T* row, int col, bool live) {
      return live ? sm80::pack2<T>(to_float(row[col]), to_float(row[col + 1])) : 0u;
    };
#pragma unroll
    for (int ks = 0; ks < Traits::kKSteps; ++ks) {
      const int col = ks * 16 + 2 * t;
      q_frag[ks][0] = pair(q_a, col, live_a);
      q_frag[ks][1] = pair(q_b, col, live_b);
      q_frag[ks][2] = pair(q_a, col + 8, live_a);
      q_frag[ks][3] = pair(q_b, col + 8, live_b);
    }
  }

  // Tokens before first_kv_position() (windows) are never loaded; the bound
  // is the minimum over the group's rows, which every warp holds (the mask
  // handles the rest), so it is uniform without a barrier.
  const int first_kv =
      __reduce_min_sync(0xffffffffu, min(var_a.first_kv_position(), var_b.first_kv_position()));
  const int kv_lo = max(unit.kv_begin, first_kv);
  const int kv_hi = unit.kv_end;
  const int num_tiles = kv_hi > kv_lo ? (kv_hi - kv_lo + kKvTile - 1) / kKvTile : 0;

  const prefill::PagedKvRows<T> kv{params.kv.k_data + kv_head * params.kv.stride_head,
                                   params.kv.v_data + kv_head * params.kv.stride_head,
                                   params.kv.stride_page,
                                   params.kv.stride_entry,
                                   params.kv_indices + page_begin,
                                   params.page_div,
                                   {},
                                   nullptr,
                                   nullptr};
  using Copy = typename Traits::Copy;
  auto k_stage = [&](int tile) { return stages + (tile % kStages) * 2 * Traits::kTileElems; };
  auto kv_rows = prefill::fetch_kv_rows<Copy>(kv, kv_lo, kv_hi);
  // Issues the copies of `tile` from kv_rows, then fetches the page ids of
  // tile + 1. Always commits a group (empty past the end): uniform counting.
  auto issue = [&](int tile) {
    if (tile < num_tiles) {
      const int pos0 = kv_lo + tile * kKvTile;
      T* const k_tile = k_stage(tile);
      prefill::load_kv_tile<Copy>(k_tile, kv.k, kv, kv_rows, pos0, kv_hi);
      prefill::load_kv_tile<Copy>(k_tile + Traits::kTileElems, kv.v, kv, kv_rows, pos0, kv_hi);
      if (tile + 1 < num_tiles) kv_rows = prefill::fetch_kv_rows<Copy>(kv, pos0 + kKvTile, kv_hi);
    }
    sm80::cp_async_commit();
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(s);

  float o[Traits::kDBlocks][4];
#pragma unroll
  for (int db = 0; db < Traits::kDBlocks; ++db) {
#pragma unroll
    for (int i = 0; i < 4; ++i) o[db][i] = 0.f;
  }
  float m_a = attention::negative_infinity();
  float m_b = attention::negative_infinity();
  float d_a = 0.f;  // this lane's partial row sums (quad-reduced at the end)
  float d_b = 0.f;
  const int warp_token0 = warp * kTokensPerWarp;

  for (int tile = 0; tile < num_tiles; ++tile) {
    // Committed: tiles 0 .. tile + kStages - 2; <= kStages - 2 pending means
    // this thread's copies of `tile` landed; the barrier publishes everyone's
    // and retires tile - 1, whose stage the next issue overwrites.
    sm80::cp_async_wait_group<kStages - 2>();
    __syncthreads();
    issue(tile + kStages - 1);

    const T* const k_tile = k_stage(tile);
    const T* const v_tile = k_tile + Traits::kTileElems;
    const int tile_first = kv_lo + tile * kKvTile;

    // ---- S = Q K^T for the warp's 16 tokens (two n-blocks of 8)
    float s[2][4];
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[nb][i] = 0.f;
    }
#pragma unroll
    for (int ks = 0; ks < Traits::kKSteps; ++ks) {
      uint32_t b[4];
      sm80::ldmatrix_x4(b, k_tile + prefill::swizzled<kChunks>(
                                        warp_token0 + (lane / 16) * 8 + lane % 8,
                                        ks * 2 + (lane / 8) % 2));
      sm80::mma_16816<T>(s[0], q_frag[ks], b[0], b[1]);
      sm80::mma_16816<T>(s[1], q_frag[ks], b[2], b[3]);
    }

    // ---- logits (log2 units) and masks
    const bool need_mask = Variant::kHasLogitsMask || tile_first + kKvTile > kv_hi;
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int kv_pos = tile_first + warp_token0 + nb * 8 + 2 * t + e;
        float xa = s[nb][e] * scale_a;
        float xb = s[nb][2 + e] * scale_b;
        if constexpr (Variant::kHasLogitsTransform) {
          xa = var_a.logits_transform(xa, kv_pos);
          xb = var_b.logits_transform(xb, kv_pos);
        }
        if (need_mask) {
          bool keep_a = kv_pos < kv_hi;
          bool keep_b = keep_a;
          if constexpr (Variant::kHasLogitsMask) {
            keep_a = keep_a && var_a.logits_mask(kv_pos);
            keep_b = keep_b && var_b.logits_mask(kv_pos);
          }
          if (!keep_a) xa = attention::negative_infinity();
          if (!keep_b) xb = attention::negative_infinity();
        }
        s[nb][e] = xa;
        s[nb][2 + e] = xb;
      }
    }

    // ---- online softmax; a row's state is rescaled only when its max grows
    // (after the first tiles of a long request, almost never)
    float max_a = fmaxf(fmaxf(s[0][0], s[0][1]), fmaxf(s[1][0], s[1][1]));
    float max_b = fmaxf(fmaxf(s[0][2], s[0][3]), fmaxf(s[1][2], s[1][3]));
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      max_a = fmaxf(max_a, __shfl_xor_sync(0xffffffffu, max_a, offset));
      max_b = fmaxf(max_b, __shfl_xor_sync(0xffffffffu, max_b, offset));
    }
    if (max_a > m_a) {
      const float factor = attention::fast_exp2(m_a - attention::safe_max(max_a));
      m_a = max_a;
      d_a *= factor;
#pragma unroll
      for (int db = 0; db < Traits::kDBlocks; ++db) {
        o[db][0] *= factor;
        o[db][1] *= factor;
      }
    }
    if (max_b > m_b) {
      const float factor = attention::fast_exp2(m_b - attention::safe_max(max_b));
      m_b = max_b;
      d_b *= factor;
#pragma unroll
      for (int db = 0; db < Traits::kDBlocks; ++db) {
        o[db][2] *= factor;
        o[db][3] *= factor;
      }
    }
    const float ref_a = attention::safe_max(m_a);
    const float ref_b = attention::safe_max(m_b);
#pragma unroll
    for (int nb = 0; nb < 2; ++nb) {
      s[nb][0] = attention::fast_exp2(s[nb][0] - ref_a);
      s[nb][1] = attention::fast_exp2(s[nb][1] - ref_a);
      s[nb][2] = attention::fast_exp2(s[nb][2] - ref_b);
      s[nb][3] = attention::fast_exp2(s[nb][3] - ref_b);
      d_a += s[nb][0] + s[nb][1];
      d_b += s[nb][2] + s[nb][3];
    }
    // P as one A fragment: tokens 0-7 are S n-block 0, 8-15 n-block 1.
    uint32_t p_frag[4];
    p_frag[0] = sm80::pack2<T>(s[0][0], s[0][1]);
    p_frag[1] = sm80::pack2<T>(s[0][2], s[0][3]);
    p_frag[2] = sm80::pack2<T>(s[1][0], s[1][1]);
    p_frag[3] = sm80::pack2<T>(s[1][2], s[1][3]);

    // ---- O += P V (V read transposed by ldmatrix); zero-filled rows past
    // kv_hi meet p = 0, never NaN
#pragma unroll
    for (int db = 0; db < Traits::kDBlocks; db += 2) {
      uint32_t b[4];
      sm80::ldmatrix_x4_trans(
          b, v_tile + prefill::swizzled<kChunks>(warp_token0 + ((lane / 8) % 2) * 8 + lane % 8,
                                                 db + lane / 16));
      sm80::mma_16816<T>(o[db], p_frag, b[0], b[1]);
      sm80::mma_16816<T>(o[db + 1], p_frag, b[2], b[3]);
    }
  }
  sm80::cp_async_wait_all();  // only empty groups remain
  sm90::allow_dependent_launch();
#pragma unroll
  for (int offset = 1; offset < 4; offset *= 2) {
    d_a += __shfl_xor_sync(0xffffffffu, d_a, offset);
    d_b += __shfl_xor_sync(0xffffffffu, d_b, offset);
  }
  __syncthreads();  // every warp is done with the stages: they become scratch

  // ---- the 4 warp states of each live row, through shared memory
  float* const scratch_o = reinterpret_cast<float*>(shared_raw);  // [warp][row][kScratchRowFloats]
  float* const scratch_md = scratch_o + kWarps * kRows * Traits::kScratchRowFloats;  // [warp][row][2]
  const auto store_row = [&](int row, int half, float m, float d) {
    if (row >= group) return;
    float* const dst = scratch_o + (warp * kRows + row) * Traits::kScratchRowFloats + 2 * t;
#pragma unroll
    for (int db = 0; db < Traits::kDBlocks; ++db) {
      *reinterpret_cast<float2*>(dst + db * 8) = make_float2(o[db][2 * half], o[db][2 * half + 1]);
    }
    if (t == 0) {
      scratch_md[2 * (warp * kRows + row)] = m;
      scratch_md[2 * (warp * kRows + row) + 1] = d;
    }
  };
  store_row(row_a, 0, m_a, d_a);
  store_row(row_b, 1, m_b, d_b);
  __syncthreads();

  const float v_scale = params.variant.v_scale;
  for (int index = static_cast<int>(threadIdx.x); index < group * kHeadDim; index += kThreads) {
    const int row = index / kHeadDim;
    const int dim = index % kHeadDim;
    float m = attention::negative_infinity();
#pragma unroll
    for (int w = 0; w < kWarps; ++w) m = fmaxf(m, scratch_md[2 * (w * kRows + row)]);
    const float reference = attention::safe_max(m);
    float d = 0.f;
    float acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float factor = attention::fast_exp2(scratch_md[2 * (w * kRows + row)] - reference);
      d = fmaf(scratch_md[2 * (w * kRows + row) + 1], factor, d);
      acc = fmaf(scratch_o[(w * kRows + row) * Traits::kScratchRowFloats + dim], factor, acc);
    }
    const float scale = (d > 0.f ? 1.f / d : 0.f) * v_scale;
    const float lse = d > 0.f ? m + __log2f(d) : attention::negative_infinity();
    const int qo_head = head0 + row;
    if (unit.partial_index < 0) {
      params.out[request * params.out_stride_batch + qo_head * params.out_stride_head + dim] =
          from_float<T>(acc * scale);
      if (params.lse != nullptr && dim == 0) {
        params.lse[static_cast<int64_t>(request) * params.num_qo_heads + qo_head] = lse;
      }
    } else {
      const int64_t slot = static_cast<int64_t>(unit.partial_index) * params.num_qo_heads + qo_head;
      schedule.partial_out[slot * kHeadDim + dim] = acc * scale;
      if (dim == 0) schedule.partial_lse[slot] = lse;
    }
  }
}

}  // namespace tessera::decode_mma
