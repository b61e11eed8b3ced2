// The portable (sm80+) MLA kernel (docs/mla.md): one CTA per work unit of
// the plan, 8 warps; warp w computes S = Q K^T over all 576 values for rows
// [16 (w % 4), +16) (the two column groups' warps of a row group compute
// the same S: no exchange, and decode is memory-bound), the online softmax,
// and O += P V for its 256 columns, with mma.sync m16n8k16. Warps whose
// rows are all padding (16 heads of decode fill one row group) skip the
// math but share the loads. K/V tiles double-buffered by cp.async.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/attention/mla/epilogue.cuh"
#include "tessera/attention/mla/tiles_sm80.cuh"
// RowState, online_softmax, rescale and pack_p only read the accumulator
// layout, which mma.sync m16n8 and wgmma share.
#include "tessera/attention/prefill_sm90/mainloop.cuh"

namespace tessera::mla_sm80 {

template <typename T_>
struct Traits {
  using T = T_;
  static constexpr int kHeadDim = kOutColumns;  // this warp's O columns
  static constexpr int kBlockN = mla_sm80::kBlockN;
  static constexpr int kKSteps = kDimQk / 16;
  static constexpr int kPvSteps = kBlockN / 16;
  static constexpr int kSRegs = kBlockN / 2;
  static constexpr int kORegs = kHeadDim / 2;
};

// A lane's ldmatrix row address in a tile of kRows rows, for 16-column
// steps: step ks reads chunk 2 ks + bit of row `row`, i.e. base[ks % 4]
// plus ks / 4 panels (the swizzle only sees ks % 4).
template <int kRows>
struct LaneRows {
  uint32_t base[4];
  __device__ __forceinline__ LaneRows(uint32_t tile, int row, int bit) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      base[j] = tile + static_cast<uint32_t>(row * kRowBytes + (((2 * j + bit) ^ (row % 8)) * 16));
    }
  }
  __device__ __forceinline__ uint32_t at(int ks) const {
    return base[ks % 4] + static_cast<uint32_t>((ks / 4) * kRows * kRowBytes);
  }
};

// Accumulator block `block` (4 floats) of a flat register array.
__device__ __forceinline__ float (&fragment(float* regs, int block))[4] {
  return *reinterpret_cast<float(*)[4]>(regs + 4 * block);
}

// S (16 rows x 32 positions) = Q K^T over 576 values.
template <typename T>
__device__ __forceinline__ void compute_s(float (&s)[Traits<T>::kSRegs], const LaneRows<kBlockM>& q,
                                          const LaneRows<kBlockN>& k, uint32_t stage) {
#pragma unroll
  for (int i = 0; i < Traits<T>::kSRegs; ++i) s[i] = 0.f;
#pragma unroll
  for (int ks = 0; ks < Traits<T>::kKSteps; ++ks) {
    uint32_t a[4];
    sm80::ldmatrix_x4(a, q.at(ks));
#pragma unroll
    for (int half = 0; half < kBlockN / 16; ++half) {
      uint32_t b[4];
      sm80::ldmatrix_x4(b, stage + k.at(ks) + static_cast<uint32_t>(half * 16 * kRowBytes));
      sm80::mma_16816<T>(fragment(s, 2 * half), a, b[0], b[1]);
      sm80::mma_16816<T>(fragment(s, 2 * half + 1), a, b[2], b[3]);
    }
  }
}

// O (16 rows x this warp's 256 columns) += P V.
template <typename T>
__device__ __forceinline__ void accumulate_pv(float (&o)[Traits<T>::kORegs],
                                              const uint32_t (&pfrag)[Traits<T>::kPvSteps][4],
                                              const LaneRows<kBlockN>& v, uint32_t stage) {
#pragma unroll
  for (int kk = 0; kk < Traits<T>::kPvSteps; ++kk) {
#pragma unroll
    for (int c = 0; c < kOutColumns / 16; ++c) {
      uint32_t b[4];
      sm80::ldmatrix_x4_trans(b, stage + v.at(c) + static_cast<uint32_t>(kk * 16 * kRowBytes));
      sm80::mma_16816<T>(fragment(o, 2 * c), pfrag[kk], b[0], b[1]);
      sm80::mma_16816<T>(fragment(o, 2 * c + 1), pfrag[kk], b[2], b[3]);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1)
    mla_sm80_kernel(const __grid_constant__ Params<T> p) {
  using Tr = Traits<T>;
  const int job = static_cast<int>(blockIdx.x);
  if (job >= p.schedule.header->num_work_units) return;  // a graph's grid holds the bounds
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const uint32_t q_tile = sm80::shared_address(shared_raw);
  const uint32_t kv_tiles = q_tile + kQBytes;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int row_group = warp % kRowGroups;
  const int column_group = warp / kRowGroups;
  const int g = lane / 4;
  const int t = lane % 4;
  const PrefillWorkUnit u = p.schedule.work_units[job];
  const bool causal = p.schedule.header->causal != 0;
  const mla::UnitSpan span = mla::unit_span<kBlockN>(u, p.num_heads, causal);
  const bool live = row_group * 16 < u.qo_rows;  // warp-uniform

  load_q(q_tile, p, u);
  if (span.num_tiles > 0) load_kv(kv_tiles, p, u, span.kv_begin, span.kv_end);
  sm80::cp_async_commit();

  int row[2];
  int limit[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    row[i] = row_group * 16 + g + 8 * i;
    limit[i] = mla::row_kv_limit(u, span, row[i], p.num_heads, causal);
  }
  const LaneRows<kBlockM> q_lanes(q_tile, row_group * 16 + lane % 16, lane / 16);
  const LaneRows<kBlockN> k_lanes(0, lane % 8 + 8 * (lane / 16), (lane / 8) % 2);
  const LaneRows<kBlockN> v_lanes(
      static_cast<uint32_t>(column_group * (kOutColumns / 64) * kKvPanelBytes),
      lane % 8 + 8 * ((lane / 8) % 2), lane / 16);
  prefill_sm90::RowState<Tr> st;
  st.init();
  for (int tile = 0; tile < span.num_tiles; ++tile) {
    const uint32_t stage = kv_tiles + static_cast<uint32_t>((tile % kStages) * kKvBytes);
    if (tile + 1 < span.num_tiles) {
      load_kv(kv_tiles + static_cast<uint32_t>(((tile + 1) % kStages) * kKvBytes), p, u,
              span.kv_begin + (tile + 1) * kBlockN, span.kv_end);
      sm80::cp_async_commit();
      sm80::cp_async_wait_group<1>();
    } else {
      sm80::cp_async_wait_group<0>();
    }
    __syncthreads();
    if (live) {
      float s[Tr::kSRegs];
      compute_s<T>(s, q_lanes, k_lanes, stage);
      mla::mask_past_limits<kBlockN>(s, limit, span.kv_begin + tile * kBlockN, t);
      float factor[2] = {1.f, 1.f};
      prefill_sm90::online_softmax<Tr, true>(s, st, p.sm_scale_log2, factor);
      prefill_sm90::rescale<Tr>(st.o, factor);
      uint32_t pfrag[Tr::kPvSteps][4];
      prefill_sm90::pack_p<Tr>(s, pfrag);
      accumulate_pv<T>(st.o, pfrag, v_lanes, stage);
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }
  sm80::cp_async_wait_all();  // Q's copies when the unit has no K/V tile
  if (live) {
    mla::write_rows(p, u, st.o, st.m, st.d, row, column_group * kOutColumns, column_group == 0, t);
  }
}

}  // namespace tessera::mla_sm80
