// MultiLevelCascadeAttention without a GPU: the level count, shape, bounds
// and workspace arguments its constructor and size functions reject, the
// checks plan() makes of every level's host arrays before any level is
// planned, the attention options run() refuses, and the workspace layout
// (regions aligned and disjoint, level slices within the buffer). All named
// in the tessera::Error, before any CUDA call.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "api/cascade_levels.h"
#include "plan/workspace_regions.h"
#include "support/argument_error.h"
#include "tessera/api/cascade.h"

namespace tessera {
namespace {

using testing::expect_argument_error;

constexpr PrefillPlanShape kShape{32, 8, 128, 16};
constexpr PrefillPlanBounds kBounds{8, 4096};
void* const kWorkspace = reinterpret_cast<void*>(uintptr_t{1} << 24);

TEST(CascadeArgs, SizeAndConstructorRejectBadLevelsShapeBoundsAndWorkspace) {
  const auto size = [](int64_t levels, PrefillPlanShape shape, PrefillPlanBounds bounds) {
    return [=] { MultiLevelCascadeAttention::workspace_size_bytes(levels, shape, bounds, 0); };
  };
  const auto min_size = [](int64_t levels) {
    return
        [=] { MultiLevelCascadeAttention::min_workspace_size_bytes(levels, kShape, kBounds, 0); };
  };
  const auto construct = [](int64_t levels, PrefillPlanShape shape, void* workspace, int device) {
    return [=] {
      MultiLevelCascadeAttention cascade(levels, shape, kBounds, workspace, 1 << 30, device);
    };
  };
  expect_argument_error(size(0, kShape, kBounds), "num_levels");
  expect_argument_error(size(-2, kShape, kBounds), "num_levels");
  expect_argument_error(min_size(0), "num_levels");
  expect_argument_error(construct(0, kShape, kWorkspace, 0), "num_levels");
  PrefillPlanShape bad = kShape;
  bad.head_dim = 72;  // no prefill kernel
  expect_argument_error(size(2, bad, kBounds), "shape");
  bad = kShape;
  bad.page_size = 0;  // the levels are paged
  expect_argument_error(construct(2, bad, kWorkspace, 0), "shape");
  bad = kShape;
  bad.num_kv_heads = 3;
  expect_argument_error(size(2, bad, kBounds), "shape");
  expect_argument_error(size(2, kShape, {0, 4096}), "bounds");
  expect_argument_error(size(2, kShape, {8, 0}), "bounds");
  expect_argument_error(construct(2, kShape, nullptr, 0), "workspace");
  expect_argument_error(construct(2, kShape, reinterpret_cast<void*>(uintptr_t{1} << 24 | 8), 0),
                        "workspace");
  expect_argument_error(construct(2, kShape, kWorkspace, -1), "device_id");
}

// Two levels of a decode batch of 3: one shared prefix of 40 tokens (3 pages,
// 8 on the last), then each request's own pages.
struct TwoLevels {
  std::vector<int32_t> qo0{0, 3}, kv0{0, 3}, last0{8};
  std::vector<int32_t> qo1{0, 1, 2, 3}, kv1{0, 2, 2, 5}, last1{16, 0, 1};
  std::vector<CascadeLevelPlan> plans() const { return {{qo0, kv0, last0}, {qo1, kv1, last1}}; }
};

int64_t check(const std::vector<CascadeLevelPlan>& levels, int64_t num_levels = 2) {
  return detail::check_cascade_levels(levels, num_levels, kShape.page_size, kBounds);
}

TEST(CascadeArgs, WellFormedLevelsReturnTheirTokens) {
  const TwoLevels t;
  EXPECT_EQ(check(t.plans()), 3);
  // One level (a plain batch prefill) and empty ones are accepted too.
  EXPECT_EQ(check({t.plans()[1]}, 1), 3);
  const std::vector<int32_t> zero{0};
  const std::vector<int32_t> none;
  EXPECT_EQ(check({{zero, zero, none}, {zero, zero, none}}), 0);
}

TEST(CascadeArgs, LevelCountMustBeNumLevels) {
  const TwoLevels t;
  expect_argument_error([&] { check(t.plans(), 3); }, "levels");
  expect_argument_error([&] { check({t.plans()[0]}); }, "levels");
}

TEST(CascadeArgs, EveryLevelMustCoverTheSameTokens) {
  TwoLevels t;
  t.qo1 = {0, 1, 2, 4};  // 4 tokens below a level of 3
  expect_argument_error([&] { check(t.plans()); }, "levels[1].qo_indptr");
  t = TwoLevels{};
  t.qo0 = {0, 5000};  // over max_total_qo_tokens
  t.qo1 = {0, 1, 2, 5000};
  expect_argument_error([&] { check(t.plans()); }, "levels[0].qo_indptr");
}

TEST(CascadeArgs, LevelArraysAreCheckedByName) {
  TwoLevels t;
  t.qo1.clear();
  expect_argument_error([&] { check(t.plans()); }, "levels[1].qo_indptr");
  t = TwoLevels{};
  t.qo1 = {0, 2, 1, 3};  // decreasing
  expect_argument_error([&] { check(t.plans()); }, "levels[1].qo_indptr");
  t = TwoLevels{};
  t.qo0 = {1, 3};  // must start at 0
  expect_argument_error([&] { check(t.plans()); }, "levels[0].qo_indptr");
  t = TwoLevels{};
  t.kv1 = {0, 2, 5};  // one entry short of qo_indptr
  expect_argument_error([&] { check(t.plans()); }, "levels[1].kv_indptr");
  t = TwoLevels{};
  t.kv0 = {0, -1};
  expect_argument_error([&] { check(t.plans()); }, "levels[0].kv_indptr");
  t = TwoLevels{};
  t.last1 = {16, 0};  // batch 3 needs 3
  expect_argument_error([&] { check(t.plans()); }, "levels[1].kv_last_page_len");
  t = TwoLevels{};
  t.last1 = {17, 0, 1};  // over the page size
  expect_argument_error([&] { check(t.plans()); }, "levels[1].kv_last_page_len");
  t = TwoLevels{};
  t.last1 = {16, -1, 1};  // negative, even for a request without pages
  expect_argument_error([&] { check(t.plans()); }, "levels[1].kv_last_page_len");
  t = TwoLevels{};
  t.last0 = {0};  // a request with pages holds >= 1 token on the last
  expect_argument_error([&] { check(t.plans()); }, "levels[0].kv_last_page_len");
  // More requests in one level than max_batch_size.
  t = TwoLevels{};
  t.qo1 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 3};
  t.kv1 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  t.last1 = {0, 0, 0, 0, 0, 0, 0, 0, 1};
  expect_argument_error([&] { check(t.plans()); }, "levels[1].qo_indptr");
}

TEST(CascadeArgs, OptionsThatNeedATokensPositionAreRejected) {
  EXPECT_NO_THROW(detail::check_cascade_options(AttentionOptions{}));
  AttentionOptions capped;
  capped.logits_soft_cap = 30.0;
  capped.sm_scale = 0.1;
  EXPECT_NO_THROW(detail::check_cascade_options(capped));
  AttentionOptions o;
  o.pos_encoding_mode = PosEncodingMode::kRopeLlama;
  expect_argument_error([&] { detail::check_cascade_options(o); }, "options");
  o = AttentionOptions{};
  o.pos_encoding_mode = PosEncodingMode::kAlibi;
  expect_argument_error([&] { detail::check_cascade_options(o); }, "options");
  o = AttentionOptions{};
  o.window_left = 0;
  expect_argument_error([&] { detail::check_cascade_options(o); }, "options");
  DLTensor mask{};
  o = AttentionOptions{};
  o.custom_mask = &mask;
  expect_argument_error([&] { detail::check_cascade_options(o); }, "options");
}

TEST(CascadeArgs, WorkspaceRegionsAreAlignedDisjointAndSlicesFit) {
  const detail::CascadeWorkspaceLayout l = detail::cascade_workspace_layout(kShape, kBounds);
  const std::size_t rows = 4096, heads = 32;
  const std::size_t offsets[] = {l.merge_out_offset, l.merge_lse_offset, l.own_lse_offset,
                                 l.row_mask_offset, l.levels_offset};
  const std::size_t sizes[] = {rows * heads * 128 * 2, rows * heads * 4, rows * heads * 4, rows};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(offsets[i] % plan::kRegionAlignment, 0u);
    EXPECT_LE(offsets[i] + sizes[i], offsets[i + 1]) << "region " << i;
  }
  EXPECT_EQ(l.levels_offset % plan::kRegionAlignment, 0u);
  for (const int64_t levels : {1, 2, 3, 7}) {
    const std::size_t bytes = l.levels_offset + 12345679;
    const std::size_t slice = detail::cascade_level_bytes(l, levels, bytes);
    EXPECT_EQ(slice % plan::kRegionAlignment, 0u);
    EXPECT_LE(l.levels_offset + static_cast<std::size_t>(levels) * slice, bytes);
    EXPECT_GT(slice + plan::kRegionAlignment * static_cast<std::size_t>(levels + 1),
              12345679 / static_cast<std::size_t>(levels));
  }
  EXPECT_EQ(detail::cascade_level_bytes(l, 2, l.levels_offset - 1), 0u);
}

// The last level runs on the decode kernel only for qo_indptr 0, 1, ..., batch.
TEST(CascadeArgs, OneTokenPerRequestIsExactlyTheIdentityIndptr) {
  using detail::one_token_per_request;
  const auto check = [](std::vector<int32_t> indptr) { return one_token_per_request(indptr); };
  EXPECT_TRUE(check({0}));
  EXPECT_TRUE(check({0, 1}));
  EXPECT_TRUE(check({0, 1, 2, 3, 4}));
  EXPECT_FALSE(check({}));
  EXPECT_FALSE(check({0, 2}));           // two tokens in one request
  EXPECT_FALSE(check({0, 1, 1, 2}));     // a request without a token
  EXPECT_FALSE(check({0, 0, 1, 2}));
  EXPECT_FALSE(check({0, 1, 2, 4}));     // the last request two tokens
  EXPECT_FALSE(check({1, 2}));
}

}  // namespace
}  // namespace tessera
