// The batch prefill planner and its workspace layout, on the CPU: every
// query row is in exactly one q tile, every tile's (causal) KV extent is cut
// into disjoint chunks that cover it, split-KV happens only when the tiles
// cannot fill the GPU, causal costs are balanced over the CTAs, the bounds
// hold, zero lengths behave, the schedule is deterministic, bad input is
// rejected by name, and planning a batch of 256 is fast.
#include "../../src/plan/prefill_planner.h"  // host-only planner, tested directly

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <map>
#include <utility>
#include <vector>

#include "support/argument_error.h"
#include "support/host_timing.h"
#include "support/random.h"
#include "tessera/core/error.h"

namespace tessera::plan {
namespace {

constexpr int64_t kH100Sms = 132;
constexpr int64_t kCtasPerSm = 2;
constexpr int64_t kWave = kH100Sms * kCtasPerSm;

struct Batch {
  std::vector<int32_t> qo_indptr;
  std::vector<int64_t> kv_lengths;
  std::vector<int32_t> kv_indptr;  // ragged: prefix sums of kv_lengths
};

Batch batch_of(const std::vector<int64_t>& qo_lens, const std::vector<int64_t>& kv_lens) {
  Batch b;
  b.qo_indptr.push_back(0);
  for (const int64_t len : qo_lens)
    b.qo_indptr.push_back(b.qo_indptr.back() + static_cast<int32_t>(len));
  b.kv_lengths = kv_lens;
  b.kv_indptr.push_back(0);
  for (const int64_t len : kv_lens)
    b.kv_indptr.push_back(b.kv_indptr.back() + static_cast<int32_t>(len));
  return b;
}

PrefillPlannerInput input_for(const Batch& b, int64_t qo_heads, int64_t kv_heads, bool causal,
                              int64_t head_dim = 128, bool pack = true) {
  PrefillPlannerInput in;
  in.qo_indptr = b.qo_indptr;
  in.kv_lengths = b.kv_lengths;
  in.kv_indptr = b.kv_indptr;
  in.num_qo_heads = qo_heads;
  in.num_kv_heads = kv_heads;
  in.head_dim = head_dim;
  in.causal = causal;
  in.pack_gqa = pack;
  in.num_sms = kH100Sms;
  in.ctas_per_sm = kCtasPerSm;
  in.max_batch_size = std::max<int64_t>(1, static_cast<int64_t>(b.kv_lengths.size()));
  in.max_total_qo_tokens = std::max<int64_t>(1, b.qo_indptr.back());
  const PrefillDerivedBounds d = derive_prefill_bounds(
      in.max_batch_size, in.max_total_qo_tokens, qo_heads, kv_heads, pack, kH100Sms, kCtasPerSm);
  in.max_work_units = d.max_work_units;
  in.max_partial_rows = d.max_partial_rows;
  return in;
}

int64_t heads_y_of(const PrefillPlannerInput& in) {
  return in.pack_gqa ? in.num_kv_heads : in.num_qo_heads;
}

// Checks the whole contract of prefill_schedule.cuh against an independent
// recomputation of every request's rows and every tile's causal KV extent.
::testing::AssertionResult schedule_consistent(const PrefillPlannerInput& in,
                                               const PrefillScheduleHost& s) {
  const PrefillScheduleHeader& h = s.header;
  const auto batch = static_cast<int64_t>(in.kv_lengths.size());
  const int64_t g = in.pack_gqa ? in.num_qo_heads / in.num_kv_heads : 1;
  if (h.batch_size != batch || h.rows_per_token != g)
    return ::testing::AssertionFailure() << "header";
  if (h.q_tile_rows != 64 && h.q_tile_rows != 128) return ::testing::AssertionFailure() << "q tile";
  if (h.num_work_units != static_cast<int32_t>(s.work_units.size()) ||
      s.unit_cost.size() != s.work_units.size())
    return ::testing::AssertionFailure() << "num_work_units";
  if (s.cta_indptr.size() != static_cast<std::size_t>(h.num_ctas) + 1 || s.cta_indptr[0] != 0 ||
      s.cta_indptr.back() != h.num_work_units)
    return ::testing::AssertionFailure() << "cta_indptr ends";
  for (int32_t c = 0; c < h.num_ctas; ++c)
    if (s.cta_indptr[c + 1] <= s.cta_indptr[c])
      return ::testing::AssertionFailure() << "empty CTA " << c;
  if (!in.one_unit_per_cta && h.num_ctas * heads_y_of(in) > kWave && h.num_ctas > 1)
    return ::testing::AssertionFailure() << "more CTAs than one wave";
  // Units by tile.
  std::map<std::pair<int32_t, int32_t>, std::vector<PrefillWorkUnit>> by_tile;
  int32_t max_chunk = 0;
  for (const PrefillWorkUnit& w : s.work_units) {
    if (w.request < 0 || w.request >= batch) return ::testing::AssertionFailure() << "request";
    by_tile[{w.request, w.qo_tile_begin}].push_back(w);
    max_chunk = std::max(max_chunk, w.kv_end - w.kv_begin);
  }
  if (max_chunk != h.max_chunk_tokens && !s.work_units.empty())
    return ::testing::AssertionFailure() << "max_chunk_tokens";
  std::map<std::pair<int32_t, int32_t>, PrefillMergeTile> merges;
  int32_t next_partial = 0;
  for (const PrefillMergeTile& m : s.merge_tiles) {
    if (m.partial_begin != next_partial || m.num_chunks < 2)
      return ::testing::AssertionFailure() << "merge tile partial range";
    next_partial += m.num_chunks * m.qo_rows;
    merges[{m.request, m.qo_row_begin}] = m;
  }
  if (next_partial != h.num_partial_rows ||
      h.num_merge_tiles != static_cast<int32_t>(merges.size()) ||
      h.split_kv != (merges.empty() ? 0 : 1))
    return ::testing::AssertionFailure() << "partial / merge counts";
  // Every row of every request in exactly one tile; every tile's KV covered
  // exactly once by its chunks.
  std::size_t tiles_seen = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t qo_len = int64_t{in.qo_indptr[b + 1]} - in.qo_indptr[b];
    const int64_t kv_len = in.kv_lengths[b];
    const int64_t rows = qo_len * g;
    int64_t covered = 0;
    for (auto it = by_tile.lower_bound({static_cast<int32_t>(b), 0});
         it != by_tile.end() && it->first.first == b; ++it, ++tiles_seen) {
      std::vector<PrefillWorkUnit> mine = it->second;
      const int32_t n = mine[0].qo_rows;
      if (it->first.second != covered || n != std::min<int64_t>(h.q_tile_rows, rows - covered))
        return ::testing::AssertionFailure() << "request " << b << " rows not tiled at " << covered;
      const int64_t last_token = (covered + n - 1) / g;
      const int64_t extent =
          in.causal ? std::max<int64_t>(0, kv_len - qo_len + last_token + 1) : kv_len;
      std::sort(mine.begin(), mine.end(),
                [](const auto& x, const auto& y) { return x.kv_begin < y.kv_begin; });
      int64_t kv = 0;
      const auto merge = merges.find(it->first);
      if ((mine.size() > 1) != (merge != merges.end()))
        return ::testing::AssertionFailure() << "split tile without merge tile (or reverse)";
      for (std::size_t c = 0; c < mine.size(); ++c) {
        const PrefillWorkUnit& w = mine[c];
        if (w.qo_rows != n || w.kv_begin != kv || w.kv_end < w.kv_begin ||
            (mine.size() > 1 && w.kv_end == w.kv_begin))
          return ::testing::AssertionFailure() << "request " << b << " KV chunks break at " << kv;
        const int64_t slot = mine.size() == 1 ? -1 : merge->second.partial_begin + int64_t(c) * n;
        if (w.partial_index != slot ||
            (merge != merges.end() && merge->second.num_chunks != int32_t(mine.size())))
          return ::testing::AssertionFailure()
                 << "partial slot " << w.partial_index << " != " << slot;
        kv = w.kv_end;
      }
      if (kv != extent)
        return ::testing::AssertionFailure() << "request " << b << " KV " << kv << " != " << extent;
      covered += n;
    }
    if (covered != rows)
      return ::testing::AssertionFailure() << "request " << b << " rows " << covered;
  }
  if (tiles_seen != by_tile.size()) return ::testing::AssertionFailure() << "stray tiles";
  return ::testing::AssertionSuccess();
}

std::vector<int64_t> cta_costs(const PrefillScheduleHost& s) {
  std::vector<int64_t> costs(static_cast<std::size_t>(s.header.num_ctas), 0);
  for (int32_t c = 0; c < s.header.num_ctas; ++c)
    for (int32_t u = s.cta_indptr[c]; u < s.cta_indptr[c + 1]; ++u) costs[c] += s.unit_cost[u];
  return costs;
}

// Every unit carries its request's custom-mask byte offset: the sum of
// ceil(qo_len * kv_len / 8) over the earlier requests (segment_packbits).
TEST(PrefillPlanner, UnitsCarryTheirRequestsMaskByteOffsets) {
  const Batch b = batch_of({3, 0, 20, 1}, {5, 9, 4000, 7});
  const PrefillPlannerInput in = input_for(b, 8, 2, false);
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  const std::vector<int32_t> begin = {0, 2, 2, 2 + 10000};  // ceil(15/8), 0, 20 * 4000 / 8
  EXPECT_EQ(s.custom_mask_bytes, 2 + 10000 + 1);
  ASSERT_FALSE(s.work_units.empty());
  for (const PrefillWorkUnit& u : s.work_units) {
    EXPECT_EQ(u.mask_byte_begin, begin[static_cast<std::size_t>(u.request)]) << u.request;
  }
}

TEST(PrefillPlanner, UnitsCarryTheirRequestsOffsetsAndLengths) {
  const Batch b = batch_of({3, 0, 20, 1}, {5, 9, 4000, 7});
  PrefillPlannerInput in = input_for(b, 8, 2, false);
  const std::vector<int32_t> kv_indptr = {0, 5, 14, 4014, 4021};  // ragged: tokens
  in.kv_indptr = kv_indptr;
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  ASSERT_FALSE(s.work_units.empty());
  for (const PrefillWorkUnit& u : s.work_units) {
    const auto r = static_cast<std::size_t>(u.request);
    EXPECT_EQ(u.qo_begin, b.qo_indptr[r]) << u.request;
    EXPECT_EQ(u.qo_len, b.qo_indptr[r + 1] - b.qo_indptr[r]) << u.request;
    EXPECT_EQ(u.kv_start, kv_indptr[r]) << u.request;
    EXPECT_EQ(u.kv_len, b.kv_lengths[r]) << u.request;
  }
  const std::vector<int32_t> short_indptr = {0, 5, 14};
  in.kv_indptr = short_indptr;
  tessera::testing::expect_argument_error([&] { plan_prefill_schedule(in); }, "kv_indptr");
}

TEST(PrefillPlanner, ShortQueryOnLongKvSplits) {
  for (const bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "non-causal");
    const Batch b = batch_of({16}, {32768});
    const PrefillPlannerInput in = input_for(b, 32, 8, causal);
    const PrefillScheduleHost s = plan_prefill_schedule(in);
    EXPECT_EQ(s.header.split_kv, 1);
    EXPECT_EQ(s.header.q_tile_rows, 64);  // 64 packed rows: a 128 tile would be half padding
    EXPECT_GE(s.header.num_work_units * 8, kWave);
    EXPECT_EQ(s.header.max_chunk_tokens % 64, 0);
    EXPECT_TRUE(schedule_consistent(in, s));
  }
}

// Head dims 80 / 96 / 112 plan as head_dim 128 does (the same FA2 tiles:
// 64-row K/V tiles, 128-row q tiles allowed, head_dim <= 128).
TEST(PrefillPlanner, HeadDims80To112PlanLike128) {
  const Batch b = batch_of({1000, 16, 300}, {1000, 32768, 700});
  const PrefillScheduleHost reference = plan_prefill_schedule(input_for(b, 32, 8, true, 128));
  for (const int64_t head_dim : {80, 96, 112}) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim));
    const PrefillPlannerInput in = input_for(b, 32, 8, true, head_dim);
    const PrefillScheduleHost s = plan_prefill_schedule(in);
    EXPECT_TRUE(schedule_consistent(in, s));
    EXPECT_EQ(s.header.q_tile_rows, reference.header.q_tile_rows);
    EXPECT_EQ(s.header.num_work_units, reference.header.num_work_units);
    EXPECT_EQ(s.header.split_kv, reference.header.split_kv);
  }
}

TEST(PrefillPlanner, OneUnitPerCtaSplitsIntoOneWave) {
  for (const bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "non-causal");
    const Batch b = batch_of({16, 3}, {32768, 9000});
    PrefillPlannerInput in = input_for(b, 32, 8, causal);
    in.one_unit_per_cta = true;
    in.max_q_tile_rows = 64;
    const PrefillScheduleHost s = plan_prefill_schedule(in);
    EXPECT_TRUE(schedule_consistent(in, s));
    EXPECT_EQ(s.header.split_kv, 1);
    EXPECT_LE(s.header.num_work_units * 8, kWave);      // never past one wave
    EXPECT_GE(s.header.num_work_units * 8, kWave / 2);  // and most of it used
    EXPECT_EQ(s.header.max_chunk_tokens % 64, 0);
  }
}

// MLA (docs/mla.md): one KV head, 128 heads packed into 64-row tiles, the
// 512 latent values as head_dim, one CTA per SM: a short query on long KV
// splits into one wave; head_dim 512 needs the single KV head.
TEST(PrefillPlanner, MlaShapesPlanWith64RowTilesAndSplit) {
  for (const bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "non-causal");
    const Batch b = batch_of({2, 1}, {4097, 30000});
    PrefillPlannerInput in = input_for(b, 128, 1, causal, 512);
    in.max_q_tile_rows = 64;
    in.only_max_q_tile = true;
    in.one_unit_per_cta = true;
    in.ctas_per_sm = 1;
    const PrefillScheduleHost s = plan_prefill_schedule(in);
    EXPECT_TRUE(schedule_consistent(in, s));
    EXPECT_EQ(s.header.q_tile_rows, 64);
    EXPECT_EQ(s.header.rows_per_token, 128);
    EXPECT_EQ(s.header.split_kv, 1);
    EXPECT_LE(s.header.num_work_units, kH100Sms);
    EXPECT_GE(s.header.num_work_units * 2, kH100Sms);
  }
  tessera::testing::expect_argument_error(
      [&] { plan_prefill_schedule(input_for(batch_of({2}, {100}), 128, 2, true, 512)); },
      "shape");
}

TEST(PrefillPlanner, CausalBatchThatFillsTheGpuDoesNotSplit) {
  const Batch b = batch_of(std::vector<int64_t>(8, 2048), std::vector<int64_t>(8, 2048));
  const PrefillPlannerInput in = input_for(b, 32, 8, true);
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  EXPECT_EQ(s.header.split_kv, 0);
  EXPECT_EQ(s.header.num_partial_rows, 0);
  EXPECT_EQ(s.header.q_tile_rows, 128);
  EXPECT_EQ(s.header.num_work_units, 8 * 2048 * 4 / 128);
  for (const PrefillWorkUnit& w : s.work_units) EXPECT_EQ(w.partial_index, -1);
  EXPECT_TRUE(schedule_consistent(in, s));
}

// LPT keeps the heaviest CTA within mean + one unit's cost; for this mixed
// causal batch (245 units over 33 CTAs) it must land within 10% of the mean.
TEST(PrefillPlanner, CausalCostsAreBalancedOverCtas) {
  const std::vector<int64_t> lens = {4096, 2048, 1000, 513, 128, 7, 1};
  const Batch b = batch_of(lens, lens);
  const PrefillPlannerInput in = input_for(b, 32, 8, true);
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  ASSERT_TRUE(schedule_consistent(in, s));
  EXPECT_EQ(s.header.num_ctas, kWave / 8);
  const std::vector<int64_t> costs = cta_costs(s);
  int64_t total = 0, max_cost = 0;
  for (const int64_t c : costs) total += c, max_cost = std::max(max_cost, c);
  const double mean = static_cast<double>(total) / static_cast<double>(costs.size());
  const int64_t max_unit = *std::max_element(s.unit_cost.begin(), s.unit_cost.end());
  std::printf("[ prefill planner ] mixed causal batch: %d units, %d CTAs, max/mean CTA cost %.3f\n",
              s.header.num_work_units, s.header.num_ctas, max_cost / mean);
  EXPECT_LE(max_cost, mean + max_unit);
  EXPECT_LE(max_cost / mean, 1.10);
  // The cost is causal: the last tile of the 4096 request reads its whole
  // KV, the first only its first 32 tokens (+ overhead).
  int64_t first = -1, last = -1;
  for (std::size_t u = 0; u < s.work_units.size(); ++u) {
    if (s.work_units[u].request != 0) continue;
    if (s.work_units[u].qo_tile_begin == 0) first = s.unit_cost[u];
    if (s.work_units[u].qo_tile_begin == 4096 * 4 - 128) last = s.unit_cost[u];
  }
  EXPECT_EQ(first, 32 + 64);
  EXPECT_EQ(last, 4096 + 64);
}

TEST(PrefillPlanner, OneUnitPerCtaRunsHeaviestFirstWith64RowTiles) {
  const std::vector<int64_t> lens = {4096, 2048, 1000, 513, 128, 7, 1};
  const Batch b = batch_of(lens, lens);
  PrefillPlannerInput in = input_for(b, 32, 8, true);
  in.one_unit_per_cta = true;
  in.max_q_tile_rows = 64;
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  ASSERT_TRUE(schedule_consistent(in, s));
  EXPECT_EQ(s.header.q_tile_rows, 64);
  EXPECT_EQ(s.header.num_ctas, s.header.num_work_units);
  for (int32_t c = 0; c <= s.header.num_ctas; ++c) EXPECT_EQ(s.cta_indptr[c], c);
  EXPECT_TRUE(std::is_sorted(s.unit_cost.begin(), s.unit_cost.end(), std::greater<>()));
}

TEST(PrefillPlanner, TileIs64ForHeadDim256AndShortQueries) {
  const Batch long_q = batch_of({4096, 4096}, {4096, 4096});
  EXPECT_EQ(plan_prefill_schedule(input_for(long_q, 32, 8, true, 256)).header.q_tile_rows, 64);
  EXPECT_EQ(plan_prefill_schedule(input_for(long_q, 32, 8, true, 64)).header.q_tile_rows, 128);
  const Batch short_q = batch_of(std::vector<int64_t>(64, 40), std::vector<int64_t>(64, 3000));
  EXPECT_EQ(plan_prefill_schedule(input_for(short_q, 32, 32, false)).header.q_tile_rows, 64);
}

TEST(PrefillPlanner, WithoutGqaPackingRowsAreTokensAndCtasPerQoHead) {
  const Batch b = batch_of({300, 5}, {1000, 5});
  const PrefillPlannerInput in = input_for(b, 16, 4, true, 128, false);
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  EXPECT_EQ(s.header.rows_per_token, 1);
  EXPECT_TRUE(schedule_consistent(in, s));
}

TEST(PrefillPlanner, ZeroLengthsGiveNoUnitsOrEmptyKvUnits) {
  const Batch b = batch_of({0, 5, 0, 3, 0}, {10, 0, 0, 7, 40000});
  const PrefillPlannerInput in = input_for(b, 8, 8, false);
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  ASSERT_TRUE(schedule_consistent(in, s));
  for (const PrefillWorkUnit& w : s.work_units) {
    EXPECT_TRUE(w.request == 1 || w.request == 3);  // qo_len 0: no units
    if (w.request == 1) {                           // kv_len 0: out 0, lse -inf
      EXPECT_EQ(w.kv_end, 0);
      EXPECT_EQ(w.partial_index, -1);
    }
  }
  const Batch causal = batch_of({0, 2}, {0, 2});
  EXPECT_TRUE(schedule_consistent(input_for(causal, 4, 1, true),
                                  plan_prefill_schedule(input_for(causal, 4, 1, true))));
  const Batch empty = batch_of({}, {});
  const PrefillScheduleHost e = plan_prefill_schedule(input_for(empty, 4, 1, true));
  EXPECT_EQ(e.header.num_work_units, 0);
  EXPECT_EQ(e.header.num_ctas, 0);
  EXPECT_EQ(e.cta_indptr, std::vector<int32_t>{0});
}

PrefillPlannerInput random_input(tessera::testing::Rng& rng, Batch& b) {
  const auto batch = rng.integer(1, 40);
  std::vector<int64_t> qo(static_cast<std::size_t>(batch)), kv(qo.size());
  const bool causal = rng.integer(0, 1) == 1;
  for (std::size_t i = 0; i < qo.size(); ++i) {
    qo[i] = rng.integer(0, 1) ? rng.integer(0, 40) : rng.integer(0, 3000);
    // Causal requests mostly have qo_len <= kv_len; one in four may not
    // (FlashInfer's bottom-right alignment: the early queries see no key).
    const int64_t floor = causal && rng.integer(0, 3) != 0 ? qo[i] : 0;
    kv[i] = floor + (rng.integer(0, 1) ? rng.integer(0, 300) : rng.integer(0, 60000));
  }
  b = batch_of(qo, kv);
  const int64_t kv_heads = rng.integer(1, 8);
  return input_for(b, kv_heads * rng.integer(1, 8), kv_heads, causal, 64 << rng.integer(0, 2),
                   rng.integer(0, 3) != 0);
}

// Causal with qo_len > kv_len (FlashInfer): query i sees keys j <= kv_len -
// qo_len + i. With 8 queries on 2 keys and GQA group 4 (rows = token x 4),
// tokens 0..5 see nothing and the one tile (32 rows) reads keys [0, 2); with
// 5 queries on 0 keys no tile reads any.
TEST(PrefillPlanner, CausalQueriesBeforeTheFirstKeyReadNothing) {
  const Batch b = batch_of({8, 5, 200}, {2, 0, 70});
  const PrefillPlannerInput in = input_for(b, 8, 2, true);
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  ASSERT_TRUE(schedule_consistent(in, s));
  for (const PrefillWorkUnit& w : s.work_units) {
    EXPECT_GE(w.kv_begin, 0);
    EXPECT_GE(w.kv_end, w.kv_begin);
    if (w.request == 0) EXPECT_EQ(w.kv_end, 2);
    if (w.request == 1) EXPECT_EQ(w.kv_end, 0);
    if (w.request == 2) {
      // A tile's last token t sees keys up to 70 - 200 + t: none for t < 130
      // (split chunks of a longer tile end at or before that).
      const int64_t last_token = (w.qo_tile_begin + w.qo_rows - 1) / 4;
      const int64_t extent = std::max<int64_t>(0, 70 - 200 + last_token + 1);
      EXPECT_LE(w.kv_end, extent);
      if (extent == 0) EXPECT_EQ(w.kv_end, 0);
    }
  }
}

TEST(PrefillPlanner, BoundsAreRespected) {
  TESSERA_SEEDED_RNG(rng);
  for (int trial = 0; trial < 300; ++trial) {
    Batch b;
    PrefillPlannerInput in = random_input(rng, b);
    const int64_t split_room = 2 * ((kWave + heads_y_of(in) - 1) / heads_y_of(in));
    in.max_work_units -= rng.integer(0, split_room);  // still >= the unsplit tiles
    in.max_partial_rows = rng.integer(0, in.max_partial_rows);
    const PrefillScheduleHost s = plan_prefill_schedule(in);
    EXPECT_LE(s.header.num_work_units, in.max_work_units);
    EXPECT_LE(s.header.num_partial_rows, in.max_partial_rows);
    EXPECT_LE(s.header.num_ctas, kWave);
    EXPECT_LE(s.header.total_qo_tokens, in.max_total_qo_tokens);
    EXPECT_TRUE(schedule_consistent(in, s)) << "trial " << trial;
  }
}

TEST(PrefillPlanner, SameInputGivesTheSameSchedule) {
  TESSERA_SEEDED_RNG(rng);
  Batch b;
  const PrefillPlannerInput in = random_input(rng, b);
  const PrefillScheduleHost x = plan_prefill_schedule(in);
  const PrefillScheduleHost y = plan_prefill_schedule(in);
  ASSERT_EQ(x.work_units.size(), y.work_units.size());
  for (std::size_t i = 0; i < x.work_units.size(); ++i) {
    const PrefillWorkUnit &p = x.work_units[i], &q = y.work_units[i];
    EXPECT_TRUE(p.request == q.request && p.qo_tile_begin == q.qo_tile_begin &&
                p.qo_rows == q.qo_rows && p.kv_begin == q.kv_begin && p.kv_end == q.kv_end &&
                p.partial_index == q.partial_index);
  }
  EXPECT_EQ(x.cta_indptr, y.cta_indptr);
  EXPECT_EQ(x.merge_tiles.size(), y.merge_tiles.size());
  EXPECT_EQ(x.header.num_partial_rows, y.header.num_partial_rows);
}

TEST(PrefillPlanner, BadInputIsRejectedByName) {
  using tessera::testing::expect_argument_error;
  const Batch good = batch_of({4, 8}, {10, 20});
  const auto with = [&](auto edit) {
    return [=] {
      Batch b = good;
      PrefillPlannerInput in = input_for(good, 8, 2, true);
      edit(b, in);
      in.qo_indptr = b.qo_indptr;
      in.kv_lengths = b.kv_lengths;
      plan_prefill_schedule(in);
    };
  };
  expect_argument_error(with([](Batch& b, PrefillPlannerInput&) { b.qo_indptr.clear(); }),
                        "qo_indptr");
  expect_argument_error(with([](Batch& b, PrefillPlannerInput&) {
                          b.qo_indptr = {1, 4, 12};
                        }),
                        "qo_indptr");
  expect_argument_error(with([](Batch& b, PrefillPlannerInput&) {
                          b.qo_indptr = {0, 8, 4};
                        }),
                        "qo_indptr");
  expect_argument_error(with([](Batch&, PrefillPlannerInput& in) { in.max_batch_size = 1; }),
                        "qo_indptr");
  expect_argument_error(with([](Batch&, PrefillPlannerInput& in) { in.max_total_qo_tokens = 11; }),
                        "qo_indptr");
  expect_argument_error(with([](Batch& b, PrefillPlannerInput&) { b.kv_lengths = {10}; }),
                        "kv_indptr");
  expect_argument_error(with([](Batch& b, PrefillPlannerInput&) {
                          b.kv_lengths = {10, -1};
                        }),
                        "kv_indptr");
  expect_argument_error(with([](Batch&, PrefillPlannerInput& in) { in.head_dim = 72; }), "shape");
  expect_argument_error(with([](Batch&, PrefillPlannerInput& in) { in.head_dim = 512; }),
                        "shape");  // 512 only with one KV head (MLA)
  expect_argument_error(with([](Batch&, PrefillPlannerInput& in) { in.num_kv_heads = 3; }),
                        "shape");
  expect_argument_error(with([](Batch&, PrefillPlannerInput& in) { in.max_work_units = 1; }),
                        "bounds");
  // Not causal: qo_len > kv_len is fine (every query sees the whole KV).
  Batch b = batch_of({4, 8}, {1, 2});
  EXPECT_NO_THROW(plan_prefill_schedule(input_for(b, 8, 2, false)));

  std::vector<int64_t> lengths;
  const std::vector<int32_t> bad_ragged = {0, 5, 3};
  expect_argument_error([&] { prefill_kv_lengths_ragged(bad_ragged, 8, lengths); }, "kv_indptr");
  const std::vector<int32_t> off = {2, 5};
  expect_argument_error([&] { prefill_kv_lengths_ragged(off, 8, lengths); }, "kv_indptr");
  const std::vector<int32_t> pages = {0, 2}, last = {17};
  expect_argument_error([&] { prefill_kv_lengths_paged(pages, last, 16, 8, lengths); },
                        "kv_last_page_len");
}

TEST(PrefillPlanner, KvLengthsFromRaggedIndptrAndPages) {
  std::vector<int64_t> lengths;
  prefill_kv_lengths_ragged(std::vector<int32_t>{0, 7, 7, 100}, 8, lengths);
  EXPECT_EQ(lengths, (std::vector<int64_t>{7, 0, 93}));
  prefill_kv_lengths_paged(std::vector<int32_t>{0, 3, 3, 4}, std::vector<int32_t>{5, 0, 1}, 16, 8,
                           lengths);
  EXPECT_EQ(lengths, (std::vector<int64_t>{2 * 16 + 5, 0, 1}));
}

// plan() runs on the host before every prefill step. Batch 256 with 1..512
// query tokens each (~65k tokens): with 8 KV heads (~2k units) it takes
// ~60-70 us here; MQA (1 KV head, GQA group 32: ~16k units of 4 tokens x 32
// heads) ~1.8 ms, ~110 ns a unit in the LPT sort and heap. The fastest of
// the timed plans is asserted under 1 us a unit plus 100 us: a shared CI
// machine ran the mean 3-6x slower than here (5.4 ms at 16k units failed a
// fixed 5 ms bound), the fastest run is what the code costs, and a planner
// that grew worse than n log n in the units would still fail. The times are
// printed.
TEST(PrefillPlanner, PlanForBatch256IsFast) {
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kBatch = 256;
  std::vector<int64_t> qo(kBatch), kv(kBatch);
  std::vector<int32_t> kv_indptr = {0};
  for (int64_t i = 0; i < kBatch; ++i) {
    qo[i] = rng.integer(1, 512);
    kv[i] = qo[i] + rng.integer(0, 2048);
    kv_indptr.push_back(kv_indptr.back() + static_cast<int32_t>(kv[i]));
  }
  const Batch b = batch_of(qo, kv);
  for (const int64_t kv_heads : {8, 1}) {
    PrefillPlannerInput in = input_for(b, 32, kv_heads, true);
    std::vector<int64_t> lengths;
    constexpr int kIterations = 200;
    int64_t units = 0;
    const testing::HostTimes t = testing::time_host_calls(kIterations, [&] {
      prefill_kv_lengths_ragged(kv_indptr, kBatch, lengths);
      in.kv_lengths = lengths;
      units = plan_prefill_schedule(in).header.num_work_units;
    });
    std::printf(
        "[ prefill planner ] batch %lld causal, 32 qo / %lld kv heads: %.1f us per plan "
        "(fastest %.1f us, %lld units)\n",
        static_cast<long long>(kBatch), static_cast<long long>(kv_heads), t.mean_us, t.fastest_us,
        static_cast<long long>(units));
    ASSERT_GT(units, 0);
    EXPECT_LT(t.fastest_us, 100.0 + 1.0 * static_cast<double>(units));
  }
}

// The form plan() uses: the schedule written into caller memory (its pinned
// staging) with reused scratch is the vector form's, plan after plan, and a
// target too small for the schedule is an error, not an overrun.
TEST(PrefillPlanner, IntoCallerMemoryWithReusedScratchMatchesTheVectors) {
  PrefillPlannerScratch scratch;
  for (const bool one_unit_per_cta : {true, false}) {
    for (int seed = 0; seed < 6; ++seed) {
      tessera::testing::Rng rng(100 + seed);
      std::vector<int64_t> qo, kv;
      for (int b = 0; b < 40 + 30 * seed; ++b) {
        qo.push_back(rng.integer(0, seed % 2 ? 8 : 600));
        kv.push_back(qo.back() + rng.integer(0, 4000));
      }
      const Batch b = batch_of(qo, kv);
      PrefillPlannerInput in = input_for(b, 32, 8, seed % 3 != 0);
      in.one_unit_per_cta = one_unit_per_cta;
      const PrefillScheduleHost want = plan_prefill_schedule(in);
      const auto units = static_cast<std::size_t>(in.max_work_units);
      std::vector<PrefillWorkUnit> work_units(units);
      std::vector<int32_t> cta_indptr(units + 1);
      std::vector<PrefillMergeTile> merge_tiles(units / 2);
      int64_t mask_bytes = -1;
      const PrefillScheduleHeader h = plan_prefill_schedule(
          in, scratch, {work_units, cta_indptr, merge_tiles, {}}, &mask_bytes);
      ASSERT_EQ(std::memcmp(&h, &want.header, sizeof(h)), 0) << seed;
      EXPECT_EQ(mask_bytes, want.custom_mask_bytes);
      EXPECT_EQ(std::memcmp(work_units.data(), want.work_units.data(),
                            want.work_units.size() * sizeof(PrefillWorkUnit)), 0) << seed;
      cta_indptr.resize(want.cta_indptr.size());
      EXPECT_EQ(cta_indptr, want.cta_indptr) << seed;
      EXPECT_EQ(std::memcmp(merge_tiles.data(), want.merge_tiles.data(),
                            want.merge_tiles.size() * sizeof(PrefillMergeTile)), 0) << seed;
      if (want.header.num_work_units > 1) {
        std::vector<PrefillWorkUnit> short_units(want.work_units.size() - 1);
        EXPECT_THROW(plan_prefill_schedule(in, scratch,
                                           {short_units, cta_indptr, merge_tiles, {}}, nullptr),
                     Error);
      }
    }
  }
}

// One unit per CTA runs the units heaviest first and, among equal costs, in
// the order the planner made them (request, then q tile, then KV chunk).
TEST(PrefillPlanner, EqualCostsKeepTheirOrder) {
  const Batch b = batch_of({256, 256, 256, 100, 256}, {1000, 1000, 1000, 40, 1000});
  PrefillPlannerInput in = input_for(b, 32, 8, false);
  in.one_unit_per_cta = true;
  const PrefillScheduleHost s = plan_prefill_schedule(in);
  ASSERT_TRUE(schedule_consistent(in, s));
  for (std::size_t u = 1; u < s.work_units.size(); ++u) {
    ASSERT_GE(s.unit_cost[u - 1], s.unit_cost[u]);
    if (s.unit_cost[u - 1] != s.unit_cost[u]) continue;
    const PrefillWorkUnit& a = s.work_units[u - 1];
    const PrefillWorkUnit& c = s.work_units[u];
    EXPECT_TRUE(std::make_tuple(a.request, a.qo_tile_begin, a.kv_begin) <
                std::make_tuple(c.request, c.qo_tile_begin, c.kv_begin))
        << "unit " << u;
  }
}

TEST(PrefillWorkspaceLayout, RegionsAreAlignedOrderedAndLargeEnough) {
  constexpr int64_t kUnits = 301, kCtas = 264, kRows = 4096, kQoHeads = 32, kKvHeads = 8,
                    kDim = 128;
  const PrefillWorkspaceLayout l =
      prefill_workspace_layout(kUnits, kCtas, kRows, kQoHeads, kKvHeads, kDim, true);
  EXPECT_EQ(l.heads_y, kKvHeads);
  for (const std::size_t offset :
       {l.header_offset, l.work_units_offset, l.cta_indptr_offset, l.merge_tiles_offset,
        l.partial_out_offset, l.partial_lse_offset, l.total_bytes}) {
    EXPECT_EQ(offset % 256, 0u);
  }
  EXPECT_GE(l.work_units_offset - l.header_offset, sizeof(PrefillScheduleHeader));
  EXPECT_GE(l.cta_indptr_offset - l.work_units_offset, kUnits * sizeof(PrefillWorkUnit));
  EXPECT_GE(l.merge_tiles_offset - l.cta_indptr_offset, (kCtas + 1) * sizeof(int32_t));
  EXPECT_GE(l.partial_out_offset - l.merge_tiles_offset, kUnits / 2 * sizeof(PrefillMergeTile));
  EXPECT_GE(l.partial_lse_offset - l.partial_out_offset, kRows * kKvHeads * kDim * sizeof(float));
  EXPECT_GE(l.total_bytes - l.partial_lse_offset, kRows * kKvHeads * sizeof(float));
  EXPECT_LT(l.total_bytes, 256 * 6 + kUnits * sizeof(PrefillWorkUnit) + (kCtas + 1) * 4 +
                               kUnits / 2 * sizeof(PrefillMergeTile) +
                               kRows * kKvHeads * (kDim + 1) * 4);
}

}  // namespace
}  // namespace tessera::plan
