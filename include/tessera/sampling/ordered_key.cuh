// A float32 <-> uint32 map that keeps order (x < y  <=>  key(x) < key(y) for
// non-NaN x, y), so an exact threshold can be found over keys: by bisection
// (keep_rule.cuh, at most 32 halvings) or by radix digits (radix_select.cuh).
#pragma once

#include <cstdint>

#include "tessera/sampling/radix_digits.h"

namespace tessera::sampling {

__device__ __forceinline__ uint32_t ordered_key(float x) {
  return ordered_key_from_bits(__float_as_uint(x));
}

__device__ __forceinline__ float key_to_float(uint32_t key) {
  return __uint_as_float(bits_from_ordered_key(key));
}

// -0 and +0 compare equal, so they share +0's key: ties stay ties.
__device__ __forceinline__ uint32_t ordered_key_of_value(float x) {
  return ordered_key(x == 0.f ? 0.f : x);
}

}  // namespace tessera::sampling
