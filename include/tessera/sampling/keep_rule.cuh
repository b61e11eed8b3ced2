// Which entries of a row a top-k / top-p filter keeps, and the exact search
// for its threshold.
//
// An entry v is kept when the entries strictly above it number fewer than k
// and weigh less than top_p of the row's mass; the largest entries are always
// kept. Both tests only tighten as v falls, so the kept set is every entry
// above one threshold, and ties at the threshold are all kept or all dropped
// together (FlashInfer's pivot semantics; a sort-based top-k would break ties
// by index instead).
#pragma once

#include <cstdint>
#include <cuda/std/limits>

#include "tessera/sampling/ordered_key.cuh"
#include "tessera/sampling/row_pass.cuh"

namespace tessera::sampling {

struct KeepRule {
  static constexpr double kOff = cuda::std::numeric_limits<double>::infinity();
  int max_above = INT32_MAX;  // top_k (INT32_MAX: off)
  double mass_limit = kOff;   // top_p * row mass (+inf: off)

  __device__ __forceinline__ bool active() const {
    return max_above != INT32_MAX || mass_limit != kOff;
  }
  // Whether an entry with `above` strictly above it is kept (AboveStats of a
  // float pass, or RadixStats with an exact mass).
  template <typename Stats>
  __device__ __forceinline__ bool keeps(const Stats& above) const {
    return above.count == 0 || (above.count < max_above && above.mass < mass_limit);
  }
};

// top_k < 1 keeps the maximum alone (the host rejects such scalars; a
// per-request array is not read back to check it).
__device__ __forceinline__ void add_top_k(KeepRule& rule, int32_t top_k, int vocab) {
  if (top_k < vocab) rule.max_above = top_k < 1 ? 1 : top_k;
}
// top_p >= 1 keeps everything (float sums of a whole row can round to 1 and
// would otherwise drop the smallest entries); top_p <= 0 or NaN: the maximum.
__device__ __forceinline__ void add_top_p(KeepRule& rule, float top_p, double row_mass) {
  if (!(top_p >= 1.f)) rule.mass_limit = top_p > 0.f ? static_cast<double>(top_p) * row_mass : 0.0;
}

// The kept entries are exactly those > pivot; above: their mass and count.
using Threshold = PivotStats<AboveStats>;

// Bisection over ordered keys between a pivot the rule rejects (or the
// lowest pivot of interest) and the row maximum, which it always keeps: at
// most 32 passes over the row, exact for any values. `low` is a Threshold or
// any {pivot, above} pair whose stats the rule reads (the cluster path's
// carry where each CTA's slice starts); stats_at(pivot) gives the stats of
// the entries > pivot.
template <typename PivotStats, typename StatsAt>
__device__ PivotStats bisect_threshold(KeepRule rule, PivotStats low, float row_max,
                                       StatsAt&& stats_at) {
  if (rule.keeps(low.above)) return low;
  uint32_t lo = ordered_key(low.pivot);
  uint32_t hi = ordered_key(row_max);
  while (hi - lo > 1u) {
    const uint32_t mid = lo + (hi - lo) / 2u;
    const float pivot = key_to_float(mid);
    const auto above = stats_at(pivot);
    if (rule.keeps(above)) {
      hi = mid;
    } else {
      lo = mid;
      low = {pivot, above};
    }
  }
  return low;
}

template <int kVec>
__device__ Threshold find_threshold(const float* __restrict__ row, int vocab, KeepRule rule,
                                    Threshold low, float row_max, RowPassStorage& storage) {
  return bisect_threshold(rule, low, row_max, [&](float pivot) {
    return stats_above<kVec>(row, vocab, pivot, storage);
  });
}

}  // namespace tessera::sampling
