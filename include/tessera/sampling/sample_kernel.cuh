// Sorting-free sampling from probabilities under top-k / top-p / min-p
// filters.
//
// Grid: one CTA of kRowThreads threads per output (request) row; shared
// memory: RadixStorage (~41 KiB, radix_select.cuh) and CUB temporaries.
// Small batches on sm90 run both paths on a cluster of CTAs per row
// instead (cluster_sample_kernel.cuh).
//
// Top-k and joint top-k + top-p (vocab <= kRadixMaxVocab): the exact
// threshold of the filter by radix selection over ordered keys (2 reads of
// the row, 3 when the threshold's bucket holds more than
// kCandidateCapacity entries), then one inverse-CDF draw above it with
// uniform row 0 (one scan that stops at the token): a fixed, small number
// of passes, where rejection rounds for top-k often run several.
//
// Top-p alone, min-p, and vocabularies over kRadixMaxVocab: rejection
// sampling over a pivot. Draw a token from the entries above a pivot
// (inverse CDF with uniform u_r, one scan pass); test it against the filter
// (one stats pass: count and mass strictly above it). Kept: done. Rejected:
// every entry <= it is rejected too (keep_rule.cuh), so it becomes the
// pivot. After num_rounds - 1 rejections the threshold is found exactly by
// bisection (bisect_threshold) and the last uniform draws the token. Top-p's
// first draw is usually kept, so this costs ~2.5 row reads against the
// radix path's 3 (H100, B=512: 272 vs 340 us at V=128256, 62 vs 97 at
// 32000). min-p has a threshold known after one pass (min_p * max), so it
// samples once; min-p with top-k / top-p is not a FlashInfer combination.
//
// Every row gets a sample from the exact filtered distribution (success is
// false only for rows with no positive entry, and NaN rows when check_nan).
// All passes combine in a fixed order or in integers: output is bitwise
// reproducible.
#pragma once

#include "tessera/sampling/keep_rule.cuh"
#include "tessera/sampling/radix_select.cuh"
#include "tessera/sampling/row_pass.cuh"
#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

// Top-k alone or with top-p, within the radix histogram's vocabulary limit.
__host__ __device__ __forceinline__ bool uses_radix_select(const SampleParams& p) {
  return p.filters.top_k && !p.filters.min_p && p.vocab <= kRadixMaxVocab;
}

__device__ __forceinline__ void write_sample(const SampleParams& p, int out_row, int token,
                                             bool ok) {
  if (threadIdx.x == 0) {
    p.samples[out_row] = token;
    if (p.success != nullptr) p.success[out_row] = ok;
  }
}

// Top-k / joint: the exact threshold by radix selection (2 or 3 row
// reads, the first also finding NaNs and the row's mass), then one inverse-CDF
// draw above it with the first uniform (at most 1 more read).
template <int kVec>
__device__ void sample_radix(const SampleParams& p, const float* __restrict__ row, int out_row,
                             RowPassStorage& storage, RadixStorage& radix) {
  const auto make_rule = [&](RadixStats row_total) {
    KeepRule rule;
    if (p.filters.top_k) add_top_k(rule, p.top_k.at(out_row), p.vocab);
    if (p.filters.top_p) add_top_p(rule, p.top_p.at(out_row), row_total.mass);
    return rule;
  };
  const RadixThreshold t = radix_threshold<kVec>(row, p.vocab, 0.f, true, make_rule, radix);
  if ((p.check_nan && t.has_nan) || t.total.count == 0) {
    write_sample(p, out_row, 0, false);
    return;
  }
  // min_key > key(+0): the float just below it is >= +0, and "> pivot" is
  // exactly "key >= min_key" for every non-NaN entry.
  const float pivot = key_to_float(t.min_key - 1u);
  const float target = p.uniforms[out_row] * static_cast<float>(t.kept.mass);
  write_sample(p, out_row, sample_above<kVec>(row, p.vocab, pivot, target, storage), true);
}

struct RowDraw {
  int token;
  bool ok;
};

// Top-p, min-p, and top-k over kRadixMaxVocab: rejection rounds over a pivot,
// then the exact threshold by bisection. `pass` reads the row: CtaRowPass
// (one CTA) or ClusterRowPass (a cluster, cluster_pass.cuh); every branch
// here depends on the pass's combined results only.
template <typename Pass>
__device__ RowDraw sample_by_rejection(const SampleParams& p, int out_row,
                                       const float* __restrict__ row, Pass& pass) {
  using Stats = typename Pass::Stats;
  const float* __restrict__ uniforms = p.uniforms + out_row;  // round r at r * batch
  const PassSummary<Stats> summary = pass.summary();
  if ((p.check_nan && summary.has_nan) || summary.above.count == 0) return {0, false};
  PivotStats<Stats> low{0.f, summary.above};
  if (p.filters.min_p) {
    const float bound = p.min_p.at(out_row) * summary.max;
    if (bound > 0.f) {  // entries >= bound: those above the float just below it
      low.pivot = __uint_as_float(__float_as_uint(fminf(bound, summary.max)) - 1u);
      low.above = pass.stats_above(low.pivot);
    }
  }
  KeepRule rule;
  if (p.filters.top_k) add_top_k(rule, p.top_k.at(out_row), p.vocab);
  if (p.filters.top_p) add_top_p(rule, p.top_p.at(out_row), summary.above.mass);

  int round = 0;
  if (rule.active()) {
    for (; round + 1 < p.num_rounds; ++round) {
      const float u = uniforms[static_cast<int64_t>(round) * p.batch];
      const int token = pass.draw(low.pivot, low.above, u * low.above.mass);
      const float value = row[token];
      const Stats above = pass.stats_above(value);
      if (rule.keeps(above)) return {token, true};
      low = {value, above};
    }
    low = bisect_threshold(rule, low, summary.max,
                           [&](float pivot) { return pass.stats_above(pivot); });
  }
  const float u = uniforms[static_cast<int64_t>(round) * p.batch];
  return {pass.draw(low.pivot, low.above, u * low.above.mass), true};
}

template <int kVec>
__global__ void __launch_bounds__(kRowThreads, kRowCtasPerSm) sample_kernel(const SampleParams p) {
  __shared__ RowStorage shared;
  RowPassStorage& storage = shared.pass;
  RadixStorage& radix = shared.radix;
  const int out_row = blockIdx.x;
  const int64_t row_index = p.row_indices != nullptr ? p.row_indices[out_row] : out_row;
  const float* __restrict__ row = p.probs + row_index * p.probs_row_stride;

  if (uses_radix_select(p)) {
    sample_radix<kVec>(p, row, out_row, storage, radix);
    return;
  }
  CtaRowPass<kVec> pass{row, p.vocab, storage};
  const RowDraw d = sample_by_rejection(p, out_row, row, pass);
  write_sample(p, out_row, d.token, d.ok);
}

}  // namespace tessera::sampling
