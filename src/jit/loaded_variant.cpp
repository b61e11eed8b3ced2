// jit::LoadedVariant: compile (cached) for the device's architecture, then
// load the cubin as a context-independent library and look the kernel up by
// its lowered name.
#include <cuda_runtime_api.h>

#include <string>

#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"
#include "tessera/jit/jit.h"

namespace tessera::jit {

std::string device_arch(int device) {
  int major = 0, minor = 0;
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  std::string arch = "sm_" + std::to_string(major) + std::to_string(minor);
  if (major == 9 && minor == 0) arch += "a";
  return arch;
}

LoadedVariant::LoadedVariant(const VariantSpec& spec, CompileOptions options)
    : spec_(spec), extra_(spec) {
  if (options.arch.empty()) {
    int device = 0;
    TESSERA_CUDA_CHECK(cudaGetDevice(&device));
    options.arch = device_arch(device);
  }
  compiled_ = compile(spec, options);
  cudaLibrary_t library = nullptr;
  TESSERA_CUDA_CHECK(cudaLibraryLoadData(&library, compiled_.cubin.data(), nullptr, nullptr, 0,
                                         nullptr, nullptr, 0));
  library_ = library;
  const auto find = [&](const std::string& name) {
    cudaKernel_t kernel = nullptr;
    const cudaError_t found = cudaLibraryGetKernel(&kernel, library, name.c_str());
    if (found != cudaSuccess) {
      cudaLibraryUnload(library);
      library_ = nullptr;
      TESSERA_CUDA_CHECK(found);
    }
    return reinterpret_cast<const void*>(kernel);
  };
  kernel_ = find(compiled_.kernel_name);
  if (!compiled_.mma_kernel_name.empty()) companion_kernel_ = find(compiled_.mma_kernel_name);
}

LoadedVariant::~LoadedVariant() {
  if (library_ != nullptr) cudaLibraryUnload(static_cast<cudaLibrary_t>(library_));
}

}  // namespace tessera::jit
