// The JIT without a GPU: code generation, NVRTC compilation of every kernel
// template with a user variant (this also enforces that Tessera's device
// headers compile under NVRTC), the memory and disk caches (hit after a
// "restart" in another process, 8 processes racing on one key, a corrupt
// entry rebuilt) and the errors of bad variants. Each test uses its own
// cache directory under the test's temporary directory.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/argument_error.h"
#include "support/jit_examples.h"
#include "tessera/core/error.h"
#include "tessera/jit/jit.h"

namespace tessera {
namespace {

using jit::KernelKind;
using jit::VariantSpec;

// FlashInfer's default attention, written as a user would.
constexpr const char* kPlainSource = R"(
struct UserPlain : VariantBase {
  float scale_log2;
  __device__ UserPlain(const VariantParams& p, int /*qo_head*/, int /*q_pos*/)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e) {}
  __device__ float query_scale() const { return scale_log2; }
};
)";

class JitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = std::filesystem::temp_directory_path() /
           ("tessera_jit_" + std::to_string(getpid()) + "_" + info->name());
    std::filesystem::remove_all(dir_);
    setenv("TESSERA_CACHE_DIR", dir_.c_str(), 1);
    jit::clear_memory_cache();
  }
  void TearDown() override {
    unsetenv("TESSERA_CACHE_DIR");
    std::filesystem::remove_all(dir_);
  }
  std::vector<std::filesystem::path> files() const {
    std::vector<std::filesystem::path> out;
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, error)) {
      out.push_back(entry.path());
    }
    return out;
  }
  std::filesystem::path dir_;
};

VariantSpec plain(KernelKind kernel, DType dtype = DType::kBFloat16, int64_t head_dim = 128) {
  VariantSpec spec;
  spec.name = "UserPlain";
  spec.source = kPlainSource;
  spec.kernel = kernel;
  spec.q_dtype = dtype;
  spec.kv_dtype = dtype;
  spec.head_dim = head_dim;
  return spec;
}

TEST_F(JitTest, EveryKernelTemplateCompilesWithAUserVariant) {
  const int64_t before = jit::compilations();
  for (const KernelKind kernel : {KernelKind::kBatchDecode, KernelKind::kSinglePrefill,
                                  KernelKind::kBatchPrefillRagged, KernelKind::kBatchPrefillPaged}) {
    const jit::CompiledKernel k = jit::compile(plain(kernel));
    EXPECT_GT(k.cubin.size(), 1000u);
    EXPECT_FALSE(k.kernel_name.empty());
    EXPECT_FALSE(k.from_disk);
  }
  // Other dtypes and head dims, fp8 KV for decode (the examples' variants
  // compile in jit_examples_test.cpp).
  EXPECT_FALSE(jit::compile(plain(KernelKind::kSinglePrefill, DType::kFloat16, 64)).cubin.empty());
  VariantSpec fp8 = plain(KernelKind::kBatchDecode, DType::kFloat16, 256);
  fp8.kv_dtype = DType::kFloat8E4M3;
  EXPECT_FALSE(jit::compile(fp8).cubin.empty());
  // fp8 KV for paged prefill (head_dim 128): the tiles are widened in shared memory.
  VariantSpec fp8_prefill = plain(KernelKind::kBatchPrefillPaged);
  fp8_prefill.kv_dtype = DType::kFloat8E4M3;
  EXPECT_FALSE(jit::compile(fp8_prefill).cubin.empty());
  // A fresh cache: every one of the seven was compiled, none found.
  EXPECT_EQ(jit::compilations(), before + 7);
}

// Head dims 80 / 96 / 112 are JIT-only (aot_kernels.h): every kernel
// template compiles there, for sm_80 and (prefill without the Hopper kernel,
// which has 64 / 128 / 256 only) sm_90a; decode carries its tensor-core kernel.
TEST_F(JitTest, HeadDims80To112CompileForEveryKernel) {
  for (const int64_t head_dim : {80, 96, 112}) {
    for (const KernelKind kernel : {KernelKind::kBatchDecode, KernelKind::kSinglePrefill,
                                    KernelKind::kBatchPrefillRagged,
                                    KernelKind::kBatchPrefillPaged}) {
      SCOPED_TRACE(std::string(jit::kernel_kind_name(kernel)) + " head_dim " +
                   std::to_string(head_dim));
      const DType dtype = head_dim == 96 ? DType::kFloat16 : DType::kBFloat16;
      const jit::CompiledKernel k = jit::compile(plain(kernel, dtype, head_dim));
      EXPECT_GT(k.cubin.size(), 1000u);
      EXPECT_EQ(k.mma_kernel_name.empty(), kernel != KernelKind::kBatchDecode);
    }
  }
  const jit::CompiledKernel hopper =
      jit::compile(plain(KernelKind::kBatchPrefillPaged, DType::kBFloat16, 96), {"sm_90a"});
  EXPECT_GT(hopper.cubin.size(), 1000u);
  EXPECT_TRUE(hopper.mma_kernel_name.empty());  // FA2 only at head_dim 96
}

// Head dim 192 is prefill's q/k 192 with v/o 128 (PrefillTraits<T, 192,
// 128>), JIT-only: every prefill template compiles there with fp16 and bf16,
// for sm_80 and sm_90a (FA2 only: the Hopper kernels lack 192); decode has
// no 192 and names the variant.
TEST_F(JitTest, HeadDim192CompilesForEveryPrefillKernel) {
  for (const KernelKind kernel : {KernelKind::kSinglePrefill, KernelKind::kBatchPrefillRagged,
                                  KernelKind::kBatchPrefillPaged}) {
    for (const DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      SCOPED_TRACE(std::string(jit::kernel_kind_name(kernel)) + " " + dtype_name(dtype));
      const jit::CompiledKernel k = jit::compile(plain(kernel, dtype, 192));
      EXPECT_GT(k.cubin.size(), 1000u);
      EXPECT_TRUE(k.mma_kernel_name.empty());
    }
  }
  const jit::CompiledKernel hopper =
      jit::compile(plain(KernelKind::kBatchPrefillRagged, DType::kBFloat16, 192), {"sm_90a"});
  EXPECT_GT(hopper.cubin.size(), 1000u);
  EXPECT_TRUE(hopper.mma_kernel_name.empty());
  testing::expect_argument_error(
      [&] { jit::compile(plain(KernelKind::kBatchDecode, DType::kBFloat16, 192)); }, "variant");
}

TEST_F(JitTest, SecondCallHitsMemoryThenDiskAfterARestart) {
  const VariantSpec spec = plain(KernelKind::kBatchDecode);
  const int64_t before = jit::compilations();
  const jit::CompiledKernel first = jit::compile(spec);
  EXPECT_EQ(jit::compilations(), before + 1);
  const jit::CompiledKernel again = jit::compile(spec);
  EXPECT_TRUE(again.from_memory);
  EXPECT_EQ(jit::compilations(), before + 1);
  EXPECT_TRUE(std::filesystem::exists(dir_ / (first.key + ".cubin")));
  // A second process loads from disk without compiling.
  const pid_t child = fork();
  if (child == 0) {
    jit::clear_memory_cache();
    const int64_t start = jit::compilations();
    const jit::CompiledKernel k = jit::compile(spec);
    const bool ok = k.from_disk && jit::compilations() == start && k.cubin == first.cubin &&
                    k.kernel_name == first.kernel_name;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(JitTest, EightProcessesOnOneKeyLeaveOneValidEntry) {
  VariantSpec spec = plain(KernelKind::kBatchDecode, DType::kFloat16, 64);
  spec.source += "// race " + std::to_string(getpid()) + "\n";  // a key nobody has built
  const std::string key = jit::cache_key(spec, {});
  std::vector<pid_t> children;
  for (int i = 0; i < 8; ++i) {
    const pid_t child = fork();
    if (child == 0) {
      try {
        const jit::CompiledKernel k = jit::compile(spec);
        _exit(k.cubin.empty() ? 1 : 0);
      } catch (...) {
        _exit(2);
      }
    }
    children.push_back(child);
  }
  for (const pid_t child : children) {
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  const std::vector<std::filesystem::path> entries = files();
  ASSERT_EQ(entries.size(), 1u) << "temporary files left behind or duplicate entries";
  EXPECT_EQ(entries[0].filename().string(), key + ".cubin");
  const int64_t before = jit::compilations();
  const jit::CompiledKernel k = jit::compile(spec);
  EXPECT_TRUE(k.from_disk);
  EXPECT_EQ(jit::compilations(), before);
}

TEST_F(JitTest, CorruptEntryIsRebuilt) {
  const VariantSpec spec = plain(KernelKind::kSinglePrefill);
  const jit::CompiledKernel first = jit::compile(spec);
  const std::filesystem::path entry = dir_ / (first.key + ".cubin");
  for (const std::string& garbage : {std::string("not a cache entry"), std::string()}) {
    { std::ofstream(entry, std::ios::binary | std::ios::trunc) << garbage; }
    jit::clear_memory_cache();
    const int64_t before = jit::compilations();
    const jit::CompiledKernel rebuilt = jit::compile(spec);
    EXPECT_FALSE(rebuilt.from_disk);
    EXPECT_EQ(jit::compilations(), before + 1);
    EXPECT_EQ(rebuilt.cubin, first.cubin);
  }
  // A truncated entry (a crash mid-write cannot leave one: writes are renamed
  // into place, but a disk can) is a miss too.
  const auto size = std::filesystem::file_size(entry);
  std::filesystem::resize_file(entry, size - 7);
  jit::clear_memory_cache();
  EXPECT_FALSE(jit::compile(spec).from_disk);
  jit::clear_memory_cache();
  EXPECT_TRUE(jit::compile(spec).from_disk);  // rewritten whole
}

TEST_F(JitTest, BadVariantsGiveNamedErrorsAndNoCacheEntry) {
  VariantSpec syntax = plain(KernelKind::kBatchDecode);
  syntax.source = "struct UserPlain : VariantBase {\n  int x = undeclared_name;\n};\n";
  const std::string message = testing::rejected_argument([&] { jit::compile(syntax); });
  EXPECT_EQ(message, "variant");
  try {
    jit::compile(syntax);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("variant(2)"), std::string::npos) << e.what();
  }
  VariantSpec missing = plain(KernelKind::kSinglePrefill);
  missing.source = "struct UserPlain : VariantBase {\n  __device__ UserPlain(const VariantParams&, int, int) {}\n};\n";
  testing::expect_argument_error([&] { jit::compile(missing); }, "variant");  // no query_scale
  EXPECT_TRUE(files().empty());

  VariantSpec bad = plain(KernelKind::kBatchDecode);
  bad.name = "not an identifier";
  testing::expect_argument_error([&] { jit::compile(bad); }, "variant");
  bad = plain(KernelKind::kSinglePrefill, DType::kBFloat16, 72);
  testing::expect_argument_error([&] { jit::compile(bad); }, "variant");  // no hd 72 kernel
  bad = plain(KernelKind::kSinglePrefill);
  bad.kv_dtype = DType::kFloat8E4M3;
  testing::expect_argument_error([&] { jit::compile(bad); }, "variant");  // fp8: paged only
  bad = plain(KernelKind::kBatchPrefillPaged, DType::kBFloat16, 64);
  bad.kv_dtype = DType::kFloat8E4M3;
  testing::expect_argument_error([&] { jit::compile(bad); }, "variant");  // fp8: head_dim 128
  testing::expect_argument_error(
      [&] { jit::compile(plain(KernelKind::kBatchDecode), {"ampere", true}); }, "arch");
}

// Batch decode specs compile the tensor-core kernel beside the CUDA-core
// one when the dtypes, head_dim and variant allow it; the host learns
// whether it did from the lowered name (it instantiates the user's struct).
TEST_F(JitTest, DecodeCompilesTheTensorCoreKernelWhereTheVariantAllows) {
  const jit::CompiledKernel both = jit::compile(plain(KernelKind::kBatchDecode));
  EXPECT_NE(both.mma_kernel_name.find("decode_mma_kernel"), std::string::npos)
      << both.mma_kernel_name;
  EXPECT_NE(both.mma_kernel_name.find("UserPlain"), std::string::npos);
  EXPECT_NE(both.kernel_name, both.mma_kernel_name);
  // From the disk cache in a "fresh process": both names come back.
  jit::clear_memory_cache();
  const jit::CompiledKernel reloaded = jit::compile(plain(KernelKind::kBatchDecode));
  EXPECT_TRUE(reloaded.from_disk);
  EXPECT_EQ(reloaded.mma_kernel_name, both.mma_kernel_name);

  // No tensor-core kernel: head_dim 256, fp8 KV, and a variant with a q/k
  // transform (it compiles, but the lowered name holds PlainVariant, not the
  // user's struct). (Prefill kinds' second kernel is the Hopper one, below.)
  EXPECT_TRUE(
      jit::compile(plain(KernelKind::kBatchDecode, DType::kBFloat16, 256)).mma_kernel_name.empty());
  VariantSpec fp8 = plain(KernelKind::kBatchDecode);
  fp8.kv_dtype = DType::kFloat8E4M3;
  EXPECT_TRUE(jit::compile(fp8).mma_kernel_name.empty());
  VariantSpec transform = plain(KernelKind::kBatchDecode);
  transform.name = "Negated";
  transform.source = std::string(kPlainSource) + R"(
struct Negated : UserPlain {
  static constexpr bool kHasQueryKeyTransform = true;
  __device__ Negated(const VariantParams& p, int h, int q) : UserPlain(p, h, q) {}
  template <int kHeadDim, int N>
  __device__ void transform_query(tessera::FloatVec<N>& q, int, int) const {
    for (int i = 0; i < N; ++i) q[i] = -q[i];
  }
  template <int kHeadDim, int N>
  __device__ void transform_key(tessera::FloatVec<N>& k, int, int, int) const {
    for (int i = 0; i < N; ++i) k[i] = -k[i];
  }
};
)";
  const jit::CompiledKernel cuda_cores_only = jit::compile(transform);
  EXPECT_FALSE(cuda_cores_only.cubin.empty());
  EXPECT_TRUE(cuda_cores_only.mma_kernel_name.empty()) << cuda_cores_only.mma_kernel_name;
}

// fp8 e5m2 K/V is JIT-served only (library size): off the AOT list for
// every variant, q dtype and head_dim, so the built-in kernels come from
// these specs. It compiles where e4m3 does (decode; paged prefill at
// head_dim 128, with fp16 and bf16 q: both widening paths) and is rejected,
// naming the variant, where e4m3 is.
TEST_F(JitTest, Fp8E5m2KvIsJitServedWhereE4m3KernelsExist) {
  using attention::VariantKind;
  const DType e5m2 = DType::kFloat8E5M2;
  for (const DType q : {DType::kBFloat16, DType::kFloat16}) {
    for (const int64_t d : {64, 128, 256}) {
      for (const VariantKind v :
           {VariantKind::kPlain, VariantKind::kSoftCap, VariantKind::kSlidingWindow,
            VariantKind::kSoftCapSlidingWindow, VariantKind::kAlibi, VariantKind::kRopeLlama}) {
        EXPECT_FALSE(jit::has_aot_kernel(KernelKind::kBatchDecode, v, q, e5m2, d));
        EXPECT_FALSE(jit::has_aot_kernel(KernelKind::kBatchPrefillPaged, v, q, e5m2, d));
      }
    }
  }
  const jit::CompiledKernel decode = jit::compile(jit::builtin_variant_spec(
      KernelKind::kBatchDecode, VariantKind::kPlain, DType::kBFloat16, e5m2, 128));
  EXPECT_FALSE(decode.cubin.empty());
  EXPECT_TRUE(decode.mma_kernel_name.empty());  // the tensor-core kernel is 16-bit K/V only
  EXPECT_NE(decode.kernel_name.find("fp8_e5m2"), std::string::npos) << decode.kernel_name;
  for (const DType q : {DType::kFloat16, DType::kBFloat16}) {
    const jit::CompiledKernel prefill = jit::compile(jit::builtin_variant_spec(
        KernelKind::kBatchPrefillPaged, VariantKind::kSlidingWindow, q, e5m2, 128));
    EXPECT_FALSE(prefill.cubin.empty());
    EXPECT_NE(prefill.kernel_name.find("fp8_e5m2"), std::string::npos) << prefill.kernel_name;
  }
  VariantSpec user = plain(KernelKind::kBatchDecode, DType::kFloat16, 256);
  user.kv_dtype = e5m2;
  EXPECT_FALSE(jit::compile(user).cubin.empty());
  // The e4m3 and e5m2 kernels are different cache entries.
  VariantSpec e4m3 = user;
  e4m3.kv_dtype = DType::kFloat8E4M3;
  EXPECT_NE(jit::cache_key(user, {}), jit::cache_key(e4m3, {}));

  for (const auto& [kernel, head_dim] : {std::pair{KernelKind::kSinglePrefill, int64_t{128}},
                                         std::pair{KernelKind::kBatchPrefillRagged, int64_t{128}},
                                         std::pair{KernelKind::kBatchPrefillPaged, int64_t{64}}}) {
    VariantSpec bad = plain(kernel, DType::kBFloat16, head_dim);
    bad.kv_dtype = e5m2;
    testing::expect_argument_error([&] { jit::compile(bad); }, "variant");
  }
  // Where fp8 is allowed, a wrong kv_dtype's error lists both formats.
  VariantSpec wrong = plain(KernelKind::kBatchDecode);
  wrong.kv_dtype = DType::kFloat16;
  try {
    jit::compile(wrong);
    ADD_FAILURE() << "bf16 q with fp16 K/V was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("float8_e5m2"), std::string::npos) << error.what();
  }
}

// The AOT list (docs/jit.md) and the specs of the built-ins off it: they
// compile (a first call on a GPU loads them), kJit has none.
TEST_F(JitTest, BuiltInVariantsOffTheAotListHaveSpecsThatCompile) {
  using attention::VariantKind;
  const auto aot = [](KernelKind kernel, VariantKind variant, DType q, DType kv, int64_t d) {
    return jit::has_aot_kernel(kernel, variant, q, kv, d);
  };
  const DType bf16 = DType::kBFloat16, fp16 = DType::kFloat16, fp8 = DType::kFloat8E4M3;
  for (const int64_t d : {64, 128, 256}) {
    for (const VariantKind v : {VariantKind::kPlain, VariantKind::kSoftCap,
                                VariantKind::kSlidingWindow, VariantKind::kSoftCapSlidingWindow}) {
      EXPECT_TRUE(aot(KernelKind::kBatchDecode, v, bf16, bf16, d));
      EXPECT_TRUE(aot(KernelKind::kBatchDecode, v, fp16, fp16, d));
      EXPECT_TRUE(aot(KernelKind::kBatchDecode, v, bf16, fp8, d));
      EXPECT_FALSE(aot(KernelKind::kBatchDecode, v, fp16, fp8, d));
    }
    for (const VariantKind v : {VariantKind::kAlibi, VariantKind::kRopeLlama}) {
      EXPECT_EQ(aot(KernelKind::kBatchDecode, v, bf16, bf16, d), d == 128);
    }
  }
  for (const KernelKind k : {KernelKind::kSinglePrefill, KernelKind::kBatchPrefillRagged,
                             KernelKind::kBatchPrefillPaged}) {
    EXPECT_TRUE(aot(k, VariantKind::kPlain, fp16, fp16, 64));
    EXPECT_TRUE(aot(k, VariantKind::kAlibi, bf16, bf16, 128));
    EXPECT_FALSE(aot(k, VariantKind::kAlibi, bf16, bf16, 64));
    EXPECT_FALSE(aot(k, VariantKind::kSoftCapSlidingWindow, bf16, bf16, 128));
    EXPECT_FALSE(aot(k, VariantKind::kPlain, bf16, bf16, 256));  // head_dim 256: JIT-served
  }
  // head_dim 256 prefill kernels compile (32-row K/V tiles).
  EXPECT_FALSE(jit::compile(jit::builtin_variant_spec(KernelKind::kBatchPrefillRagged,
                                                      VariantKind::kPlain, bf16, bf16, 256))
                   .cubin.empty());
  EXPECT_FALSE(aot(KernelKind::kBatchDecode, VariantKind::kJit, bf16, bf16, 128));
  // Custom-mask kernels: plain, 16-bit, head_dim 128 only; decode has none.
  for (const KernelKind k : {KernelKind::kSinglePrefill, KernelKind::kBatchPrefillRagged,
                             KernelKind::kBatchPrefillPaged}) {
    EXPECT_TRUE(jit::has_aot_kernel(k, VariantKind::kPlain, bf16, bf16, 128, true));
    EXPECT_FALSE(jit::has_aot_kernel(k, VariantKind::kPlain, bf16, bf16, 64, true));
    EXPECT_FALSE(jit::has_aot_kernel(k, VariantKind::kSlidingWindow, fp16, fp16, 128, true));
  }
  EXPECT_FALSE(
      jit::has_aot_kernel(KernelKind::kBatchDecode, VariantKind::kPlain, bf16, bf16, 128, true));
  const VariantSpec masked = jit::builtin_variant_spec(KernelKind::kBatchPrefillRagged,
                                                       VariantKind::kSoftCap, bf16, bf16, 64, true);
  const jit::CompiledKernel masked_kernel = jit::compile(masked);
  EXPECT_FALSE(masked_kernel.cubin.empty());
  VariantSpec unmasked = masked;
  unmasked.custom_mask = false;
  EXPECT_NE(jit::cache_key(masked, {}), jit::cache_key(unmasked, {}));
  EXPECT_NE(masked_kernel.kernel_name, jit::compile(unmasked).kernel_name);
  VariantSpec masked_decode = plain(KernelKind::kBatchDecode);
  masked_decode.custom_mask = true;
  testing::expect_argument_error([&] { jit::compile(masked_decode); }, "variant");

  const VariantSpec decode =
      jit::builtin_variant_spec(KernelKind::kBatchDecode, VariantKind::kAlibi, fp16, fp8, 256);
  EXPECT_FALSE(jit::compile(decode).cubin.empty());
  const jit::CompiledKernel prefill = jit::compile(jit::builtin_variant_spec(
      KernelKind::kBatchPrefillPaged, VariantKind::kSoftCapSlidingWindow, bf16, bf16, 64));
  EXPECT_FALSE(prefill.cubin.empty());
  // RoPE on the fly in prefill (JIT only): single and paged over fp8.
  EXPECT_FALSE(aot(KernelKind::kSinglePrefill, VariantKind::kRopeLlama, bf16, bf16, 128));
  EXPECT_FALSE(jit::compile(jit::builtin_variant_spec(KernelKind::kSinglePrefill,
                                                      VariantKind::kRopeLlama, bf16, bf16, 128))
                   .cubin.empty());
  EXPECT_FALSE(jit::compile(jit::builtin_variant_spec(KernelKind::kBatchPrefillPaged,
                                                      VariantKind::kRopeLlama, bf16, fp8, 128))
                   .cubin.empty());
  // ALiBi / RoPE with a soft cap and / or a window: JIT-served everywhere.
  for (const KernelKind k : {KernelKind::kBatchDecode, KernelKind::kSinglePrefill,
                             KernelKind::kBatchPrefillRagged, KernelKind::kBatchPrefillPaged}) {
    for (const VariantKind v :
         {VariantKind::kAlibiSoftCap, VariantKind::kAlibiSlidingWindow,
          VariantKind::kAlibiSoftCapSlidingWindow, VariantKind::kRopeLlamaSoftCap,
          VariantKind::kRopeLlamaSlidingWindow, VariantKind::kRopeLlamaSoftCapSlidingWindow}) {
      EXPECT_FALSE(aot(k, v, bf16, bf16, 128));
    }
  }
  EXPECT_FALSE(jit::compile(jit::builtin_variant_spec(KernelKind::kBatchPrefillPaged,
                                                      VariantKind::kAlibiSoftCapSlidingWindow, bf16,
                                                      bf16, 128))
                   .cubin.empty());
  EXPECT_FALSE(jit::compile(jit::builtin_variant_spec(KernelKind::kBatchDecode,
                                                      VariantKind::kRopeLlamaSoftCapSlidingWindow,
                                                      fp16, fp16, 128))
                   .cubin.empty());
  // The tensor-core decode kernel comes with a 16-bit built-in too.
  EXPECT_FALSE(jit::compile(jit::builtin_variant_spec(KernelKind::kBatchDecode, VariantKind::kAlibi,
                                                      fp16, fp16, 64))
                   .mma_kernel_name.empty());
  testing::expect_argument_error(
      [&] {
        jit::builtin_variant_spec(KernelKind::kBatchDecode, VariantKind::kJit, bf16, bf16, 128);
      },
      "variant");
}

// Prefill specs compiled for sm_90a carry the Hopper prefill kernel
// (backend "fa3") beside the FA2 one, for every prefill kind, 16-bit K/V of
// q's dtype and head_dim 64 / 128, when the variant qualifies (softmax, no
// q/k transform); other architectures, fp8 K/V and such variants get none.
// Identical compiles give identical cubins (the disk cache relies on it).
TEST_F(JitTest, PrefillOnSm90aCompilesTheHopperKernelWhereTheVariantAllows) {
  jit::CompileOptions sm90a;
  sm90a.arch = "sm_90a";
  for (const KernelKind kind :
       {KernelKind::kSinglePrefill, KernelKind::kBatchPrefillRagged, KernelKind::kBatchPrefillPaged}) {
    const jit::CompiledKernel both = jit::compile(plain(kind, DType::kFloat16, 64), sm90a);
    EXPECT_NE(both.mma_kernel_name.find("prefill_sm90_kernel"), std::string::npos)
        << both.mma_kernel_name;
    EXPECT_NE(both.mma_kernel_name.find("UserPlain"), std::string::npos);
    EXPECT_NE(both.mma_kernel_name.find(kind == KernelKind::kBatchPrefillPaged ? "PagedKv"
                                                                                : "RaggedKv"),
              std::string::npos)
        << both.mma_kernel_name;
  }
  const VariantSpec spec = plain(KernelKind::kBatchPrefillRagged);
  const jit::CompiledKernel first = jit::compile(spec, sm90a);
  jit::clear_memory_cache();
  sm90a.use_disk_cache = false;
  const jit::CompiledKernel again = jit::compile(spec, sm90a);
  EXPECT_FALSE(again.from_disk);
  EXPECT_EQ(again.cubin, first.cubin);
  sm90a.use_disk_cache = true;

  jit::CompileOptions sm80;
  sm80.arch = "sm_80";
  EXPECT_TRUE(jit::compile(spec, sm80).mma_kernel_name.empty());
  VariantSpec fp8 = plain(KernelKind::kBatchPrefillPaged);
  fp8.kv_dtype = DType::kFloat8E4M3;
  EXPECT_TRUE(jit::compile(fp8, sm90a).mma_kernel_name.empty());
  VariantSpec sigmoid = testing::jit_example("flash_sigmoid.cuh", KernelKind::kBatchPrefillRagged);
  sigmoid.params = {{"bias", jit::ParamType::kFloat}};
  sigmoid.use_softmax = false;
  EXPECT_TRUE(jit::compile(sigmoid, sm90a).mma_kernel_name.empty());  // softmax only
}

// use_softmax must match the struct's kUseSoftmax (it decides how split
// partials merge): a mismatch is a compile error naming "variant".
TEST_F(JitTest, UseSoftmaxMustMatchTheVariant) {
  VariantSpec sigmoid = testing::jit_example("flash_sigmoid.cuh", KernelKind::kBatchDecode);
  sigmoid.params = {{"bias", jit::ParamType::kFloat}};
  try {
    jit::compile(sigmoid);  // use_softmax left true
    ADD_FAILURE() << "a non-softmax variant compiled as a softmax one";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "variant");
    EXPECT_NE(std::string(e.what()).find("use_softmax"), std::string::npos) << e.what();
  }
  sigmoid.use_softmax = false;
  const jit::CompiledKernel compiled = jit::compile(sigmoid);
  EXPECT_TRUE(compiled.mma_kernel_name.empty());  // tensor-core decode is softmax-only
  // The flag is part of the key.
  VariantSpec plain_spec = plain(KernelKind::kBatchDecode);
  VariantSpec flipped = plain_spec;
  flipped.use_softmax = false;
  EXPECT_NE(jit::cache_key(plain_spec, {}), jit::cache_key(flipped, {}));
  testing::expect_argument_error([&] { jit::compile(flipped); }, "variant");
  EXPECT_EQ(files().size(), 1u);  // only the sigmoid entry
}

// A variant with extra parameters by name (examples/jit/per_head_bias.cuh):
// a scalar bias and a per-head tensor (device pointer), read through the
// generated extra(p).
TEST_F(JitTest, ExtraParametersArePackedByNameAndCompile) {
  VariantSpec spec = testing::jit_example("per_head_bias.cuh", KernelKind::kBatchDecode);
  spec.params = {{"bias", jit::ParamType::kFloat}, {"head_bias", jit::ParamType::kFloatPointer}};
  const jit::ExtraLayout layout = jit::extra_layout(spec);
  ASSERT_EQ(layout.offsets.size(), 2u);
  EXPECT_EQ(layout.offsets[0], 0u);
  EXPECT_EQ(layout.offsets[1], 8u);  // the pointer is 8-byte aligned
  EXPECT_EQ(layout.bytes, 16u);
  EXPECT_NE(jit::generate_source(spec).find("const float* head_bias;"), std::string::npos);
  EXPECT_FALSE(jit::compile(spec).cubin.empty());

  jit::ExtraParams values(spec);
  const float* fake = reinterpret_cast<const float*>(uintptr_t{0x1000});
  unsigned char bytes[64];
  testing::expect_argument_error([&] { values.copy_to(bytes); }, "bias");  // not set yet
  values.set("bias", 0.25f).set("head_bias", fake);
  values.copy_to(bytes);
  float bias = 0.f;
  const float* pointer = nullptr;
  std::memcpy(&bias, bytes, 4);
  std::memcpy(&pointer, bytes + 8, 8);
  EXPECT_EQ(bias, 0.25f);
  EXPECT_EQ(pointer, fake);
  testing::expect_argument_error([&] { values.set("nope", 1.f); }, "nope");
  testing::expect_argument_error([&] { values.set("bias", int32_t{1}); }, "bias");  // wrong type

  VariantSpec too_many = spec;
  too_many.params.clear();
  for (int i = 0; i < 9; ++i) too_many.params.push_back({"p" + std::to_string(i), jit::ParamType::kFloatPointer});
  testing::expect_argument_error([&] { jit::extra_layout(too_many); }, "variant");  // 72 bytes
  VariantSpec duplicate = spec;
  duplicate.params.push_back({"bias", jit::ParamType::kInt32});
  testing::expect_argument_error([&] { jit::extra_layout(duplicate); }, "variant");
}

TEST_F(JitTest, WarmUpCompilesInParallelAndReportsProgress) {
  std::vector<VariantSpec> specs = {plain(KernelKind::kBatchDecode),
                                    plain(KernelKind::kBatchPrefillPaged),
                                    plain(KernelKind::kBatchDecode)};  // a repeat
  std::FILE* log = std::tmpfile();
  ASSERT_NE(log, nullptr);
  const jit::WarmUpResult warm = jit::warm_up(specs, {}, 2, log);
  ASSERT_EQ(warm.kernels.size(), 3u);
  for (const jit::CompiledKernel& k : warm.kernels) EXPECT_FALSE(k.cubin.empty());
  EXPECT_EQ(warm.kernels[0].key, warm.kernels[2].key);
  std::rewind(log);
  char line[256];
  int lines = 0;
  std::string last;
  while (std::fgets(line, sizeof(line), log) != nullptr) {
    ++lines;
    last = line;
  }
  std::fclose(log);
  EXPECT_EQ(lines, 3);
  EXPECT_NE(last.find("3/3 ready"), std::string::npos) << last;
  // An error in one spec surfaces after the others finished.
  specs[1].source = "this is not C++";
  jit::clear_memory_cache();
  testing::expect_argument_error([&] { jit::warm_up(specs, {}, 2, nullptr); }, "variant");
}

TEST_F(JitTest, GeneratedSourceNumbersTheVariantFromLineOne) {
  const std::string text = jit::generate_source(plain(KernelKind::kBatchPrefillPaged));
  EXPECT_NE(text.find("#line 1 \"variant\""), std::string::npos);
  EXPECT_NE(text.find("struct UserPlain"), std::string::npos);
  EXPECT_NE(text.find("prefill_sm80.cuh"), std::string::npos);
  // The key changes with everything that shapes the cubin.
  const VariantSpec a = plain(KernelKind::kBatchDecode);
  VariantSpec b = a;
  b.head_dim = 64;
  EXPECT_NE(jit::cache_key(a, {}), jit::cache_key(b, {}));
  EXPECT_NE(jit::cache_key(a, {}), jit::cache_key(a, {"sm_80", true}));
  EXPECT_EQ(jit::cache_key(a, {}), jit::cache_key(a, {}));
}

}  // namespace
}  // namespace tessera
