// The attention variant interface: one small struct per variant, read by the
// decode (and later prefill / JIT) kernel templates. A variant is built per
// (request, query head) on the device; its hooks are called only when its
// kHas* flag says so (`if constexpr`), so an unused hook costs nothing.
//
// Contract (what a JIT user writes; derive from VariantBase for defaults):
//   Variant(const VariantParams& params, int qo_head, int q_pos)
//   float query_scale()               q is multiplied by this once; with no
//                                     logits transform, q.k is then the logit
//                                     in log2 units (sm_scale * log2(e) folded in).
//                                     Must not depend on the query head or
//                                     position: prefill folds one value per
//                                     CTA into its exp2
//   rotate_pair<kHeadDim>(lo, hi, pos, pair)  (kHasQueryKeyTransform, prefill)
//                                     the prefill kernels' form of the q/k
//                                     transform: rewrites dims (pair, pair +
//                                     D/2) of a q or k row at kv position pos,
//                                     in float32 (rows in shared memory are
//                                     rounded back to q's type afterwards)
//   transform_query / transform_key   (kHasQueryKeyTransform) on a thread's
//                                     kVec-slice of a head row, in float32. May
//                                     shuffle within the row's threads: the
//                                     kernel calls it from all 32 lanes of a
//                                     warp, converged, for every token. The
//                                     last argument, half_lanes, is head_dim /
//                                     kVec / 2: the lane of dim0 + D/2 is
//                                     half_lanes up (down for the second half),
//                                     not the xor partner at head_dim 80 / 96 /
//                                     112 (5 / 6 / 7). There a row's last lanes
//                                     are padding: they pass the last slice's
//                                     dim0 again and their output is scaled by
//                                     a zero query, so it must stay finite.
//                                     transform_key must not depend on the
//                                     query head: decode applies it once per
//                                     key for all the heads a thread owns.
//   float logits_transform(dot, kv_pos)  (kHasLogitsTransform) -> log2 units
//   bool logits_mask(kv_pos)          (kHasLogitsMask) false masks the token
//   int first_kv_position()           tokens before it are masked anyway, so
//                                     the kernel never loads them (windows)
//   float output_transform(o)         (kHasOutputTransform) on the final out
//   kUseSoftmax                       false: out = sum_j w_j v_j with w_j the
//                                     token's logit (after logits_transform),
//                                     masked tokens 0, no normalisation; lse is
//                                     written as 0 and split partials are summed
//                                     (decode on CUDA cores, every prefill kernel;
//                                     a JIT spec sets VariantSpec::use_softmax).
//
// RoPE-Llama is a variant (transform_query / transform_key), not a kernel
// feature: the rotation of a head row pairs dims d and d + D/2, which live in
// threads tx and tx ^ (row_threads / 2) of the kernel's row layout, so the
// hook takes that lane distance and exchanges halves with one shuffle.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/attention/variant_params.h"
#include "tessera/core/vec.cuh"
#include "tessera/pos_enc/rope.cuh"

namespace tessera::attention {

inline constexpr float kLog2e = 1.4426950408889634f;

struct VariantBase {
  static constexpr bool kUseSoftmax = true;
  static constexpr bool kHasQueryKeyTransform = false;
  static constexpr bool kHasLogitsTransform = false;
  static constexpr bool kHasLogitsMask = false;
  static constexpr bool kHasOutputTransform = false;

  __device__ __forceinline__ int first_kv_position() const { return 0; }
  __device__ __forceinline__ float output_transform(float o) const { return o; }
};

// softmax(sm_scale * q.(k * k_scale)) (v * v_scale)
struct PlainVariant : VariantBase {
  float scale_log2;
  __device__ __forceinline__ PlainVariant(const VariantParams& p, int /*qo_head*/, int /*q_pos*/)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e) {}
  __device__ __forceinline__ float query_scale() const { return scale_log2; }
};

// logits = cap * tanh(s / cap), s = sm_scale q.k: q carries sm_scale / cap,
// the transform multiplies tanh by cap * log2(e).
struct SoftCapVariant : VariantBase {
  static constexpr bool kHasLogitsTransform = true;
  float q_scale;
  float cap_log2;
  __device__ __forceinline__ SoftCapVariant(const VariantParams& p, int, int)
      : q_scale(p.sm_scale * p.k_scale / p.logits_soft_cap),
        cap_log2(p.logits_soft_cap * kLog2e) {}
  __device__ __forceinline__ float query_scale() const { return q_scale; }
  __device__ __forceinline__ float logits_transform(float dot, int /*kv_pos*/) const {
    return cap_log2 * tanhf(dot);
  }
};

// First kv position of the window of a query at q_pos, clamped at 0. In 64
// bits: a prefill query with qo_len > kv_len (non-causal) sits at a negative
// position, where q_pos - window_left overflows int for window_left near
// 2^31 (and would wrap to a huge start that masks the whole row). kv
// positions are >= 0, so a start of 0 is the same mask as any start below.
__device__ __forceinline__ int window_start(int q_pos, int window_left) {
  const int64_t start = static_cast<int64_t>(q_pos) - window_left;
  return start > 0 ? static_cast<int>(start) : 0;
}

// Attends to kv positions in [q_pos - window_left, q_pos].
struct SlidingWindowVariant : PlainVariant {
  static constexpr bool kHasLogitsMask = true;
  int first_position;
  __device__ __forceinline__ SlidingWindowVariant(const VariantParams& p, int qo_head, int q_pos)
      : PlainVariant(p, qo_head, q_pos), first_position(window_start(q_pos, p.window_left)) {}
  __device__ __forceinline__ bool logits_mask(int kv_pos) const { return kv_pos >= first_position; }
  __device__ __forceinline__ int first_kv_position() const { return first_position; }
};

struct SoftCapSlidingWindowVariant : SoftCapVariant {
  static constexpr bool kHasLogitsMask = true;
  int first_position;
  __device__ __forceinline__ SoftCapSlidingWindowVariant(const VariantParams& p, int qo_head,
                                                         int q_pos)
      : SoftCapVariant(p, qo_head, q_pos), first_position(window_start(q_pos, p.window_left)) {}
  __device__ __forceinline__ bool logits_mask(int kv_pos) const { return kv_pos >= first_position; }
  __device__ __forceinline__ int first_kv_position() const { return first_position; }
};

// ALiBi slope of a query head: the caller's, or the standard 2^(-8 (h + 1) /
// H) (the host checks H is a power of two).
__device__ __forceinline__ float alibi_slope(const VariantParams& p, int qo_head) {
  return p.alibi_slopes != nullptr
             ? p.alibi_slopes[qo_head]
             : exp2f(-8.f * static_cast<float>(qo_head + 1) / static_cast<float>(p.num_qo_heads));
}

// logits = sm_scale q.k + slope_h * (kv_pos - q_pos).
struct AlibiVariant : PlainVariant {
  static constexpr bool kHasLogitsTransform = true;
  float slope_log2;
  int q_position;
  __device__ __forceinline__ AlibiVariant(const VariantParams& p, int qo_head, int q_pos)
      : PlainVariant(p, qo_head, q_pos),
        slope_log2(alibi_slope(p, qo_head) * kLog2e),
        q_position(q_pos) {}
  __device__ __forceinline__ float logits_transform(float dot, int kv_pos) const {
    return fmaf(slope_log2, static_cast<float>(kv_pos - q_position), dot);
  }
};

// Llama RoPE on the fly, NeoX halves over the whole head: dims (j, j + D/2)
// rotate by pos * freq_j, freq_j = theta^(-2j / D) / rope_scale; the query
// sits at q_pos, key j at its token index. Angles reduced as in pos_enc/rope.
struct RopeLlamaVariant : PlainVariant {
  static constexpr bool kHasQueryKeyTransform = true;
  float rcp_scale;
  float log2_theta;
  int q_position;
  __device__ __forceinline__ RopeLlamaVariant(const VariantParams& p, int qo_head, int q_pos)
      : PlainVariant(p, qo_head, q_pos),
        rcp_scale(p.rope_rcp_scale),
        log2_theta(p.rope_log2_theta),
        q_position(q_pos) {}

  // x holds dims [dim0, dim0 + N) of a head row of kHeadDim; the other half's
  // dims are in the lane `half_lanes` away: up for the first half, down for
  // the second (the xor partner when the row's lanes are a power of two;
  // head_dim 80 / 96 / 112 have 5 / 6 / 7 lanes per half).
  template <int kHeadDim, int N>
  __device__ __forceinline__ void rotate(FloatVec<N>& x, int position, int dim0,
                                         int half_lanes) const {
    constexpr int kHalf = kHeadDim / 2;
    static_assert(kHalf % N == 0, "a thread's slice must sit inside one half of the head");
    const bool first_half = dim0 < kHalf;
    const int partner_lane =
        static_cast<int>(threadIdx.x) % 32 + (first_half ? half_lanes : -half_lanes);
#pragma unroll
    for (int i = 0; i < N; ++i) {
      const float partner = __shfl_sync(0xffffffffu, x[i], partner_lane);
      const int pair = (dim0 + i) % kHalf;
      const float freq =
          rcp_scale * exp2f(-static_cast<float>(2 * pair) / kHeadDim * log2_theta);
      float sin_value;
      float cos_value;
      rope::reduced_sincos(static_cast<float>(position) * freq, sin_value, cos_value);
      x[i] = first_half ? x[i] * cos_value - partner * sin_value
                        : x[i] * cos_value + partner * sin_value;
    }
  }
  // Prefill: dims (pair, pair + D/2) of a row at `position`, rotated.
  template <int kHeadDim>
  __device__ __forceinline__ void rotate_pair(float& lo, float& hi, int position, int pair) const {
    const float freq = rcp_scale * exp2f(-static_cast<float>(2 * pair) / kHeadDim * log2_theta);
    float sin_value;
    float cos_value;
    rope::reduced_sincos(static_cast<float>(position) * freq, sin_value, cos_value);
    const float x = lo;
    lo = x * cos_value - hi * sin_value;
    hi = hi * cos_value + x * sin_value;
  }
  template <int kHeadDim, int N>
  __device__ __forceinline__ void transform_query(FloatVec<N>& q, int dim0, int half_lanes) const {
    rotate<kHeadDim>(q, q_position, dim0, half_lanes);
  }
  template <int kHeadDim, int N>
  __device__ __forceinline__ void transform_key(FloatVec<N>& k, int kv_pos, int dim0,
                                                int half_lanes) const {
    rotate<kHeadDim>(k, kv_pos, dim0, half_lanes);
  }
};

// The positional variants with a soft cap and / or a sliding window (the
// combinations FlashInfer accepts). JIT-served: none is on the AOT list. The
// ALiBi bias is added to the scaled logit before the cap, as FlashInfer does:
// logits = cap * tanh((sm_scale q.k + slope_h (kv_pos - q_pos)) / cap).
template <bool kSoftCap, bool kWindow>
struct AlibiCappedVariant : VariantBase {
  static_assert(kSoftCap || kWindow, "plain ALiBi is AlibiVariant");
  static constexpr bool kHasLogitsTransform = true;
  static constexpr bool kHasLogitsMask = kWindow;
  float q_scale;
  float slope_scaled;  // in the units of q.k after query_scale()
  float cap_log2;
  int q_position;
  int first_position;
  __device__ __forceinline__ AlibiCappedVariant(const VariantParams& p, int qo_head, int q_pos)
      : q_scale(p.sm_scale * p.k_scale * (kSoftCap ? 1.f / p.logits_soft_cap : kLog2e)),
        slope_scaled(alibi_slope(p, qo_head) * (kSoftCap ? 1.f / p.logits_soft_cap : kLog2e)),
        cap_log2(p.logits_soft_cap * kLog2e),
        q_position(q_pos),
        first_position(kWindow ? window_start(q_pos, p.window_left) : 0) {}
  __device__ __forceinline__ float query_scale() const { return q_scale; }
  __device__ __forceinline__ float logits_transform(float dot, int kv_pos) const {
    const float biased = fmaf(slope_scaled, static_cast<float>(kv_pos - q_position), dot);
    if constexpr (kSoftCap) return cap_log2 * tanhf(biased);
    return biased;
  }
  __device__ __forceinline__ bool logits_mask(int kv_pos) const { return kv_pos >= first_position; }
  __device__ __forceinline__ int first_kv_position() const { return first_position; }
};

// RoPE-Llama on the fly with a soft cap on the rotated q.k and / or a window.
template <bool kSoftCap, bool kWindow>
struct RopeLlamaCappedVariant : RopeLlamaVariant {
  static_assert(kSoftCap || kWindow, "plain RoPE-Llama is RopeLlamaVariant");
  static constexpr bool kHasLogitsTransform = kSoftCap;
  static constexpr bool kHasLogitsMask = kWindow;
  float q_scale;
  float cap_log2;
  int first_position;
  __device__ __forceinline__ RopeLlamaCappedVariant(const VariantParams& p, int qo_head, int q_pos)
      : RopeLlamaVariant(p, qo_head, q_pos),
        q_scale(kSoftCap ? p.sm_scale * p.k_scale / p.logits_soft_cap : scale_log2),
        cap_log2(p.logits_soft_cap * kLog2e),
        first_position(kWindow ? window_start(q_pos, p.window_left) : 0) {}
  __device__ __forceinline__ float query_scale() const { return q_scale; }
  __device__ __forceinline__ float logits_transform(float dot, int /*kv_pos*/) const {
    return cap_log2 * tanhf(dot);
  }
  __device__ __forceinline__ bool logits_mask(int kv_pos) const { return kv_pos >= first_position; }
  __device__ __forceinline__ int first_kv_position() const { return first_position; }
};

using AlibiSoftCapVariant = AlibiCappedVariant<true, false>;
using AlibiSlidingWindowVariant = AlibiCappedVariant<false, true>;
using AlibiSoftCapSlidingWindowVariant = AlibiCappedVariant<true, true>;
using RopeLlamaSoftCapVariant = RopeLlamaCappedVariant<true, false>;
using RopeLlamaSlidingWindowVariant = RopeLlamaCappedVariant<false, true>;
using RopeLlamaSoftCapSlidingWindowVariant = RopeLlamaCappedVariant<true, true>;

}  // namespace tessera::attention
