#include "reference/attention_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <thread>

namespace tessera::reference {

namespace {

// Rotates one head row (NeoX halves) to `position`, in double.
std::vector<double> rope_row(const float* x, int64_t head_dim, int64_t position,
                             const AttentionRefParams& p) {
  std::vector<double> out(x, x + head_dim);
  if (!p.rope_llama) return out;
  const int64_t half = head_dim / 2;
  for (int64_t j = 0; j < half; ++j) {
    const double freq =
        std::pow(p.rope_theta, -2.0 * static_cast<double>(j) / static_cast<double>(head_dim)) /
        p.rope_scale;
    const double angle = static_cast<double>(position) * freq;
    const double c = std::cos(angle);
    const double s = std::sin(angle);
    const double a = x[j];
    const double b = x[j + half];
    out[j] = a * c - b * s;
    out[j + half] = b * c + a * s;
  }
  if (p.round_rotated) {
    for (double& e : out) e = p.round_rotated(static_cast<float>(e));
  }
  return out;
}

}  // namespace

AttentionRefResult attention_reference(std::span<const float> q, std::span<const float> k,
                                       std::span<const float> v, const AttentionRefParams& p) {
  const int64_t d = p.head_dim;
  const int64_t dv = p.head_dim_vo > 0 ? p.head_dim_vo : d;  // v's and out's
  if (p.num_kv_heads < 1 || p.num_qo_heads % p.num_kv_heads != 0 ||
      q.size() != static_cast<std::size_t>(p.qo_len * p.num_qo_heads * d) ||
      k.size() != static_cast<std::size_t>(p.kv_len * p.num_kv_heads * d) ||
      v.size() != static_cast<std::size_t>(p.kv_len * p.num_kv_heads * dv) ||
      (!p.alibi_slopes.empty() &&
       p.alibi_slopes.size() != static_cast<std::size_t>(p.num_qo_heads)) ||
      (p.rope_llama && d % 2 != 0) ||
      (!p.custom_mask.empty() &&
       p.custom_mask.size() != static_cast<std::size_t>(p.qo_len * p.kv_len))) {
    throw std::invalid_argument("attention_reference: inconsistent sizes");
  }
  const int64_t group = p.num_qo_heads / p.num_kv_heads;
  const double sm_scale = p.sm_scale > 0 ? p.sm_scale : 1.0 / std::sqrt(static_cast<double>(d));
  AttentionRefResult result;
  result.out.assign(static_cast<std::size_t>(p.qo_len * p.num_qo_heads * dv), 0.0);
  result.lse.assign(static_cast<std::size_t>(p.qo_len * p.num_qo_heads),
                    -std::numeric_limits<double>::infinity());
  // Keys rotated (RoPE) and widened once, [kv_len, num_kv_heads, d].
  std::vector<double> k_rows(static_cast<std::size_t>(p.kv_len * p.num_kv_heads * d));
  for (int64_t j = 0; j < p.kv_len; ++j) {
    for (int64_t g = 0; g < p.num_kv_heads; ++g) {
      const std::vector<double> kr = rope_row(&k[(j * p.num_kv_heads + g) * d], d, j, p);
      std::copy(kr.begin(), kr.end(), k_rows.begin() + (j * p.num_kv_heads + g) * d);
    }
  }
  // One query row (i, h) at a time; rows are independent, so threads take
  // interleaved query tokens (the GPU tests' references dominate their time).
  const auto query_rows = [&](int64_t first, int64_t step) {
    std::vector<double> logits(static_cast<std::size_t>(p.kv_len));
    std::vector<char> kept(static_cast<std::size_t>(p.kv_len));
    for (int64_t i = first; i < p.qo_len; i += step) {
      const int64_t q_pos = p.kv_len - p.qo_len + i;
      for (int64_t h = 0; h < p.num_qo_heads; ++h) {
        const int64_t g = h / group;
        const std::vector<double> qr = rope_row(&q[(i * p.num_qo_heads + h) * d], d, q_pos, p);
        double max_logit = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < p.kv_len; ++j) {
          const bool masked = (p.causal && j > q_pos) ||
                              (p.window_left >= 0 && j < q_pos - p.window_left) ||
                              (!p.custom_mask.empty() &&
                               !p.custom_mask[static_cast<std::size_t>(i * p.kv_len + j)]);
          kept[j] = !masked;
          if (masked) continue;
          const double* kr = &k_rows[(j * p.num_kv_heads + g) * d];
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) dot += qr[e] * kr[e] * p.k_scale;
          double s = sm_scale * dot;
          if (!p.alibi_slopes.empty()) s += p.alibi_slopes[h] * static_cast<double>(j - q_pos);
          if (p.logits_soft_cap > 0) s = p.logits_soft_cap * std::tanh(s / p.logits_soft_cap);
          logits[j] = s;
          max_logit = std::max(max_logit, s);
        }
        if (max_logit == -std::numeric_limits<double>::infinity()) continue;  // all masked
        double sum = 0;
        double* o = &result.out[(i * p.num_qo_heads + h) * dv];
        for (int64_t j = 0; j < p.kv_len; ++j) {
          if (!kept[j]) continue;
          const double w = std::exp(logits[j] - max_logit);
          sum += w;
          for (int64_t e = 0; e < dv; ++e) o[e] += w * v[(j * p.num_kv_heads + g) * dv + e];
        }
        for (int64_t e = 0; e < dv; ++e) o[e] *= p.v_scale / sum;
        result.lse[i * p.num_qo_heads + h] = (max_logit + std::log(sum)) * std::numbers::log2e;
      }
    }
  };
  const double work = static_cast<double>(p.qo_len) * p.num_qo_heads * p.kv_len * d;
  constexpr int64_t kMaxThreads = 16;
  const int64_t threads =
      work < 1e7 ? 1
                 : std::min({p.qo_len, kMaxThreads,
                             static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()))});
  {
    std::vector<std::jthread> pool;  // joined on the way out, also if query_rows throws
    for (int64_t t = 1; t < threads; ++t) pool.emplace_back(query_rows, t, threads);
    query_rows(0, threads);
  }
  return result;
}

std::vector<double> standard_alibi_slopes(int64_t num_heads) {
  std::vector<double> slopes(static_cast<std::size_t>(num_heads));
  for (int64_t h = 0; h < num_heads; ++h) {
    slopes[h] = std::exp2(-8.0 * static_cast<double>(h + 1) / static_cast<double>(num_heads));
  }
  return slopes;
}

}  // namespace tessera::reference
