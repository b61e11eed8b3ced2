#include "reference/mla_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tessera::reference {

MlaRefResult mla_attention(std::span<const float> q_nope, std::span<const float> q_pe,
                           std::span<const float> ckv, std::span<const float> kpe,
                           int64_t qo_len, int64_t kv_len, int64_t heads, int64_t dim_ckv,
                           int64_t dim_kpe, bool causal, double sm_scale) {
  MlaRefResult r;
  r.out.assign(static_cast<std::size_t>(qo_len * heads * dim_ckv), 0.0);
  r.lse.assign(static_cast<std::size_t>(qo_len * heads),
               -std::numeric_limits<double>::infinity());
  std::vector<double> s(static_cast<std::size_t>(kv_len));
  for (int64_t i = 0; i < qo_len; ++i) {
    const int64_t visible = causal ? std::clamp<int64_t>(kv_len - qo_len + i + 1, 0, kv_len)
                                   : kv_len;
    for (int64_t h = 0; h < heads; ++h) {
      if (visible == 0) continue;
      const float* qn = q_nope.data() + (i * heads + h) * dim_ckv;
      const float* qp = q_pe.data() + (i * heads + h) * dim_kpe;
      double max_s = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < visible; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < dim_ckv; ++d) dot += double{qn[d]} * ckv[j * dim_ckv + d];
        for (int64_t d = 0; d < dim_kpe; ++d) dot += double{qp[d]} * kpe[j * dim_kpe + d];
        s[j] = dot * sm_scale;
        max_s = std::max(max_s, s[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < visible; ++j) {
        s[j] = std::exp(s[j] - max_s);
        sum += s[j];
      }
      double* o = r.out.data() + (i * heads + h) * dim_ckv;
      for (int64_t j = 0; j < visible; ++j) {
        const double p = s[j] / sum;
        for (int64_t d = 0; d < dim_ckv; ++d) o[d] += p * ckv[j * dim_ckv + d];
      }
      r.lse[i * heads + h] = (max_s + std::log(sum)) / std::log(2.0);
    }
  }
  return r;
}

}  // namespace tessera::reference
