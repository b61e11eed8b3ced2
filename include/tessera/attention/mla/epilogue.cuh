// An MLA kernel's last step for a thread's two rows: normalise its O
// columns and store them to out (and lse), or to the unit's float32 partial
// rows when the plan split it (the prefill merge combines those). The
// accumulators are in the mma / wgmma layout: o[4 j + 2 i + e] is row i
// (g or g + 8 of the warp's 16), column 8 j + 2 t + e.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm80/mma.cuh"
#include "tessera/attention/mla/params.cuh"
#include "tessera/attention/state.cuh"

namespace tessera::mla {

// row: the two tile rows; column0: the first of the 2 x kORegs columns
// this warp holds; d: the lanes' partial row sums (reduced over the quad
// here); m: the row maxima of the raw logits. writes_lse: this warp's
// lanes t == 0 store the rows' lse.
template <typename T, int kORegs>
__device__ __forceinline__ void write_rows(const Params<T>& p, const PrefillWorkUnit& u,
                                           const float (&o)[kORegs], const float (&m)[2],
                                           float (&d)[2], const int (&row)[2], int column0,
                                           bool writes_lse, int t) {
  constexpr int kColumns = 2 * kORegs;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    d[i] += __shfl_xor_sync(0xffffffffu, d[i], 1);
    d[i] += __shfl_xor_sync(0xffffffffu, d[i], 2);
    const bool any = d[i] > 0.f;
    const float inv = any ? 1.f / d[i] : 0.f;
    const float lse = any ? m[i] * p.sm_scale_log2 + __log2f(d[i]) : attention::negative_infinity();
    if (row[i] >= u.qo_rows) continue;
    const int r = u.qo_tile_begin + row[i];
    const int token = u.qo_begin + r / p.num_heads;
    const int head = r % p.num_heads;
    const bool store_lse = writes_lse && t == 0;
    if (u.partial_index >= 0) {
      const int64_t partial = u.partial_index + row[i];
      float* const part = p.schedule.partial_out + partial * kDimCkv + column0;
#pragma unroll
      for (int j = 0; j < kColumns / 8; ++j) {
        *reinterpret_cast<float2*>(part + 8 * j + 2 * t) =
            make_float2(o[4 * j + 2 * i] * inv, o[4 * j + 2 * i + 1] * inv);
      }
      if (store_lse) p.schedule.partial_lse[partial] = lse;
    } else {
      T* const out = p.out + token * p.out_stride_token + head * p.out_stride_head + column0;
#pragma unroll
      for (int j = 0; j < kColumns / 8; ++j) {
        *reinterpret_cast<uint32_t*>(out + 8 * j + 2 * t) =
            sm80::pack2<T>(o[4 * j + 2 * i] * inv, o[4 * j + 2 * i + 1] * inv);
      }
      if (store_lse && p.lse != nullptr) {
        p.lse[static_cast<int64_t>(token) * p.num_heads + head] = lse;
      }
    }
  }
}

}  // namespace tessera::mla
