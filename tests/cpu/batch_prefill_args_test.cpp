// The batch prefill wrappers without a GPU: the shape, bounds and workspace
// arguments their constructors and workspace_size_bytes reject, named in the
// tessera::Error, before any CUDA call. plan()'s array checks are the
// planner's (prefill_planner_test.cpp); run()'s checks need a plan, which
// copies to the device: they run in tests/gpu/batch_prefill_test.cpp.
#include <gtest/gtest.h>

#include <cstdint>
#include <utility>

#include "api/batch_prefill_plan.h"
#include "support/argument_error.h"
#include "tessera/api/prefill.h"

namespace tessera {
namespace {

using testing::expect_argument_error;

constexpr PrefillPlanShape kShape{32, 8, 128, 16};
constexpr PrefillPlanBounds kBounds{8, 4096};
void* const kWorkspace = reinterpret_cast<void*>(uintptr_t{1} << 24);

template <typename Wrapper>
void expect_rejected_arguments() {
  const auto size = [](PrefillPlanShape shape, PrefillPlanBounds bounds) {
    return [shape, bounds] { Wrapper::workspace_size_bytes(shape, bounds, 0); };
  };
  const auto construct = [](PrefillPlanShape shape, PrefillPlanBounds bounds, void* workspace,
                            int device) {
    return [=] { Wrapper wrapper(shape, bounds, workspace, 1 << 30, device); };
  };
  PrefillPlanShape bad = kShape;
  bad.head_dim = 72;  // no kernel (64, 80, 96, 112, 128, 256)
  expect_argument_error(size(bad, kBounds), "shape");
  expect_argument_error(construct(bad, kBounds, kWorkspace, 0), "shape");
  for (const int64_t head_dim : {80, 96, 112}) {  // JIT-served FA2 kernels
    PrefillPlanShape good = kShape;
    good.head_dim = head_dim;
    // The shape checks pass; sizing the workspace would ask the device.
    EXPECT_NO_THROW(detail::validate_prefill_shape(good, /*paged=*/true))
        << "head_dim " << head_dim;
  }
  bad = kShape;
  bad.num_kv_heads = 3;  // does not divide 32
  expect_argument_error(size(bad, kBounds), "shape");
  bad = kShape;
  bad.num_qo_heads = 0;
  expect_argument_error(construct(bad, kBounds, kWorkspace, 0), "shape");
  expect_argument_error(size(kShape, {0, 4096}), "bounds");
  expect_argument_error(size(kShape, {8, 0}), "bounds");
  expect_argument_error(construct(kShape, {8, -1}, kWorkspace, 0), "bounds");
  expect_argument_error(construct(kShape, kBounds, nullptr, 0), "workspace");
  expect_argument_error(construct(kShape, kBounds, reinterpret_cast<void*>(uintptr_t{1} << 24 | 8), 0),
                        "workspace");
  expect_argument_error(construct(kShape, kBounds, kWorkspace, -1), "device_id");
}

TEST(BatchPrefillArgs, RaggedRejectsBadShapeBoundsAndWorkspace) {
  expect_rejected_arguments<BatchPrefillWithRaggedKVCache>();
}

TEST(BatchPrefillArgs, PagedRejectsBadShapeBoundsAndWorkspace) {
  expect_rejected_arguments<BatchPrefillWithPagedKVCache>();
  PrefillPlanShape no_pages = kShape;
  no_pages.page_size = 0;
  expect_argument_error(
      [&] { BatchPrefillWithPagedKVCache::workspace_size_bytes(no_pages, kBounds, 0); }, "shape");
  // The ragged wrapper ignores page_size.
  PrefillPlanShape ragged = kShape;
  ragged.page_size = 0;
  expect_argument_error([&] {
    BatchPrefillWithRaggedKVCache wrapper(ragged, {0, 1}, kWorkspace, 1 << 30, 0);
  }, "bounds");
}

// q/k 192 with v/o 128 (DeepSeek-style) is the one pair of unequal head
// dims: ragged takes it; other pairs, and the paged cache (whose checks
// hold one head_dim for K and V), are "shape" errors before any CUDA call.
TEST(BatchPrefillArgs, HeadDimVoPairs) {
  PrefillPlanShape split = kShape;
  split.head_dim = 192;
  split.head_dim_vo = 128;
  EXPECT_NO_THROW(detail::validate_prefill_shape(split, /*paged=*/false));
  expect_argument_error([&] { detail::validate_prefill_shape(split, /*paged=*/true); }, "shape");
  for (const auto& [qk, vo] : {std::pair<int64_t, int64_t>{192, 64}, {192, 192}, {128, 192},
                               {128, 64}, {256, 128}}) {
    PrefillPlanShape bad = kShape;
    bad.head_dim = qk;
    bad.head_dim_vo = vo;
    expect_argument_error(
        [&] { BatchPrefillWithRaggedKVCache::workspace_size_bytes(bad, kBounds, 0); }, "shape");
  }
  PrefillPlanShape equal = kShape;
  equal.head_dim_vo = 128;  // = head_dim: the square kernels
  EXPECT_NO_THROW(detail::validate_prefill_shape(equal, /*paged=*/true));
}

TEST(BatchPrefillArgs, BlockSparseRejectsBadBlockShapeAndBounds) {
  const auto size = [](BlockSparseShape shape, BlockSparseBounds bounds) {
    return [shape, bounds] { BlockSparseAttention::workspace_size_bytes(shape, bounds, 0); };
  };
  const BlockSparseShape good{32, 8, 128, 16, 16};
  BlockSparseShape bad = good;
  bad.block_rows = 0;
  expect_argument_error(size(bad, {4}), "shape");
  bad = good;
  bad.block_cols = 0;
  expect_argument_error(size(bad, {4}), "shape");
  expect_argument_error(size(good, {0}), "bounds");
  bad = good;
  bad.head_dim = 72;  // the paged shape's check
  expect_argument_error(size(bad, {4}), "shape");
}

// The workspace follows the planned work, not the worst case: FlashInfer's
// users pass 32-128 MB, while the full split-KV room of 17 requests of 17
// tokens at 32 heads (no GQA: partials per qo head) is tens of MB. Any size
// from the schedule's minimum up is laid out within itself, with fewer
// partial rows for less room; below the minimum the layout does not fit.
TEST(BatchPrefillWorkspace, LayoutFitsAnySizeFromTheMinimumUp) {
  const PrefillPlanShape shape{32, 32, 128, 16};
  const PrefillPlanBounds bounds{17, 17};
  constexpr int64_t kSms = 132, kCtasPerSm = 2;
  plan::PrefillDerivedBounds full_bounds, min_bounds;
  const auto full = detail::prefill_layout(shape, bounds, kSms, kCtasPerSm, full_bounds);
  const auto minimum = detail::prefill_layout(shape, bounds, kSms, kCtasPerSm, min_bounds, 0);
  EXPECT_GT(full.total_bytes, std::size_t{32} << 20);  // the case that used to be rejected
  EXPECT_LT(minimum.total_bytes, std::size_t{1} << 20);
  EXPECT_EQ(min_bounds.max_partial_rows, 0);
  EXPECT_EQ(min_bounds.max_work_units, full_bounds.max_work_units);
  int64_t last_rows = -1;
  for (const std::size_t bytes :
       {minimum.total_bytes, minimum.total_bytes + 1000, std::size_t{1} << 20,
        std::size_t{32} << 20, full.total_bytes - 1, full.total_bytes}) {
    plan::PrefillDerivedBounds derived;
    const auto layout = detail::prefill_layout(shape, bounds, kSms, kCtasPerSm, derived, bytes);
    EXPECT_LE(layout.total_bytes, bytes) << bytes;
    EXPECT_LE(derived.max_partial_rows, full_bounds.max_partial_rows);
    EXPECT_GE(derived.max_partial_rows, last_rows) << bytes;  // more room, more rows
    // The partial regions hold the rows the planner may use.
    const std::size_t rows = static_cast<std::size_t>(derived.max_partial_rows) * 32;
    EXPECT_GE(layout.partial_lse_offset - layout.partial_out_offset, rows * 128 * sizeof(float));
    EXPECT_GE(layout.total_bytes - layout.partial_lse_offset, rows * sizeof(float));
    last_rows = derived.max_partial_rows;
  }
  EXPECT_EQ(last_rows, full_bounds.max_partial_rows);
  plan::PrefillDerivedBounds derived;
  EXPECT_GT(
      detail::prefill_layout(shape, bounds, kSms, kCtasPerSm, derived, minimum.total_bytes - 1)
          .total_bytes,
      minimum.total_bytes - 1);
}

}  // namespace
}  // namespace tessera
