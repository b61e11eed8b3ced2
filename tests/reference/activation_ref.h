// float64 references for the gated activations. input is row-major
// [num_rows, 2 * d] (x half, then gate half); the result is [num_rows, d].
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tessera::reference {

enum class GatedActivationKind { kSilu, kGelu, kGeluTanh };

// x * sigmoid(x); 0.5 x (1 + erf(x / sqrt 2)); 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
double gated_activation_value(GatedActivationKind kind, double x);

// out[r, j] = act(input[r, j]) * input[r, d + j].
std::vector<double> gated_activation_and_mul(GatedActivationKind kind,
                                             std::span<const float> input, int64_t num_rows,
                                             int64_t d);

}  // namespace tessera::reference
