#include "support/gpu.h"

#include <cuda_runtime_api.h>

namespace tessera::testing {

bool has_cuda_device() {
  static const bool present = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return present;
}

}  // namespace tessera::testing
