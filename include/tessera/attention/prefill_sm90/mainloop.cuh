// A consumer warpgroup's step over one K/V tile: S = Q K^T (wgmma, both
// operands in shared memory), the variant's logits and masks, the online
// softmax in base 2, then O += P V (wgmma with P from registers, V read
// MN-major). The warpgroup owns 64 query rows; a thread owns rows g and
// g + 8 of its warp's 16 (arch/sm90/wgmma.cuh's accumulator layout).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include "tessera/arch/sm80/mma.cuh"
#include "tessera/arch/sm90/mbarrier.cuh"
#include "tessera/arch/sm90/warpgroup.cuh"
#include "tessera/arch/sm90/wgmma.cuh"
#include "tessera/attention/prefill_sm90/traits.cuh"
#include "tessera/attention/state.cuh"

namespace tessera::prefill_sm90 {

// The softmax state and accumulators of a thread's two rows.
template <typename Tr>
struct RowState {
  float o[Tr::kORegs];
  float m[2];
  float d[2];  // this lane's partial row sums (reduced over the quad at the end)
  __device__ __forceinline__ void init() {
#pragma unroll
    for (int i = 0; i < Tr::kORegs; ++i) o[i] = 0.f;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      m[i] = attention::negative_infinity();
      d[i] = 0.f;
    }
  }
};

// What the per-element logits code needs of a thread's rows.
template <typename Variant, bool kCustomMask>
struct RowContext {
  prefill::RowVariants<Variant, 2> var;
  int pos[2];           // the rows' kv positions
  int limit[2];         // the rows see kv positions below these (without variant / custom masks)
  int64_t mask_row[2];  // custom mask: token * kv_len, -1 for padding rows
  const uint8_t* mask;
  bool causal;
  float q_scale;
};

// A shared address the compiler cannot see through: descriptors built from
// it are recomputed per tile (a few integer ops) instead of hoisted out of
// the tile loop, where 8 k-steps x (Q, K, V) x 2 stages of 64-bit
// descriptors held ~80 registers and spilled the consumers.
__device__ __forceinline__ uint32_t opaque(uint32_t address) {
  asm volatile("mov.b32 %0, %0;\n" : "+r"(address));
  return address;
}

// A tile's descriptors: one built from its (opaque) base, the k-steps
// advanced from it by constant offsets.
template <typename Tr>
__device__ __forceinline__ uint32_t q_step_offset(int consumer, int ks) {
  return (ks / 4) * Tr::kQPanelBytes + consumer * kConsumerRows * kPanelRowBytes + (ks % 4) * 32;
}
template <typename Tr>
__device__ __forceinline__ uint32_t k_step_offset(int ks) {
  return (ks / 4) * Tr::kKvPanelBytes + (ks % 4) * 32;
}

// Issues S = Q K^T for this warpgroup's 64 rows as one commit group (no
// wait: the caller overlaps it with the previous tile's P V).
template <typename Tr>
__device__ __forceinline__ void issue_qk(float (&s)[Tr::kSRegs], uint32_t q_base, uint32_t k_base,
                                         int consumer) {
  const uint64_t q0 = sm90::k_major_descriptor(q_base);
  const uint64_t k0 = sm90::k_major_descriptor(k_base);
#pragma unroll
  for (int ks = 0; ks < Tr::kKSteps; ++ks) {
    sm90::wgmma_ss<typename Tr::T, Tr::kBlockN>(
        s, sm90::descriptor_advanced(q0, q_step_offset<Tr>(consumer, ks)),
        sm90::descriptor_advanced(k0, k_step_offset<Tr>(ks)), ks > 0);
  }
  sm90::wgmma_commit();
}

// Issues O += P V as one commit group; P as mma A fragments (16 kv
// positions per k-step), which must stay untouched until it completes.
template <typename Tr>
__device__ __forceinline__ void issue_pv(float (&o)[Tr::kORegs], uint32_t (&p)[Tr::kPvSteps][4],
                                         uint32_t v_base) {
  const uint64_t v0 = sm90::mn_major_descriptor(v_base, Tr::kKvPanelBytes);
#pragma unroll
  for (int kk = 0; kk < Tr::kPvSteps; ++kk) {
    sm90::wgmma_rs<typename Tr::T, Tr::kHeadDim, true>(
        o, p[kk], sm90::descriptor_advanced(v0, kk * 16 * kPanelRowBytes), true);
  }
  sm90::wgmma_commit();
}

// Logits (log2 units; raw q.k when the scale is folded) and masks, in place.
template <typename Tr, typename Variant, bool kCustomMask, bool kMask, bool kFoldScale>
__device__ __forceinline__ void apply_logits(float (&s)[Tr::kSRegs],
                                             const RowContext<Variant, kCustomMask>& rc, int kv0,
                                             int kv_end, int t) {
  constexpr bool kSoftmax = Variant::kUseSoftmax;
  const float masked = kSoftmax ? attention::negative_infinity() : 0.f;
  // Without a variant or custom mask a row sees exactly the positions below
  // one bound (kv_end, and its diagonal when causal): one compare per
  // element against the bound made relative to this thread's first column,
  // instead of two compares and the column's address math.
  constexpr bool kBoundOnly = !Variant::kHasLogitsMask && !kCustomMask;
  int bound[2];  // element (j, e) of row i is seen while 8 j + e < bound[i]
#pragma unroll
  for (int i = 0; i < 2; ++i) bound[i] = rc.limit[i] - kv0 - 2 * t;
#pragma unroll
  for (int j = 0; j < Tr::kBlockN / 8; ++j) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = kv0 + 8 * j + 2 * t + e;
        float x = s[4 * j + 2 * i + e];
        if constexpr (!kFoldScale) x *= rc.q_scale;
        if constexpr (Variant::kHasLogitsTransform) x = rc.var.v[i].logits_transform(x, col);
        if constexpr (kMask && kBoundOnly) {
          if (8 * j + e >= bound[i]) x = masked;
        } else if constexpr (kMask) {
          if (!prefill::attends(rc.var.v[i], rc.causal, col, rc.pos[i], kv_end) ||
              (kCustomMask && !prefill::custom_mask_allows(rc.mask, rc.mask_row[i], col))) {
            x = masked;
          }
        }
        s[4 * j + 2 * i + e] = x;
      }
    }
  }
}

// Online softmax over the tile, in place: the rows' max over the quad,
// exponentials and row sums; `factor` is what the accumulators must be
// rescaled by (1 when a row's max did not move). Touches no accumulator, so
// it runs while the previous tile's P V is in flight.
template <typename Tr, bool kFoldScale>
__device__ __forceinline__ void online_softmax(float (&s)[Tr::kSRegs], RowState<Tr>& st,
                                               float q_scale, float (&factor)[2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float max_i = st.m[i];
#pragma unroll
    for (int j = 0; j < Tr::kBlockN / 8; ++j) {
      max_i = fmaxf(max_i, fmaxf(s[4 * j + 2 * i], s[4 * j + 2 * i + 1]));
    }
    max_i = fmaxf(max_i, __shfl_xor_sync(0xffffffffu, max_i, 1));
    max_i = fmaxf(max_i, __shfl_xor_sync(0xffffffffu, max_i, 2));
    const float ref = attention::safe_max(max_i);
    const float exp_offset = -ref * q_scale;
    const auto exponent = [&](float x) {
      return kFoldScale ? fmaf(x, q_scale, exp_offset) : x - ref;
    };
    factor[i] = max_i == st.m[i] ? 1.f : attention::fast_exp2(exponent(st.m[i]));
    st.m[i] = max_i;
    st.d[i] *= factor[i];
#pragma unroll
    for (int j = 0; j < Tr::kBlockN / 8; ++j) {
      s[4 * j + 2 * i] = attention::fast_exp2(exponent(s[4 * j + 2 * i]));
      s[4 * j + 2 * i + 1] = attention::fast_exp2(exponent(s[4 * j + 2 * i + 1]));
      st.d[i] += s[4 * j + 2 * i] + s[4 * j + 2 * i + 1];
    }
  }
}

template <typename Tr>
__device__ __forceinline__ void rescale(float (&o)[Tr::kORegs], const float (&factor)[2]) {
  if (factor[0] != 1.f || factor[1] != 1.f) {
#pragma unroll
    for (int j = 0; j < Tr::kHeadDim / 8; ++j) {
      o[4 * j + 0] *= factor[0];
      o[4 * j + 1] *= factor[0];
      o[4 * j + 2] *= factor[1];
      o[4 * j + 3] *= factor[1];
    }
  }
}

// S accumulators (n-blocks 2 kk and 2 kk + 1) repacked as the A fragments
// of P V's k-step kk.
template <typename Tr>
__device__ __forceinline__ void pack_p(const float (&s)[Tr::kSRegs],
                                       uint32_t (&p)[Tr::kPvSteps][4]) {
  using T = typename Tr::T;
#pragma unroll
  for (int kk = 0; kk < Tr::kPvSteps; ++kk) {
    p[kk][0] = sm80::pack2<T>(s[8 * kk + 0], s[8 * kk + 1]);
    p[kk][1] = sm80::pack2<T>(s[8 * kk + 2], s[8 * kk + 3]);
    p[kk][2] = sm80::pack2<T>(s[8 * kk + 4], s[8 * kk + 5]);
    p[kk][3] = sm80::pack2<T>(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

// Zeroes rows [first_row, kBlockN) of a V tile loaded by TMA: the box is
// always kBlockN rows, so a request's last tile holds rows past its keys (the
// next request's, or whatever follows in the caller's buffer, possibly NaN),
// and P = 0 times NaN is still NaN. Both consumer warpgroups share the rows,
// then meet, so neither reads the tile before it is clean.
template <typename Tr>
__device__ __forceinline__ void zero_v_rows_from(unsigned char* tile, int first_row,
                                                 int consumer) {
  constexpr int kChunks = Tr::kHeadDim / 8;  // 16-byte chunks per row
  const int total = (Tr::kBlockN - first_row) * kChunks;
  for (int i = static_cast<int>(threadIdx.x) % 128 + consumer * 128; i < total;
       i += kConsumers * 128) {
    const int r = first_row + i / kChunks;
    *reinterpret_cast<uint4*>(tile + swizzled_offset(Tr::kBlockN, r, (i % kChunks) * 8)) =
        make_uint4(0u, 0u, 0u, 0u);
  }
  sm90::fence_shared_to_async();
  sm90::named_barrier_sync(kConsumerBarrier, kConsumers * 128);
}

// Turns between the two consumer warpgroups: each issues a tile's S and P V
// in its turn, then passes the turn, so one's softmax runs while the other's
// products keep the tensor cores busy instead of both warpgroups issuing at
// once and then both computing softmax with the tensor cores idle. Consumer
// 1 passes a turn to consumer 0 at the start; both take a turn per tile, so
// neither runs more than one turn ahead.
__device__ __forceinline__ void wait_turn(int consumer) {
  __syncwarp();  // bar.sync is .aligned: lanes may leave the mbarrier spin before it apart
  sm90::named_barrier_sync(kTurnBarrier + consumer, kConsumers * 128);
}
__device__ __forceinline__ void pass_turn(int consumer) {
  sm90::named_barrier_arrive(kTurnBarrier + (consumer + 1) % kConsumers, kConsumers * 128);
}

// Releases a stage slot: one arrival per consumer warp (lane 0), after the
// warp's wgmma reading it completed.
__device__ __forceinline__ void release(uint64_t* empty) {
  __syncwarp();
  if (threadIdx.x % 32 == 0) sm90::barrier_arrive(empty);
}

}  // namespace tessera::prefill_sm90
