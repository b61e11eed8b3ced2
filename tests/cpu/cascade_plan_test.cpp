// The schedules the prefill planner makes for the two levels of a cascade
// decode step (benchmarks/bench_cascade.cpp: 64 requests of one query token,
// a shared prefix of 8k / 32k tokens, 512 tokens each of their own, GQA
// 32 / 8, head_dim 128), with the planner input PrefillPlanState::plan()
// builds on an H100 for either back end: the shared level (one request of
// 64 tokens x 4 heads = 256 packed rows per KV head) splits its KV until its
// (unit, head) jobs fill about one wave, with partials that fit the
// level's workspace slice and a merge spread over the SMs; the unique
// level stays one unsplit unit per request.
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "api/cascade_levels.h"
#include "plan/prefill_planner.h"
#include "plan/workspace_regions.h"
#include "tessera/api/cascade.h"
#include "tessera/core/error.h"

namespace tessera::plan {
namespace {

constexpr int64_t kH100Sms = 132;
constexpr int64_t kBatch = 64;
constexpr int64_t kQoHeads = 32;
constexpr int64_t kKvHeads = 8;
constexpr int64_t kHeadDim = 128;
constexpr int64_t kPageSize = 16;
constexpr int64_t kUniqueTokens = 512;
constexpr int64_t kGroup = kQoHeads / kKvHeads;
// The FA2 kernel's fit on an H100 at head_dim 128 (prefill_device_fit: two
// 128-row CTAs per SM); workspace bounds are derived with it for both.
constexpr int64_t kFa2CtasPerSm = 2;
// Rows a merge block folds per pass at head_dim 128: 256 threads, 32 lanes
// of 4 floats per row (attention/merge.cuh).
constexpr int64_t kMergeRowsPerPass = 8;

// What PrefillPlanState::plan() sets for each back end (batch_prefill_plan.cpp).
struct Backend {
  const char* name;
  bool only_max_q_tile;  // fa3: 128-row tiles only
  int64_t ctas_per_sm;   // fa3: one CTA per SM taking (unit, head) jobs
};
constexpr Backend kFa2{"fa2", false, kFa2CtasPerSm};
constexpr Backend kFa3{"fa3", true, 1};

// One cascade level's host arrays (kv_indptr in pages, as the paged wrapper).
struct Level {
  std::vector<int32_t> qo_indptr;
  std::vector<int64_t> kv_lengths;
  std::vector<int32_t> kv_indptr;
};

Level shared_level(int64_t prefix_tokens) {
  return {{0, static_cast<int32_t>(kBatch)},
          {prefix_tokens},
          {0, static_cast<int32_t>(prefix_tokens / kPageSize)}};
}

Level unique_level() {
  Level l;
  l.qo_indptr.resize(kBatch + 1);
  std::iota(l.qo_indptr.begin(), l.qo_indptr.end(), 0);
  l.kv_lengths.assign(kBatch, kUniqueTokens);
  for (int64_t b = 0; b <= kBatch; ++b) {
    l.kv_indptr.push_back(static_cast<int32_t>(b * kUniqueTokens / kPageSize));
  }
  return l;
}

PrefillDerivedBounds cascade_bounds() {
  return derive_prefill_bounds(kBatch, kBatch, kQoHeads, kKvHeads, /*pack_gqa=*/true, kH100Sms,
                               kFa2CtasPerSm);
}

PrefillPlannerInput input_for(const Level& level, const Backend& backend) {
  PrefillPlannerInput in;
  in.qo_indptr = level.qo_indptr;
  in.kv_lengths = level.kv_lengths;
  in.kv_indptr = level.kv_indptr;
  in.num_qo_heads = kQoHeads;
  in.num_kv_heads = kKvHeads;
  in.head_dim = kHeadDim;
  in.causal = false;  // every level but a causal cascade's last
  in.pack_gqa = true;
  in.max_q_tile_rows = 128;
  in.only_max_q_tile = backend.only_max_q_tile;
  in.one_unit_per_cta = true;
  in.num_sms = kH100Sms;
  in.ctas_per_sm = backend.ctas_per_sm;
  in.max_batch_size = kBatch;
  in.max_total_qo_tokens = kBatch;
  const PrefillDerivedBounds d = cascade_bounds();
  in.max_work_units = d.max_work_units;
  in.max_partial_rows = d.max_partial_rows;
  return in;
}

std::string label(const Backend& backend, int64_t prefix_tokens) {
  return std::string(backend.name) + ", prefix " + std::to_string(prefix_tokens);
}

TEST(CascadePlan, SharedLevelSplitsItsKvIntoAboutOneWaveOfJobs) {
  for (const Backend& backend : {kFa2, kFa3}) {
    for (const int64_t prefix : {int64_t{8192}, int64_t{32768}}) {
      SCOPED_TRACE(label(backend, prefix));
      const Level level = shared_level(prefix);
      const PrefillScheduleHost s = plan_prefill_schedule(input_for(level, backend));
      // The q tiles alone are 16 (fa3) or 32 (fa2) jobs of 8 KV heads x
      // 128- or 64-row tiles: an eighth of the SMs.
      const int64_t wave = kH100Sms * backend.ctas_per_sm;
      const int64_t jobs = int64_t{s.header.num_work_units} * kKvHeads;
      EXPECT_EQ(s.header.split_kv, 1);
      EXPECT_LE(jobs, wave);
      EXPECT_GE(jobs * 10, wave * 9) << jobs << " jobs on a wave of " << wave;
      // Equal chunks (prefix a multiple of the chunk): no job waits on a longer one.
      for (const PrefillWorkUnit& u : s.work_units) {
        EXPECT_EQ(u.kv_end - u.kv_begin, s.header.max_chunk_tokens);
      }
      EXPECT_LE(s.header.num_partial_rows, input_for(level, backend).max_partial_rows);
    }
  }
}

TEST(CascadePlan, UniqueLevelIsOneUnsplitUnitOfFourRowsPerRequest) {
  for (const Backend& backend : {kFa2, kFa3}) {
    SCOPED_TRACE(backend.name);
    const Level level = unique_level();
    const PrefillScheduleHost s = plan_prefill_schedule(input_for(level, backend));
    // 512 jobs (about 4 waves on fa3) without a split: no partials, no merge.
    EXPECT_EQ(s.header.num_work_units, kBatch);
    EXPECT_EQ(s.header.split_kv, 0);
    EXPECT_EQ(s.header.num_merge_tiles, 0);
    // One token x the GQA group: 4 rows of a 64- or 128-row tile, the rest
    // padding (why a decode-shaped kernel would suit this level).
    for (const PrefillWorkUnit& u : s.work_units) {
      EXPECT_EQ(u.qo_rows, kGroup);
      EXPECT_EQ(u.kv_end - u.kv_begin, kUniqueTokens);
    }
    EXPECT_EQ(s.header.q_tile_rows, backend.only_max_q_tile ? 128 : 64);
  }
}

TEST(CascadePlan, SharedLevelMergeSpreadsOverEverySm) {
  for (const Backend& backend : {kFa2, kFa3}) {
    SCOPED_TRACE(backend.name);
    const PrefillScheduleHost s = plan_prefill_schedule(input_for(shared_level(8192), backend));
    const int64_t tile_blocks = int64_t{s.header.num_merge_tiles} * kKvHeads;
    const int64_t slices = prefill_merge_row_slices(s.header.q_tile_rows, kMergeRowsPerPass);
    // One block per (merge tile, head) would be 16 (fa3) or 32 (fa2) blocks
    // each folding 16 or 8 passes in a row.
    EXPECT_LT(tile_blocks, kH100Sms);
    EXPECT_GE(tile_blocks * slices, kH100Sms);
    EXPECT_EQ(slices * kMergeRowsPerPass, s.header.q_tile_rows);
  }
}

TEST(CascadePlan, LevelSliceHoldsTheSharedLevelsPartials) {
  // The full workspace (MultiLevelCascadeAttention::workspace_size_bytes):
  // the merge scratch, then two slices of one level's full size, laid out as
  // prefill_layout does (one CTA per unit: max_ctas = max_work_units).
  const PrefillDerivedBounds d = cascade_bounds();
  const PrefillPlanShape shape{kQoHeads, kKvHeads, kHeadDim, kPageSize};
  const PrefillPlanBounds bounds{kBatch, kBatch};
  const PrefillWorkspaceLayout level = prefill_workspace_layout(
      d.max_work_units, d.max_work_units, d.max_partial_rows, kQoHeads, kKvHeads, kHeadDim,
      /*pack_gqa=*/true);
  const detail::CascadeWorkspaceLayout cascade = detail::cascade_workspace_layout(shape, bounds);
  const std::size_t total = cascade.levels_offset + 2 * align_region(level.total_bytes);
  EXPECT_GE(detail::cascade_level_bytes(cascade, 2, total), level.total_bytes);
  for (const Backend& backend : {kFa2, kFa3}) {
    for (const int64_t prefix : {int64_t{8192}, int64_t{32768}}) {
      SCOPED_TRACE(label(backend, prefix));
      const PrefillScheduleHost s = plan_prefill_schedule(input_for(shared_level(prefix), backend));
      EXPECT_LE(s.header.num_partial_rows, d.max_partial_rows);
      const std::size_t partial_bytes =
          static_cast<std::size_t>(s.header.num_partial_rows) * kKvHeads * kHeadDim * sizeof(float);
      EXPECT_LE(level.partial_out_offset + partial_bytes, level.partial_lse_offset);
    }
  }
}

TEST(PrefillMergeRowSlices, OneSlicePerPassOfATile) {
  EXPECT_EQ(prefill_merge_row_slices(128, 8), 16);
  EXPECT_EQ(prefill_merge_row_slices(64, 8), 8);
  EXPECT_EQ(prefill_merge_row_slices(64, 16), 4);  // head_dim 64: 16 lanes a row
  EXPECT_EQ(prefill_merge_row_slices(100, 16), 7);
  EXPECT_EQ(prefill_merge_row_slices(1, 8), 1);
  EXPECT_THROW(prefill_merge_row_slices(0, 8), Error);
  EXPECT_THROW(prefill_merge_row_slices(128, 0), Error);
}

}  // namespace
}  // namespace tessera::plan
