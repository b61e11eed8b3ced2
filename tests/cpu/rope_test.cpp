// RoPE on the CPU: the float64 reference against hand-computed rotations and
// frequencies, and every argument rejection of the three entry points (fake
// device pointers: validation throws before any CUDA call).
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "reference/rope_ref.h"
#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/api/rope.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::expect_argument_error;
using testing::FakeTensor;

// ---- Reference sanity -------------------------------------------------------

TEST(RopeReference, FrequenciesFollowThetaAndScale) {
  RopeOptions options;
  options.rope_theta = 1e4;
  const std::vector<double> plain = reference::rope_frequencies(4, options);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_DOUBLE_EQ(plain[0], 1.0);
  EXPECT_DOUBLE_EQ(plain[1], 0.01);  // 1e4^(-2/4)
  options.rope_scale = 2.0;
  const std::vector<double> scaled = reference::rope_frequencies(4, options);
  EXPECT_DOUBLE_EQ(scaled[0], 0.5);
  EXPECT_DOUBLE_EQ(scaled[1], 0.005);
}

TEST(RopeReference, Llama31BlendsByWavelength) {
  RopeOptions options;
  options.rope_theta = 1e4;
  options.rope_scale = 8.0;
  // rotary_dim 4: base frequencies 1 and 0.01 (wavelengths 2pi and 200pi).
  options.llama31 = Llama31Scaling{1.0, 4.0, 1000.0};
  const std::vector<double> blended = reference::rope_frequencies(4, options);
  // Short wavelength: 1000 / 2pi - 1 > 3, smooth = 1, frequency unchanged.
  EXPECT_DOUBLE_EQ(blended[0], 1.0);
  // 1000 / (200 pi) = 1.5915...: smooth = 0.59155 / 3 = 0.197183.
  const double smooth = (1000.0 / (200.0 * std::numbers::pi) - 1.0) / 3.0;
  EXPECT_NEAR(smooth, 0.197183, 1e-6);
  EXPECT_NEAR(blended[1], (1 - smooth) * 0.01 / 8 + smooth * 0.01, 1e-15);
  // Long wavelength (old context 100 < 200pi): smooth = 0, divided by scale.
  options.llama31 = Llama31Scaling{1.0, 4.0, 100.0};
  EXPECT_DOUBLE_EQ(reference::rope_frequencies(4, options)[1], 0.01 / 8);
}

TEST(RopeReference, NeoXRotatesHalvesAndCopiesTail) {
  // head_dim 6, rotary_dim 4: pairs (0, 2) at angle p * 1, (1, 3) at p * 0.01.
  RopeOptions options;
  options.rotary_dim = 4;
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> pos = {3};
  const std::vector<double> out = reference::apply_rope(x, 1, 1, 6, pos, options);
  const double a0 = 3.0;
  const double a1 = static_cast<double>(3.0f * 0.01f);
  EXPECT_NEAR(out[0], 1 * std::cos(a0) - 3 * std::sin(a0), 1e-12);
  EXPECT_NEAR(out[2], 3 * std::cos(a0) + 1 * std::sin(a0), 1e-12);
  EXPECT_NEAR(out[1], 2 * std::cos(a1) - 4 * std::sin(a1), 1e-12);
  EXPECT_NEAR(out[3], 4 * std::cos(a1) + 2 * std::sin(a1), 1e-12);
  EXPECT_EQ(out[4], 5.0);
  EXPECT_EQ(out[5], 6.0);
}

TEST(RopeReference, InterleavedRotatesAdjacentPairs) {
  RopeOptions options;
  options.interleave = true;
  const std::vector<float> x = {1, 2, 3, 4};
  const std::vector<int64_t> pos = {2};
  const std::vector<double> out = reference::apply_rope(x, 1, 1, 4, pos, options);
  const double a0 = 2.0;
  const double a1 = static_cast<double>(2.0f * 0.01f);
  EXPECT_NEAR(out[0], 1 * std::cos(a0) - 2 * std::sin(a0), 1e-12);
  EXPECT_NEAR(out[1], 2 * std::cos(a0) + 1 * std::sin(a0), 1e-12);
  EXPECT_NEAR(out[2], 3 * std::cos(a1) - 4 * std::sin(a1), 1e-12);
  EXPECT_NEAR(out[3], 4 * std::cos(a1) + 3 * std::sin(a1), 1e-12);
}

TEST(RopeReference, PositionZeroIsIdentity) {
  const std::vector<float> x = {0.5f, -1.5f, 2.25f, 7.f};
  const std::vector<int64_t> pos = {0};
  const std::vector<double> out = reference::apply_rope(x, 1, 1, 4, pos, RopeOptions{});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], x[i]);
}

TEST(RopeReference, AnglesAreFloat32Products) {
  // At position 100000 the float32 product differs from the exact one; the
  // reference must use the rounded product, as the API specifies.
  RopeOptions options;
  const std::vector<double> freqs = reference::rope_frequencies(128, options);
  const float angle = 100000.0f * static_cast<float>(freqs[1]);
  const std::vector<float> x(128, 1.0f);
  const std::vector<int64_t> pos = {100000};
  const std::vector<double> out = reference::apply_rope(x, 1, 1, 128, pos, options);
  EXPECT_DOUBLE_EQ(out[1], std::cos(static_cast<double>(angle)) - std::sin(static_cast<double>(angle)));
}

TEST(RopeReference, RaggedPositionsUseOffsets) {
  const std::vector<int32_t> indptr = {0, 2, 2, 5};
  const std::vector<int32_t> offsets = {10, 99, 0};
  EXPECT_EQ(reference::ragged_positions(indptr, offsets), (std::vector<int64_t>{10, 11, 0, 1, 2}));
}

TEST(RopeReference, CosSinCacheMatchesComputedAngles) {
  RopeOptions options;
  options.rope_theta = 5e5;
  const int64_t rotary_dim = 8;
  const std::vector<float> cache = reference::rope_cos_sin_cache(50, rotary_dim, options);
  std::vector<float> x(2 * 8);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i) - 1.f;
  const std::vector<int64_t> pos = {7, 49};
  for (const bool neox : {true, false}) {
    RopeOptions computed = options;
    computed.interleave = !neox;
    const std::vector<double> expected = reference::apply_rope(x, 2, 1, 8, pos, computed);
    const std::vector<double> from_cache =
        reference::apply_rope_with_cos_sin_cache(x, 2, 1, 8, pos, cache, rotary_dim, neox);
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(from_cache[i], expected[i], 1e-6);
  }
}

// ---- Argument validation ----------------------------------------------------

constexpr uintptr_t kBase = uintptr_t{1} << 24;

// Distinct fake addresses so inputs and outputs do not overlap.
struct QkTensors {
  FakeTensor q{DType::kBFloat16, {16, 4, 64}};
  FakeTensor k{DType::kBFloat16, {16, 2, 64}};
  FakeTensor q_rope{DType::kBFloat16, {16, 4, 64}};
  FakeTensor k_rope{DType::kBFloat16, {16, 2, 64}};
  FakeTensor indptr{DType::kInt32, {3}};
  FakeTensor offsets{DType::kInt32, {2}};
  FakeTensor pos_ids{DType::kInt32, {16}};
  QkTensors() {
    q.with_data(kBase);
    k.with_data(kBase * 2);
    q_rope.with_data(kBase * 3);
    k_rope.with_data(kBase * 4);
    indptr.with_data(kBase * 5);
    offsets.with_data(kBase * 6);
    pos_ids.with_data(kBase * 7);
  }
};

void call_ragged(QkTensors& t, const RopeOptions& options = {}) {
  apply_rope(t.q, t.k, t.q_rope, t.k_rope, t.indptr, t.offsets, options, nullptr, Validate::kOff);
}
void call_pos_ids(QkTensors& t, const RopeOptions& options = {}) {
  apply_rope_pos_ids(t.q, t.k, t.q_rope, t.k_rope, t.pos_ids, options, nullptr);
}

TEST(RopeValidation, RejectsNonHalfDtype) {
  QkTensors t;
  t.q = FakeTensor(DType::kFloat32, {16, 4, 64});
  t.q.with_data(kBase);
  expect_argument_error([&] { call_pos_ids(t); }, "q");
}

TEST(RopeValidation, RejectsMixedDtypes) {
  QkTensors t;
  t.k = FakeTensor(DType::kFloat16, {16, 2, 64});
  t.k.with_data(kBase * 2);
  expect_argument_error([&] { call_pos_ids(t); }, "k");
}

TEST(RopeValidation, RejectsWrongRank) {
  QkTensors t;
  t.q_rope = FakeTensor(DType::kBFloat16, {16, 256});
  t.q_rope.with_data(kBase * 3);
  expect_argument_error([&] { call_pos_ids(t); }, "q_rope");
}

TEST(RopeValidation, RejectsHostTensor) {
  QkTensors t;
  t.k_rope = FakeTensor(DType::kBFloat16, {16, 2, 64}, {kDLCPU, 0});
  t.k_rope.with_data(kBase * 4);
  expect_argument_error([&] { call_pos_ids(t); }, "k_rope");
}

TEST(RopeValidation, RejectsStridedLastDim) {
  QkTensors t;
  t.q.with_strides({512, 128, 2});
  expect_argument_error([&] { call_pos_ids(t); }, "q");
}

TEST(RopeValidation, RejectsTokenCountMismatch) {
  QkTensors t;
  t.k = FakeTensor(DType::kBFloat16, {15, 2, 64});
  t.k.with_data(kBase * 2);
  expect_argument_error([&] { call_pos_ids(t); }, "k");
}

TEST(RopeValidation, RejectsHeadDimMismatch) {
  QkTensors t;
  t.k = FakeTensor(DType::kBFloat16, {16, 2, 32});
  t.k.with_data(kBase * 2);
  expect_argument_error([&] { call_pos_ids(t); }, "k");
}

TEST(RopeValidation, RejectsOutputShapeMismatch) {
  QkTensors t;
  t.q_rope = FakeTensor(DType::kBFloat16, {16, 3, 64});
  t.q_rope.with_data(kBase * 3);
  expect_argument_error([&] { call_pos_ids(t); }, "q_rope");
}

TEST(RopeValidation, RejectsPartialOverlapButAcceptsInPlace) {
  QkTensors t;
  t.q_rope.with_data(kBase + 128);  // shifted by 64 elements: partial overlap
  expect_argument_error([&] { call_pos_ids(t); }, "q_rope");
  // Identical memory is in place; validation passes and then the call needs a
  // GPU, so only check that no argument error names q_rope.
  t.q_rope.with_data(kBase);
  t.pos_ids = FakeTensor(DType::kInt32, {15});  // force a later, CUDA-free error
  t.pos_ids.with_data(kBase * 7);
  expect_argument_error([&] { call_pos_ids(t); }, "pos_ids");
}

TEST(RopeValidation, RejectsOddRotaryDim) {
  QkTensors t;
  RopeOptions options;
  options.rotary_dim = 31;
  expect_argument_error([&] { call_pos_ids(t, options); }, "rotary_dim");
}

TEST(RopeValidation, RejectsRotaryDimOverHeadDim) {
  QkTensors t;
  RopeOptions options;
  options.rotary_dim = 66;
  expect_argument_error([&] { call_pos_ids(t, options); }, "rotary_dim");
}

TEST(RopeValidation, RejectsNegativeRotaryDim) {
  QkTensors t;
  RopeOptions options;
  options.rotary_dim = -2;
  expect_argument_error([&] { call_pos_ids(t, options); }, "rotary_dim");
}

TEST(RopeValidation, RejectsNonPositiveScaleAndTheta) {
  QkTensors t;
  RopeOptions scale;
  scale.rope_scale = 0.0;
  expect_argument_error([&] { call_pos_ids(t, scale); }, "rope_scale");
  RopeOptions theta;
  theta.rope_theta = -1.0;
  expect_argument_error([&] { call_pos_ids(t, theta); }, "rope_theta");
  theta.rope_theta = NAN;
  expect_argument_error([&] { call_pos_ids(t, theta); }, "rope_theta");
}

TEST(RopeValidation, RejectsDegenerateLlama31Factors) {
  QkTensors t;
  RopeOptions options;
  options.llama31 = Llama31Scaling{2.0, 2.0, 8192.0};
  expect_argument_error([&] { call_pos_ids(t, options); }, "llama31");
  options.llama31 = Llama31Scaling{1.0, 4.0, 0.0};
  expect_argument_error([&] { call_pos_ids(t, options); }, "llama31");
}

TEST(RopeValidation, RejectsPosIdsOfWrongLengthOrType) {
  QkTensors t;
  t.pos_ids = FakeTensor(DType::kInt32, {17});
  t.pos_ids.with_data(kBase * 7);
  expect_argument_error([&] { call_pos_ids(t); }, "pos_ids");
  t.pos_ids = FakeTensor(DType::kFloat32, {16});
  t.pos_ids.with_data(kBase * 7);
  expect_argument_error([&] { call_pos_ids(t); }, "pos_ids");
  t.pos_ids = FakeTensor(DType::kInt64, {16}, {kDLCPU, 0});
  t.pos_ids.with_data(kBase * 7);
  expect_argument_error([&] { call_pos_ids(t); }, "pos_ids");
}

TEST(RopeValidation, RejectsIndptrNotOneLongerThanOffsets) {
  QkTensors t;
  t.indptr = FakeTensor(DType::kInt32, {2});
  t.indptr.with_data(kBase * 5);
  expect_argument_error([&] { call_ragged(t); }, "indptr");
}

TEST(RopeValidation, RejectsInt64Indptr) {
  QkTensors t;
  t.indptr = FakeTensor(DType::kInt64, {3});
  t.indptr.with_data(kBase * 5);
  expect_argument_error([&] { call_ragged(t); }, "indptr");
}

TEST(RopeValidation, RejectsOffsetsOnHost) {
  QkTensors t;
  t.offsets = FakeTensor(DType::kInt32, {2}, {kDLCPU, 0});
  t.offsets.with_data(kBase * 6);
  expect_argument_error([&] { call_ragged(t); }, "offsets");
}

TEST(RopeValidation, RejectsEmptyBatchWithTokens) {
  QkTensors t;
  t.indptr = FakeTensor(DType::kInt32, {1});
  t.indptr.with_data(kBase * 5);
  t.offsets = FakeTensor(DType::kInt32, {0});
  t.offsets.with_data(kBase * 6);
  expect_argument_error([&] { call_ragged(t); }, "indptr");
}

// vLLM-style entry point.
struct CacheTensors {
  FakeTensor positions{DType::kInt64, {8}};
  FakeTensor query{DType::kFloat16, {8, 4 * 64}};
  FakeTensor key{DType::kFloat16, {8, 1, 64}};
  FakeTensor query_out{DType::kFloat16, {8, 4 * 64}};
  FakeTensor key_out{DType::kFloat16, {8, 1, 64}};
  FakeTensor cache{DType::kFloat32, {4096, 64}};
  int64_t head_size = 64;
  CacheTensors() {
    positions.with_data(kBase);
    query.with_data(kBase * 2);
    key.with_data(kBase * 3);
    query_out.with_data(kBase * 4);
    key_out.with_data(kBase * 5);
    cache.with_data(kBase * 6);
  }
  void call() {
    apply_rope_with_cos_sin_cache(positions, query, key, query_out, key_out, head_size, cache,
                                  true, nullptr, Validate::kOff);
  }
};

TEST(RopeCacheValidation, RejectsNonPositiveHeadSize) {
  CacheTensors t;
  t.head_size = 0;
  expect_argument_error([&] { t.call(); }, "head_size");
}

TEST(RopeCacheValidation, RejectsQueryWidthNotMultipleOfHeadSize) {
  CacheTensors t;
  t.query = FakeTensor(DType::kFloat16, {8, 4 * 64 + 2});
  t.query.with_data(kBase * 2);
  expect_argument_error([&] { t.call(); }, "query");
}

TEST(RopeCacheValidation, RejectsKeyHeadSizeMismatch) {
  CacheTensors t;
  t.key = FakeTensor(DType::kFloat16, {8, 1, 32});
  t.key.with_data(kBase * 3);
  expect_argument_error([&] { t.call(); }, "key");
}

TEST(RopeCacheValidation, RejectsFloat16Cache) {
  CacheTensors t;
  t.cache = FakeTensor(DType::kFloat16, {4096, 64});
  t.cache.with_data(kBase * 6);
  expect_argument_error([&] { t.call(); }, "cos_sin_cache");
}

TEST(RopeCacheValidation, RejectsCacheWiderThanHeadSize) {
  CacheTensors t;
  t.cache = FakeTensor(DType::kFloat32, {4096, 66});
  t.cache.with_data(kBase * 6);
  expect_argument_error([&] { t.call(); }, "cos_sin_cache");
}

TEST(RopeCacheValidation, RejectsOddCacheWidth) {
  CacheTensors t;
  t.cache = FakeTensor(DType::kFloat32, {4096, 33});
  t.cache.with_data(kBase * 6);
  expect_argument_error([&] { t.call(); }, "cos_sin_cache");
}

TEST(RopeCacheValidation, RejectsPositionsOfWrongLength) {
  CacheTensors t;
  t.positions = FakeTensor(DType::kInt64, {9});
  t.positions.with_data(kBase);
  expect_argument_error([&] { t.call(); }, "positions");
}

TEST(RopeCacheValidation, RejectsOutputShapeMismatch) {
  CacheTensors t;
  t.key_out = FakeTensor(DType::kFloat16, {8, 64});
  t.key_out.with_data(kBase * 5);
  expect_argument_error([&] { t.call(); }, "key_out");
}

TEST(RopeCacheValidation, RejectsPartialOverlapOfQueryOut) {
  CacheTensors t;
  t.query_out.with_data(kBase * 2 + 64);
  expect_argument_error([&] { t.call(); }, "query_out");
}

}  // namespace
}  // namespace tessera
