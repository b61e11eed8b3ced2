// float64 reference attention for one request (decode and prefill):
// q [qo_len, num_qo_heads, head_dim] against k, v [kv_len, num_kv_heads,
// head_dim], all row-major logical values. Query i sits at kv position
// kv_len - qo_len + i; query head h reads KV head h / (num_qo_heads /
// num_kv_heads). Logits, in this order:
//   s = sm_scale * rope(q) . (rope(k) * k_scale)
//   ALiBi:     s += slope_h * (kv_pos - q_pos)
//   soft-cap:  s = cap * tanh(s / cap)   (after the bias, as FlashInfer)
//   masks:     causal (kv_pos > q_pos), window (kv_pos < q_pos - window_left)
//              and the custom mask (custom_mask[i * kv_len + j] false)
// out = sum_j softmax_j(s) v_j * v_scale; lse = log2(sum_j e^(s_j)) (base 2).
// A query with every token masked (or kv_len 0) gets out 0 and lse -inf.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace tessera::reference {

struct AttentionRefParams {
  int64_t qo_len = 1;
  int64_t kv_len = 0;
  int64_t num_qo_heads = 1;
  int64_t num_kv_heads = 1;
  int64_t head_dim = 1;     // q's and k's
  int64_t head_dim_vo = 0;  // v's and out's; 0: head_dim (q/k 192, v/o 128: DeepSeek-style)
  bool causal = false;
  double sm_scale = 0.0;  // 0: 1 / sqrt(head_dim)
  double logits_soft_cap = 0.0;
  int64_t window_left = -1;
  std::vector<double> alibi_slopes;  // empty: no ALiBi; else [num_qo_heads]
  bool rope_llama = false;  // NeoX halves over the whole head, positions as above
  // Null, or how the kernel rounds a rotated q / k element before its dot
  // products (the prefill kernels rotate tiles in shared memory and store
  // them back in q's 16-bit type).
  std::function<float(float)> round_rotated;
  double rope_scale = 1.0;
  double rope_theta = 1e4;
  double k_scale = 1.0;
  double v_scale = 1.0;
  std::vector<bool> custom_mask;  // empty: none; else [qo_len * kv_len], true attends
};

struct AttentionRefResult {
  std::vector<double> out;  // [qo_len, num_qo_heads, head_dim_vo]
  std::vector<double> lse;  // [qo_len, num_qo_heads], base 2
};

AttentionRefResult attention_reference(std::span<const float> q, std::span<const float> k,
                                       std::span<const float> v, const AttentionRefParams& params);

// FlashInfer's standard ALiBi slopes for a power-of-two head count:
// 2^(-8 (h + 1) / num_heads).
std::vector<double> standard_alibi_slopes(int64_t num_heads);

}  // namespace tessera::reference
