// The split-KV decode planner and the workspace layout, on the CPU: the
// schedule fills the GPU when the batch alone does not, never splits when it
// does, respects the bounds fixed for CUDA graphs, covers every request's KV
// exactly once, is deterministic, and is fast enough to run every step.
#include "../../src/plan/decode_planner.h"  // host-only planner, tested directly

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "../../src/api/batch_decode_args.h"
#include "support/host_timing.h"
#include "support/random.h"
#include "tessera/core/error.h"

namespace tessera::plan {
namespace {

constexpr int64_t kH100Sms = 132;
constexpr int64_t kCtasPerSm = 3;

DecodePlannerInput input_for(const std::vector<int64_t>& lengths, int64_t num_kv_heads,
                             int64_t max_work_units = 0) {
  DecodePlannerInput input;
  input.kv_lengths = lengths;
  input.num_kv_heads = num_kv_heads;
  input.num_sms = kH100Sms;
  input.ctas_per_sm = kCtasPerSm;
  input.max_work_units =
      max_work_units > 0 ? max_work_units
                         : detail::derived_max_work_units(static_cast<int64_t>(lengths.size()),
                                                          kH100Sms);
  input.max_partials = input.max_work_units;
  return input;
}

// Every request's units tile [0, len) in order; split requests own the
// consecutive partial slots merge_indptr gives them, unsplit ones none.
::testing::AssertionResult schedule_consistent(const std::vector<int64_t>& lengths,
                                               const DecodeScheduleHost& s) {
  const auto batch = static_cast<int32_t>(lengths.size());
  if (s.header.batch_size != batch) return ::testing::AssertionFailure() << "batch_size";
  if (s.header.num_work_units != static_cast<int32_t>(s.work_units.size()))
    return ::testing::AssertionFailure() << "num_work_units";
  if (s.merge_indptr.size() != lengths.size() + 1 || s.merge_indptr[0] != 0)
    return ::testing::AssertionFailure() << "merge_indptr size / start";
  std::size_t u = 0;
  int32_t next_partial = 0;
  for (int32_t b = 0; b < batch; ++b) {
    const int64_t len = lengths[static_cast<std::size_t>(b)];
    int64_t covered = 0;
    std::vector<DecodeWorkUnit> mine;
    while (u < s.work_units.size() && s.work_units[u].request == b) mine.push_back(s.work_units[u++]);
    if (mine.empty()) return ::testing::AssertionFailure() << "request " << b << " has no unit";
    const int32_t slots = s.merge_indptr[b + 1] - s.merge_indptr[b];
    if (mine.size() == 1) {
      if (mine[0].partial_index != -1 || slots != 0)
        return ::testing::AssertionFailure() << "unsplit request " << b << " has partials";
    } else if (slots != static_cast<int32_t>(mine.size())) {
      return ::testing::AssertionFailure() << "request " << b << ": " << mine.size()
                                           << " units but " << slots << " slots";
    }
    for (const DecodeWorkUnit& w : mine) {
      if (w.kv_len != len) return ::testing::AssertionFailure() << "request " << b << " kv_len";
      if (w.kv_begin != covered || w.kv_end < w.kv_begin || w.kv_end > len)
        return ::testing::AssertionFailure() << "request " << b << " unit [" << w.kv_begin
                                             << ", " << w.kv_end << ") breaks the tiling";
      if (w.kv_end - w.kv_begin > s.header.max_chunk_tokens)
        return ::testing::AssertionFailure() << "unit longer than max_chunk_tokens";
      if (mine.size() > 1) {
        if (w.partial_index != next_partial || w.kv_end == w.kv_begin)
          return ::testing::AssertionFailure() << "request " << b << " partial slot "
                                               << w.partial_index << ", expected " << next_partial;
        ++next_partial;
      }
      covered = w.kv_end;
    }
    if (covered != len) return ::testing::AssertionFailure() << "request " << b << " not covered";
    if (s.merge_indptr[b + 1] != next_partial)
      return ::testing::AssertionFailure() << "merge_indptr[" << b + 1 << "]";
  }
  if (u != s.work_units.size()) return ::testing::AssertionFailure() << "units out of order";
  if (s.header.num_partials != next_partial) return ::testing::AssertionFailure() << "num_partials";
  return ::testing::AssertionSuccess();
}

TEST(DecodePlanner, LongSingleRequestFillsEverySm) {
  for (const int64_t kv_heads : {1, 8}) {
    SCOPED_TRACE("num_kv_heads " + std::to_string(kv_heads));
    const std::vector<int64_t> lengths = {32768};
    const DecodeScheduleHost s = plan_decode_schedule(input_for(lengths, kv_heads));
    EXPECT_GE(s.header.num_work_units * kv_heads, kH100Sms);
    EXPECT_TRUE(schedule_consistent(lengths, s));
  }
  // With 8 KV heads the CTAs fit one wave (3 CTAs per SM here) and the chunk
  // is the smallest that fits it: one granule less would overflow the wave.
  const std::vector<int64_t> lengths = {32768};
  const DecodeScheduleHost s = plan_decode_schedule(input_for(lengths, 8));
  EXPECT_LE(s.header.num_work_units * 8, kH100Sms * kCtasPerSm);
  const int64_t chunk = s.header.max_chunk_tokens;
  EXPECT_EQ(chunk % 64, 0);
  EXPECT_GT((32768 + chunk - 64 - 1) / (chunk - 64) * 8, kH100Sms * kCtasPerSm);
}

TEST(DecodePlanner, SplitBatchesFitOneWave) {
  // (batch, length) shapes that miss a wave alone: the CTAs never spill into
  // a second, mostly idle wave, and the chunk is the smallest that fits it
  // (one granule less would spill). The wave is not always well covered:
  // with many similar long requests the unit count jumps by about one per
  // request per granule, so up to ~half of it can stay idle (seen: 183 of
  // 396 CTAs); a makespan-based choice is listed in docs/STATUS.md.
  TESSERA_SEEDED_RNG(rng);
  for (int trial = 0; trial < 100; ++trial) {
    const auto batch = rng.integer(1, 40);
    const int64_t kv_heads = rng.integer(1, 8);
    if (batch * kv_heads >= kH100Sms * kCtasPerSm) continue;
    std::vector<int64_t> lengths(static_cast<std::size_t>(batch));
    for (auto& len : lengths) len = rng.integer(32768, 65536);
    const DecodePlannerInput input = input_for(lengths, kv_heads);
    const DecodeScheduleHost s = plan_decode_schedule(input);
    EXPECT_TRUE(schedule_consistent(lengths, s));
    EXPECT_LE(s.header.num_work_units * kv_heads, kH100Sms * kCtasPerSm);
    const int64_t chunk = s.header.max_chunk_tokens;
    ASSERT_EQ(chunk % 64, 0);
    if (chunk > 128) {
      // One granule less: more units than the wave or the bounds allow.
      int64_t units = 0, partials = 0;
      for (const int64_t len : lengths) {
        const int64_t pieces = len <= chunk - 64 ? 1 : (len + chunk - 64 - 1) / (chunk - 64);
        units += pieces;
        if (pieces >= 2) partials += pieces;
      }
      EXPECT_TRUE(units * kv_heads > kH100Sms * kCtasPerSm || units > input.max_work_units ||
                  partials > input.max_partials)
          << "chunk " << chunk << " is not the smallest: " << units << " units at chunk - 64";
    }
  }
}

TEST(DecodePlanner, FixedChunkSplitsEveryLongerRequestAlike) {
  const std::vector<int64_t> lengths = {1000, 100, 0, 4096};
  DecodePlannerInput input = input_for(lengths, 8);
  input.fixed_chunk_tokens = 300;
  const DecodeScheduleHost s = plan_decode_schedule(input);
  EXPECT_TRUE(schedule_consistent(lengths, s));
  EXPECT_EQ(s.header.max_chunk_tokens, 300);
  EXPECT_EQ(s.merge_indptr[1] - s.merge_indptr[0], 4);   // 1000 = 300 + 300 + 300 + 100
  EXPECT_EQ(s.merge_indptr[2] - s.merge_indptr[1], 0);   // 100: one unsplit unit
  EXPECT_EQ(s.merge_indptr[4] - s.merge_indptr[3], 14);  // ceil(4096 / 300)
  // A request's units do not depend on the rest of the batch.
  const std::vector<int64_t> alone = {1000};
  DecodePlannerInput single = input_for(alone, 8);
  single.fixed_chunk_tokens = 300;
  const DecodeScheduleHost t = plan_decode_schedule(single);
  ASSERT_EQ(t.header.num_work_units, 4);
  for (int u = 0; u < 4; ++u) {
    EXPECT_EQ(t.work_units[u].kv_begin, s.work_units[u].kv_begin);
    EXPECT_EQ(t.work_units[u].kv_end, s.work_units[u].kv_end);
  }
  // Too many chunks for the bounds: grown to the smallest chunk that fits.
  DecodePlannerInput tight = input_for(lengths, 8, 8);
  tight.fixed_chunk_tokens = 64;
  const DecodeScheduleHost g = plan_decode_schedule(tight);
  EXPECT_TRUE(schedule_consistent(lengths, g));
  EXPECT_LE(g.header.num_work_units, 8);
  EXPECT_GT(g.header.max_chunk_tokens, 64);
}

TEST(DecodePlanner, NoSplitWhenTheBatchFillsTheGpu) {
  const std::vector<int64_t> lengths(64, 20000);  // 64 x 8 heads = 512 >= 396 CTAs
  const DecodeScheduleHost s = plan_decode_schedule(input_for(lengths, 8));
  EXPECT_EQ(s.header.num_work_units, 64);
  EXPECT_EQ(s.header.num_partials, 0);
  for (const DecodeWorkUnit& w : s.work_units) EXPECT_EQ(w.partial_index, -1);
  EXPECT_TRUE(schedule_consistent(lengths, s));
}

TEST(DecodePlanner, ShortRequestsAreNotSplitBelowTheMinimumChunk) {
  const std::vector<int64_t> lengths = {100, 128, 7};
  const DecodeScheduleHost s = plan_decode_schedule(input_for(lengths, 1));
  EXPECT_EQ(s.header.num_work_units, 3);
  EXPECT_EQ(s.header.num_partials, 0);
  EXPECT_TRUE(schedule_consistent(lengths, s));
}

TEST(DecodePlanner, ZeroLengthRequestsGetOneEmptyUnsplitUnit) {
  const std::vector<int64_t> lengths = {0, 30000, 0};
  const DecodeScheduleHost s = plan_decode_schedule(input_for(lengths, 4));
  EXPECT_TRUE(schedule_consistent(lengths, s));
  ASSERT_GE(s.work_units.size(), 3u);
  EXPECT_EQ(s.work_units.front().request, 0);
  EXPECT_EQ(s.work_units.front().kv_end, 0);
  EXPECT_EQ(s.work_units.front().partial_index, -1);
  EXPECT_EQ(s.work_units.back().request, 2);
  EXPECT_EQ(s.work_units.back().kv_end, 0);
  EXPECT_EQ(s.merge_indptr[1], 0);
  EXPECT_GE(s.merge_indptr[2] - s.merge_indptr[1], 2);  // the long one is split
  EXPECT_EQ(s.merge_indptr[3], s.merge_indptr[2]);
}

TEST(DecodePlanner, EmptyBatchGivesAnEmptySchedule) {
  const std::vector<int64_t> lengths;
  const DecodeScheduleHost s = plan_decode_schedule(input_for(lengths, 8, 16));
  EXPECT_EQ(s.header.num_work_units, 0);
  EXPECT_EQ(s.header.batch_size, 0);
  EXPECT_EQ(s.merge_indptr, std::vector<int32_t>{0});
}

TEST(DecodePlanner, BoundsAreRespected) {
  TESSERA_SEEDED_RNG(rng);
  for (int trial = 0; trial < 200; ++trial) {
    const auto batch = rng.integer(1, 40);
    std::vector<int64_t> lengths(static_cast<std::size_t>(batch));
    for (auto& len : lengths) len = rng.integer(0, 1) ? rng.integer(0, 100000) : rng.integer(0, 300);
    const int64_t max_units = batch + rng.integer(0, 60);
    DecodePlannerInput input = input_for(lengths, rng.integer(1, 8), max_units);
    input.max_partials = rng.integer(0, max_units);
    const DecodeScheduleHost s = plan_decode_schedule(input);
    EXPECT_LE(s.header.num_work_units, max_units);
    EXPECT_LE(s.header.num_partials, input.max_partials);
    EXPECT_TRUE(schedule_consistent(lengths, s));
  }
}

TEST(DecodePlanner, SameInputGivesTheSameSchedule) {
  TESSERA_SEEDED_RNG(rng);
  std::vector<int64_t> lengths(9);
  for (auto& len : lengths) len = rng.integer(0, 50000);
  const DecodeScheduleHost a = plan_decode_schedule(input_for(lengths, 2));
  const DecodeScheduleHost b = plan_decode_schedule(input_for(lengths, 2));
  ASSERT_EQ(a.work_units.size(), b.work_units.size());
  for (std::size_t i = 0; i < a.work_units.size(); ++i) {
    EXPECT_EQ(a.work_units[i].request, b.work_units[i].request);
    EXPECT_EQ(a.work_units[i].kv_begin, b.work_units[i].kv_begin);
    EXPECT_EQ(a.work_units[i].kv_end, b.work_units[i].kv_end);
    EXPECT_EQ(a.work_units[i].partial_index, b.work_units[i].partial_index);
  }
  EXPECT_EQ(a.merge_indptr, b.merge_indptr);
  EXPECT_EQ(a.header.num_partials, b.header.num_partials);
}

TEST(DecodePlanner, RejectsMoreRequestsThanWorkUnits) {
  const std::vector<int64_t> lengths(5, 10);
  EXPECT_THROW(plan_decode_schedule(input_for(lengths, 1, 4)), Error);
}

// plan() runs every decode step on the host: the planner (with the host-array
// checks) for a batch of 256 must stay well within 10 us. The fastest of
// the timed plans is asserted under 50 us (the fastest is what the code
// costs; a loaded CI machine stretches the mean); both are printed.
TEST(DecodePlanner, PlanForBatch256IsFast) {
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kBatch = 256;
  constexpr int64_t kPageSize = 16;
  std::vector<int32_t> indptr(kBatch + 1, 0);
  std::vector<int32_t> last(kBatch);
  for (int64_t b = 0; b < kBatch; ++b) {
    indptr[b + 1] = indptr[b] + static_cast<int32_t>(rng.integer(1, 512));
    last[b] = static_cast<int32_t>(rng.integer(1, kPageSize));
  }
  std::vector<int64_t> lengths;
  lengths.reserve(kBatch);
  for (const int64_t kv_heads : {8, 1}) {  // 8: no split; 1: 256 < 396 CTAs, split search
    constexpr int kIterations = 2000;
    int64_t units = 0;
    const testing::HostTimes t = testing::time_host_calls(kIterations, [&] {
      detail::plan_kv_lengths(indptr, last, kPageSize, kBatch, lengths);
      DecodePlannerInput input = input_for(lengths, kv_heads);
      units = plan_decode_schedule(input).header.num_work_units;
    });
    std::printf(
        "[ decode planner ] batch %lld, num_kv_heads %lld: %.2f us per plan (fastest "
        "%.2f us, %lld units)\n",
        static_cast<long long>(kBatch), static_cast<long long>(kv_heads), t.mean_us, t.fastest_us,
        static_cast<long long>(units));
    ASSERT_GT(units, 0);
    EXPECT_LT(t.fastest_us, 50.0);
  }
}

TEST(DecodePlanner, WorkUnitsCarryThePageOffsetAndLengthOfTheirRequest) {
  const std::vector<int64_t> lengths = {20000, 5, 0, 9000};
  const std::vector<int32_t> indptr = {0, 1250, 1251, 1251, 1814};
  DecodePlannerInput input = input_for(lengths, 8);
  input.kv_indptr = indptr;
  const DecodeScheduleHost s = plan_decode_schedule(input);
  ASSERT_TRUE(schedule_consistent(lengths, s));
  ASSERT_GT(s.header.num_partials, 0);  // the long requests are split
  for (const DecodeWorkUnit& w : s.work_units) {
    EXPECT_EQ(w.page_begin, indptr[static_cast<std::size_t>(w.request)]);
    EXPECT_EQ(w.kv_len, lengths[static_cast<std::size_t>(w.request)]);
  }
  const std::vector<int32_t> short_indptr = {0, 1250};
  input.kv_indptr = short_indptr;  // not batch + 1 entries
  EXPECT_THROW(plan_decode_schedule(input), Error);
}

TEST(DecodeWorkspaceLayout, RegionsAreAlignedOrderedAndLargeEnough) {
  constexpr int64_t kBatch = 37, kUnits = 301, kHeads = 32, kDim = 128;
  const DecodeWorkspaceLayout l = decode_workspace_layout(kBatch, kUnits, kHeads, kDim);
  for (const std::size_t offset : {l.header_offset, l.work_units_offset, l.merge_indptr_offset,
                                   l.partial_out_offset, l.partial_lse_offset, l.total_bytes}) {
    EXPECT_EQ(offset % 256, 0u);
  }
  EXPECT_EQ(l.max_partials, kUnits);
  EXPECT_GE(l.work_units_offset - l.header_offset, sizeof(DecodeScheduleHeader));
  EXPECT_GE(l.merge_indptr_offset - l.work_units_offset, kUnits * sizeof(DecodeWorkUnit));
  EXPECT_GE(l.partial_out_offset - l.merge_indptr_offset, (kBatch + 1) * sizeof(int32_t));
  EXPECT_GE(l.partial_lse_offset - l.partial_out_offset, kUnits * kHeads * kDim * sizeof(float));
  EXPECT_GE(l.total_bytes - l.partial_lse_offset, kUnits * kHeads * sizeof(float));
  EXPECT_LT(l.total_bytes, 256 * 5 + (kUnits * kHeads * (kDim + 1) + kUnits * 6 + kBatch + 1) * 4);
}

TEST(DecodePlanKvLengths, LengthsFromPagesAndLastPageLength) {
  const std::vector<int32_t> indptr = {0, 3, 3, 4};
  const std::vector<int32_t> last = {5, 0, 16};
  std::vector<int64_t> lengths;
  detail::plan_kv_lengths(indptr, last, 16, 8, lengths);
  EXPECT_EQ(lengths, (std::vector<int64_t>{2 * 16 + 5, 0, 16}));
}

}  // namespace
}  // namespace tessera::plan
