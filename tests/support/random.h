// Seeded random inputs. Every test draws a fresh seed (or TESSERA_TEST_SEED
// when set, to replay a failure) and records it with SCOPED_TRACE so a failing
// assertion prints it.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace tessera::testing {

// TESSERA_TEST_SEED if set, else a fresh nondeterministic seed.
uint64_t test_seed();

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(engine_); }
  float normal(float mean = 0.f, float stddev = 1.f) {
    return std::normal_distribution<float>(mean, stddev)(engine_);
  }
  int64_t integer(int64_t lo, int64_t hi_inclusive) {
    return std::uniform_int_distribution<int64_t>(lo, hi_inclusive)(engine_);
  }
  std::vector<float> normal_vector(std::size_t n, float mean = 0.f, float stddev = 1.f);
  std::vector<float> uniform_vector(std::size_t n, float lo, float hi);
  std::mt19937_64& engine() { return engine_; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace tessera::testing

// Declares `rng` seeded with a fresh seed and traces the seed in failures.
#define TESSERA_SEEDED_RNG(rng)                                                       \
  const uint64_t rng##_seed = ::tessera::testing::test_seed();                       \
  SCOPED_TRACE("seed " + std::to_string(rng##_seed) + " (replay: TESSERA_TEST_SEED=" + \
               std::to_string(rng##_seed) + ")");                                     \
  ::tessera::testing::Rng rng(rng##_seed)
