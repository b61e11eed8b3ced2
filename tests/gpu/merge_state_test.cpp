// merge_state, merge_state_in_place and merge_states on the GPU against the
// float64 reference (tests/reference/merge_ref.h). Inputs are rounded to
// their storage dtype on the host so the reference sees what the kernel sees.
// Tolerances: v is one rounding of a float32 result to its dtype
// (tolerance_for; fp32 values use the fp16 bar, far looser than needed); lse
// is float32 max + log2(sum), checked to 1e-5 relative + 1e-5 absolute.
// -inf lse entries are compared exactly (all_close would see inf - inf).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference/merge_ref.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/api/decode.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr testing::Tolerance kLseTolerance{1e-5, 1e-5, 1e-5};

testing::Tolerance value_tolerance(DType dtype) {
  return dtype == DType::kFloat32 ? testing::kFloat16Tolerance : testing::tolerance_for(dtype);
}

// lse values in [-8, 8] with a fraction of -inf (empty states).
std::vector<float> random_lse(Rng& rng, std::size_t n, double empty_fraction) {
  std::vector<float> lse = rng.uniform_vector(n, -8.f, 8.f);
  for (float& s : lse) {
    if (rng.uniform(0.f, 1.f) < empty_fraction) s = kNegInf;
  }
  return lse;
}

// lse checks at this file's tolerance (-inf exactly where expected).
::testing::AssertionResult lse_matches(const std::vector<float>& out,
                                       const std::vector<double>& ref) {
  return testing::lse_close(out, ref, kLseTolerance);
}

DeviceTensor upload(DType dtype, std::vector<int64_t> shape, const std::vector<float>& values) {
  DeviceTensor t(dtype, std::move(shape));
  t.upload(values);
  return t;
}

struct PairCase {
  DType dtype;
  int64_t rows;
  int64_t heads;
  int64_t head_dim;
};

void check_merge_state(const PairCase& c, Rng& rng) {
  SCOPED_TRACE(std::string(dtype_name(c.dtype)) + " head_dim " + std::to_string(c.head_dim));
  const auto nv = static_cast<std::size_t>(c.rows * c.heads * c.head_dim);
  const auto ns = static_cast<std::size_t>(c.rows * c.heads);
  const std::vector<float> va = testing::round_to(c.dtype, rng.normal_vector(nv));
  const std::vector<float> vb = testing::round_to(c.dtype, rng.normal_vector(nv));
  const std::vector<float> sa = random_lse(rng, ns, 0.1);
  const std::vector<float> sb = random_lse(rng, ns, 0.1);
  DeviceTensor dva = upload(c.dtype, {c.rows, c.heads, c.head_dim}, va);
  DeviceTensor dvb = upload(c.dtype, {c.rows, c.heads, c.head_dim}, vb);
  DeviceTensor dsa = upload(DType::kFloat32, {c.rows, c.heads}, sa);
  DeviceTensor dsb = upload(DType::kFloat32, {c.rows, c.heads}, sb);
  DeviceTensor out(c.dtype, {c.rows, c.heads, c.head_dim});
  DeviceTensor out_lse(DType::kFloat32, {c.rows, c.heads});
  out.poison();
  out_lse.poison();
  CudaStream stream;
  merge_state(dva.dl(), dsa.dl(), dvb.dl(), dsb.dl(), out.dl(), out_lse.dl(), stream.get());
  stream.synchronize();
  const auto ref = reference::merge_state(va, sa, vb, sb, c.rows, c.heads, c.head_dim);
  EXPECT_TRUE(testing::all_close(out.download(), ref.v, value_tolerance(c.dtype)));
  EXPECT_TRUE(lse_matches(out_lse.download(), ref.lse));
}

TEST(MergeState, WideVectorPathMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DType dtype : {DType::kBFloat16, DType::kFloat16, DType::kFloat32}) {
    check_merge_state({dtype, 37, 8, 128}, rng);
  }
}

TEST(MergeState, OddHeadDimTakesTheScalarPathAndMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  check_merge_state({DType::kBFloat16, 5, 3, 37}, rng);
  check_merge_state({DType::kFloat32, 5, 3, 130}, rng);  // 130 % 4 != 0
}

TEST(MergeState, AllNegativeInfinityGivesZeroAndNeverReadsValues) {
  TESSERA_REQUIRE_GPU();
  constexpr int64_t kRows = 4, kHeads = 2, kDim = 64;
  const std::size_t nv = kRows * kHeads * kDim;
  // NaN values behind -inf lse must not leak into the result.
  DeviceTensor va(DType::kBFloat16, {kRows, kHeads, kDim});
  DeviceTensor vb(DType::kBFloat16, {kRows, kHeads, kDim});
  va.poison();
  vb.poison();
  DeviceTensor sa = upload(DType::kFloat32, {kRows, kHeads}, std::vector<float>(8, kNegInf));
  DeviceTensor sb = upload(DType::kFloat32, {kRows, kHeads}, std::vector<float>(8, kNegInf));
  DeviceTensor out(DType::kBFloat16, {kRows, kHeads, kDim});
  DeviceTensor out_lse(DType::kFloat32, {kRows, kHeads});
  out.poison();
  out_lse.poison();
  CudaStream stream;
  merge_state(va.dl(), sa.dl(), vb.dl(), sb.dl(), out.dl(), out_lse.dl(), stream.get());
  stream.synchronize();
  EXPECT_TRUE(testing::all_equal(out.download(), std::vector<float>(nv, 0.f)));
  for (const float s : out_lse.download()) EXPECT_TRUE(std::isinf(s) && s < 0) << s;
}

TEST(MergeStateInPlace, MaskedRowsAreUntouchedAndOthersMerged) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kRows = 9, kHeads = 4, kDim = 128;
  const DType dtype = DType::kFloat16;
  const std::size_t nv = kRows * kHeads * kDim, ns = kRows * kHeads;
  const std::vector<float> v = testing::round_to(dtype, rng.normal_vector(nv));
  const std::vector<float> vo = testing::round_to(dtype, rng.normal_vector(nv));
  const std::vector<float> s = random_lse(rng, ns, 0.1);
  const std::vector<float> so = random_lse(rng, ns, 0.1);
  std::vector<uint8_t> mask(kRows);
  for (auto& m : mask) m = static_cast<uint8_t>(rng.integer(0, 1));
  DeviceTensor dv = upload(dtype, {kRows, kHeads, kDim}, v);
  DeviceTensor dvo = upload(dtype, {kRows, kHeads, kDim}, vo);
  DeviceTensor ds = upload(DType::kFloat32, {kRows, kHeads}, s);
  DeviceTensor dso = upload(DType::kFloat32, {kRows, kHeads}, so);
  DeviceTensor dmask(DType::kUInt8, {kRows});
  TESSERA_CUDA_CHECK(cudaMemcpy(dmask.data(), mask.data(), mask.size(), cudaMemcpyHostToDevice));
  CudaStream stream;
  DLTensor mask_dl = dmask.dl();
  merge_state_in_place(dv.dl(), ds.dl(), dvo.dl(), dso.dl(), &mask_dl, stream.get());
  stream.synchronize();

  const auto merged = reference::merge_state(v, s, vo, so, kRows, kHeads, kDim);
  std::vector<double> ref_v(merged.v), ref_s(merged.lse);
  for (int64_t r = 0; r < kRows; ++r) {
    if (mask[r] != 0) continue;
    for (int64_t i = 0; i < kHeads * kDim; ++i) ref_v[r * kHeads * kDim + i] = v[r * kHeads * kDim + i];
    for (int64_t h = 0; h < kHeads; ++h) ref_s[r * kHeads + h] = s[r * kHeads + h];
  }
  EXPECT_TRUE(testing::all_close(dv.download(), ref_v, value_tolerance(dtype)));
  EXPECT_TRUE(lse_matches(ds.download(), ref_s));
}

TEST(MergeStateInPlace, WithoutMaskMergesEveryRow) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kRows = 3, kHeads = 5, kDim = 256;
  const DType dtype = DType::kBFloat16;
  const std::size_t nv = kRows * kHeads * kDim, ns = kRows * kHeads;
  const std::vector<float> v = testing::round_to(dtype, rng.normal_vector(nv));
  const std::vector<float> vo = testing::round_to(dtype, rng.normal_vector(nv));
  const std::vector<float> s = random_lse(rng, ns, 0.2);
  const std::vector<float> so = random_lse(rng, ns, 0.2);
  DeviceTensor dv = upload(dtype, {kRows, kHeads, kDim}, v);
  DeviceTensor dvo = upload(dtype, {kRows, kHeads, kDim}, vo);
  DeviceTensor ds = upload(DType::kFloat32, {kRows, kHeads}, s);
  DeviceTensor dso = upload(DType::kFloat32, {kRows, kHeads}, so);
  CudaStream stream;
  merge_state_in_place(dv.dl(), ds.dl(), dvo.dl(), dso.dl(), nullptr, stream.get());
  stream.synchronize();
  const auto ref = reference::merge_state(v, s, vo, so, kRows, kHeads, kDim);
  EXPECT_TRUE(testing::all_close(dv.download(), ref.v, value_tolerance(dtype)));
  EXPECT_TRUE(lse_matches(ds.download(), ref.lse));
}

TEST(MergeStates, ManyStatesIntoStridedOutputMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kRows = 6, kStates = 7, kHeads = 4, kDim = 128, kPad = 8;
  for (const DType dtype : {DType::kBFloat16, DType::kFloat32}) {
    SCOPED_TRACE(dtype_name(dtype));
    const std::size_t nv = kRows * kStates * kHeads * kDim, ns = kRows * kStates * kHeads;
    const std::vector<float> v = testing::round_to(dtype, rng.normal_vector(nv));
    const std::vector<float> s = random_lse(rng, ns, 0.15);
    DeviceTensor dv = upload(dtype, {kRows, kStates, kHeads, kDim}, v);
    DeviceTensor ds = upload(DType::kFloat32, {kRows, kStates, kHeads}, s);
    // Output rows padded: the merge must write nothing outside them.
    DeviceTensor out(dtype, {kRows, kHeads, kDim}, {kHeads * (kDim + kPad), kDim + kPad, 1});
    DeviceTensor out_lse(DType::kFloat32, {kRows, kHeads});
    out.poison();
    out_lse.poison();
    CudaStream stream;
    merge_states(dv.dl(), ds.dl(), out.dl(), out_lse.dl(), stream.get());
    stream.synchronize();
    const auto ref = reference::merge_states(v, s, kRows, kStates, kHeads, kDim);
    EXPECT_TRUE(testing::all_close(out.download(), ref.v, value_tolerance(dtype)));
    EXPECT_TRUE(lse_matches(out_lse.download(), ref.lse));
    EXPECT_TRUE(testing::padding_untouched(out));
  }
}

TEST(MergeStates, ZeroStatesGiveZeroAndNegativeInfinity) {
  TESSERA_REQUIRE_GPU();
  constexpr int64_t kRows = 2, kHeads = 3, kDim = 64;
  DeviceTensor v(DType::kBFloat16, {kRows, 0, kHeads, kDim});
  DeviceTensor s(DType::kFloat32, {kRows, 0, kHeads});
  DeviceTensor out(DType::kBFloat16, {kRows, kHeads, kDim});
  DeviceTensor out_lse(DType::kFloat32, {kRows, kHeads});
  out.poison();
  out_lse.poison();
  CudaStream stream;
  merge_states(v.dl(), s.dl(), out.dl(), out_lse.dl(), stream.get());
  stream.synchronize();
  EXPECT_TRUE(testing::all_equal(out.download(), std::vector<float>(kRows * kHeads * kDim, 0.f)));
  for (const float x : out_lse.download()) EXPECT_TRUE(std::isinf(x) && x < 0) << x;
}

}  // namespace
}  // namespace tessera
