// RMSNorm family on the CPU: the float64 reference against hand-computed
// rows, and every argument rejection of the four entry points (fake device
// pointers: validation throws before any CUDA call).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "reference/norm_ref.h"
#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/api/norm.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::FakeTensor;
using testing::rejected_argument;

// ---- Reference sanity -------------------------------------------------------

// Row (3, 4) with eps 0.5: mean square 12.5, rms sqrt(13).
constexpr double kRms = 3.605551275463989;

TEST(NormReference, RmsNormDividesByRootMeanSquareAndScales) {
  const std::vector<float> input = {3, 4};
  const std::vector<float> weight = {1, 2};
  const std::vector<double> out = reference::rmsnorm(input, weight, 1, 2, 0.5);
  EXPECT_NEAR(out[0], 3 / kRms, 1e-12);
  EXPECT_NEAR(out[1], 8 / kRms, 1e-12);
}

TEST(NormReference, GemmaAddsOneToTheWeight) {
  const std::vector<float> input = {3, 4};
  const std::vector<float> weight = {0, 1};  // effective (1, 2)
  const std::vector<double> out =
      reference::rmsnorm(input, weight, 1, 2, 0.5, reference::kGemmaWeightOffset);
  EXPECT_NEAR(out[0], 3 / kRms, 1e-12);
  EXPECT_NEAR(out[1], 8 / kRms, 1e-12);
}

TEST(NormReference, FusedAddNormalisesTheSumAndReturnsIt) {
  const std::vector<float> input = {1, 1, 2, 2};
  const std::vector<float> residual = {2, 3, -1, 0};
  const std::vector<float> weight = {1, 2};
  const auto result = reference::fused_add_rmsnorm(input, residual, weight, 2, 2, 0.5);
  EXPECT_EQ(result.residual, (std::vector<double>{3, 4, 1, 2}));
  EXPECT_NEAR(result.out[0], 3 / kRms, 1e-12);
  EXPECT_NEAR(result.out[1], 8 / kRms, 1e-12);
  const double rms_second = std::sqrt((1.0 + 4.0) / 2 + 0.5);  // row (1, 2)
  EXPECT_NEAR(result.out[2], 1 / rms_second, 1e-12);
  EXPECT_NEAR(result.out[3], 4 / rms_second, 1e-12);
}

// ---- Argument validation ----------------------------------------------------

constexpr uintptr_t kInputAddress = uintptr_t{1} << 20;
constexpr uintptr_t kOutAddress = uintptr_t{2} << 20;
constexpr uintptr_t kResidualAddress = uintptr_t{3} << 20;
constexpr uintptr_t kWeightAddress = uintptr_t{4} << 20;
constexpr int64_t kTokens = 4;
constexpr int64_t kHidden = 64;
constexpr double kEps = 1e-6;

using Shape = std::vector<int64_t>;
const Shape kRowsShape = {kTokens, kHidden};
const Shape kWeightShape = {kHidden};

// Valid, disjoint fake tensors; each test breaks one thing (a shape through
// the constructor: FakeTensor must not be copied, its DLTensor points at its
// own shape).
struct NormArgs {
  FakeTensor input;
  FakeTensor out;
  FakeTensor residual;
  FakeTensor weight;
  explicit NormArgs(const Shape& input_shape = kRowsShape, const Shape& out_shape = kRowsShape,
                    const Shape& residual_shape = kRowsShape,
                    const Shape& weight_shape = kWeightShape)
      : input(DType::kBFloat16, input_shape),
        out(DType::kBFloat16, out_shape),
        residual(DType::kBFloat16, residual_shape),
        weight(DType::kBFloat16, weight_shape) {
    input.with_data(kInputAddress);
    out.with_data(kOutAddress);
    residual.with_data(kResidualAddress);
    weight.with_data(kWeightAddress);
  }
};

// Every entry point must name `expected` for the same broken arguments.
void expect_all_reject(NormArgs& a, const std::string& expected, double eps = kEps) {
  EXPECT_EQ(rejected_argument([&] { rmsnorm(a.input, a.weight, a.out, eps, nullptr); }),
            expected)
      << "rmsnorm";
  EXPECT_EQ(rejected_argument([&] { gemma_rmsnorm(a.input, a.weight, a.out, eps, nullptr); }),
            expected)
      << "gemma_rmsnorm";
  EXPECT_EQ(
      rejected_argument([&] { fused_add_rmsnorm(a.input, a.residual, a.weight, eps, nullptr); }),
      expected)
      << "fused_add_rmsnorm";
  EXPECT_EQ(rejected_argument(
                [&] { gemma_fused_add_rmsnorm(a.input, a.residual, a.weight, eps, nullptr); }),
            expected)
      << "gemma_fused_add_rmsnorm";
}

void expect_plain_reject(NormArgs& a, const std::string& expected) {
  EXPECT_EQ(rejected_argument([&] { rmsnorm(a.input, a.weight, a.out, kEps, nullptr); }),
            expected);
  EXPECT_EQ(rejected_argument([&] { gemma_rmsnorm(a.input, a.weight, a.out, kEps, nullptr); }),
            expected);
}

void expect_fused_reject(NormArgs& a, const std::string& expected) {
  EXPECT_EQ(
      rejected_argument([&] { fused_add_rmsnorm(a.input, a.residual, a.weight, kEps, nullptr); }),
      expected);
  EXPECT_EQ(rejected_argument(
                [&] { gemma_fused_add_rmsnorm(a.input, a.residual, a.weight, kEps, nullptr); }),
            expected);
}

TEST(NormValidation, RejectsNonPositiveOrNonFiniteEps) {
  for (double eps : {0.0, -1e-6, std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity()}) {
    NormArgs a;
    expect_all_reject(a, "eps", eps);
  }
}

TEST(NormValidation, RejectsFloat32Input) {
  NormArgs a;
  a.input.dl().dtype = {kDLFloat, 32, 1};
  expect_all_reject(a, "input");
}

TEST(NormValidation, RejectsInputRankOtherThanTwo) {
  NormArgs rank3({2, 2, kHidden});
  expect_all_reject(rank3, "input");
  NormArgs rank1({kHidden});
  expect_all_reject(rank1, "input");
}

TEST(NormValidation, RejectsInputOnHost) {
  NormArgs a;
  a.input.dl().device = {kDLCPU, 0};
  expect_all_reject(a, "input");
}

TEST(NormValidation, RejectsNonContiguousLastDim) {
  NormArgs a;
  a.input.with_strides({2 * kHidden, 2});
  expect_all_reject(a, "input");
}

TEST(NormValidation, RejectsHiddenAboveLimitNamingInput) {
  NormArgs a({kTokens, 16385}, {kTokens, 16385}, {kTokens, 16385}, {16385});
  expect_all_reject(a, "input");
}

TEST(NormValidation, RejectsWeightOnHost) {
  NormArgs a;
  a.weight.dl().device = {kDLCPU, 0};
  expect_all_reject(a, "weight");
}

TEST(NormValidation, RejectsWeightOfWrongSize) {
  NormArgs a(kRowsShape, kRowsShape, kRowsShape, {kHidden - 1});
  expect_all_reject(a, "weight");
}

TEST(NormValidation, RejectsWeightOfOtherDtype) {
  NormArgs a;
  a.weight.dl().dtype = {kDLFloat, 16, 1};  // float16 weight for bfloat16 input
  expect_all_reject(a, "weight");
}

TEST(NormValidation, RejectsTwoDimensionalWeight) {
  NormArgs a(kRowsShape, kRowsShape, kRowsShape, {1, kHidden});
  expect_all_reject(a, "weight");
}

TEST(NormValidation, RejectsOutOfOtherShape) {
  NormArgs a(kRowsShape, {kTokens + 1, kHidden});
  expect_plain_reject(a, "out");
}

TEST(NormValidation, RejectsOutOfOtherDtype) {
  NormArgs a;
  a.out.dl().dtype = {kDLFloat, 16, 1};
  expect_plain_reject(a, "out");
}

TEST(NormValidation, RejectsOutOnHost) {
  NormArgs a;
  a.out.dl().device = {kDLCPU, 0};
  expect_plain_reject(a, "out");
}

TEST(NormValidation, RejectsOutPartlyOverlappingInput) {
  NormArgs a;
  a.out.with_data(kInputAddress + 16);
  expect_plain_reject(a, "out");
}

TEST(NormValidation, RejectsOutRowsOverlappingEachOther) {
  NormArgs a;
  a.out.with_strides({kHidden / 2, 1});
  expect_plain_reject(a, "out");
}

TEST(NormValidation, RejectsOutOverlappingWeight) {
  NormArgs a;
  a.weight.with_data(kOutAddress + 64);
  expect_plain_reject(a, "out");
}

TEST(NormValidation, RejectsResidualOfOtherShape) {
  NormArgs a(kRowsShape, kRowsShape, {kTokens, kHidden * 2});
  expect_fused_reject(a, "residual");
}

TEST(NormValidation, RejectsResidualOfOtherDtype) {
  NormArgs a;
  a.residual.dl().dtype = {kDLFloat, 16, 1};
  expect_fused_reject(a, "residual");
}

TEST(NormValidation, RejectsResidualOnHost) {
  NormArgs a;
  a.residual.dl().device = {kDLCPU, 0};
  expect_fused_reject(a, "residual");
}

TEST(NormValidation, RejectsResidualThatIsTheInput) {
  NormArgs a;
  a.residual.with_data(kInputAddress);
  expect_fused_reject(a, "residual");
}

TEST(NormValidation, RejectsResidualPartlyOverlappingInput) {
  NormArgs a;
  a.residual.with_data(kInputAddress + 2);
  expect_fused_reject(a, "residual");
}

TEST(NormValidation, RejectsFusedInputRowsOverlappingEachOther) {
  NormArgs a;
  a.input.with_strides({0, 1});
  expect_fused_reject(a, "input");
}

TEST(NormValidation, ZeroTokensIsAcceptedWithoutTouchingTheDevice) {
  // Returns before any CUDA call, so this passes on a machine with no GPU.
  NormArgs a({0, kHidden}, {0, kHidden}, {0, kHidden});
  expect_all_reject(a, "<accepted>");
}

}  // namespace
}  // namespace tessera
