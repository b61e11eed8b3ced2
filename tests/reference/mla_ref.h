// float64 reference of MLA attention after the absorption (docs/mla.md), one
// request: s_j = (q_nope . ckv_j + q_pe . kpe_j) x sm_scale over the keys a
// token sees (causal: j <= kv_len - qo_len + i), out = softmax(s) . ckv,
// lse = log2(sum_j exp(s_j)); a token that sees no key gets 0 and -inf.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tessera::reference {

struct MlaRefResult {
  std::vector<double> out;  // [qo_len, heads, dim_ckv]
  std::vector<double> lse;  // [qo_len, heads], base 2
};

// q_nope [qo_len, heads, dim_ckv], q_pe [qo_len, heads, dim_kpe], ckv
// [kv_len, dim_ckv], kpe [kv_len, dim_kpe]: logical row-major values.
MlaRefResult mla_attention(std::span<const float> q_nope, std::span<const float> q_pe,
                           std::span<const float> ckv, std::span<const float> kpe,
                           int64_t qo_len, int64_t kv_len, int64_t heads, int64_t dim_ckv,
                           int64_t dim_kpe, bool causal, double sm_scale);

}  // namespace tessera::reference
