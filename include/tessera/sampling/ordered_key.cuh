// A float32 <-> uint32 map that keeps order (x < y  <=>  key(x) < key(y) for
// non-NaN x, y), so an exact threshold can be found by bisection over keys:
// at most 32 halvings of the key range, whatever the values.
#pragma once

#include <cstdint>

namespace tessera::sampling {

__device__ __forceinline__ uint32_t ordered_key(float x) {
  const uint32_t bits = __float_as_uint(x);
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

__device__ __forceinline__ float key_to_float(uint32_t key) {
  const uint32_t bits = (key & 0x80000000u) != 0 ? key & 0x7fffffffu : ~key;
  return __uint_as_float(bits);
}

}  // namespace tessera::sampling
