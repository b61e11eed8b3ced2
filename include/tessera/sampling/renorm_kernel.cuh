// Top-p / top-k renormalisation of probabilities and top-k masking of logits:
// find each row's exact threshold (keep_rule.cuh: summary pass, then
// bisection over ordered keys, at most 32 passes), then one pass that writes
// kept probabilities divided by their sum (0 elsewhere) or kept logits as
// they are (-inf elsewhere).
//
// Grid: one CTA of kRowThreads threads per row; CUB temporaries only.
// Ties at the threshold are kept together (keep_rule.cuh). NaN inputs are
// never kept.
#pragma once

#include "tessera/sampling/keep_rule.cuh"
#include "tessera/sampling/row_pass.cuh"
#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

template <int kVec>
__device__ __forceinline__ void store_chunk(float* __restrict__ row, int i, int vocab,
                                            const float (&v)[kVec]) {
  if (i >= vocab) return;
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(row + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    row[i] = v[0];
  }
}

template <int kVec>
__global__ void __launch_bounds__(kRowThreads, kRowCtasPerSm) renorm_kernel(const RenormParams p) {
  __shared__ RowPassStorage storage;
  const int r = blockIdx.x;
  const float* __restrict__ in = p.input + r * p.input_row_stride;
  float* __restrict__ out = p.out + r * p.out_row_stride;
  const bool logits = p.mode == RenormMode::kTopKLogits;
  const float neg_inf = -__int_as_float(0x7f800000);

  // Probabilities: only positive entries can be kept; logits: any finite one.
  const float lowest = logits ? neg_inf : 0.f;
  const RowSummary summary = row_summary<kVec>(in, p.vocab, lowest, storage);
  KeepRule rule;
  if (p.mode == RenormMode::kTopPProbs) {
    add_top_p(rule, p.top_p.at(r), summary.above.mass);
  } else {
    add_top_k(rule, p.top_k.at(r), p.vocab);
  }
  const Threshold t =
      find_threshold<kVec>(in, p.vocab, rule, {lowest, summary.above}, summary.max, storage);
  const float scale = t.above.mass > 0.f ? 1.f / t.above.mass : 0.f;
  for (int base = 0; base < p.vocab; base += kChunkEntries<kVec>) {
    const int start = chunk_start<kVec>(base);
    float v[kVec];
    load_chunk<kVec>(in, start, p.vocab, 0.f, v);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const bool kept = v[k] > t.pivot;
      v[k] = logits ? (kept ? v[k] : neg_inf) : (kept ? v[k] * scale : 0.f);
    }
    store_chunk<kVec>(out, start, p.vocab, v);
  }
}

}  // namespace tessera::sampling
