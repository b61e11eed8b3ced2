// Top-p / top-k renormalisation of probabilities and top-k masking of logits:
// find each row's exact threshold (radix_select.cuh: 2 reads of the row, 3
// when the threshold's bucket is crowded, 1 when the rule keeps everything),
// then one pass that reads the row again and writes kept probabilities
// divided by their exact sum (0 elsewhere) or kept logits as they are (-inf
// elsewhere). Vocabularies over kRadixMaxVocab take the bisection instead
// (keep_rule.cuh: up to 33 reads).
//
// Grid: one CTA of kRowThreads threads per row; shared memory: RadixStorage
// (~41 KiB) and CUB temporaries.
// Ties at the threshold are kept together (keep_rule.cuh). NaN inputs are
// never kept.
#pragma once

#include "tessera/sampling/keep_rule.cuh"
#include "tessera/sampling/radix_select.cuh"
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
  __shared__ RowStorage shared;
  RowPassStorage& storage = shared.pass;
  RadixStorage& radix = shared.radix;
  const int r = blockIdx.x;
  const float* __restrict__ in = p.input + r * p.input_row_stride;
  float* __restrict__ out = p.out + r * p.out_row_stride;
  const bool logits = p.mode == RenormMode::kTopKLogits;
  const float neg_inf = -__int_as_float(0x7f800000);

  // Probabilities: only positive entries can be kept; logits: any > -inf.
  const float lowest = logits ? neg_inf : 0.f;
  const auto make_rule = [&](auto row_total) {
    KeepRule rule;
    if (p.mode == RenormMode::kTopPProbs) {
      add_top_p(rule, p.top_p.at(r), row_total.mass);
    } else {
      add_top_k(rule, p.top_k.at(r), p.vocab);
    }
    return rule;
  };
  uint32_t min_key;
  double kept_mass;
  if (p.vocab <= kRadixMaxVocab) {
    const RadixThreshold t = radix_threshold<kVec>(in, p.vocab, lowest, !logits, make_rule, radix);
    min_key = t.min_key;
    kept_mass = t.kept.mass;
  } else {  // bucket counts would overflow their 20 bits: bisection
    const RowSummary summary = row_summary<kVec>(in, p.vocab, lowest, storage);
    const Threshold t = find_threshold<kVec>(in, p.vocab, make_rule(summary.above),
                                             {lowest, summary.above}, summary.max, storage);
    min_key = ordered_key_of_value(t.pivot) + 1u;  // kept: > pivot
    kept_mass = t.above.mass;
  }
  const float scale = kept_mass > 0.0 ? static_cast<float>(1.0 / kept_mass) : 0.f;
  for (int base = 0; base < p.vocab; base += kChunkEntries<kVec>) {
    const int start = chunk_start<kVec>(base);
    float v[kVec];
    load_chunk<kVec>(in, start, p.vocab, 0.f, v);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const bool kept = v[k] > lowest && ordered_key_of_value(v[k]) >= min_key;
      v[k] = logits ? (kept ? v[k] : neg_inf) : (kept ? v[k] * scale : 0.f);
    }
    store_chunk<kVec>(out, start, p.vocab, v);
  }
}

}  // namespace tessera::sampling
