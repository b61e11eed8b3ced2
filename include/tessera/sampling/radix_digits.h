// The digit layout of the radix threshold search (radix_select.cuh), as plain
// functions of a 32-bit ordered key so the host tests can check them.
//
// A key is ordered_key(x) (ordered_key.cuh): x < y <=> key(x) < key(y) for
// non-NaN floats. Three digits, most significant first, cover all 32 bits:
//   pass 0: bits 31..21 (sign, 8 exponent bits, 2 mantissa bits)
//   pass 1: bits 20..10, pass 2: bits 9..0
// so every bucket of pass 0 holds positive floats of one exponent, and its
// mass is exact as a sum of integer mantissas (mantissa_units) times one
// power of two (bucket_mass_exponent).
//
// A bucket is three 32-bit counters: entries, and the sums of the high and
// low 12 bits of their 24-bit mantissas. 32-bit shared-memory atomics are
// native (a 64-bit add compiles to a compare-and-swap loop, which spins
// under the contention a histogram of probabilities has); integer sums are
// exact, so the histogram is the same in whatever order the atomics land
// (bitwise reproducible), as long as a bucket holds under 2^20 entries:
// vocabularies up to kRadixMaxVocab.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define TESSERA_SAMPLING_HD __host__ __device__
#else
#define TESSERA_SAMPLING_HD
#endif

namespace tessera::sampling {

inline constexpr int kRadixPasses = 3;
inline constexpr int kRadixBuckets = 1 << 11;  // the widest digit
inline constexpr int kMantissaLowBits = 12;    // 24-bit mantissa = high 12 | low 12
inline constexpr uint32_t kMantissaLowMask = (1u << kMantissaLowBits) - 1u;
inline constexpr int kRadixMaxVocab = (1 << 20) - 1;  // (2^12 - 1) * kRadixMaxVocab < 2^32

TESSERA_SAMPLING_HD constexpr int radix_shift(int pass) {
  return pass == 0 ? 21 : pass == 1 ? 10 : 0;
}
TESSERA_SAMPLING_HD constexpr int radix_bits(int pass) {
  return pass == 2 ? 10 : 11;
}
TESSERA_SAMPLING_HD constexpr uint32_t radix_digit(uint32_t key, int pass) {
  return (key >> radix_shift(pass)) & ((1u << radix_bits(pass)) - 1u);
}
// Whether key shares the top `bits` bits of prefix (bits 0: every key does).
TESSERA_SAMPLING_HD constexpr bool radix_prefix_matches(uint32_t key, uint32_t prefix, int bits) {
  return bits == 0 || ((key ^ prefix) >> (32 - bits)) == 0u;
}

TESSERA_SAMPLING_HD constexpr uint32_t ordered_key_from_bits(uint32_t bits) {
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}
TESSERA_SAMPLING_HD constexpr uint32_t bits_from_ordered_key(uint32_t key) {
  return (key & 0x80000000u) != 0 ? key & 0x7fffffffu : ~key;
}

// A positive float's value is mantissa_units(key) * 2^bucket_mass_exponent(key)
// exactly (subnormals included); keys of negative floats are never summed.
TESSERA_SAMPLING_HD constexpr uint32_t mantissa_units(uint32_t key) {
  const uint32_t exponent = (key >> 23) & 0xffu;
  const uint32_t mantissa = key & 0x7fffffu;
  return exponent != 0 ? mantissa | 0x800000u : mantissa;
}
TESSERA_SAMPLING_HD constexpr int bucket_mass_exponent(uint32_t key) {
  const int exponent = static_cast<int>((key >> 23) & 0xffu);
  return (exponent != 0 ? exponent : 1) - 150;
}

// A bucket's mantissa sum from its two counters (exact below 2^53).
TESSERA_SAMPLING_HD constexpr uint64_t bucket_units(uint32_t high_sum, uint32_t low_sum) {
  return (uint64_t{high_sum} << kMantissaLowBits) + low_sum;
}

}  // namespace tessera::sampling
