// A consumer warpgroup's end of a unit: the quad-reduced row sums, lse (base
// 2), normalised outputs. Unsplit units stage the 16-bit rows in the
// warpgroup's own Q rows (read by no one else, and its last wgmma on them has
// completed) and store 16-byte chunks; split units write float32 partial
// rows straight from the accumulators for the merge.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include "tessera/arch/sm80/mma.cuh"
#include "tessera/attention/prefill_sm90/mainloop.cuh"

namespace tessera::prefill_sm90 {

template <typename Tr, typename Variant, bool kFoldScale>
__device__ __forceinline__ void write_unit_output(unsigned char* q_tile, RowState<Tr>& st,
                                                  const prefill::RowVariants<Variant, 2>& var,
                                                  float q_scale, float v_scale,
                                                  const prefill::QueryRows<typename Tr::T>& rows,
                                                  const prefill::OutputRows<typename Tr::T>& output,
                                                  const Unit& u, int consumer) {
  using T = typename Tr::T;
  constexpr bool kSoftmax = Variant::kUseSoftmax;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = (static_cast<int>(threadIdx.x) / 32) % 4;
  const int g = lane / 4;
  const int t = lane % 4;
  const int warp_row = consumer * kConsumerRows + warp * 16;  // tile row of the warp's row 0
  float inv[2];
  float lse[2];
  int row[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    st.d[i] += __shfl_xor_sync(0xffffffffu, st.d[i], 1);
    st.d[i] += __shfl_xor_sync(0xffffffffu, st.d[i], 2);
    inv[i] = !kSoftmax ? v_scale : st.d[i] > 0.f ? v_scale / st.d[i] : 0.f;
    const float m_log2 = kFoldScale ? st.m[i] * q_scale : st.m[i];
    lse[i] = !kSoftmax       ? 0.f
             : st.d[i] > 0.f ? m_log2 + __log2f(st.d[i])
                             : attention::negative_infinity();
    row[i] = u.row_begin + warp_row + g + 8 * i;
  }

  if (output.partial_out != nullptr) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      if (row[i] >= u.row_end) continue;
      float* const part = output.partial_out + (row[i] - u.row_begin) * output.partial_stride;
#pragma unroll
      for (int j = 0; j < Tr::kHeadDim / 8; ++j) {
        *reinterpret_cast<float2*>(part + 8 * j + 2 * t) =
            make_float2(st.o[4 * j + 2 * i] * inv[i], st.o[4 * j + 2 * i + 1] * inv[i]);
      }
      if (t == 0) output.partial_lse[(row[i] - u.row_begin) * output.partial_lse_stride] = lse[i];
    }
    return;
  }

  // Stage the warp's 16 rows in its Q rows (swizzled like Q), then store.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int tile_row = warp_row + g + 8 * i;
#pragma unroll
    for (int j = 0; j < Tr::kHeadDim / 8; ++j) {
      float o0 = st.o[4 * j + 2 * i] * inv[i];
      float o1 = st.o[4 * j + 2 * i + 1] * inv[i];
      if constexpr (Variant::kHasOutputTransform) {
        o0 = var.v[i].output_transform(o0);
        o1 = var.v[i].output_transform(o1);
      }
      *reinterpret_cast<uint32_t*>(q_tile + swizzled_offset(kBlockM, tile_row, 8 * j + 2 * t)) =
          sm80::pack2<T>(o0, o1);
    }
  }
  __syncwarp();
  constexpr int kChunks = Tr::kHeadDim / 8;
#pragma unroll
  for (int c = lane; c < 16 * kChunks; c += 32) {
    const int r = c / kChunks;
    const int chunk = c % kChunks;
    const int out_row = u.row_begin + warp_row + r;
    if (out_row < u.row_end) {
      const uint4 value =
          *reinterpret_cast<const uint4*>(q_tile + swizzled_offset(kBlockM, warp_row + r, chunk * 8));
      const int token = rows.token(out_row);
      const int head = out_row - token * static_cast<int>(rows.per_token.divisor) + rows.head_base;
      *reinterpret_cast<uint4*>(output.out + token * output.stride_token +
                                head * output.stride_head + chunk * 8) = value;
    }
  }
  if (output.lse != nullptr && t == 0) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      if (row[i] < u.row_end) {
        output.lse[rows.token(row[i]) * output.lse_stride + rows.head(row[i])] = lse[i];
      }
    }
  }
}

}  // namespace tessera::prefill_sm90
