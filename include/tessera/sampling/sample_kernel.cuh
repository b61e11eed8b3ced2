// Sorting-free sampling from probabilities under top-k / top-p / min-p
// filters.
//
// Grid: one CTA of kRowThreads threads per output (request) row; shared
// memory: RadixStorage (~41 KiB, radix_select.cuh) and CUB temporaries.
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
// bisection (find_threshold) and the last uniform draws the token. Top-p's
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

template <int kVec>
__global__ void __launch_bounds__(kRowThreads, kRowCtasPerSm) sample_kernel(const SampleParams p) {
  __shared__ RowStorage shared;
  RowPassStorage& storage = shared.pass;
  RadixStorage& radix = shared.radix;
  const int out_row = blockIdx.x;
  const int64_t row_index = p.row_indices != nullptr ? p.row_indices[out_row] : out_row;
  const float* __restrict__ row = p.probs + row_index * p.probs_row_stride;
  const float* __restrict__ uniforms = p.uniforms + out_row;  // round r at r * batch

  if (p.filters.top_k && !p.filters.min_p && p.vocab <= kRadixMaxVocab) {
    sample_radix<kVec>(p, row, out_row, storage, radix);
    return;
  }
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
