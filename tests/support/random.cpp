#include "support/random.h"

#include <cstdlib>
#include <string>

namespace tessera::testing {

uint64_t test_seed() {
  if (const char* fixed = std::getenv("TESSERA_TEST_SEED"); fixed != nullptr && *fixed != '\0') {
    return std::stoull(fixed);
  }
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

std::vector<float> Rng::normal_vector(std::size_t n, float mean, float stddev) {
  std::vector<float> values(n);
  for (float& v : values) v = normal(mean, stddev);
  return values;
}

std::vector<float> Rng::uniform_vector(std::size_t n, float lo, float hi) {
  std::vector<float> values(n);
  for (float& v : values) v = uniform(lo, hi);
  return values;
}

}  // namespace tessera::testing
