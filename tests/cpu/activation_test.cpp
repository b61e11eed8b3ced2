// Gated activations on the CPU: the float64 reference against hand-computed
// values, and every argument rejection (fake device pointers: validation
// throws before any CUDA call).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "reference/activation_ref.h"
#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/api/activation.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using reference::GatedActivationKind;
using testing::FakeTensor;
using testing::rejected_argument;

// ---- Reference sanity -------------------------------------------------------

TEST(ActivationReference, ActivationsAtKnownPoints) {
  // silu(1) = 1 / (1 + e^-1); Phi(1) = 0.841344746...; tanh form 0.841191990...
  EXPECT_NEAR(reference::gated_activation_value(GatedActivationKind::kSilu, 1.0),
              0.7310585786300049, 1e-15);
  EXPECT_EQ(reference::gated_activation_value(GatedActivationKind::kSilu, 0.0), 0.0);
  EXPECT_NEAR(reference::gated_activation_value(GatedActivationKind::kGelu, 1.0),
              0.8413447460685429, 1e-15);
  EXPECT_NEAR(reference::gated_activation_value(GatedActivationKind::kGelu, -1.0),
              -0.15865525393145707, 1e-15);
  EXPECT_NEAR(reference::gated_activation_value(GatedActivationKind::kGeluTanh, 1.0),
              0.8411919906082768, 1e-12);
}

TEST(ActivationReference, MultipliesByTheGateHalf) {
  // Rows of [x0, x1 | g0, g1].
  const std::vector<float> input = {1, 0, 2, 5, 1, 1, -3, 4};
  const std::vector<double> out =
      reference::gated_activation_and_mul(GatedActivationKind::kSilu, input, 2, 2);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_NEAR(out[0], 2 * 0.7310585786300049, 1e-14);
  EXPECT_EQ(out[1], 0.0);
  EXPECT_NEAR(out[2], -3 * 0.7310585786300049, 1e-14);
  EXPECT_NEAR(out[3], 4 * 0.7310585786300049, 1e-14);
}

// ---- Argument validation ----------------------------------------------------

constexpr uintptr_t kInputAddress = uintptr_t{1} << 20;
constexpr uintptr_t kOutAddress = uintptr_t{2} << 20;
using Shape = std::vector<int64_t>;

// Valid, disjoint fake tensors unless a test passes other shapes.
struct ActivationArgs {
  FakeTensor input;
  FakeTensor out;
  explicit ActivationArgs(const Shape& input_shape = {4, 128}, const Shape& out_shape = {4, 64})
      : input(DType::kFloat16, input_shape), out(DType::kFloat16, out_shape) {
    input.with_data(kInputAddress);
    out.with_data(kOutAddress);
  }
};

void expect_all_reject(ActivationArgs& a, const std::string& expected) {
  EXPECT_EQ(rejected_argument([&] { silu_and_mul(a.input, a.out, nullptr); }), expected);
  EXPECT_EQ(rejected_argument([&] { gelu_and_mul(a.input, a.out, nullptr); }), expected);
  EXPECT_EQ(rejected_argument([&] { gelu_tanh_and_mul(a.input, a.out, nullptr); }), expected);
}

TEST(ActivationValidation, RejectsOddLastDim) {
  ActivationArgs a({4, 127}, {4, 63});
  expect_all_reject(a, "input");
}

TEST(ActivationValidation, RejectsFloat32Input) {
  ActivationArgs a;
  a.input.dl().dtype = {kDLFloat, 32, 1};
  expect_all_reject(a, "input");
}

TEST(ActivationValidation, RejectsScalarInput) {
  ActivationArgs a({}, {});
  expect_all_reject(a, "input");
}

TEST(ActivationValidation, RejectsInputOnHost) {
  ActivationArgs a;
  a.input.dl().device = {kDLCPU, 0};
  expect_all_reject(a, "input");
}

TEST(ActivationValidation, RejectsNonContiguousLastDim) {
  ActivationArgs a;
  a.input.with_strides({256, 2});
  expect_all_reject(a, "input");
}

TEST(ActivationValidation, RejectsOutOnHost) {
  ActivationArgs a;
  a.out.dl().device = {kDLCPU, 0};
  expect_all_reject(a, "out");
}

TEST(ActivationValidation, RejectsOutOfOtherDtype) {
  ActivationArgs a;
  a.out.dl().dtype = {kDLBfloat, 16, 1};
  expect_all_reject(a, "out");
}

TEST(ActivationValidation, RejectsOutLastDimNotHalfOfInput) {
  ActivationArgs a({4, 128}, {4, 128});
  expect_all_reject(a, "out");
}

TEST(ActivationValidation, RejectsOutLeadingDimsOtherThanInput) {
  ActivationArgs a({4, 128}, {5, 64});
  expect_all_reject(a, "out");
  ActivationArgs b({2, 2, 128}, {4, 64});
  expect_all_reject(b, "out");
}

TEST(ActivationValidation, RejectsInputLeadingDimsThatDoNotCollapse) {
  // [2, 3, 128] with a gap between the two outer rows: no single row stride.
  ActivationArgs a({2, 3, 128}, {2, 3, 64});
  a.input.with_strides({1000, 128, 1});
  expect_all_reject(a, "input");
}

TEST(ActivationValidation, RejectsOutLeadingDimsThatDoNotCollapse) {
  ActivationArgs a({2, 3, 128}, {2, 3, 64});
  a.out.with_strides({64, 128, 1});
  expect_all_reject(a, "out");
}

TEST(ActivationValidation, RejectsOutRowsOverlappingEachOther) {
  ActivationArgs a;
  a.out.with_strides({0, 1});
  expect_all_reject(a, "out");
}

TEST(ActivationValidation, RejectsOutOverlappingInput) {
  ActivationArgs a;
  a.out.with_data(kInputAddress + 64);
  expect_all_reject(a, "out");
}

TEST(ActivationValidation, ZeroRowsIsAcceptedWithoutTouchingTheDevice) {
  ActivationArgs a({0, 128}, {0, 64});
  expect_all_reject(a, "<accepted>");
  ActivationArgs b({3, 0, 128}, {3, 0, 64});
  expect_all_reject(b, "<accepted>");
}

}  // namespace
}  // namespace tessera
