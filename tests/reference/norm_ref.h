// float64 references for the RMSNorm family. Inputs are the values the
// device sees (already rounded to the storage dtype); tensors are row-major
// [num_tokens, hidden] on the host.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tessera::reference {

// 0 for rmsnorm / fused_add_rmsnorm, 1 for the Gemma forms' (1 + weight).
inline constexpr double kPlainWeightOffset = 0.0;
inline constexpr double kGemmaWeightOffset = 1.0;

// out[t, h] = x[t, h] / sqrt(mean_h(x[t, :]^2) + eps) * (weight_offset + weight[h]).
std::vector<double> rmsnorm(std::span<const double> input, std::span<const float> weight,
                            int64_t num_tokens, int64_t hidden, double eps,
                            double weight_offset = kPlainWeightOffset);
// The same for float inputs (converted exactly to double).
std::vector<double> rmsnorm(std::span<const float> input, std::span<const float> weight,
                            int64_t num_tokens, int64_t hidden, double eps,
                            double weight_offset = kPlainWeightOffset);

struct FusedAddRmsNormResult {
  std::vector<double> residual;  // input + residual, exact (not rounded)
  std::vector<double> out;       // rmsnorm of that exact sum
};

// residual' = input + residual (in float64: exact for 16-bit inputs), and
// out = rmsnorm(residual'), normalising the exact sum.
FusedAddRmsNormResult fused_add_rmsnorm(std::span<const float> input,
                                        std::span<const float> residual,
                                        std::span<const float> weight, int64_t num_tokens,
                                        int64_t hidden, double eps,
                                        double weight_offset = kPlainWeightOffset);

}  // namespace tessera::reference
