// Custom prefill masks for the tests: random boolean masks and FlashInfer's
// packed layout (segment_packbits, little-endian bits, each request's bits
// starting on a byte), uploaded as the uint8 tensor AttentionOptions takes.
#pragma once

#include <cstdint>
#include <vector>

#include "support/device_tensor.h"
#include "support/random.h"

namespace tessera::testing {

// qo_len x kv_len booleans, each true with probability `keep`; every
// `empty_row_every`-th row (0: none) all false, to test fully masked rows.
std::vector<bool> random_mask(int64_t qo_len, int64_t kv_len, double keep, Rng& rng,
                              int64_t empty_row_every = 0);

// The packed bytes of requests' masks, in order (one mask per request).
std::vector<int64_t> pack_masks(const std::vector<std::vector<bool>>& masks);

// A uint8 device tensor of the packed masks.
DeviceTensor upload_masks(const std::vector<std::vector<bool>>& masks);

}  // namespace tessera::testing
