#include "reference/norm_ref.h"

#include <cmath>
#include <stdexcept>

namespace tessera::reference {

std::vector<double> rmsnorm(std::span<const double> input, std::span<const float> weight,
                            int64_t num_tokens, int64_t hidden, double eps,
                            double weight_offset) {
  if (static_cast<int64_t>(input.size()) != num_tokens * hidden ||
      static_cast<int64_t>(weight.size()) != hidden) {
    throw std::invalid_argument("reference::rmsnorm: sizes do not match the shape");
  }
  std::vector<double> out(input.size());
  for (int64_t t = 0; t < num_tokens; ++t) {
    const double* row = input.data() + t * hidden;
    double sum_squares = 0.0;
    for (int64_t h = 0; h < hidden; ++h) sum_squares += row[h] * row[h];
    const double inv_rms = 1.0 / std::sqrt(sum_squares / static_cast<double>(hidden) + eps);
    for (int64_t h = 0; h < hidden; ++h) {
      out[t * hidden + h] = row[h] * inv_rms * (weight_offset + static_cast<double>(weight[h]));
    }
  }
  return out;
}

std::vector<double> rmsnorm(std::span<const float> input, std::span<const float> weight,
                            int64_t num_tokens, int64_t hidden, double eps,
                            double weight_offset) {
  const std::vector<double> wide(input.begin(), input.end());
  return rmsnorm(std::span<const double>(wide), weight, num_tokens, hidden, eps, weight_offset);
}

FusedAddRmsNormResult fused_add_rmsnorm(std::span<const float> input,
                                        std::span<const float> residual,
                                        std::span<const float> weight, int64_t num_tokens,
                                        int64_t hidden, double eps, double weight_offset) {
  if (input.size() != residual.size()) {
    throw std::invalid_argument("reference::fused_add_rmsnorm: input and residual sizes differ");
  }
  FusedAddRmsNormResult result;
  result.residual.resize(input.size());
  for (std::size_t i = 0; i < input.size(); ++i) {
    result.residual[i] = static_cast<double>(input[i]) + static_cast<double>(residual[i]);
  }
  result.out = rmsnorm(std::span<const double>(result.residual), weight, num_tokens, hidden, eps,
                       weight_offset);
  return result;
}

}  // namespace tessera::reference
