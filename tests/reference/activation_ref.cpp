#include "reference/activation_ref.h"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace tessera::reference {

double gated_activation_value(GatedActivationKind kind, double x) {
  switch (kind) {
    case GatedActivationKind::kSilu: return x / (1.0 + std::exp(-x));
    case GatedActivationKind::kGelu: return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
    case GatedActivationKind::kGeluTanh: {
      const double sqrt_2_over_pi = std::sqrt(2.0 / std::numbers::pi);
      return 0.5 * x * (1.0 + std::tanh(sqrt_2_over_pi * (x + 0.044715 * x * x * x)));
    }
  }
  throw std::invalid_argument("gated_activation_value: unknown kind");
}

std::vector<double> gated_activation_and_mul(GatedActivationKind kind,
                                             std::span<const float> input, int64_t num_rows,
                                             int64_t d) {
  if (static_cast<int64_t>(input.size()) != num_rows * 2 * d) {
    throw std::invalid_argument("reference::gated_activation_and_mul: size != rows * 2d");
  }
  std::vector<double> out(num_rows * d);
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* row = input.data() + r * 2 * d;
    for (int64_t j = 0; j < d; ++j) {
      out[r * d + j] = gated_activation_value(kind, row[j]) * static_cast<double>(row[d + j]);
    }
  }
  return out;
}

}  // namespace tessera::reference
