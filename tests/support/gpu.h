// GPU tests skip themselves, visibly, when no CUDA device is present.
#pragma once

#include <gtest/gtest.h>

namespace tessera::testing {

bool has_cuda_device();
// Whether the current device is compute capability 9.0 (runs sm_90a code).
bool device_is_sm90();

}  // namespace tessera::testing

#define TESSERA_REQUIRE_GPU()                                             \
  do {                                                                    \
    if (!::tessera::testing::has_cuda_device())                           \
      GTEST_SKIP() << "no CUDA device: GPU test skipped";                 \
  } while (0)
