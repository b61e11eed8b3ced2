// float64 references of the sampling family: the exact filtered distribution
// a sampler must draw from, and the renorm / mask outputs, with the kept-set
// rules of tessera/api/sampling.h (ties at a threshold kept together).
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::reference {

struct SamplingFilter {
  int64_t top_k = 0;    // 0: off
  double top_p = 1.0;   // >= 1: off
  double min_p = 0.0;   // 0: off
  bool top_k_first = false;  // top-p over the top-k renormalised row (else joint)
};

// Whether each entry survives the filter (positive entries only).
std::vector<bool> kept_entries(const std::vector<float>& row, const SamplingFilter& filter);
// The kept entries divided by their sum; 0 elsewhere (all 0 for a row with no
// positive entry).
std::vector<double> filtered_distribution(const std::vector<float>& row,
                                          const SamplingFilter& filter);
// top_k_mask_logits: kept logits as they are, -inf elsewhere.
std::vector<double> top_k_masked_logits(const std::vector<float>& logits, int64_t top_k);

// Total variation distance between a distribution and the empirical one of
// `counts` (its draws).
double total_variation(const std::vector<double>& expected, const std::vector<int64_t>& counts);

}  // namespace tessera::reference
