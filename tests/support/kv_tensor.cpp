#include "support/kv_tensor.h"

namespace tessera::testing {

DeviceTensor make_kv_tensor(DType dtype, KVLayout layout, int64_t kv_len, int64_t num_kv_heads,
                            int64_t head_dim, int64_t outer_padding,
                            const std::vector<float>& nhd_values) {
  const bool nhd = layout == KVLayout::kNHD;
  const int64_t outer = nhd ? kv_len : num_kv_heads;
  const int64_t inner = nhd ? num_kv_heads : kv_len;
  const int64_t d = head_dim;
  DeviceTensor t(dtype, {outer, inner, d}, {inner * d + outer_padding, d, 1});
  t.poison();
  std::vector<float> logical(nhd_values.size());
  for (int64_t j = 0; j < kv_len; ++j) {
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      for (int64_t e = 0; e < d; ++e) {
        const int64_t dst = nhd ? (j * num_kv_heads + h) * d + e : (h * kv_len + j) * d + e;
        logical[dst] = nhd_values[(j * num_kv_heads + h) * d + e];
      }
    }
  }
  if (!logical.empty()) t.upload(logical);
  return t;
}

}  // namespace tessera::testing
