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
  throw Error(message);
}

}  // namespace tessera
