#include "tessera/core/cuda_check.h"

#include <string>

#include "tessera/core/error.h"

namespace tessera {

void throw_cuda_error(cudaError_t status, const char* expression, const char* file, int line) {
  std::string message = "tessera: CUDA error ";
  message += cudaGetErrorName(status);
  message += " (";
  message += cudaGetErrorString(status);
  message += ") in ";
  message += expression;
  message += " at ";
  message += file;
  message += ":";
  message += std::to_string(line);
  // The runtime also keeps a failed call's error as the thread's last error;
  // reset it (non-sticky errors), so the next TESSERA_CHECK_LAUNCH does not
  // report it again for an unrelated launch (cudaLaunchKernel failures used
  // to be consumed by the TESSERA_CHECK_LAUNCH after <<<...>>>).
  static_cast<void>(cudaGetLastError());
  throw Error(message);
}

}  // namespace tessera
