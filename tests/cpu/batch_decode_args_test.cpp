// BatchDecodeWithPagedKVCache and the merge ops without a GPU: every argument
// the constructor, plan() and the merges reject, named in the tessera::Error,
// before any CUDA call (fake pointers; bounds with an explicit max_work_units
// so nothing asks the device for its SM count). run()'s checks need a plan,
// and plan() copies to the device: they are in tests/gpu/batch_decode_test.cpp.
#include "../../src/api/batch_decode_args.h"  // host-only checks, tested directly

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "../../src/api/plan_run.h"  // the grids of run()
#include "reference/merge_ref.h"
#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/api/decode.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::expect_argument_error;
using testing::FakeTensor;

constexpr DecodePlanShape kShape{32, 8, 128, 16};
constexpr DecodePlanBounds kBounds{8, 64};
void* const kWorkspace = reinterpret_cast<void*>(uintptr_t{1} << 24);

std::size_t required_bytes() {
  return BatchDecodeWithPagedKVCache::workspace_size_bytes(kShape, kBounds, 0);
}

void construct(const DecodePlanShape& shape, const DecodePlanBounds& bounds, void* workspace,
               std::size_t bytes, int device = 0) {
  BatchDecodeWithPagedKVCache decode(shape, bounds, workspace, bytes, device);
}

// ----------------------------------------------------------- merge reference

TEST(MergeReference, TwoStatesHandComputed) {
  // lse 1 and 3 (base 2): weights 2^-2 : 1 -> v = (0.25 * 4 + 1 * 8) / 1.25.
  const std::vector<float> va = {4}, sa = {1}, vb = {8}, sb = {3};
  const auto m = reference::merge_state(va, sa, vb, sb, 1, 1, 1);
  EXPECT_NEAR(m.v[0], 9.0 / 1.25, 1e-12);
  EXPECT_NEAR(m.lse[0], 3.0 + std::log2(1.25), 1e-12);
}

TEST(MergeReference, NegativeInfinityStatesContributeNothing) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // State 0 is empty (its v is garbage and must not be read), state 1 real.
  const std::vector<float> v = {nan, 5, 3};
  const std::vector<float> s = {-inf, 2, -inf};
  const auto m = reference::merge_states(v, s, 1, 3, 1, 1);
  EXPECT_EQ(m.v[0], 5.0);
  EXPECT_EQ(m.lse[0], 2.0);
  const std::vector<float> none = {-inf, -inf};
  const auto e = reference::merge_states(std::vector<float>{nan, nan}, none, 1, 2, 1, 1);
  EXPECT_EQ(e.v[0], 0.0);
  EXPECT_EQ(e.lse[0], -std::numeric_limits<double>::infinity());
}

// --------------------------------------------------------------- constructor

TEST(BatchDecodeArgs, WorkspaceSizeNeedsNoGpuWithExplicitBounds) {
  EXPECT_GT(required_bytes(), 64 * 32 * 128 * sizeof(float));
  EXPECT_NO_THROW(construct(kShape, kBounds, kWorkspace, required_bytes()));
}

TEST(BatchDecodeArgs, RejectsBadShape) {
  const auto with = [](auto edit) {
    DecodePlanShape shape = kShape;
    edit(shape);
    return [shape] { construct(shape, kBounds, kWorkspace, 1 << 30); };
  };
  expect_argument_error(with([](DecodePlanShape& s) { s.num_qo_heads = 12; }), "shape");
  expect_argument_error(with([](DecodePlanShape& s) { s.num_kv_heads = 0; }), "shape");
  expect_argument_error(with([](DecodePlanShape& s) { s.num_qo_heads = 0; }), "shape");
  expect_argument_error(with([](DecodePlanShape& s) { s.head_dim = 72; }), "shape");
  expect_argument_error(with([](DecodePlanShape& s) { s.head_dim = 160; }), "shape");
  expect_argument_error(with([](DecodePlanShape& s) { s.page_size = 0; }), "shape");
  expect_argument_error([] { (void)BatchDecodeWithPagedKVCache::workspace_size_bytes(
                                 {32, 8, 72, 16}, kBounds, 0); },
                        "shape");
}

// Phi-2 / Phi-3 / StableLM head dims (JIT-served kernels) pass the shape check.
TEST(BatchDecodeArgs, AcceptsHeadDims80To112) {
  for (const int64_t head_dim : {80, 96, 112}) {
    DecodePlanShape shape = kShape;
    shape.head_dim = head_dim;
    EXPECT_NO_THROW(detail::validate_decode_shape(shape)) << "head_dim " << head_dim;
    EXPECT_GT(BatchDecodeWithPagedKVCache::workspace_size_bytes(shape, kBounds, 0), 0)
        << "head_dim " << head_dim;
  }
}

TEST(BatchDecodeArgs, RejectsBadBounds) {
  expect_argument_error([] { construct(kShape, {0, 64}, kWorkspace, 1 << 30); }, "bounds");
  // Every request needs at least one work unit.
  expect_argument_error([] { construct(kShape, {8, 7}, kWorkspace, 1 << 30); }, "bounds");
  expect_argument_error([] { construct(kShape, {8, -1}, kWorkspace, 1 << 30); }, "bounds");
}

TEST(BatchDecodeArgs, RejectsBadWorkspaceAndSaysHowLargeItMustBe) {
  expect_argument_error([] { construct(kShape, kBounds, nullptr, 1 << 30); }, "workspace");
  expect_argument_error(
      [] { construct(kShape, kBounds, static_cast<char*>(kWorkspace) + 16, 1 << 30); },
      "workspace");
  const std::size_t needed = required_bytes();
  try {
    construct(kShape, kBounds, kWorkspace, needed - 1);
    ADD_FAILURE() << "a workspace one byte short was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.argument(), "workspace");
    EXPECT_NE(std::string(error.what()).find(std::to_string(needed)), std::string::npos)
        << error.what();
  }
  expect_argument_error([] { construct(kShape, kBounds, kWorkspace, 1 << 30, -1); }, "device_id");
}

// -------------------------------------------------------------------- plan()

TEST(BatchDecodeArgs, PlanRejectsBadIndexArrays) {
  BatchDecodeWithPagedKVCache decode(kShape, kBounds, kWorkspace, required_bytes(), 0);
  const auto plan = [&](std::vector<int32_t> indptr, std::vector<int32_t> last) {
    return [&decode, indptr, last] { decode.plan(indptr, last, nullptr); };
  };
  expect_argument_error(plan({}, {}), "kv_indptr");
  expect_argument_error(plan({1, 2}, {1}), "kv_indptr");        // does not start at 0
  expect_argument_error(plan({0, 3, 2}, {1, 1}), "kv_indptr");  // decreases
  expect_argument_error(plan(std::vector<int32_t>(10, 0), std::vector<int32_t>(9, 0)),
                        "kv_indptr");                          // 9 requests > max_batch_size 8
  expect_argument_error(plan({0, 1, 2}, {1}), "kv_last_page_len");  // length
  expect_argument_error(plan({0, 1}, {0}), "kv_last_page_len");     // empty last page
  expect_argument_error(plan({0, 1}, {17}), "kv_last_page_len");    // > page_size
  expect_argument_error(plan({0, 0}, {-1}), "kv_last_page_len");
  expect_argument_error([&] { decode.plan(std::vector<int32_t>{0, 1}, std::vector<int32_t>{1},
                                          nullptr, DecodePlanOptions{-1}); },
                        "fixed_split_size");
}

TEST(BatchDecodeArgs, RunBeforePlanIsRejected) {
  BatchDecodeWithPagedKVCache decode(kShape, kBounds, kWorkspace, required_bytes(), 0);
  FakeTensor q(DType::kBFloat16, {1, 32, 128});
  FakeTensor out(DType::kBFloat16, {1, 32, 128});
  FakeTensor cache(DType::kBFloat16, {4, 2, 16, 8, 128});
  FakeTensor indices(DType::kInt32, {4});
  FakeTensor indptr(DType::kInt32, {2});
  FakeTensor last(DType::kInt32, {1});
  expect_argument_error(
      [&] {
        decode.run(q, PagedKVCacheArg::combined(cache, KVLayout::kNHD), indices, indptr, last, out,
                   nullptr, AttentionOptions{}, nullptr, Validate::kOff);
      },
      "plan");
}

// ------------------------------------------------------------- merge ops

TEST(MergeStateArgs, RejectsBadTensors) {
  FakeTensor v(DType::kBFloat16, {4, 2, 64});
  FakeTensor s(DType::kFloat32, {4, 2});
  FakeTensor v_int(DType::kInt32, {4, 2, 64});
  FakeTensor v_other_shape(DType::kBFloat16, {4, 3, 64});
  FakeTensor v_half(DType::kFloat16, {4, 2, 64});
  FakeTensor s_bad(DType::kFloat32, {4, 3});
  FakeTensor s_half(DType::kFloat16, {4, 2});
  FakeTensor v_cpu(DType::kBFloat16, {4, 2, 64}, {kDLCPU, 0});
  expect_argument_error([&] { merge_state(v_int, s, v, s, v, s, nullptr); }, "v_a");
  expect_argument_error([&] { merge_state(v, s, v_other_shape, s, v, s, nullptr); }, "v_b");
  expect_argument_error([&] { merge_state(v, s, v, s, v_half, s, nullptr); }, "v_merged");
  expect_argument_error([&] { merge_state(v, s_bad, v, s, v, s, nullptr); }, "s_a");
  expect_argument_error([&] { merge_state(v, s, v, s_half, v, s, nullptr); }, "s_b");
  expect_argument_error([&] { merge_state(v_cpu, s, v, s, v, s, nullptr); }, "v_a");
  // Partly overlapping output: v_merged starts one row into v_a.
  FakeTensor shifted(DType::kBFloat16, {4, 2, 64});
  shifted.with_data((uintptr_t{1} << 20) + 2 * 64 * 2);
  expect_argument_error([&] { merge_state(v, s, v, s, shifted, s, nullptr); }, "v_merged");
}

TEST(MergeStateArgs, InPlaceRejectsBadMask) {
  FakeTensor v(DType::kFloat16, {4, 2, 64});
  FakeTensor s(DType::kFloat32, {4, 2});
  FakeTensor mask_wrong_dtype(DType::kInt32, {4});
  FakeTensor mask_wrong_size(DType::kUInt8, {5});
  FakeTensor v_other(DType::kFloat16, {4, 2, 32});
  expect_argument_error([&] { merge_state_in_place(v, s, v, s, &mask_wrong_dtype.dl(), nullptr); },
                        "mask");
  expect_argument_error([&] { merge_state_in_place(v, s, v, s, &mask_wrong_size.dl(), nullptr); },
                        "mask");
  expect_argument_error([&] { merge_state_in_place(v, s, v_other, s, nullptr, nullptr); },
                        "v_other");
}

TEST(MergeStateArgs, MergeStatesRejectsMismatchedShapes) {
  FakeTensor v(DType::kBFloat16, {4, 3, 2, 64});
  FakeTensor s(DType::kFloat32, {4, 3, 2});
  FakeTensor s_bad(DType::kFloat32, {4, 2, 2});
  FakeTensor out(DType::kBFloat16, {4, 2, 64});
  out.with_data(uintptr_t{1} << 24);
  FakeTensor out_bad(DType::kBFloat16, {4, 3, 64});
  out_bad.with_data(uintptr_t{1} << 24);
  FakeTensor s_out(DType::kFloat32, {4, 2});
  s_out.with_data(uintptr_t{1} << 25);
  FakeTensor overlapping_out(DType::kBFloat16, {4, 2, 64});  // at v's address
  expect_argument_error([&] { merge_states(v, s_bad, out, s_out, nullptr); }, "s");
  expect_argument_error([&] { merge_states(v, s, out_bad, s_out, nullptr); }, "v_merged");
  expect_argument_error([&] { merge_states(v, s, overlapping_out, s_out, nullptr); }, "v_merged");
}

// run()'s grids: a graph captured with the bounds replays any plan within
// them; outside a capture only the plan's units are launched (at least one).
TEST(RunGrid, BoundsWhileCapturingElseThePlansUnits) {
  EXPECT_EQ(detail::grid_units(/*capturing=*/true, /*bound=*/265, /*planned=*/33), 265);
  EXPECT_EQ(detail::grid_units(false, 265, 33), 33);
  EXPECT_EQ(detail::grid_units(false, 265, 0), 1);
  EXPECT_EQ(detail::unit_grid_ctas(33, 8, "decode"), 264u);
  EXPECT_EQ(detail::unit_grid_ctas(1, 1, "decode"), 1u);
  const int64_t kMaxCtas = std::numeric_limits<int32_t>::max();
  EXPECT_EQ(detail::unit_grid_ctas(kMaxCtas, 1, "decode"), static_cast<unsigned>(kMaxCtas));
  for (const auto& [units, heads] :
       {std::pair<int64_t, int64_t>{0, 8}, {8, 0}, {kMaxCtas / 8 + 1, 8}, {kMaxCtas, 2}}) {
    try {
      detail::unit_grid_ctas(units, heads, "decode");
      ADD_FAILURE() << units << " x " << heads << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("decode: grid"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace tessera
