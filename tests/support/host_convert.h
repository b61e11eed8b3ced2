// Host-side conversion between float and the 16/8-bit storage types, so tests
// can build device inputs and read outputs. Rounding is round-to-nearest-even
// (fp8 saturating), the same as the device conversions.
#pragma once

#include <cstdint>
#include <vector>

#include "tessera/core/dtype.h"

namespace tessera::testing {

// Storage bits of `value` in `dtype` (float16, bfloat16, float8 e4m3fn or
// e5m2, float32), written to `out` (dtype_size_bytes(dtype) bytes).
void float_to_storage(DType dtype, float value, void* out);
float storage_to_float(DType dtype, const void* in);
// Round-trips through the storage type: what the device will actually see.
float round_to(DType dtype, float value);
std::vector<float> round_to(DType dtype, std::vector<float> values);

}  // namespace tessera::testing
