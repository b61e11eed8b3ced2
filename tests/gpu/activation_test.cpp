// Gated activations on the GPU against the float64 reference: each activation
// x dtype x d on the 16-byte path (d % 8 == 0) and the scalar path (odd d,
// misaligned rows), strided rows with untouched padding, collapsed leading
// dims, and 0 / 1 rows.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reference/activation_ref.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/api/activation.h"
#include "tessera/core/cuda_check.h"

namespace tessera {
namespace {

using reference::GatedActivationKind;
using testing::DeviceTensor;
using testing::Rng;
using testing::padding_untouched;
using testing::Tolerance;
using testing::tolerance_for;


void run(GatedActivationKind kind, const DLTensor& input, const DLTensor& out) {
  switch (kind) {
    case GatedActivationKind::kSilu: return silu_and_mul(input, out, nullptr);
    case GatedActivationKind::kGelu: return gelu_and_mul(input, out, nullptr);
    case GatedActivationKind::kGeluTanh: return gelu_tanh_and_mul(input, out, nullptr);
  }
}

const char* kind_name(GatedActivationKind kind) {
  switch (kind) {
    case GatedActivationKind::kSilu: return "silu";
    case GatedActivationKind::kGelu: return "gelu";
    case GatedActivationKind::kGeluTanh: return "gelu_tanh";
  }
  return "?";
}

// Inputs spread over the activations' curved region (|x| up to ~6).
std::vector<float> random_input(Rng& rng, DType dtype, int64_t count) {
  return testing::round_to(dtype, rng.normal_vector(count, 0.f, 2.f));
}

struct ActivationCase {
  GatedActivationKind kind;
  DType dtype;
  int64_t d;
  int64_t rows;
};

std::string case_name(const ::testing::TestParamInfo<ActivationCase>& info) {
  return std::string(kind_name(info.param.kind)) + "_" +
         (info.param.dtype == DType::kBFloat16 ? "bf16" : "fp16") + "_d" +
         std::to_string(info.param.d) + "_rows" + std::to_string(info.param.rows);
}

// Readable parameters in gtest/ctest listings instead of a byte dump.
void PrintTo(const ActivationCase& c, std::ostream* os) {
  *os << case_name(::testing::TestParamInfo<ActivationCase>(c, 0));
}

// d % 8 == 0 takes the 16-byte path (8: one vector; 14336: several column
// chunks of 256 threads), odd d the scalar path.
std::vector<ActivationCase> all_cases() {
  std::vector<ActivationCase> cases;
  for (auto kind :
       {GatedActivationKind::kSilu, GatedActivationKind::kGelu, GatedActivationKind::kGeluTanh}) {
    for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      for (int64_t d : {1, 7, 8, 128, 4097, 14336}) cases.push_back({kind, dtype, d, 5});
      cases.push_back({kind, dtype, 4096, 1});
    }
  }
  return cases;
}

class GatedActivationPaths : public ::testing::TestWithParam<ActivationCase> {};

TEST_P(GatedActivationPaths, MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const auto [kind, dtype, d, rows] = GetParam();
  const std::vector<float> input = random_input(rng, dtype, rows * 2 * d);
  DeviceTensor d_input(dtype, {rows, 2 * d});
  DeviceTensor d_out(dtype, {rows, d});
  d_input.upload(input);
  d_out.poison();
  run(kind, d_input.dl(), d_out.dl());
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<double> ref = reference::gated_activation_and_mul(kind, input, rows, d);
  EXPECT_TRUE(testing::all_close(d_out.download(), ref, tolerance_for(dtype)));
}

INSTANTIATE_TEST_SUITE_P(AllPaths, GatedActivationPaths, ::testing::ValuesIn(all_cases()),
                         case_name);

TEST(GatedActivation, StridedRowsMatchReferenceAndLeavePaddingUntouched) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr DType kDtype = DType::kBFloat16;
  constexpr int64_t kRows = 7;
  struct Case {
    int64_t d, input_pad, out_pad;
  };
  // Padding of 8 keeps 16-byte rows (vector path); 3 misaligns them (scalar).
  for (const Case c : {Case{1024, 8, 16}, Case{1024, 3, 8}, Case{77, 5, 2}}) {
    SCOPED_TRACE("d " + std::to_string(c.d) + " input pad " + std::to_string(c.input_pad) +
                 " out pad " + std::to_string(c.out_pad));
    const std::vector<float> input = random_input(rng, kDtype, kRows * 2 * c.d);
    DeviceTensor d_input(kDtype, {kRows, 2 * c.d}, {2 * c.d + c.input_pad, 1});
    DeviceTensor d_out(kDtype, {kRows, c.d}, {c.d + c.out_pad, 1});
    d_input.poison();
    d_input.upload(input);
    d_out.poison();
    silu_and_mul(d_input.dl(), d_out.dl(), nullptr);
    TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<double> ref =
        reference::gated_activation_and_mul(GatedActivationKind::kSilu, input, kRows, c.d);
    EXPECT_TRUE(testing::all_close(d_out.download(), ref, tolerance_for(kDtype)));
    EXPECT_TRUE(padding_untouched(d_out));
  }
}

TEST(GatedActivation, LeadingDimsCollapseIntoRows) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr DType kDtype = DType::kFloat16;
  constexpr int64_t kBatch = 2, kSeq = 3, kD = 64;
  const std::vector<float> input = random_input(rng, kDtype, kBatch * kSeq * 2 * kD);
  DeviceTensor d_input(kDtype, {kBatch, kSeq, 2 * kD});
  DeviceTensor d_out(kDtype, {kBatch, kSeq, kD});
  d_input.upload(input);
  d_out.poison();
  gelu_and_mul(d_input.dl(), d_out.dl(), nullptr);
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<double> ref =
      reference::gated_activation_and_mul(GatedActivationKind::kGelu, input, kBatch * kSeq, kD);
  EXPECT_TRUE(testing::all_close(d_out.download(), ref, tolerance_for(kDtype)));
}

TEST(GatedActivation, ZeroRowsLaunchesNothingAndSucceeds) {
  TESSERA_REQUIRE_GPU();
  DeviceTensor d_input(DType::kBFloat16, {0, 256});
  DeviceTensor d_out(DType::kBFloat16, {0, 128});
  EXPECT_NO_THROW(silu_and_mul(d_input.dl(), d_out.dl(), nullptr));
  EXPECT_NO_THROW(gelu_and_mul(d_input.dl(), d_out.dl(), nullptr));
  EXPECT_NO_THROW(gelu_tanh_and_mul(d_input.dl(), d_out.dl(), nullptr));
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace tessera
