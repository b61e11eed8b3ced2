// JIT variants on the GPU: a JIT build of a built-in variant launched through
// the normal entry points is bitwise equal to the AOT kernel (decode, single
// prefill, ragged and paged batch prefill; this assumes NVRTC and the nvcc
// that built libtessera are one toolkit version), and a variant with extra
// parameters (a per-head logit bias, which shifts lse and leaves out alone)
// reads them. Needs NVRTC and the device headers (TESSERA_JIT_INCLUDE_PATH
// on a machine other than the build's).
#include "tessera/jit/jit.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/argument_error.h"
#include "support/compare.h"
#include "support/custom_mask.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/jit_examples.h"
#include "support/prefill_backends.h"
#include "support/random.h"
#include "tessera/api/decode.h"
#include "tessera/api/prefill.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::device_is_sm90;

// The same arithmetic as attention::PlainVariant (soft-cap and the per-head
// bias come from examples/jit).
constexpr const char* kPlainSource = R"(
struct JitPlain : VariantBase {
  float scale_log2;
  __device__ __forceinline__ JitPlain(const VariantParams& p, int, int)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e) {}
  __device__ __forceinline__ float query_scale() const { return scale_log2; }
};
)";
class JitGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tessera_jit_gpu_" + std::to_string(getpid()));
    setenv("TESSERA_CACHE_DIR", dir_.c_str(), 1);
  }
  void TearDown() override {
    unsetenv("TESSERA_CACHE_DIR");
    std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

jit::VariantSpec spec_of(const char* name, const char* source, jit::KernelKind kernel) {
  jit::VariantSpec spec;
  spec.name = name;
  spec.source = source;
  spec.kernel = kernel;
  spec.q_dtype = spec.kv_dtype = DType::kBFloat16;
  spec.head_dim = 128;
  return spec;
}

struct Tensors {
  DeviceTensor q, k, v, out, lse;
};

// q [qo, 8, 128], k / v [kv, 2, 128] (NHD) with random values.
Tensors make(int64_t qo_len, int64_t kv_len, testing::Rng& rng, bool decode) {
  const int64_t hq = 8, hk = 2, d = 128;
  Tensors t{
      decode ? DeviceTensor(DType::kBFloat16, {hq, d})
             : DeviceTensor(DType::kBFloat16, {qo_len, hq, d}),
      DeviceTensor(DType::kBFloat16, {kv_len, hk, d}),
      DeviceTensor(DType::kBFloat16, {kv_len, hk, d}),
      decode ? DeviceTensor(DType::kBFloat16, {hq, d})
             : DeviceTensor(DType::kBFloat16, {qo_len, hq, d}),
      decode ? DeviceTensor(DType::kFloat32, {hq}) : DeviceTensor(DType::kFloat32, {qo_len, hq})};
  t.q.upload(testing::round_to(DType::kBFloat16,
                               rng.normal_vector(static_cast<std::size_t>(t.q.numel()))));
  t.k.upload(testing::round_to(DType::kBFloat16,
                               rng.normal_vector(static_cast<std::size_t>(t.k.numel()))));
  t.v.upload(testing::round_to(DType::kBFloat16,
                               rng.normal_vector(static_cast<std::size_t>(t.v.numel()))));
  return t;
}

// Runs `call` with the AOT options and with the JIT variant; returns (out, lse) of each.
template <typename Call>
void expect_bitwise_equal(Tensors& t, const AttentionOptions& aot,
                          const AttentionOptions& jit_options, Call call) {
  t.out.poison();
  t.lse.poison();
  call(aot);
  const std::vector<float> out_aot = t.out.download(), lse_aot = t.lse.download();
  t.out.poison();
  t.lse.poison();
  call(jit_options);
  EXPECT_TRUE(testing::all_equal(t.out.download(), out_aot));
  EXPECT_TRUE(testing::all_equal(t.lse.download(), lse_aot));
}

// The calls expect_bitwise_equal compares: single decode / single prefill of
// t (NHD) with the given options, synchronised.
auto decode_call(Tensors& t, cudaStream_t stream, DecodeBackend backend) {
  return [&t, stream, backend](const AttentionOptions& o) {
    DLTensor lse = t.lse.dl();
    single_decode_with_kv_cache(t.q.dl(), t.k.dl(), t.v.dl(), t.out.dl(), &lse, KVLayout::kNHD, o,
                                stream, backend);
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  };
}
auto prefill_call(Tensors& t, cudaStream_t stream, bool causal) {
  return [&t, stream, causal](const AttentionOptions& o) {
    DLTensor lse = t.lse.dl();
    single_prefill_with_kv_cache(t.q.dl(), t.k.dl(), t.v.dl(), t.out.dl(), &lse, KVLayout::kNHD,
                                 causal, o, stream);
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  };
}

TEST_F(JitGpu, BuiltInVariantsAsJitAreBitwiseEqualToAot) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CudaStream stream;
  for (const bool soft_cap : {false, true}) {
    SCOPED_TRACE(soft_cap ? "soft-cap" : "plain");
    AttentionOptions aot;
    if (soft_cap) aot.logits_soft_cap = 20.0;
    const auto spec_for = [&](jit::KernelKind kernel) {
      return soft_cap ? testing::jit_example("soft_cap.cuh", kernel)
                      : spec_of("JitPlain", kPlainSource, kernel);
    };

    jit::LoadedVariant decode_variant(spec_for(jit::KernelKind::kBatchDecode));
    AttentionOptions with_jit = aot;
    with_jit.jit_variant = &decode_variant;
    Tensors d = make(1, 3000, rng, true);
    // A JIT decode variant has both kernels, like the built-in ones.
    ASSERT_NE(decode_variant.mma_kernel(), nullptr);
    for (const DecodeBackend backend :
         {DecodeBackend::kCudaCores, DecodeBackend::kTensorCores, DecodeBackend::kAuto}) {
      SCOPED_TRACE(static_cast<int>(backend));
      expect_bitwise_equal(d, aot, with_jit, decode_call(d, stream.get(), backend));
    }

    // Prefill on each back end: a JIT variant compiled for sm_90a carries the
    // Hopper kernel too, which fa3 (and auto on sm90) runs.
    jit::LoadedVariant prefill_variant(spec_for(jit::KernelKind::kSinglePrefill));
    jit::LoadedVariant ragged_variant(spec_for(jit::KernelKind::kBatchPrefillRagged));
    jit::LoadedVariant paged_variant(spec_for(jit::KernelKind::kBatchPrefillPaged));
    if (device_is_sm90()) {
      ASSERT_NE(prefill_variant.hopper_kernel(), nullptr);
      ASSERT_NE(ragged_variant.hopper_kernel(), nullptr);
      ASSERT_NE(paged_variant.hopper_kernel(), nullptr);
    }
    Tensors p = make(200, 700, rng, false);
    for (const PrefillBackend backend : testing::prefill_backends()) {
      if (backend == PrefillBackend::kFa3 && !device_is_sm90()) continue;
      SCOPED_TRACE(testing::prefill_backend_name(backend));
      aot.backend = with_jit.backend = backend;
      with_jit.jit_variant = &prefill_variant;
      expect_bitwise_equal(p, aot, with_jit, prefill_call(p, stream.get(), true));

      // Ragged batch prefill: two requests over the same tensors.
      with_jit.jit_variant = &ragged_variant;
      const std::vector<int32_t> qo_indptr = {0, 150, 200}, kv_indptr = {0, 500, 700};
      DeviceTensor qo_dev(DType::kInt32, {3}), kv_dev(DType::kInt32, {3});
      qo_dev.upload_ints({0, 150, 200});
      kv_dev.upload_ints({0, 500, 700});
      const PrefillPlanShape shape{8, 2, 128, 0, backend};
      const PrefillPlanBounds bounds{2, 200};
      const std::size_t bytes =
          BatchPrefillWithRaggedKVCache::workspace_size_bytes(shape, bounds, 0);
      DeviceBuffer workspace(bytes);
      BatchPrefillWithRaggedKVCache ragged(shape, bounds, workspace.data(), bytes, 0);
      ragged.plan(qo_indptr, kv_indptr, true, stream.get());
      expect_bitwise_equal(p, aot, with_jit, [&](const AttentionOptions& o) {
        DLTensor lse = p.lse.dl();
        ragged.run(p.q.dl(), p.k.dl(), p.v.dl(), qo_dev.dl(), kv_dev.dl(), p.out.dl(), &lse, o,
                   stream.get());
        stream.synchronize();
      });

      // Paged batch prefill: the same K/V viewed as pages of 4 rows, in order.
      with_jit.jit_variant = &paged_variant;
      const int64_t page = 4;
      std::vector<int32_t> page_indptr = {0, 500 / 4, 700 / 4}, last = {4, 4};
      std::vector<int64_t> page_ids(175);
      for (int64_t i = 0; i < 175; ++i) page_ids[static_cast<std::size_t>(i)] = i;
      DeviceTensor pages_dev(DType::kInt32, {175}), page_indptr_dev(DType::kInt32, {3}),
          last_dev(DType::kInt32, {2});
      pages_dev.upload_ints(page_ids);
      page_indptr_dev.upload_ints({0, 125, 175});
      last_dev.upload_ints({4, 4});
      int64_t view_shape[4] = {175, page, 2, 128};
      int64_t view_strides[4] = {page * 256, 256, 128, 1};
      DLTensor k_pages = p.k.dl(), v_pages = p.v.dl();
      k_pages.ndim = v_pages.ndim = 4;
      k_pages.shape = v_pages.shape = view_shape;
      k_pages.strides = v_pages.strides = view_strides;
      const PrefillPlanShape paged_shape{8, 2, 128, page, backend};
      const std::size_t paged_bytes =
          BatchPrefillWithPagedKVCache::workspace_size_bytes(paged_shape, bounds, 0);
      DeviceBuffer paged_workspace(paged_bytes);
      BatchPrefillWithPagedKVCache paged(paged_shape, bounds, paged_workspace.data(), paged_bytes,
                                         0);
      paged.plan(qo_indptr, page_indptr, last, true, stream.get());
      expect_bitwise_equal(p, aot, with_jit, [&](const AttentionOptions& o) {
        DLTensor lse = p.lse.dl();
        paged.run(p.q.dl(), PagedKVCacheArg::separate(k_pages, v_pages, KVLayout::kNHD),
                  pages_dev.dl(), qo_dev.dl(), page_indptr_dev.dl(), last_dev.dl(), p.out.dl(),
                  &lse, o, stream.get());
        stream.synchronize();
      });
    }
  }
}

// The shipped examples (examples/jit) against the built-in kernels they
// reproduce: ALiBi, and the sink + window mask with no sinks (= a sliding
// window), bitwise, through single prefill and single decode.
TEST_F(JitGpu, ShippedExamplesMatchTheBuiltInKernelsBitwise) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CudaStream stream;
  for (const jit::KernelKind kernel :
       {jit::KernelKind::kSinglePrefill, jit::KernelKind::kBatchDecode}) {
    const bool decode = kernel == jit::KernelKind::kBatchDecode;
    SCOPED_TRACE(jit::kernel_kind_name(kernel));
    Tensors t = make(decode ? 1 : 160, 900, rng, decode);
    const std::function<void(const AttentionOptions&)> call =
        decode ? std::function<void(const AttentionOptions&)>(
                     decode_call(t, stream.get(), DecodeBackend::kCudaCores))
               : prefill_call(t, stream.get(), true);
    jit::VariantSpec alibi = testing::jit_example("alibi.cuh", kernel);
    alibi.q_dtype = alibi.kv_dtype = DType::kBFloat16;
    jit::LoadedVariant alibi_variant(alibi);
    jit::VariantSpec sink = testing::jit_example("sink_window.cuh", kernel);
    sink.params = {{"sinks", jit::ParamType::kInt32}, {"window", jit::ParamType::kInt32}};
    jit::LoadedVariant sink_variant(sink);
    sink_variant.extra_params().set("sinks", int32_t{0}).set("window", int32_t{200});
    // Prefill on each back end (decode ignores it).
    for (const PrefillBackend backend : testing::prefill_backends()) {
      if (backend == PrefillBackend::kFa3 && (decode || !device_is_sm90())) continue;
      SCOPED_TRACE(testing::prefill_backend_name(backend));
      AttentionOptions aot_alibi;
      aot_alibi.pos_encoding_mode = PosEncodingMode::kAlibi;
      AttentionOptions jit_alibi;
      jit_alibi.jit_variant = &alibi_variant;
      aot_alibi.backend = jit_alibi.backend = backend;
      expect_bitwise_equal(t, aot_alibi, jit_alibi, call);

      AttentionOptions aot_window;
      aot_window.window_left = 200;
      AttentionOptions jit_window;
      jit_window.jit_variant = &sink_variant;
      aot_window.backend = jit_window.backend = backend;
      expect_bitwise_equal(t, aot_window, jit_window, call);
    }
  }
}

// FlashSigmoid (examples/jit/flash_sigmoid.cuh, no softmax) against a
// float64 reference of out = sum_j sigmoid(sm_scale q.k_j + bias) v_j:
// single decode (split over the SMs: the merge sums partials), causal single
// prefill, and ragged batch prefill of short queries over long KV (split
// units, summed by the prefill merge). lse is 0 everywhere.
TEST_F(JitGpu, FlashSigmoidMatchesAFloat64Reference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CudaStream stream;
  const int64_t hq = 8, hk = 2, d = 128, group = hq / hk;
  const float bias = -3.f;
  const double sm_scale = 1.0 / std::sqrt(static_cast<double>(d));
  const auto random_tensor = [&](std::vector<int64_t> shape, std::vector<float>& host) {
    DeviceTensor t(DType::kBFloat16, shape);
    host =
        testing::round_to(DType::kBFloat16, rng.normal_vector(static_cast<std::size_t>(t.numel())));
    t.upload(host);
    return t;
  };
  // Reference for queries [qo_len, hq, d] at positions delta + i (causal) or
  // attending every key (decode), keys / values [kv_len, hk, d].
  const auto reference = [&](const std::vector<float>& q, const std::vector<float>& k,
                             const std::vector<float>& v, int64_t qo_len, int64_t kv_len,
                             bool causal) {
    std::vector<double> out(static_cast<std::size_t>(qo_len * hq * d), 0.0);
    const int64_t delta = kv_len - qo_len;
    for (int64_t i = 0; i < qo_len; ++i) {
      for (int64_t h = 0; h < hq; ++h) {
        const int64_t kh = h / group;
        const int64_t last = causal ? delta + i : kv_len - 1;
        for (int64_t j = 0; j <= last; ++j) {
          double dot = 0.0;
          for (int64_t e = 0; e < d; ++e) {
            dot += static_cast<double>(q[static_cast<std::size_t>((i * hq + h) * d + e)]) *
                   k[static_cast<std::size_t>((j * hk + kh) * d + e)];
          }
          const double w = 1.0 / (1.0 + std::exp(-(dot * sm_scale + bias)));
          for (int64_t e = 0; e < d; ++e) {
            out[static_cast<std::size_t>((i * hq + h) * d + e)] +=
                w * v[static_cast<std::size_t>((j * hk + kh) * d + e)];
          }
        }
      }
    }
    return out;
  };
  // The outputs are sums, not averages (scale ~ sqrt(kv_len) / 10, not 1),
  // and prefill rounds the weights to bf16 for the P V mma, as it does P in
  // softmax: the absolute tolerance scales with the reference's RMS.
  const auto tolerance = [](const std::vector<double>& ref) {
    double sum = 0.0;
    for (const double x : ref) sum += x * x;
    const double rms = std::sqrt(sum / static_cast<double>(ref.size()));
    testing::Tolerance t = testing::kBFloat16Tolerance;
    t.atol *= std::max(1.0, rms);
    return t;
  };
  const auto expect_zero_lse = [](const std::vector<float>& lse) {
    for (const float x : lse) ASSERT_EQ(x, 0.f);
  };
  const auto load = [&](jit::KernelKind kernel) {
    jit::VariantSpec spec = testing::jit_example("flash_sigmoid.cuh", kernel);
    spec.q_dtype = spec.kv_dtype = DType::kBFloat16;
    spec.params = {{"bias", jit::ParamType::kFloat}};
    spec.use_softmax = false;
    auto variant = std::make_unique<jit::LoadedVariant>(spec);
    variant->extra_params().set("bias", bias);
    return variant;
  };

  {  // single decode, 5000 keys: one request split over the SMs
    SCOPED_TRACE("single decode");
    const int64_t kv_len = 5000;
    std::vector<float> q, k, v;
    DeviceTensor q_dev = random_tensor({hq, d}, q), k_dev = random_tensor({kv_len, hk, d}, k),
                 v_dev = random_tensor({kv_len, hk, d}, v);
    DeviceTensor out(DType::kBFloat16, {hq, d}), lse(DType::kFloat32, {hq});
    auto variant = load(jit::KernelKind::kBatchDecode);
    EXPECT_EQ(variant->mma_kernel(), nullptr);  // tensor-core decode is softmax-only
    AttentionOptions options;
    options.jit_variant = variant.get();
    out.poison();
    lse.poison();
    DLTensor lse_dl = lse.dl();
    single_decode_with_kv_cache(q_dev.dl(), k_dev.dl(), v_dev.dl(), out.dl(), &lse_dl,
                                KVLayout::kNHD, options, stream.get());
    stream.synchronize();
    const std::vector<double> expected = reference(q, k, v, 1, kv_len, false);
    EXPECT_TRUE(testing::all_close(out.download(), expected, tolerance(expected)));
    expect_zero_lse(lse.download());
    // kTensorCores cannot run it: a named error, not a wrong answer.
    testing::expect_argument_error(
        [&] {
          single_decode_with_kv_cache(q_dev.dl(), k_dev.dl(), v_dev.dl(), out.dl(), &lse_dl,
                                      KVLayout::kNHD, options, stream.get(),
                                      DecodeBackend::kTensorCores);
        },
        "backend");
  }
  {  // causal single prefill
    SCOPED_TRACE("single prefill");
    const int64_t qo_len = 160, kv_len = 900;
    std::vector<float> q, k, v;
    DeviceTensor q_dev = random_tensor({qo_len, hq, d}, q),
                 k_dev = random_tensor({kv_len, hk, d}, k),
                 v_dev = random_tensor({kv_len, hk, d}, v);
    DeviceTensor out(DType::kBFloat16, {qo_len, hq, d}), lse(DType::kFloat32, {qo_len, hq});
    auto variant = load(jit::KernelKind::kSinglePrefill);
    AttentionOptions options;
    options.jit_variant = variant.get();
    out.poison();
    lse.poison();
    DLTensor lse_dl = lse.dl();
    single_prefill_with_kv_cache(q_dev.dl(), k_dev.dl(), v_dev.dl(), out.dl(), &lse_dl,
                                 KVLayout::kNHD, true, options, stream.get());
    stream.synchronize();
    const std::vector<double> expected = reference(q, k, v, qo_len, kv_len, true);
    EXPECT_TRUE(testing::all_close(out.download(), expected, tolerance(expected)));
    expect_zero_lse(lse.download());
  }
  {  // ragged batch prefill: 2 x (12 queries, 4000 keys) fill 4 CTAs, so KV splits
    SCOPED_TRACE("ragged batch prefill");
    const int64_t qo_len = 12, kv_len = 4000;
    std::vector<float> q, k, v;
    DeviceTensor q_dev = random_tensor({2 * qo_len, hq, d}, q),
                 k_dev = random_tensor({2 * kv_len, hk, d}, k),
                 v_dev = random_tensor({2 * kv_len, hk, d}, v);
    DeviceTensor out(DType::kBFloat16, {2 * qo_len, hq, d}), lse(DType::kFloat32, {2 * qo_len, hq});
    auto variant = load(jit::KernelKind::kBatchPrefillRagged);
    AttentionOptions options;
    options.jit_variant = variant.get();
    const std::vector<int32_t> qo_indptr = {0, 12, 24}, kv_indptr = {0, 4000, 8000};
    DeviceTensor qo_dev(DType::kInt32, {3}), kv_dev(DType::kInt32, {3});
    qo_dev.upload_ints({0, 12, 24});
    kv_dev.upload_ints({0, 4000, 8000});
    const PrefillPlanShape shape{hq, hk, d, 0};
    const PrefillPlanBounds bounds{2, 2 * qo_len};
    const std::size_t bytes = BatchPrefillWithRaggedKVCache::workspace_size_bytes(shape, bounds, 0);
    DeviceBuffer workspace(bytes);
    BatchPrefillWithRaggedKVCache ragged(shape, bounds, workspace.data(), bytes, 0);
    ragged.plan(qo_indptr, kv_indptr, true, stream.get());
    out.poison();
    lse.poison();
    DLTensor lse_dl = lse.dl();
    ragged.run(q_dev.dl(), k_dev.dl(), v_dev.dl(), qo_dev.dl(), kv_dev.dl(), out.dl(), &lse_dl,
               options, stream.get());
    stream.synchronize();
    // Each request against its own rows of k / v.
    const std::size_t q_half = static_cast<std::size_t>(qo_len * hq * d);
    const std::size_t kv_half = static_cast<std::size_t>(kv_len * hk * d);
    std::vector<double> expected;
    for (int r = 0; r < 2; ++r) {
      const std::vector<float> qr(q.begin() + r * q_half, q.begin() + (r + 1) * q_half);
      const std::vector<float> kr(k.begin() + r * kv_half, k.begin() + (r + 1) * kv_half);
      const std::vector<float> vr(v.begin() + r * kv_half, v.begin() + (r + 1) * kv_half);
      const std::vector<double> part = reference(qr, kr, vr, qo_len, kv_len, true);
      expected.insert(expected.end(), part.begin(), part.end());
    }
    EXPECT_TRUE(testing::all_close(out.download(), expected, tolerance(expected)));
    expect_zero_lse(lse.download());
  }
}

// AOT and JIT meet: builtin_variant_spec() of a listed kernel, compiled as a
// JIT variant, is bitwise the AOT kernel (both decode kernels, prefill), so
// the kernels the JIT serves off the list are the ones an AOT build would
// carry. And a first use off the list inside CUDA-graph capture (fp16
// decode, head_dim 64, ALiBi: no other test uses it) compiles and loads
// during the capture, and the replay equals an eager run bitwise.
TEST_F(JitGpu, BuiltInSpecsEqualTheAotKernelsAndServeOffListCallsInCapture) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CudaStream stream;
  using attention::VariantKind;
  ASSERT_TRUE(jit::has_aot_kernel(jit::KernelKind::kBatchDecode, VariantKind::kAlibi,
                                  DType::kBFloat16, DType::kBFloat16, 128));
  AttentionOptions aot;
  // fa2 on both sides here (BuiltInVariantsAsJitAreBitwiseEqualToAot runs
  // the JIT's Hopper kernels).
  aot.backend = PrefillBackend::kFa2;
  aot.pos_encoding_mode = PosEncodingMode::kAlibi;
  {
    jit::LoadedVariant variant(jit::builtin_variant_spec(jit::KernelKind::kBatchDecode,
                                                         VariantKind::kAlibi, DType::kBFloat16,
                                                         DType::kBFloat16, 128));
    AttentionOptions with_jit;
    with_jit.jit_variant = &variant;
    Tensors d = make(1, 2500, rng, true);
    for (const DecodeBackend backend : {DecodeBackend::kCudaCores, DecodeBackend::kTensorCores}) {
      SCOPED_TRACE(static_cast<int>(backend));
      expect_bitwise_equal(d, aot, with_jit, decode_call(d, stream.get(), backend));
    }
  }
  {
    jit::LoadedVariant variant(jit::builtin_variant_spec(jit::KernelKind::kSinglePrefill,
                                                         VariantKind::kAlibi, DType::kBFloat16,
                                                         DType::kBFloat16, 128));
    AttentionOptions with_jit;
    with_jit.jit_variant = &variant;
    with_jit.backend = PrefillBackend::kFa2;
    Tensors p = make(130, 400, rng, false);
    expect_bitwise_equal(p, aot, with_jit, prefill_call(p, stream.get(), true));
  }

  {
    // A user variant with a custom mask (VariantSpec::custom_mask) is the AOT
    // masked kernel bitwise; a mask given to a variant built without one is
    // a named error.
    jit::VariantSpec spec = spec_of("JitPlain", kPlainSource, jit::KernelKind::kSinglePrefill);
    spec.custom_mask = true;
    jit::LoadedVariant variant(spec);
    Tensors p = make(100, 300, rng, false);
    DeviceTensor mask = testing::upload_masks({testing::random_mask(100, 300, 0.5, rng, 9)});
    DLTensor mask_dl = mask.dl();
    AttentionOptions masked;
    masked.backend = PrefillBackend::kFa2;
    masked.custom_mask = &mask_dl;
    AttentionOptions masked_jit = masked;
    masked_jit.jit_variant = &variant;
    expect_bitwise_equal(p, masked, masked_jit, prefill_call(p, stream.get(), false));
    jit::LoadedVariant unmasked(spec_of("JitPlain", kPlainSource, jit::KernelKind::kSinglePrefill));
    masked_jit.jit_variant = &unmasked;
    testing::expect_argument_error(
        [&] {
          DLTensor lse = p.lse.dl();
          single_prefill_with_kv_cache(p.q.dl(), p.k.dl(), p.v.dl(), p.out.dl(), &lse,
                                       KVLayout::kNHD, false, masked_jit, stream.get());
        },
        "options");
  }

  // Off the list, first used inside a capture.
  ASSERT_FALSE(jit::has_aot_kernel(jit::KernelKind::kBatchDecode, VariantKind::kAlibi,
                                   DType::kFloat16, DType::kFloat16, 64));
  const int64_t batch = 3, hq = 8, hk = 2, d = 64, page = 16, pages_per_request = 40;
  const int64_t num_pages = batch * pages_per_request;
  DeviceTensor cache(DType::kFloat16, {num_pages, 2, page, hk, d});
  cache.upload(testing::round_to(DType::kFloat16,
                                 rng.normal_vector(static_cast<std::size_t>(cache.numel()))));
  DeviceTensor q(DType::kFloat16, {batch, hq, d}), out(DType::kFloat16, {batch, hq, d});
  q.upload(
      testing::round_to(DType::kFloat16, rng.normal_vector(static_cast<std::size_t>(q.numel()))));
  std::vector<int32_t> indptr, last(batch, 9);
  std::vector<int64_t> ids(static_cast<std::size_t>(num_pages));
  for (int64_t b = 0; b <= batch; ++b)
    indptr.push_back(static_cast<int32_t>(b * pages_per_request));
  for (int64_t i = 0; i < num_pages; ++i) ids[static_cast<std::size_t>(i)] = (i * 7) % num_pages;
  DeviceTensor ids_dev(DType::kInt32, {num_pages}), indptr_dev(DType::kInt32, {batch + 1}),
      last_dev(DType::kInt32, {batch});
  ids_dev.upload_ints(ids);
  indptr_dev.upload_ints(std::vector<int64_t>(indptr.begin(), indptr.end()));
  last_dev.upload_ints(std::vector<int64_t>(last.begin(), last.end()));
  const DecodePlanShape shape{hq, hk, d, page};
  const DecodePlanBounds bounds{batch, 0};
  const std::size_t bytes = BatchDecodeWithPagedKVCache::workspace_size_bytes(shape, bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchDecodeWithPagedKVCache decode(shape, bounds, workspace.data(), bytes, 0);
  decode.plan(indptr, last, stream.get());
  DLTensor cache_dl = cache.dl();
  const auto run = [&] {
    decode.run(q.dl(), PagedKVCacheArg::combined(cache_dl, KVLayout::kNHD), ids_dev.dl(),
               indptr_dev.dl(), last_dev.dl(), out.dl(), nullptr, aot, stream.get(),
               Validate::kOff);
  };
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeGlobal), cudaSuccess);
  run();
  ASSERT_EQ(cudaStreamEndCapture(stream.get(), &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  out.poison();
  ASSERT_EQ(cudaGraphLaunch(exec, stream.get()), cudaSuccess);
  stream.synchronize();
  const std::vector<float> replayed = out.download();
  out.poison();
  run();
  stream.synchronize();
  EXPECT_TRUE(testing::all_equal(replayed, out.download()));
  for (const float x : replayed) ASSERT_TRUE(std::isfinite(x));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST_F(JitGpu, ExtraParametersReachTheVariant) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CudaStream stream;
  jit::VariantSpec spec =
      testing::jit_example("per_head_bias.cuh", jit::KernelKind::kSinglePrefill);
  spec.params = {{"bias", jit::ParamType::kFloat}, {"head_bias", jit::ParamType::kFloatPointer}};
  jit::LoadedVariant variant(spec);
  const std::vector<float> head_bias = {0.f, 1.f, -2.f, 0.5f, 3.f, -1.f, 0.25f, 2.f};
  DeviceTensor head_bias_dev(DType::kFloat32, {8});
  head_bias_dev.upload(head_bias);
  variant.extra_params()
      .set("bias", 0.75f)
      .set("head_bias", static_cast<const float*>(head_bias_dev.data()));
  Tensors p = make(64, 300, rng, false);
  AttentionOptions plain;
  AttentionOptions biased;
  biased.jit_variant = &variant;
  DLTensor lse = p.lse.dl();
  single_prefill_with_kv_cache(p.q.dl(), p.k.dl(), p.v.dl(), p.out.dl(), &lse, KVLayout::kNHD, true,
                               plain, stream.get());
  stream.synchronize();
  const std::vector<float> out_plain = p.out.download(), lse_plain = p.lse.download();
  single_prefill_with_kv_cache(p.q.dl(), p.k.dl(), p.v.dl(), p.out.dl(), &lse, KVLayout::kNHD, true,
                               biased, stream.get());
  stream.synchronize();
  // A constant logit bias per head leaves softmax alone and shifts lse (base 2).
  const std::vector<float> out_biased = p.out.download(), lse_biased = p.lse.download();
  std::vector<double> expected_out(out_plain.begin(), out_plain.end());
  EXPECT_TRUE(
      testing::all_close(out_biased, expected_out, testing::tolerance_for(DType::kBFloat16)));
  for (std::size_t i = 0; i < lse_plain.size(); ++i) {
    const double shift = (0.75 + head_bias[i % 8]) / std::log(2.0);
    EXPECT_NEAR(lse_biased[i], lse_plain[i] + shift, 2e-3 * (1 + std::fabs(lse_plain[i])));
  }
}

}  // namespace
}  // namespace tessera
