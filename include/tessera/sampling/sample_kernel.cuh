// Sorting-free sampling from probabilities under top-k / top-p / min-p
// filters (FlashInfer's rejection sampling over a pivot).
//
// Grid: one CTA of kRowThreads threads per output (request) row; no shared
// memory beyond CUB's temporaries (a few hundred bytes).
//
// Algorithm, per row: draw a token from the entries above a pivot (inverse
// CDF with uniform u_r, one scan pass); test it against the filter (one
// stats pass: count and mass strictly above it). Kept: done. Rejected: every
// entry <= it is rejected too (keep_rule.cuh), so it becomes the pivot, and
// the draw from the entries above it is again exactly the filtered
// distribution restricted to a superset. After num_rounds - 1 rejections
// the threshold is found exactly by bisection (find_threshold) and the last
// uniform draws the token, so every row gets a sample from the exact
// filtered distribution (success is false only for rows with no positive
// entry, and NaN rows when check_nan).
// min-p has a threshold known after one pass (min_p * max), so it samples
// once; min-p with top-k / top-p is not a FlashInfer combination.
// All passes combine in a fixed order: output is bitwise reproducible.
#pragma once

#include "tessera/sampling/keep_rule.cuh"
#include "tessera/sampling/row_pass.cuh"
#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

__device__ __forceinline__ void write_sample(const SampleParams& p, int out_row, int token,
                                             bool ok) {
  if (threadIdx.x == 0) {
    p.samples[out_row] = token;
    if (p.success != nullptr) p.success[out_row] = ok;
  }
}

template <int kVec>
__global__ void __launch_bounds__(kRowThreads, kRowCtasPerSm) sample_kernel(const SampleParams p) {
  __shared__ RowPassStorage storage;
  const int out_row = blockIdx.x;
  const int64_t row_index = p.row_indices != nullptr ? p.row_indices[out_row] : out_row;
  const float* __restrict__ row = p.probs + row_index * p.probs_row_stride;
  const float* __restrict__ uniforms = p.uniforms + out_row;  // round r at r * batch

  const RowSummary summary = row_summary<kVec>(row, p.vocab, 0.f, storage);
  if ((p.check_nan && summary.has_nan) || summary.above.count == 0) {
    write_sample(p, out_row, 0, false);
    return;
  }
  Threshold low{0.f, summary.above};
  if (p.filters.min_p) {
    const float bound = p.min_p.at(out_row) * summary.max;
    if (bound > 0.f) {  // entries >= bound: those above the float just below it
      low.pivot = __uint_as_float(__float_as_uint(fminf(bound, summary.max)) - 1u);
      low.above = stats_above<kVec>(row, p.vocab, low.pivot, storage);
    }
  }
  KeepRule rule;
  if (p.filters.top_k) add_top_k(rule, p.top_k.at(out_row), p.vocab);
  if (p.filters.top_p) add_top_p(rule, p.top_p.at(out_row), summary.above.mass);

  int round = 0;
  if (rule.active()) {
    for (; round + 1 < p.num_rounds; ++round) {
      const float u = uniforms[static_cast<int64_t>(round) * p.batch];
      const int token = sample_above<kVec>(row, p.vocab, low.pivot, u * low.above.mass, storage);
      const float value = row[token];
      const AboveStats above = stats_above<kVec>(row, p.vocab, value, storage);
      if (rule.keeps(above)) {
        write_sample(p, out_row, token, true);
        return;
      }
      low = {value, above};
    }
    low = find_threshold<kVec>(row, p.vocab, rule, low, summary.max, storage);
  }
  const float u = uniforms[static_cast<int64_t>(round) * p.batch];
  write_sample(p, out_row, sample_above<kVec>(row, p.vocab, low.pivot, u * low.above.mass, storage),
               true);
}

}  // namespace tessera::sampling
