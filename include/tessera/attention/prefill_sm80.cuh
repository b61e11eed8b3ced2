// FA2-style prefill attention for sm80+ (mma.sync, ldmatrix, cp.async).
// Computes, for one request, out[i, h] = softmax_j(logit(q_i, k_j)) v_j * v_scale
// and lse[i, h] (base 2) with query i at kv position kv_len - qo_len + i.
//
// Grid (ceil(qo_len / kQTile), num_qo_heads), reversed in x so the longest
// causal tiles start first; block kThreads = 4 warps. A CTA owns kQTile = 64
// query rows of one head (16 per warp, kept in registers as mma A fragments)
// and streams K/V tiles of kKvTile = 64 rows of KV head h / group through a
// double buffer filled with cp.async (K[t+1] loads under S = Q K[t]^T, V[t+1]
// under O += P V[t]). Online softmax in base 2 in registers.
// Shared memory: Q tile + 2 K + 2 V tiles, rows XOR-swizzled in 16-byte
// chunks (chunk ^ row % 8) so ldmatrix is bank-conflict free:
// (64 + 4 * 64) * head_dim * 2 bytes = 40 KB (hd 64), 80 KB (hd 128).
// The Q region is reused to stage the output for 16-byte stores.
// Limits: head_dim 64 / 128, 16-bit q = k = v dtype, 16-byte aligned rows,
// causal needs qo_len <= kv_len (the host checks); variants without
// query/key transforms (RoPE on the fly is rejected by the host for now).
// K/V are read through PagedKVView with one page (page 0), so a paged
// variant can reuse the tile loop with a page-table row lookup.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/attention/kv_cache.cuh"
#include "tessera/attention/state.cuh"
#include "tessera/attention/variant.cuh"
#include "tessera/core/numeric.cuh"

namespace tessera::prefill {

inline constexpr int kWarps = 4;
inline constexpr int kThreads = kWarps * 32;
inline constexpr int kRowsPerWarp = 16;  // the M of one mma
inline constexpr int kQTile = kWarps * kRowsPerWarp;
inline constexpr int kKvTile = 64;
inline constexpr int kChunkElems = 8;    // 16 bytes of a 16-bit type
inline constexpr int kSwizzleRows = 8;   // ldmatrix reads 8 rows at a time
inline constexpr int kMinCtasPerSm = 2;

template <typename T, int kHeadDim>
struct PrefillTraits {
  static_assert(sizeof(T) == 2, "prefill runs 16-bit mma inputs");
  static_assert(kHeadDim == 64 || kHeadDim == 128, "prefill head_dim 64 or 128");
  static constexpr int kChunks = kHeadDim / kChunkElems;  // 16-byte chunks per row
  static_assert(kChunks >= kSwizzleRows, "the XOR swizzle needs >= 8 chunks per row");
  static constexpr int kQElems = kQTile * kHeadDim;
  static constexpr int kTileElems = kKvTile * kHeadDim;
  static constexpr int kSharedBytes = (kQElems + 4 * kTileElems) * static_cast<int>(sizeof(T));
  static constexpr int kKSteps = kHeadDim / 16;    // mma k-steps of S = Q K^T
  static constexpr int kSBlocks = kKvTile / 8;     // n-blocks of S
  static constexpr int kKvSteps = kKvTile / 16;    // mma k-steps of O = P V
  static constexpr int kDBlocks = kHeadDim / 8;    // n-blocks of O
  static_assert(kSBlocks % 2 == 0 && kDBlocks % 2 == 0, "ldmatrix.x4 loads two n-blocks");
  static_assert(kQTile % kKvTile == 0 || kKvTile % kQTile == 0, "tile sizes nest");
  static_assert((kQTile * kChunks) % kThreads == 0, "Q tile loads split evenly");
  static_assert((kKvTile * kChunks) % kThreads == 0, "KV tile loads split evenly");
};

template <typename T>
struct PrefillParams {
  const T* __restrict__ q;  // [qo_len, num_qo_heads, head_dim] strided
  int64_t q_stride_token;
  int64_t q_stride_head;
  T* __restrict__ out;      // like q
  int64_t out_stride_token;
  int64_t out_stride_head;
  float* __restrict__ lse;  // null or [qo_len, num_qo_heads] contiguous
  PagedKVView<const T> kv;  // one page: slot = kv position
  int32_t qo_len;
  int32_t kv_len;
  int32_t num_qo_heads;
  int32_t group_size;       // num_qo_heads / num_kv_heads
  bool causal;
  attention::VariantParams variant;
};

// Element offset of 16-byte chunk `chunk` of tile row `row`.
template <int kChunks>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return (row * kChunks + (chunk ^ (row % kSwizzleRows))) * kChunkElems;
}

// Rows [row0, row0 + kRows) of a [*, head_dim] source with row stride
// `stride` into a swizzled tile; rows >= row_end become zeros (so padded
// V rows never turn a zero probability into NaN).
template <typename Traits, int kRows, typename T>
__device__ __forceinline__ void load_tile(T* tile, const T* base, int64_t stride, int row0,
                                          int row_end) {
  // A thread copies one chunk column of rows r0, r0 + kRowStep, ...: one
  // pointer and one stride step, so few registers hold addresses.
  constexpr int kRowStep = kThreads / Traits::kChunks;
  constexpr int kPerThread = kRows / kRowStep;
  static_assert(kThreads % Traits::kChunks == 0 && kRows % kRowStep == 0, "even tile split");
  const int chunk = static_cast<int>(threadIdx.x) % Traits::kChunks;
  const int r0 = static_cast<int>(threadIdx.x) / Traits::kChunks;
  const T* source = base + static_cast<int64_t>(row0 + r0) * stride + chunk * kChunkElems;
  const int64_t step = static_cast<int64_t>(kRowStep) * stride;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int row = r0 + i * kRowStep;
    const bool valid = row0 + row < row_end;
    sm80::cp_async_16_zfill(tile + swizzled<Traits::kChunks>(row, chunk), valid ? source : base,
                            valid);
    source += step;
  }
}

template <typename Variant>
__device__ __forceinline__ bool attends(const Variant& variant, bool causal, int kv_pos,
                                        int q_pos, int kv_len) {
  bool ok = kv_pos < kv_len && (!causal || kv_pos <= q_pos);
  if constexpr (Variant::kHasLogitsMask) ok = ok && variant.logits_mask(kv_pos);
  return ok;
}

template <typename Traits, typename Variant, typename T>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    prefill_kernel(const PrefillParams<T> p) {
  static_assert(!Variant::kHasQueryKeyTransform, "prefill has no q/k transform hook yet");
  static_assert(Variant::kUseSoftmax, "prefill computes softmax attention");
  constexpr int kChunks = Traits::kChunks;
  extern __shared__ __align__(128) unsigned char shared_raw[];
  T* const q_tile = reinterpret_cast<T*>(shared_raw);
  T* const k_tiles = q_tile + Traits::kQElems;
  T* const v_tiles = k_tiles + 2 * Traits::kTileElems;

  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int g = lane / 4;  // mma row group
  const int t = lane % 4;  // mma column pair
  const int qo_head = static_cast<int>(blockIdx.y);
  const int kv_head = qo_head / p.group_size;
  const int q0 = (static_cast<int>(gridDim.x - 1 - blockIdx.x)) * kQTile;
  const int delta = p.kv_len - p.qo_len;  // query i sits at kv position delta + i

  // This thread's two query rows (g and g + 8 of the warp's 16).
  const int warp_row = warp * kRowsPerWarp;
  const int row_a = q0 + warp_row + g;
  const int row_b = row_a + 8;
  const int pos_a = delta + row_a;
  const int pos_b = delta + row_b;
  const Variant var_a(p.variant, qo_head, pos_a);
  const Variant var_b(p.variant, qo_head, pos_b);

  // The CTA's KV range: up to the diagonal of its last row (causal), from the
  // window start of its first row (the smallest), tile-aligned.
  const int last_row = min(q0 + kQTile, p.qo_len) - 1;
  const int kv_end = p.causal ? min(p.kv_len, delta + last_row + 1) : p.kv_len;
  const Variant var_first(p.variant, qo_head, delta + q0);
  const int kv_begin = var_first.first_kv_position() / kKvTile * kKvTile;
  const int num_tiles = kv_end > kv_begin ? (kv_end - kv_begin + kKvTile - 1) / kKvTile : 0;
  // Tiles that need no per-element mask: wholly below kv_end and on or left
  // of the diagonal of the CTA's first row.
  const int unmasked_end = p.causal ? min(kv_end, delta + q0 + 1) : kv_end;

  const T* const k_head = p.kv.k_data + p.kv.offset(0, 0, kv_head);
  const T* const v_head = p.kv.v_data + p.kv.offset(0, 0, kv_head);
  const int64_t kv_stride = p.kv.stride_entry;

  // Prologue: group 0 = Q + K[0], group 1 = V[0].
  load_tile<Traits, kQTile>(q_tile, p.q + static_cast<int64_t>(qo_head) * p.q_stride_head,
                            p.q_stride_token, q0, p.qo_len);
  if (num_tiles > 0) load_tile<Traits, kKvTile>(k_tiles, k_head, kv_stride, kv_begin, kv_end);
  sm80::cp_async_commit();
  if (num_tiles > 0) load_tile<Traits, kKvTile>(v_tiles, v_head, kv_stride, kv_begin, kv_end);
  sm80::cp_async_commit();
  sm80::cp_async_wait_group<1>();
  __syncthreads();

  uint32_t q_frag[Traits::kKSteps][4];
#pragma unroll
  for (int ks = 0; ks < Traits::kKSteps; ++ks) {
    sm80::ldmatrix_x4(q_frag[ks], q_tile + swizzled<kChunks>(warp_row + lane % 16,
                                                             ks * 2 + lane / 16));
  }

  float o[Traits::kDBlocks][4];
#pragma unroll
  for (int db = 0; db < Traits::kDBlocks; ++db) {
#pragma unroll
    for (int i = 0; i < 4; ++i) o[db][i] = 0.f;
  }
  float m_a = attention::negative_infinity();
  float m_b = attention::negative_infinity();
  float d_a = 0.f;  // this lane's partial row sums (reduced over the quad at the end)
  float d_b = 0.f;
  const float q_scale = var_a.query_scale();

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int stage = tile & 1;
    const int kv0 = kv_begin + tile * kKvTile;
    if (tile > 0) {
      sm80::cp_async_wait_group<1>();  // K[tile] landed (V[tile] may be in flight)
      __syncthreads();
    }
    // K[tile + 1] into the other stage: everyone finished K[tile - 1] before the barrier.
    if (tile + 1 < num_tiles) {
      load_tile<Traits, kKvTile>(k_tiles + (stage ^ 1) * Traits::kTileElems, k_head, kv_stride,
                                 kv0 + kKvTile, kv_end);
    }
    sm80::cp_async_commit();

    // ---- S = Q K^T (16 rows x kKvTile per warp)
    const T* const k_tile = k_tiles + stage * Traits::kTileElems;
    float s[Traits::kSBlocks][4];
#pragma unroll
    for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[nb][i] = 0.f;
    }
#pragma unroll
    for (int ks = 0; ks < Traits::kKSteps; ++ks) {
#pragma unroll
      for (int nb = 0; nb < Traits::kSBlocks; nb += 2) {
        uint32_t b[4];
        sm80::ldmatrix_x4(b, k_tile + swizzled<kChunks>(nb * 8 + (lane / 16) * 8 + lane % 8,
                                                        ks * 2 + (lane / 8) % 2));
        sm80::mma_16816<T>(s[nb], q_frag[ks], b[0], b[1]);
        sm80::mma_16816<T>(s[nb + 1], q_frag[ks], b[2], b[3]);
      }
    }

    // ---- logits (log2 units) and masks
    const bool need_mask = Variant::kHasLogitsMask || kv0 + kKvTile > unmasked_end;
#pragma unroll
    for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = kv0 + nb * 8 + 2 * t + e;
        float xa = s[nb][e] * q_scale;
        float xb = s[nb][2 + e] * q_scale;
        if constexpr (Variant::kHasLogitsTransform) {
          xa = var_a.logits_transform(xa, col);
          xb = var_b.logits_transform(xb, col);
        }
        if (need_mask) {
          if (!attends(var_a, p.causal, col, pos_a, p.kv_len)) xa = attention::negative_infinity();
          if (!attends(var_b, p.causal, col, pos_b, p.kv_len)) xb = attention::negative_infinity();
        }
        s[nb][e] = xa;
        s[nb][2 + e] = xb;
      }
    }

    // ---- online softmax: row max over the quad, rescale, exponentiate
    float max_a = m_a;
    float max_b = m_b;
#pragma unroll
    for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
      max_a = fmaxf(max_a, fmaxf(s[nb][0], s[nb][1]));
      max_b = fmaxf(max_b, fmaxf(s[nb][2], s[nb][3]));
    }
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      max_a = fmaxf(max_a, __shfl_xor_sync(0xffffffffu, max_a, offset));
      max_b = fmaxf(max_b, __shfl_xor_sync(0xffffffffu, max_b, offset));
    }
    const float ref_a = attention::safe_max(max_a);
    const float ref_b = attention::safe_max(max_b);
    const float factor_a = attention::fast_exp2(m_a - ref_a);
    const float factor_b = attention::fast_exp2(m_b - ref_b);
    m_a = max_a;
    m_b = max_b;
    d_a *= factor_a;
    d_b *= factor_b;
#pragma unroll
    for (int db = 0; db < Traits::kDBlocks; ++db) {
      o[db][0] *= factor_a;
      o[db][1] *= factor_a;
      o[db][2] *= factor_b;
      o[db][3] *= factor_b;
    }
#pragma unroll
    for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
      s[nb][0] = attention::fast_exp2(s[nb][0] - ref_a);
      s[nb][1] = attention::fast_exp2(s[nb][1] - ref_a);
      s[nb][2] = attention::fast_exp2(s[nb][2] - ref_b);
      s[nb][3] = attention::fast_exp2(s[nb][3] - ref_b);
      d_a += s[nb][0] + s[nb][1];
      d_b += s[nb][2] + s[nb][3];
    }
    // P as A fragments: kv columns 16c..16c+15 are S n-blocks 2c and 2c + 1.
    uint32_t p_frag[Traits::kKvSteps][4];
#pragma unroll
    for (int c = 0; c < Traits::kKvSteps; ++c) {
      p_frag[c][0] = sm80::pack2<T>(s[2 * c][0], s[2 * c][1]);
      p_frag[c][1] = sm80::pack2<T>(s[2 * c][2], s[2 * c][3]);
      p_frag[c][2] = sm80::pack2<T>(s[2 * c + 1][0], s[2 * c + 1][1]);
      p_frag[c][3] = sm80::pack2<T>(s[2 * c + 1][2], s[2 * c + 1][3]);
    }

    sm80::cp_async_wait_group<1>();  // V[tile] landed (K[tile + 1] may be in flight)
    __syncthreads();
    if (tile + 1 < num_tiles) {
      load_tile<Traits, kKvTile>(v_tiles + (stage ^ 1) * Traits::kTileElems, v_head, kv_stride,
                                 kv0 + kKvTile, kv_end);
    }
    sm80::cp_async_commit();

    // ---- O += P V (V read transposed by ldmatrix)
    const T* const v_tile = v_tiles + stage * Traits::kTileElems;
#pragma unroll
    for (int c = 0; c < Traits::kKvSteps; ++c) {
#pragma unroll
      for (int db = 0; db < Traits::kDBlocks; db += 2) {
        uint32_t b[4];
        sm80::ldmatrix_x4_trans(
            b, v_tile + swizzled<kChunks>(c * 16 + ((lane / 8) % 2) * 8 + lane % 8, db + lane / 16));
        sm80::mma_16816<T>(o[db], p_frag[c], b[0], b[1]);
        sm80::mma_16816<T>(o[db + 1], p_frag[c], b[2], b[3]);
      }
    }
  }
  sm80::cp_async_wait_all();  // only empty groups remain; no copy may outlive the CTA

  // ---- finalize: quad-reduce the row sums, normalise, stage, store
#pragma unroll
  for (int offset = 1; offset < 4; offset *= 2) {
    d_a += __shfl_xor_sync(0xffffffffu, d_a, offset);
    d_b += __shfl_xor_sync(0xffffffffu, d_b, offset);
  }
  const float inv_a = d_a > 0.f ? p.variant.v_scale / d_a : 0.f;
  const float inv_b = d_b > 0.f ? p.variant.v_scale / d_b : 0.f;
  // The warp's 16 Q rows were read (ldmatrix) only by this warp, after the
  // prologue barrier: the warp may overwrite them with its output.
#pragma unroll
  for (int db = 0; db < Traits::kDBlocks; ++db) {
    float oa0 = o[db][0] * inv_a, oa1 = o[db][1] * inv_a;
    float ob0 = o[db][2] * inv_b, ob1 = o[db][3] * inv_b;
    if constexpr (Variant::kHasOutputTransform) {
      oa0 = var_a.output_transform(oa0);
      oa1 = var_a.output_transform(oa1);
      ob0 = var_b.output_transform(ob0);
      ob1 = var_b.output_transform(ob1);
    }
    *reinterpret_cast<uint32_t*>(q_tile + swizzled<kChunks>(warp_row + g, db) + 2 * t) =
        sm80::pack2<T>(oa0, oa1);
    *reinterpret_cast<uint32_t*>(q_tile + swizzled<kChunks>(warp_row + g + 8, db) + 2 * t) =
        sm80::pack2<T>(ob0, ob1);
  }
  __syncwarp();
  T* const out_head = p.out + static_cast<int64_t>(qo_head) * p.out_stride_head;
#pragma unroll
  for (int i = lane; i < kRowsPerWarp * kChunks; i += 32) {
    const int r = i / kChunks;
    const int chunk = i % kChunks;
    const int row = q0 + warp_row + r;
    if (row < p.qo_len) {
      const uint4 value =
          *reinterpret_cast<const uint4*>(q_tile + swizzled<kChunks>(warp_row + r, chunk));
      *reinterpret_cast<uint4*>(out_head + static_cast<int64_t>(row) * p.out_stride_token +
                                chunk * kChunkElems) = value;
    }
  }
  if (p.lse != nullptr && t == 0) {
    const float neg_inf = attention::negative_infinity();
    if (row_a < p.qo_len) {
      p.lse[static_cast<int64_t>(row_a) * p.num_qo_heads + qo_head] =
          d_a > 0.f ? m_a + __log2f(d_a) : neg_inf;
    }
    if (row_b < p.qo_len) {
      p.lse[static_cast<int64_t>(row_b) * p.num_qo_heads + qo_head] =
          d_b > 0.f ? m_b + __log2f(d_b) : neg_inf;
    }
  }
}

}  // namespace tessera::prefill
