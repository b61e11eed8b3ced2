// Contiguous K or V tensors for the attention tests: logical values in NHD
// order [kv_len, num_kv_heads, head_dim] laid out as NHD or HND, with an
// optional padded outer stride (strided K/V); padding stays poisoned.
#pragma once

#include <cstdint>
#include <vector>

#include "support/device_tensor.h"
#include "tessera/api/paged_kv_cache.h"

namespace tessera::testing {

DeviceTensor make_kv_tensor(DType dtype, KVLayout layout, int64_t kv_len, int64_t num_kv_heads,
                            int64_t head_dim, int64_t outer_padding,
                            const std::vector<float>& nhd_values);

}  // namespace tessera::testing
