// TensorView reads DLPack tensors correctly and names the argument in every
// rejection.
#include <gtest/gtest.h>

#include "support/device_tensor.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {
namespace {

using testing::FakeTensor;

TEST(TensorView, FillsRowMajorStridesWhenDLPackLeavesThemNull) {
  FakeTensor t(DType::kBFloat16, {3, 4, 5});
  const TensorView view(t.dl(), "x");
  EXPECT_EQ(view.stride(0), 20);
  EXPECT_EQ(view.stride(1), 5);
  EXPECT_EQ(view.stride(-1), 1);
  EXPECT_EQ(view.numel(), 60);
}

TEST(TensorView, AppliesByteOffset) {
  FakeTensor t(DType::kFloat16, {4});
  t.dl().byte_offset = 32;
  const TensorView view(t.dl(), "x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(view.data()), (uintptr_t{1} << 20) + 32);
}

TEST(TensorView, RejectsUnknownDtypeNamingTheArgument) {
  FakeTensor t(DType::kFloat16, {4});
  t.dl().dtype = {kDLComplex, 64, 1};
  try {
    TensorView view(t.dl(), "append_key");
    FAIL() << "expected tessera::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.argument(), "append_key");
    EXPECT_NE(std::string(error.what()).find("code 5"), std::string::npos) << error.what();
  }
}

TEST(TensorView, ExpectDtypeListsAllowedTypes) {
  FakeTensor t(DType::kFloat32, {4});
  const TensorView view(t.dl(), "input");
  try {
    view.expect_dtype({DType::kFloat16, DType::kBFloat16});
    FAIL() << "expected tessera::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.argument(), "input");
    EXPECT_STREQ(error.what(),
                 "tessera: argument 'input': expected dtype float16 or bfloat16, got float32");
  }
}

TEST(TensorView, ExpectCudaRejectsHostTensor) {
  FakeTensor t(DType::kFloat16, {4}, {kDLCPU, 0});
  const TensorView view(t.dl(), "weight");
  EXPECT_THROW(view.expect_cuda(), Error);
}

TEST(TensorView, LastDimStrideMustBeOne) {
  FakeTensor t(DType::kFloat16, {4, 8});
  t.with_strides({16, 2});
  const TensorView view(t.dl(), "q");
  EXPECT_THROW(view.expect_last_dim_contiguous(), Error);
}

TEST(TensorView, RowAlignmentSeesOddRowStride) {
  FakeTensor aligned(DType::kBFloat16, {4, 8});
  aligned.with_strides({16, 1});
  EXPECT_TRUE(TensorView(aligned.dl(), "a").rows_aligned_to(16));
  FakeTensor odd(DType::kBFloat16, {4, 8});
  odd.with_strides({9, 1});
  EXPECT_FALSE(TensorView(odd.dl(), "b").rows_aligned_to(16));
}

TEST(TensorView, PartialOverlapIsRejectedButIdenticalIsInPlace) {
  FakeTensor a(DType::kFloat16, {4, 8});
  FakeTensor same(DType::kFloat16, {4, 8});
  FakeTensor shifted(DType::kFloat16, {4, 8});
  shifted.with_data((uintptr_t{1} << 20) + 16);
  const TensorView va(a.dl(), "q");
  EXPECT_NO_THROW(expect_identical_or_disjoint(va, TensorView(same.dl(), "q_rope")));
  EXPECT_THROW(expect_identical_or_disjoint(va, TensorView(shifted.dl(), "q_rope")), Error);
  FakeTensor far(DType::kFloat16, {4, 8});
  far.with_data((uintptr_t{1} << 20) + 64);
  EXPECT_NO_THROW(expect_identical_or_disjoint(va, TensorView(far.dl(), "q_rope")));
}

}  // namespace
}  // namespace tessera
