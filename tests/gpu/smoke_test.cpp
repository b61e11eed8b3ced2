// The test harness itself on the GPU: poisoned buffers read back as NaN and a
// strided upload/download round-trips.
#include <gtest/gtest.h>

#include <cmath>

#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/random.h"

namespace tessera::testing {
namespace {

TEST(TestHarness, PoisonReadsBackAsNaN) {
  TESSERA_REQUIRE_GPU();
  DeviceTensor t(DType::kBFloat16, {3, 5});
  t.poison();
  for (float v : t.download()) EXPECT_TRUE(std::isnan(v));
}

TEST(TestHarness, StridedUploadRoundTrips) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  DeviceTensor t(DType::kFloat32, {3, 5}, {11, 2});
  t.poison();
  const std::vector<float> values = rng.normal_vector(15);
  t.upload(values);
  EXPECT_EQ(t.download(), values);
}

}  // namespace
}  // namespace tessera::testing
