// A program outside the tree, built against the installed package: it calls
// the API with a bad argument and expects the named error (no GPU needed).
#include <tessera/tessera.h>

#include <cstdio>
#include <string>

int main() {
  int64_t shape[2] = {4, 8};
  DLTensor input{};
  input.data = reinterpret_cast<void*>(0x1000);
  input.device = {kDLCUDA, 0};
  input.ndim = 2;
  input.dtype = {kDLFloat, 32, 1};  // wrong dtype on purpose
  input.shape = shape;
  try {
    tessera::rmsnorm(input, input, input, 1e-6, nullptr);
  } catch (const tessera::Error& error) {
    if (error.argument() == "input") {
      std::printf("tessera %s: argument check ok\n", tessera::kVersionString);
      return 0;
    }
    std::printf("unexpected error: %s\n", error.what());
  }
  return 1;
}
