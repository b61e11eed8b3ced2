#include "support/gpu.h"

#include <cuda_runtime_api.h>

#include "tessera/core/cuda_check.h"

namespace tessera::testing {

bool has_cuda_device() {
  static const bool present = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return present;
}

bool device_is_sm90() {
  int device = 0;
  int major = 0;
  int minor = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major == 9 && minor == 0;
}

}  // namespace tessera::testing
