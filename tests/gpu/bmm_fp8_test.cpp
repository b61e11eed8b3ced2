// bmm_fp8 on the GPU (compute capability 8.9+; skipped below) against the
// float64 reference of the dequantised product: every fp8 pairing cuBLASLt
// has (e4m3 x e4m3, e4m3 x e5m2, e5m2 x e4m3), both output dtypes, batch 1
// and several, a single row, strided A rows, zero-sized problems, and a
// CUDA-graph replay that reads new scales from the device. Outputs are
// poisoned with NaN first.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "reference/gemm_ref.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/api/gemm.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;

constexpr int kMinFp8Capability = 89;
constexpr int64_t kWorkspaceBytes = 32 << 20;

bool device_has_fp8() {
  int device = 0;
  int major = 0;
  int minor = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major * 10 + minor >= kMinFp8Capability;
}

#define TESSERA_REQUIRE_FP8_GPU()                                              \
  do {                                                                         \
    TESSERA_REQUIRE_GPU();                                                     \
    if (!device_has_fp8()) GTEST_SKIP() << "GPU below compute capability 8.9"; \
  } while (0)

const char* name_of(DType dtype) {
  switch (dtype) {
    case DType::kFloat8E4M3:
      return "e4m3";
    case DType::kFloat8E5M2:
      return "e5m2";
    case DType::kBFloat16:
      return "bf16";
    default:
      return "fp16";
  }
}

struct Fp8Case {
  DType a;
  DType b;
  DType out;
  int64_t batch, m, n, k;
  int64_t a_row_stride;  // 0: contiguous
};

std::string case_name(const ::testing::TestParamInfo<Fp8Case>& info) {
  const Fp8Case& c = info.param;
  return std::string(name_of(c.a)) + "x" + name_of(c.b) + "_" + name_of(c.out) + "_b" +
         std::to_string(c.batch) + "_m" + std::to_string(c.m) + "_n" + std::to_string(c.n) + "_k" +
         std::to_string(c.k) + (c.a_row_stride > 0 ? "_strided" : "");
}

std::vector<float> magnitudes(std::span<const float> values) {
  std::vector<float> out(values.begin(), values.end());
  for (float& v : out) v = std::abs(v);
  return out;
}

// A problem's host values (fp8-exact) and device tensors; B is stored
// column-major ([b, k, n] with k contiguous), from its logical values.
struct Fp8Problem {
  Fp8Case c;
  std::vector<float> a;  // [batch, m, k]
  std::vector<float> b;  // [batch, k, n] logical
  DeviceTensor a_dev;
  DeviceTensor b_dev;
  DeviceTensor a_scale{DType::kFloat32, {1}};
  DeviceTensor b_scale{DType::kFloat32, {}};
  DeviceTensor out;
  DeviceTensor workspace{DType::kUInt8, {kWorkspaceBytes}};

  Fp8Problem(Rng& rng, const Fp8Case& fp8_case)
      : c(fp8_case),
        a(testing::round_to(c.a, rng.uniform_vector(c.batch * c.m * c.k, -4.f, 4.f))),
        b(testing::round_to(c.b, rng.uniform_vector(c.batch * c.k * c.n, -4.f, 4.f))),
        a_dev(c.a, {c.batch, c.m, c.k},
              {c.m * (c.a_row_stride > 0 ? c.a_row_stride : c.k),
               c.a_row_stride > 0 ? c.a_row_stride : c.k, 1}),
        b_dev(c.b, {c.batch, c.k, c.n}, {c.k * c.n, 1, c.k}),
        out(c.out, {c.batch, c.m, c.n}) {
    a_dev.upload(a);
    b_dev.upload(b);
    out.poison();
  }

  void run(float scale_a, float scale_b, cudaStream_t stream) {
    a_scale.upload({scale_a});
    b_scale.upload({scale_b});
    DLTensor workspace_dl = workspace.dl();
    bmm_fp8(a_dev.dl(), b_dev.dl(), a_scale.dl(), b_scale.dl(), out.dl(), &workspace_dl, stream);
  }

  void check(double scale_a, double scale_b) const {
    const auto expected = reference::scaled_bmm(a, b, c.batch, c.m, c.n, c.k, scale_a, scale_b);
    // FlashInfer's fast accumulation keeps ~14 mantissa bits in the tensor
    // cores' running sum, so an element's error follows sum_k |a b|, not the
    // result: 2^-12 of that sum on top of the output dtype's rounding.
    std::vector<double> accumulation_bound = reference::scaled_bmm(
        magnitudes(a), magnitudes(b), c.batch, c.m, c.n, c.k, std::abs(scale_a),
        std::abs(scale_b));
    for (double& bound : accumulation_bound) bound = std::ldexp(bound, -12);
    const std::vector<float> got = out.download();
    EXPECT_TRUE(testing::all_close(got, expected, testing::tolerance_for(c.out),
                                   accumulation_bound));
  }
};

class BmmFp8Cases : public ::testing::TestWithParam<Fp8Case> {};

TEST_P(BmmFp8Cases, MatchesDequantizedProduct) {
  TESSERA_REQUIRE_FP8_GPU();
  TESSERA_SEEDED_RNG(rng);
  Fp8Problem p(rng, GetParam());
  p.run(0.5f, 0.125f, nullptr);
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  p.check(0.5, 0.125);
}

std::vector<Fp8Case> fp8_cases() {
  const DType e4m3 = DType::kFloat8E4M3;
  const DType e5m2 = DType::kFloat8E5M2;
  const DType bf16 = DType::kBFloat16;
  const DType fp16 = DType::kFloat16;
  return {
      {e4m3, e4m3, bf16, 16, 48, 80, 64, 0},  // FlashInfer's example shape
      {e4m3, e4m3, fp16, 1, 256, 512, 1024, 0},
      {e4m3, e5m2, bf16, 4, 128, 256, 512, 0},
      {e5m2, e4m3, fp16, 4, 128, 256, 512, 0},
      {e4m3, e4m3, bf16, 3, 1, 64, 128, 0},       // one row per batch
      {e4m3, e4m3, bf16, 2, 100, 128, 256, 320},  // strided A rows
  };
}

INSTANTIATE_TEST_SUITE_P(Pairings, BmmFp8Cases, ::testing::ValuesIn(fp8_cases()), case_name);

TEST(BmmFp8, ZeroRowsLaunchNothing) {
  TESSERA_REQUIRE_FP8_GPU();
  TESSERA_SEEDED_RNG(rng);
  Fp8Problem p(rng, {DType::kFloat8E4M3, DType::kFloat8E4M3, DType::kBFloat16, 2, 0, 32, 64, 0});
  EXPECT_NO_THROW(p.run(1.f, 1.f, nullptr));
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
}

// The scales are read on the device: a graph captured once replays with new
// scales (and new inputs) without recapture.
TEST(BmmFp8, GraphReplayReadsNewScales) {
  TESSERA_REQUIRE_FP8_GPU();
  TESSERA_SEEDED_RNG(rng);
  Fp8Problem p(rng, {DType::kFloat8E4M3, DType::kFloat8E4M3, DType::kBFloat16, 2, 64, 128, 256, 0});
  p.run(1.f, 1.f, nullptr);  // first call outside the capture: the algorithm is chosen
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  CudaStream stream;
  cudaGraph_t graph = nullptr;
  TESSERA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  DLTensor workspace_dl = p.workspace.dl();
  bmm_fp8(p.a_dev.dl(), p.b_dev.dl(), p.a_scale.dl(), p.b_scale.dl(), p.out.dl(), &workspace_dl,
          stream.get());
  TESSERA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
  cudaGraphExec_t exec = nullptr;
  TESSERA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  p.a_scale.upload({0.25f});
  p.b_scale.upload({2.f});
  p.out.poison();
  TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
  stream.synchronize();
  p.check(0.25, 2.0);
  TESSERA_CUDA_CHECK(cudaGraphExecDestroy(exec));
  TESSERA_CUDA_CHECK(cudaGraphDestroy(graph));
}

}  // namespace
}  // namespace tessera
