#include "reference/sampling_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace tessera::reference {

namespace {

// Entries strictly above v: how many and their mass (O(n) per entry: the
// references run on rows of at most a few hundred thousand entries once).
struct Above {
  int64_t count = 0;
  double mass = 0.0;
};

std::vector<Above> above_each(const std::vector<double>& row) {
  std::vector<int64_t> order(row.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row[a] > row[b]; });
  std::vector<Above> result(row.size());
  Above running;
  size_t i = 0;
  while (i < order.size()) {
    size_t j = i;
    Above tie_group;
    while (j < order.size() && row[order[j]] == row[order[i]]) {
      tie_group.count += 1;
      tie_group.mass += row[order[j]];
      ++j;
    }
    for (size_t t = i; t < j; ++t) result[order[t]] = running;
    running.count += tie_group.count;
    running.mass += tie_group.mass;
    i = j;
  }
  return result;
}

std::vector<bool> keep_top(const std::vector<double>& row, const std::vector<bool>& alive,
                           int64_t top_k, double top_p) {
  std::vector<double> live(row.size());
  double total = 0.0;
  for (size_t i = 0; i < row.size(); ++i) {
    live[i] = alive[i] ? row[i] : 0.0;
    total += live[i];
  }
  const std::vector<Above> above = above_each(live);
  std::vector<bool> kept(row.size());
  for (size_t i = 0; i < row.size(); ++i) {
    if (!alive[i]) continue;
    const bool k_ok = top_k <= 0 || above[i].count < top_k;
    const bool p_ok = top_p >= 1.0 || above[i].mass < top_p * total;
    kept[i] = above[i].count == 0 || (k_ok && p_ok);
  }
  return kept;
}

}  // namespace

std::vector<bool> kept_entries(const std::vector<float>& row_f, const SamplingFilter& filter) {
  std::vector<double> row(row_f.begin(), row_f.end());
  std::vector<bool> kept(row.size());
  double max = 0.0;
  for (size_t i = 0; i < row.size(); ++i) {
    kept[i] = row[i] > 0.0;
    if (kept[i]) max = std::max(max, row[i]);
  }
  if (filter.min_p > 0.0) {
    const double bound = static_cast<double>(static_cast<float>(filter.min_p) *
                                             static_cast<float>(max));
    for (size_t i = 0; i < row.size(); ++i) kept[i] = kept[i] && row[i] >= bound;
  }
  if (filter.top_k_first) {
    kept = keep_top(row, kept, filter.top_k, 1.0);
    return keep_top(row, kept, 0, filter.top_p);
  }
  return keep_top(row, kept, filter.top_k, filter.top_p);
}

std::vector<double> filtered_distribution(const std::vector<float>& row,
                                          const SamplingFilter& filter) {
  const std::vector<bool> kept = kept_entries(row, filter);
  std::vector<double> result(row.size(), 0.0);
  double sum = 0.0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (kept[i]) sum += row[i];
  }
  if (sum <= 0.0) return result;
  for (size_t i = 0; i < row.size(); ++i) {
    if (kept[i]) result[i] = row[i] / sum;
  }
  return result;
}

std::vector<double> top_k_masked_logits(const std::vector<float>& logits, int64_t top_k) {
  std::vector<double> row(logits.begin(), logits.end());
  const std::vector<Above> above = above_each(row);
  std::vector<double> result(row.size(), -std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < row.size(); ++i) {
    if (std::isfinite(row[i]) && (above[i].count < top_k || above[i].count == 0)) {
      result[i] = row[i];
    }
  }
  return result;
}

double total_variation(const std::vector<double>& expected, const std::vector<int64_t>& counts) {
  const double draws = static_cast<double>(std::accumulate(counts.begin(), counts.end(),
                                                           int64_t{0}));
  double distance = 0.0;
  for (size_t i = 0; i < expected.size(); ++i) {
    distance += std::abs(expected[i] - static_cast<double>(counts[i]) / draws);
  }
  return distance / 2.0;
}

}  // namespace tessera::reference
