#include "support/custom_mask.h"

#include <algorithm>

namespace tessera::testing {

std::vector<bool> random_mask(int64_t qo_len, int64_t kv_len, double keep, Rng& rng,
                              int64_t empty_row_every) {
  const std::vector<float> u =
      rng.uniform_vector(static_cast<std::size_t>(qo_len * kv_len), 0.f, 1.f);
  std::vector<bool> mask(u.size());
  for (int64_t i = 0; i < qo_len; ++i) {
    const bool empty = empty_row_every > 0 && i % empty_row_every == empty_row_every - 1;
    for (int64_t j = 0; j < kv_len; ++j) {
      const auto e = static_cast<std::size_t>(i * kv_len + j);
      mask[e] = !empty && u[e] < keep;
    }
  }
  return mask;
}

std::vector<int64_t> pack_masks(const std::vector<std::vector<bool>>& masks) {
  std::vector<int64_t> bytes;
  for (const std::vector<bool>& mask : masks) {
    const std::size_t first = bytes.size();
    bytes.resize(first + (mask.size() + 7) / 8, 0);
    for (std::size_t e = 0; e < mask.size(); ++e) {
      if (mask[e]) bytes[first + e / 8] |= int64_t{1} << (e % 8);
    }
  }
  return bytes;
}

DeviceTensor upload_masks(const std::vector<std::vector<bool>>& masks) {
  const std::vector<int64_t> bytes = pack_masks(masks);
  DeviceTensor t(DType::kUInt8, {std::max<int64_t>(1, static_cast<int64_t>(bytes.size()))});
  std::vector<int64_t> padded = bytes;
  padded.resize(static_cast<std::size_t>(t.numel()), 0);
  t.upload_ints(padded);
  return t;
}

}  // namespace tessera::testing
