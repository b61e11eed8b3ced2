// MLA's split-KV decision on the CPU (plan/mla_plan.h), with exactly the
// planner input BatchMlaPagedAttention plans with: a few long requests are
// cut into whole-K/V-tile chunks that fill one wave of SMs (and never pass
// it), a batch that fills the GPU is not split, the partials fit the
// derived workspace bound (two waves of 64-row units), a smaller
// workspace splits less, and the merge grid spreads a split request's rows
// over the SMs.
#include "../../src/plan/mla_plan.h"  // host-only planner, tested directly

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera::plan {
namespace {

constexpr int64_t kH100Sms = 132;
constexpr int64_t kPageSize = 64;
// A chunk's KV granularity: 64 tokens, whole K/V tiles of both kernels
// (64 rows sm90, 32 sm80) and whole pages of 64.
constexpr int64_t kChunkTokens = 64;

struct MlaBatch {
  std::vector<int32_t> qo_indptr;
  std::vector<int64_t> kv_lengths;
  std::vector<int32_t> kv_indptr;  // pages
};

MlaBatch mla_batch(int64_t batch, int64_t kv_len, int64_t qo_len = 1) {
  MlaBatch b;
  b.qo_indptr.push_back(0);
  b.kv_indptr.push_back(0);
  for (int64_t i = 0; i < batch; ++i) {
    b.qo_indptr.push_back(b.qo_indptr.back() + static_cast<int32_t>(qo_len));
    b.kv_indptr.push_back(b.kv_indptr.back() +
                          static_cast<int32_t>((kv_len + kPageSize - 1) / kPageSize));
    b.kv_lengths.push_back(kv_len);
  }
  return b;
}

struct MlaPlan {
  PrefillDerivedBounds bounds;
  PrefillScheduleHost schedule;
};

// What plan() does for a batch whose bounds are the batch itself.
MlaPlan plan_mla(const MlaBatch& b, int64_t heads, int64_t num_sms = kH100Sms,
                 int64_t max_partial_rows = -1) {
  const auto batch = static_cast<int64_t>(b.kv_lengths.size());
  const int64_t tokens = b.qo_indptr.back();
  MlaPlan p;
  p.bounds = derive_mla_bounds(batch, tokens, heads, num_sms);
  if (max_partial_rows >= 0) p.bounds.max_partial_rows = max_partial_rows;
  const bool causal = tokens > batch;
  p.schedule = plan_prefill_schedule(mla_planner_input(
      b.qo_indptr, b.kv_lengths, b.kv_indptr, heads, causal, num_sms, batch, tokens, p.bounds));
  return p;
}

// Every unit's chunk starts on a 64-token boundary, the tiles' chunks cover
// their KV without overlap, and the partials fit the bounds.
void expect_whole_tile_chunks(const MlaPlan& p) {
  const PrefillScheduleHost& s = p.schedule;
  int64_t kv_tokens = 0;
  for (const PrefillWorkUnit& u : s.work_units) {
    EXPECT_EQ(u.kv_begin % kChunkTokens, 0) << "unit of request " << u.request;
    EXPECT_LE(u.kv_end, u.kv_len);
    kv_tokens += u.kv_end - u.kv_begin;
  }
  int64_t tiles_kv = 0;  // sum over q tiles of the KV they read
  for (const PrefillWorkUnit& u : s.work_units) {
    if (u.partial_index < 0 || u.kv_begin == 0) tiles_kv += u.kv_len;
  }
  EXPECT_EQ(kv_tokens, tiles_kv);
  EXPECT_LE(s.header.num_partial_rows, p.bounds.max_partial_rows);
  EXPECT_LE(s.header.num_work_units, p.bounds.max_work_units);
}

TEST(MlaPlan, OneLongRequestSplitsIntoOneFullWave) {
  for (const int64_t heads : {16, 128}) {
    SCOPED_TRACE("H=" + std::to_string(heads));
    const MlaPlan p = plan_mla(mla_batch(1, 32768), heads);
    const PrefillScheduleHeader& h = p.schedule.header;
    EXPECT_EQ(h.split_kv, 1);
    EXPECT_LE(h.num_work_units, kH100Sms);           // one CTA per SM, one wave
    EXPECT_GE(h.num_work_units * 10, kH100Sms * 9);  // and >= 90% of it
    EXPECT_EQ(h.max_chunk_tokens % kChunkTokens, 0);
    EXPECT_GE(h.max_chunk_tokens, 128);
    EXPECT_EQ(h.num_merge_tiles, heads / 16 == 1 ? 1 : 2);  // 16 rows: 1 tile; 128: 2
    expect_whole_tile_chunks(p);
  }
}

// Issue 22's "B = 1..8 with long KV" (>= 16k latent rows in all): each
// shape fills at least 3/4 of the wave (the 64-token chunk granularity
// decides the rest: B=7 L=8192 is 16 chunks of 512 = 112 units, as 19 of
// 448 would be 133, past the wave).
TEST(MlaPlan, SmallBatchesWithLongKvFillMostOfTheWave) {
  for (const int64_t heads : {16, 128}) {
    for (int64_t batch = 1; batch <= 8; ++batch) {
      for (const int64_t kv_len : {8192, 16384, 32768}) {
        if (batch * kv_len < 16384) continue;
        SCOPED_TRACE("H=" + std::to_string(heads) + " B=" + std::to_string(batch) +
                     " L=" + std::to_string(kv_len));
        const MlaPlan p = plan_mla(mla_batch(batch, kv_len), heads);
        const int64_t units = p.schedule.header.num_work_units;
        EXPECT_EQ(p.schedule.header.split_kv, 1);
        EXPECT_LE(units, kH100Sms);
        EXPECT_GE(units * 4, kH100Sms * 3);
        expect_whole_tile_chunks(p);
      }
    }
  }
}

TEST(MlaPlan, SpeculativeTokensSplitLikeDecode) {
  const MlaPlan p = plan_mla(mla_batch(1, 32768, /*qo_len=*/4), 16);  // 64 rows, causal
  EXPECT_EQ(p.schedule.header.split_kv, 1);
  EXPECT_LE(p.schedule.header.num_work_units, kH100Sms);
  EXPECT_GE(p.schedule.header.num_work_units * 10, kH100Sms * 9);
  expect_whole_tile_chunks(p);
}

TEST(MlaPlan, BatchThatFillsTheGpuIsNotSplit) {
  for (const auto& [batch, heads] : {std::pair<int64_t, int64_t>{128, 16}, {64, 128}}) {
    SCOPED_TRACE("B=" + std::to_string(batch) + " H=" + std::to_string(heads));
    const MlaPlan p = plan_mla(mla_batch(batch, 4096), heads);
    EXPECT_EQ(p.schedule.header.split_kv, 0);
    EXPECT_EQ(p.schedule.header.num_partial_rows, 0);
    EXPECT_EQ(p.schedule.header.num_work_units, 128);
  }
}

// The minimum chunk: a unit's partial round trip (rows x 513 floats x 2)
// at most about half its chunk's latent, within [128, 256] tokens.
TEST(MlaPlan, MinimumChunkFollowsTheTileRows) {
  EXPECT_EQ(mla_min_chunk_tokens(1), 128);   // floor: two sm90 K/V tiles
  EXPECT_EQ(mla_min_chunk_tokens(16), 128);  // 2 x 65,664 B / 1152 = 114 -> 128
  EXPECT_EQ(mla_min_chunk_tokens(32), 256);  // 228 -> 256
  EXPECT_EQ(mla_min_chunk_tokens(64), 256);  // 456, capped at prefill's 256
}

// Shorter KV is cut no finer than the minimum of its tiles' rows: H=16
// decode to 128 tokens (B=1 L=8192: 64 units, half the wave), 64-row tiles
// (H=16 x 4 tokens, H=128) to 256.
TEST(MlaPlan, ShortKvIsNotCutBelowTheMinimumChunk) {
  struct Case {
    int64_t batch, kv_len, heads, qo_len, min_chunk, units;
  };
  for (const Case& c : {Case{1, 8192, 16, 1, 128, 64}, Case{2, 4096, 16, 1, 128, 64},
                        Case{1, 8192, 16, 4, 256, 32}, Case{1, 8192, 128, 1, 256, 64}}) {
    SCOPED_TRACE("B=" + std::to_string(c.batch) + " L=" + std::to_string(c.kv_len) +
                 " H=" + std::to_string(c.heads) + " qo=" + std::to_string(c.qo_len));
    const MlaPlan p = plan_mla(mla_batch(c.batch, c.kv_len, c.qo_len), c.heads);
    EXPECT_EQ(p.schedule.header.split_kv, 1);
    EXPECT_EQ(p.schedule.header.num_work_units, c.units);
    for (const PrefillWorkUnit& u : p.schedule.work_units) {
      EXPECT_GE(u.kv_end - u.kv_begin, c.min_chunk);
    }
  }
  EXPECT_EQ(plan_mla(mla_batch(1, 128), 16).schedule.header.split_kv, 0);
  EXPECT_EQ(plan_mla(mla_batch(1, 256), 128).schedule.header.split_kv, 0);
}

// Two waves of 64-row split units: 2 x 132 x 64 rows = 34.7 MB of float32
// partials (out 512 + lse) on an H100, as docs/mla.md states.
TEST(MlaPlan, PartialBoundIsTwoWavesOf64RowUnits) {
  const PrefillDerivedBounds b = derive_mla_bounds(1, 1, 16, kH100Sms);
  EXPECT_EQ(b.max_partial_rows, 2 * kH100Sms * kMlaQTileRows);
  EXPECT_NEAR(static_cast<double>(b.max_partial_rows) * (kMlaDimCkv + 1) * 4, 34.7e6, 0.1e6);
  EXPECT_EQ(b.max_work_units, 1 + 1 + 2 * kH100Sms);  // 1 tile + 1 tail + the split units
  EXPECT_EQ(b.max_ctas, b.max_work_units);
  // The bound serves every shape above, at its densest (64-row tiles).
  const MlaPlan p = plan_mla(mla_batch(1, 32768, 4), 16);
  EXPECT_LE(p.schedule.header.num_partial_rows, kH100Sms * kMlaQTileRows);
}

// A workspace with room for fewer partials: the planner grows its chunks
// until they fit (FlashInfer-style callers pass a fixed buffer).
TEST(MlaPlan, SmallerPartialRoomSplitsLess) {
  const MlaPlan full = plan_mla(mla_batch(1, 32768), 128);
  const MlaPlan small = plan_mla(mla_batch(1, 32768), 128, kH100Sms, /*max_partial_rows=*/2048);
  EXPECT_EQ(small.schedule.header.split_kv, 1);
  EXPECT_LE(small.schedule.header.num_partial_rows, 2048);
  EXPECT_LT(small.schedule.header.num_work_units, full.schedule.header.num_work_units);
  expect_whole_tile_chunks(small);
  const MlaPlan none = plan_mla(mla_batch(1, 32768), 128, kH100Sms, 0);
  EXPECT_EQ(none.schedule.header.split_kv, 0);
}

// The merge: a split request's rows x 4 column slices are items of their
// own (16 x 4 = 64 busy blocks at H=16, each of 8 warps splitting the
// chunks) where the prefill merge ran one block per merge tile.
TEST(MlaPlan, MergeGridSpreadsTheRowsOfOneSplitRequest) {
  EXPECT_EQ(kMlaMergeSlices, 4);
  EXPECT_EQ(mla_merge_items(1), kMlaQTileRows * kMlaMergeSlices);
  const MlaPlan p = plan_mla(mla_batch(1, 32768), 16);
  const int64_t tiles = p.schedule.header.num_merge_tiles;
  EXPECT_EQ(mla_merge_blocks(false, kH100Sms, tiles), 256);
  int64_t busy = 0;  // items whose row exists
  for (const PrefillMergeTile& t : p.schedule.merge_tiles) busy += t.qo_rows * kMlaMergeSlices;
  EXPECT_EQ(busy, 64);
  // H=128, B=4 L=8k: 8 tiles x 64 rows x 4 = 2048 items on a capped grid.
  const MlaPlan wide = plan_mla(mla_batch(4, 8192), 128);
  EXPECT_EQ(mla_merge_blocks(false, kH100Sms, wide.schedule.header.num_merge_tiles),
            kMlaMergeBlocksPerSm * kH100Sms);
  // A captured graph takes the cap whatever the plan; no split: 1 block.
  EXPECT_EQ(mla_merge_blocks(true, kH100Sms, 0), kMlaMergeBlocksPerSm * kH100Sms);
  EXPECT_EQ(mla_merge_blocks(false, kH100Sms, 0), 1);
}

}  // namespace
}  // namespace tessera::plan
