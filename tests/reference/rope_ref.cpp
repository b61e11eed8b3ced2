#include "reference/rope_ref.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>
#include <stdexcept>

namespace tessera::reference {

namespace {

// The float32 angle the API specifies: float(pos) * float(freq), rounded once.
double float32_angle(int64_t position, double frequency) {
  const float angle = static_cast<float>(position) * static_cast<float>(frequency);
  return static_cast<double>(angle);
}

// Rotates pairs of every head; cos_sin(token, pair) gives the pair's angle.
std::vector<double> rotate(std::span<const float> x, int64_t num_tokens, int64_t num_heads,
                           int64_t head_dim, int64_t rotary_dim, bool interleave,
                           const std::function<void(int64_t, int64_t, double&, double&)>& cos_sin) {
  if (static_cast<int64_t>(x.size()) != num_tokens * num_heads * head_dim) {
    throw std::invalid_argument("rope reference: x size");
  }
  std::vector<double> out(x.begin(), x.end());
  const int64_t half = rotary_dim / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t j = 0; j < half; ++j) {
      double c = 0;
      double s = 0;
      cos_sin(t, j, c, s);
      const int64_t lo = interleave ? 2 * j : j;
      const int64_t hi = interleave ? 2 * j + 1 : j + half;
      for (int64_t h = 0; h < num_heads; ++h) {
        const int64_t row = (t * num_heads + h) * head_dim;
        const double a = x[row + lo];
        const double b = x[row + hi];
        out[row + lo] = a * c - b * s;
        out[row + hi] = b * c + a * s;
      }
    }
  }
  return out;
}

}  // namespace

std::vector<double> rope_frequencies(int64_t rotary_dim, const RopeOptions& options) {
  std::vector<double> freqs(static_cast<std::size_t>(rotary_dim / 2));
  for (int64_t j = 0; j < rotary_dim / 2; ++j) {
    const double base =
        1.0 / std::pow(options.rope_theta, 2.0 * static_cast<double>(j) / static_cast<double>(rotary_dim));
    double freq = base / options.rope_scale;
    if (options.llama31) {
      const Llama31Scaling& l = *options.llama31;
      const double wavelen = 2.0 * std::numbers::pi / base;
      const double smooth =
          std::clamp((l.old_context_len / wavelen - l.low_freq_factor) /
                         (l.high_freq_factor - l.low_freq_factor),
                     0.0, 1.0);
      freq = (1.0 - smooth) * base / options.rope_scale + smooth * base;
    }
    freqs[j] = freq;
  }
  return freqs;
}

std::vector<int64_t> ragged_positions(std::span<const int32_t> indptr,
                                      std::span<const int32_t> offsets) {
  std::vector<int64_t> positions;
  for (std::size_t b = 0; b < offsets.size(); ++b) {
    for (int32_t i = indptr[b]; i < indptr[b + 1]; ++i) {
      positions.push_back(static_cast<int64_t>(offsets[b]) + i - indptr[b]);
    }
  }
  return positions;
}

std::vector<double> apply_rope(std::span<const float> x, int64_t num_tokens, int64_t num_heads,
                               int64_t head_dim, std::span<const int64_t> positions,
                               const RopeOptions& options) {
  const int64_t rotary_dim = options.rotary_dim == 0 ? head_dim : options.rotary_dim;
  const std::vector<double> freqs = rope_frequencies(rotary_dim, options);
  return rotate(x, num_tokens, num_heads, head_dim, rotary_dim, options.interleave,
                [&](int64_t t, int64_t j, double& c, double& s) {
                  const double angle = float32_angle(positions[t], freqs[j]);
                  c = std::cos(angle);
                  s = std::sin(angle);
                });
}

std::vector<double> apply_rope_with_cos_sin_cache(std::span<const float> x, int64_t num_tokens,
                                                  int64_t num_heads, int64_t head_size,
                                                  std::span<const int64_t> positions,
                                                  std::span<const float> cos_sin_cache,
                                                  int64_t rotary_dim, bool is_neox) {
  return rotate(x, num_tokens, num_heads, head_size, rotary_dim, !is_neox,
                [&](int64_t t, int64_t j, double& c, double& s) {
                  const float* row = cos_sin_cache.data() + positions[t] * rotary_dim;
                  c = row[j];
                  s = row[rotary_dim / 2 + j];
                });
}

std::vector<float> rope_cos_sin_cache(int64_t max_position, int64_t rotary_dim,
                                      const RopeOptions& options) {
  const std::vector<double> freqs = rope_frequencies(rotary_dim, options);
  std::vector<float> cache(static_cast<std::size_t>(max_position * rotary_dim));
  for (int64_t p = 0; p < max_position; ++p) {
    for (int64_t j = 0; j < rotary_dim / 2; ++j) {
      const double angle = float32_angle(p, freqs[j]);
      cache[p * rotary_dim + j] = static_cast<float>(std::cos(angle));
      cache[p * rotary_dim + rotary_dim / 2 + j] = static_cast<float>(std::sin(angle));
    }
  }
  return cache;
}

}  // namespace tessera::reference
