// A program outside the tree, built against the installed package. With no
// argument it calls the API with a bad argument and expects the named error;
// with "jit" it JIT-compiles a small variant (NVRTC runs on the CPU, so no
// GPU is needed) and prints the error it gets, if any.
#include <tessera/jit/jit.h>
#include <tessera/tessera.h>

#include <cstdio>
#include <string>

namespace {

int check_argument_error() {
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

// The JIT reads Tessera's headers beside the installed library and the CUDA
// headers from wherever the environment says (check_install.cmake sets it).
int compile_variant() {
  tessera::jit::VariantSpec spec;
  spec.name = "Halved";
  spec.source = R"(
struct Halved : VariantBase {
  float scale;
  __device__ __forceinline__ Halved(const VariantParams& p, int, int)
      : scale(0.5f * p.sm_scale * p.k_scale * kLog2e) {}
  __device__ __forceinline__ float query_scale() const { return scale; }
};
)";
  spec.kernel = tessera::jit::KernelKind::kBatchDecode;
  spec.head_dim = 64;
  tessera::jit::CompileOptions options;
  options.arch = "sm_90a";
  options.use_disk_cache = false;
  try {
    const tessera::jit::CompiledKernel kernel = tessera::jit::compile(spec, options);
    std::printf("jit ok: %zu-byte cubin\n", kernel.cubin.size());
    return 0;
  } catch (const tessera::Error& error) {
    std::printf("jit failed: %s\n", error.what());
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "jit") return compile_variant();
  return check_argument_error();
}
