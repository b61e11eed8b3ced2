// Every JIT variant example in examples/jit compiles (NVRTC, no GPU) for the
// decode and the paged-prefill kernels, with the extra parameters it reads.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "support/jit_examples.h"
#include "tessera/jit/jit.h"

namespace tessera {
namespace {

TEST(JitExamples, EveryExampleCompilesForDecodeAndPagedPrefill) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tessera_jit_examples_" + std::to_string(getpid()));
  setenv("TESSERA_CACHE_DIR", dir.c_str(), 1);
  struct Example {
    const char* file;
    std::vector<jit::ParamSpec> params;
    bool use_softmax = true;
  };
  const Example examples[] = {
      {"soft_cap.cuh", {}},
      {"alibi.cuh", {}},
      {"sink_window.cuh", {{"sinks", jit::ParamType::kInt32}, {"window", jit::ParamType::kInt32}}},
      {"per_head_bias.cuh",
       {{"bias", jit::ParamType::kFloat}, {"head_bias", jit::ParamType::kFloatPointer}}},
      {"flash_sigmoid.cuh", {{"bias", jit::ParamType::kFloat}}, false},
  };
  for (const Example& example : examples) {
    for (const jit::KernelKind kernel : {jit::KernelKind::kBatchDecode,
                                         jit::KernelKind::kBatchPrefillPaged}) {
      SCOPED_TRACE(std::string(example.file) + " for " + jit::kernel_kind_name(kernel));
      jit::VariantSpec spec = testing::jit_example(example.file, kernel);
      spec.params = example.params;
      spec.use_softmax = example.use_softmax;
      const jit::CompiledKernel compiled = jit::compile(spec);
      EXPECT_FALSE(compiled.cubin.empty());
      // Softmax examples get the second kernel too: the tensor-core decode
      // one, or (compiled for sm_90a, the default) the Hopper prefill one.
      EXPECT_EQ(!compiled.mma_kernel_name.empty(), example.use_softmax);
    }
  }
  unsetenv("TESSERA_CACHE_DIR");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera
