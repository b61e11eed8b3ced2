// float64 reference of merging attention states (v, lse), lse in base 2:
// m = max_i s_i, w_i = 2^(s_i - m), v = sum w_i v_i / sum w_i,
// s = m + log2(sum w_i). States with s = -inf are ignored (their v is never
// read); all -inf gives v = 0, s = -inf.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tessera::reference {

struct MergedStates {
  std::vector<double> v;    // [rows, heads, head_dim]
  std::vector<double> lse;  // [rows, heads]
};

// v [rows, num_states, heads, head_dim], lse [rows, num_states, heads],
// logical row-major values.
MergedStates merge_states(std::span<const float> v, std::span<const float> lse, int64_t rows,
                          int64_t num_states, int64_t heads, int64_t head_dim);

// Two states, each v [rows, heads, head_dim] and lse [rows, heads].
MergedStates merge_state(std::span<const float> v_a, std::span<const float> s_a,
                         std::span<const float> v_b, std::span<const float> s_b, int64_t rows,
                         int64_t heads, int64_t head_dim);

}  // namespace tessera::reference
