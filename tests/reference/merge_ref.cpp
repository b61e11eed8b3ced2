#include "reference/merge_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tessera::reference {

MergedStates merge_states(std::span<const float> v, std::span<const float> lse, int64_t rows,
                          int64_t num_states, int64_t heads, int64_t head_dim) {
  const double kNegInf = -std::numeric_limits<double>::infinity();
  MergedStates out;
  out.v.assign(static_cast<std::size_t>(rows * heads * head_dim), 0.0);
  out.lse.assign(static_cast<std::size_t>(rows * heads), kNegInf);
  const auto lse_at = [&](int64_t r, int64_t i, int64_t h) {
    return static_cast<double>(lse[static_cast<std::size_t>((r * num_states + i) * heads + h)]);
  };
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      double m = kNegInf;
      for (int64_t i = 0; i < num_states; ++i) m = std::max(m, lse_at(r, i, h));
      if (m == kNegInf) continue;  // no state: 0, -inf
      double denom = 0.0;
      double* o = &out.v[static_cast<std::size_t>((r * heads + h) * head_dim)];
      for (int64_t i = 0; i < num_states; ++i) {
        const double s = lse_at(r, i, h);
        if (s == kNegInf) continue;
        const double w = std::exp2(s - m);
        denom += w;
        const float* vi = &v[static_cast<std::size_t>(((r * num_states + i) * heads + h) * head_dim)];
        for (int64_t d = 0; d < head_dim; ++d) o[d] += w * vi[d];
      }
      for (int64_t d = 0; d < head_dim; ++d) o[d] /= denom;
      out.lse[static_cast<std::size_t>(r * heads + h)] = m + std::log2(denom);
    }
  }
  return out;
}

MergedStates merge_state(std::span<const float> v_a, std::span<const float> s_a,
                         std::span<const float> v_b, std::span<const float> s_b, int64_t rows,
                         int64_t heads, int64_t head_dim) {
  // Interleave into [rows, 2, heads, head_dim] and reuse the general case.
  const auto row_v = static_cast<std::size_t>(heads * head_dim);
  const auto row_s = static_cast<std::size_t>(heads);
  std::vector<float> v(static_cast<std::size_t>(rows) * 2 * row_v);
  std::vector<float> s(static_cast<std::size_t>(rows) * 2 * row_s);
  for (std::size_t r = 0; r < static_cast<std::size_t>(rows); ++r) {
    std::copy_n(v_a.begin() + r * row_v, row_v, v.begin() + (2 * r) * row_v);
    std::copy_n(v_b.begin() + r * row_v, row_v, v.begin() + (2 * r + 1) * row_v);
    std::copy_n(s_a.begin() + r * row_s, row_s, s.begin() + (2 * r) * row_s);
    std::copy_n(s_b.begin() + r * row_s, row_s, s.begin() + (2 * r + 1) * row_s);
  }
  return merge_states(v, s, rows, 2, heads, head_dim);
}

}  // namespace tessera::reference
