// TESSERA_CUDA_CHECK wraps every CUDA runtime call on the host: a failure
// becomes a tessera::Error naming the call, the file and line, and CUDA's own
// error name and text.
#pragma once

#include <cuda_runtime_api.h>

namespace tessera {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* expression, const char* file,
                                   int line);

}  // namespace tessera

#define TESSERA_CUDA_CHECK(expression)                                                \
  do {                                                                                \
    const cudaError_t tessera_status_ = (expression);                                 \
    if (tessera_status_ != cudaSuccess)                                               \
      ::tessera::throw_cuda_error(tessera_status_, #expression, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: catches bad launch configurations at once.
#define TESSERA_CHECK_LAUNCH() TESSERA_CUDA_CHECK(cudaGetLastError())
