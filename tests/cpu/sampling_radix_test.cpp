// The radix threshold search of the sampling kernels (radix_select.cuh) on
// the CPU: its key and digit layout (radix_digits.h, shared with the device
// code), and the search itself run sequentially over those helpers against
// the float64 reference's kept set (tests/reference/sampling_ref.h): random,
// tied and crowded rows, top-k and top-p.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference/sampling_ref.h"
#include "support/random.h"
#include "tessera/sampling/radix_digits.h"

namespace tessera::sampling {
namespace {

using reference::SamplingFilter;
using testing::Rng;

uint32_t key_of(float x) {
  return ordered_key_from_bits(std::bit_cast<uint32_t>(x));
}

TEST(SamplingRadixKey, KeysKeepTheOrderOfFloats) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  const float denorm = std::numeric_limits<float>::denorm_min();
  const std::vector<float> sorted = {-kInf,  -3e38f, -1.f, -1e-30f, -denorm, -0.f, 0.f,
                                     denorm, 1e-30f, 0.5f, 1.f,     3e38f,   kInf};
  for (size_t i = 0; i + 1 < sorted.size(); ++i) {
    EXPECT_LT(key_of(sorted[i]), key_of(sorted[i + 1])) << sorted[i] << " < " << sorted[i + 1];
  }
  for (float x : sorted) {
    EXPECT_EQ(bits_from_ordered_key(key_of(x)), std::bit_cast<uint32_t>(x)) << x;
  }
}

TEST(SamplingRadixKey, ThreeDigitsRebuildTheKey) {
  TESSERA_SEEDED_RNG(rng);
  for (int i = 0; i < 1000; ++i) {
    const auto key = static_cast<uint32_t>(rng.integer(0, 0xffffffffLL));
    uint32_t rebuilt = 0;
    int bits = 0;
    for (int pass = 0; pass < kRadixPasses; ++pass) {
      EXPECT_TRUE(radix_prefix_matches(key, rebuilt, bits));
      EXPECT_LT(radix_digit(key, pass), static_cast<uint32_t>(kRadixBuckets));
      rebuilt |= radix_digit(key, pass) << radix_shift(pass);
      bits += radix_bits(pass);
    }
    EXPECT_EQ(bits, 32);
    EXPECT_EQ(rebuilt, key);
    EXPECT_FALSE(radix_prefix_matches(key ^ 0x80000000u, key, 11));
  }
}

// value == (high sum << 12 | low sum) * 2^exponent exactly, and every key of
// one pass-0 bucket has the exponent of the bucket's lowest key.
TEST(SamplingRadixKey, MantissaSumsGiveExactMasses) {
  TESSERA_SEEDED_RNG(rng);
  std::vector<float> values = {
      std::numeric_limits<float>::denorm_min(), 1e-40f, 1e-30f, 1.f, 0.75f, 3e38f};
  for (int i = 0; i < 1000; ++i) values.push_back(std::ldexp(rng.uniform(1.f, 2.f), -i % 140));
  for (float x : values) {
    const uint32_t key = key_of(x);
    const uint32_t units = mantissa_units(key);
    const uint64_t split = bucket_units(units >> kMantissaLowBits, units & kMantissaLowMask);
    EXPECT_EQ(std::ldexp(static_cast<double>(split), bucket_mass_exponent(key)),
              static_cast<double>(x))
        << x;
    const uint32_t bucket_low = radix_digit(key, 0) << radix_shift(0);
    EXPECT_EQ(bucket_mass_exponent(bucket_low), bucket_mass_exponent(key)) << x;
  }
}

// The search of radix_select.cuh, one bucket at a time: the smallest key
// kept among the positive entries (UINT32_MAX: none).
uint32_t radix_min_key(const std::vector<float>& row, const SamplingFilter& f) {
  struct Stats {
    double mass = 0.0;
    int64_t count = 0;
    Stats operator+(const Stats& o) const { return {mass + o.mass, count + o.count}; }
  };
  const int64_t max_above = f.top_k > 0 ? f.top_k : std::numeric_limits<int64_t>::max();
  double mass_limit = std::numeric_limits<double>::infinity();
  const auto keeps = [&](const Stats& above) {
    return above.count == 0 || (above.count < max_above && above.mass < mass_limit);
  };
  uint32_t prefix = 0;
  int bits = 0;
  Stats above;
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    std::vector<uint64_t> units(kRadixBuckets, 0);
    std::vector<int64_t> counts(kRadixBuckets, 0);
    for (float x : row) {
      if (!(x > 0.f) || !radix_prefix_matches(key_of(x), prefix, bits)) continue;
      units[radix_digit(key_of(x), pass)] += mantissa_units(key_of(x));
      ++counts[radix_digit(key_of(x), pass)];
    }
    std::vector<Stats> buckets(kRadixBuckets);
    Stats total;
    for (int d = kRadixBuckets - 1; d >= 0; --d) {
      const uint32_t low_key = prefix | (static_cast<uint32_t>(d) << radix_shift(pass));
      buckets[d] = {std::ldexp(static_cast<double>(units[d]), bucket_mass_exponent(low_key)),
                    counts[d]};
      total = total + buckets[d];
    }
    if (pass == 0 && f.top_p < 1.0) mass_limit = static_cast<float>(f.top_p) * total.mass;
    int chosen = -1;
    Stats chosen_above, running = above;
    for (int d = kRadixBuckets - 1; d >= 0; --d) {
      if (buckets[d].count > 0 && keeps(running)) chosen = d, chosen_above = running;
      running = running + buckets[d];
    }
    if (chosen < 0) return std::numeric_limits<uint32_t>::max();
    prefix |= static_cast<uint32_t>(chosen) << radix_shift(pass);
    bits += radix_bits(pass);
    above = chosen_above;
    if (buckets[chosen].count == 1 || keeps(above + buckets[chosen])) return prefix;
  }
  return prefix;
}

void expect_radix_keeps_the_reference_set(const std::vector<float>& row, const SamplingFilter& f) {
  const uint32_t min_key = radix_min_key(row, f);
  const std::vector<bool> expected = reference::kept_entries(row, f);
  int64_t mismatches = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    const bool kept = row[i] > 0.f && key_of(row[i]) >= min_key;
    mismatches += kept != expected[i];
  }
  EXPECT_EQ(mismatches, 0) << "top_k " << f.top_k << ", top_p " << f.top_p << ", vocab "
                           << row.size();
}

std::vector<float> softmax_row(Rng& rng, int64_t vocab, float scale) {
  std::vector<float> row = rng.normal_vector(static_cast<std::size_t>(vocab), 0.f, scale);
  double sum = 0.0;
  for (float& x : row) sum += (x = std::exp(x));
  for (float& x : row) x = static_cast<float>(x / sum);
  return row;
}

TEST(SamplingRadixSearch, KeepsTheReferenceSetOnRandomRows) {
  TESSERA_SEEDED_RNG(rng);
  for (int64_t vocab : {1, 7, 111, 32000}) {
    for (float scale : {0.1f, 1.f, 3.f}) {
      const std::vector<float> row = softmax_row(rng, vocab, scale);
      for (int64_t k : {1, 2, 37, 1000, 100000})
        expect_radix_keeps_the_reference_set(row, {.top_k = k});
      for (double p : {0.01, 0.3, 0.6, 0.95, 1.0}) {
        expect_radix_keeps_the_reference_set(row, {.top_p = p});
      }
      expect_radix_keeps_the_reference_set(row, {.top_k = 50, .top_p = 0.7});
    }
  }
}

TEST(SamplingRadixSearch, KeepsTiesAndCrowdedBucketsLikeTheReference) {
  TESSERA_SEEDED_RNG(rng);
  std::vector<float> ties(1000, 0.1f / 994);
  ties[7] = 0.3f;
  for (int64_t i : {1, 100, 400, 401, 999}) ties[i] = 0.1f;
  for (int64_t k : {1, 2, 3, 6, 7}) expect_radix_keeps_the_reference_set(ties, {.top_k = k});
  expect_radix_keeps_the_reference_set(ties, {.top_p = 0.35});

  std::vector<float> crowded = rng.uniform_vector(32000, 1.f, 1.001f);
  for (float& x : crowded) x /= 32000.f;
  crowded[5] = 0.f;
  crowded[6] = -0.f;
  for (int64_t k : {1, 37, 2000, 31999})
    expect_radix_keeps_the_reference_set(crowded, {.top_k = k});
  expect_radix_keeps_the_reference_set(crowded, {.top_p = 0.6});
  EXPECT_EQ(radix_min_key(std::vector<float>(10, 0.f), {.top_k = 3}),
            std::numeric_limits<uint32_t>::max());
}

}  // namespace
}  // namespace tessera::sampling
