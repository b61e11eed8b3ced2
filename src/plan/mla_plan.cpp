// MLA's planner input, bounds and merge grid (see mla_plan.h).
#include "plan/mla_plan.h"

#include <algorithm>
#include <limits>

#include "plan/workspace_regions.h"

namespace tessera::plan {

namespace {
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
}  // namespace

PrefillDerivedBounds derive_mla_bounds(int64_t max_batch_size, int64_t max_total_qo_tokens,
                                       int64_t num_heads, int64_t num_sms) {
  const int64_t tiles = ceil_div(max_total_qo_tokens * num_heads, kMlaQTileRows) + max_batch_size;
  const int64_t split_units = kMlaSplitWaves * num_sms;
  PrefillDerivedBounds b;
  b.max_work_units = std::min(kInt32Max, tiles + split_units);
  b.max_partial_rows = std::min(kInt32Max, split_units * kMlaQTileRows);
  b.max_ctas = b.max_work_units;  // one unit per CTA (the sm80 grid)
  return b;
}

int64_t mla_min_chunk_tokens(int64_t tile_rows) {
  constexpr int64_t kGranularity = 64;  // the planner's chunk granularity
  constexpr int64_t kFloor = 128;
  constexpr int64_t kCeiling = 256;
  const int64_t partial_round_trip_bytes =
      2 * tile_rows * (kMlaDimCkv + 1) * static_cast<int64_t>(sizeof(float));
  const int64_t tokens = ceil_div(2 * partial_round_trip_bytes, kMlaLatentRowBytes);
  return std::clamp(ceil_div(tokens, kGranularity) * kGranularity, kFloor, kCeiling);
}

PrefillPlannerInput mla_planner_input(std::span<const int32_t> qo_indptr,
                                      std::span<const int64_t> kv_lengths,
                                      std::span<const int32_t> kv_indptr, int64_t num_heads,
                                      bool causal, int64_t num_sms, int64_t max_batch_size,
                                      int64_t max_total_qo_tokens,
                                      const PrefillDerivedBounds& derived) {
  PrefillPlannerInput input;
  input.qo_indptr = qo_indptr;
  input.kv_lengths = kv_lengths;
  input.kv_indptr = kv_indptr;
  input.num_qo_heads = num_heads;
  input.num_kv_heads = 1;
  input.head_dim = kMlaDimCkv;
  input.causal = causal;
  input.pack_gqa = true;
  input.max_q_tile_rows = kMlaQTileRows;
  input.only_max_q_tile = true;
  input.one_unit_per_cta = true;
  input.num_sms = num_sms;
  input.ctas_per_sm = 1;
  input.max_batch_size = max_batch_size;
  input.max_total_qo_tokens = max_total_qo_tokens;
  input.max_work_units = derived.max_work_units;
  input.max_partial_rows = derived.max_partial_rows;
  int64_t max_qo_len = 0;
  for (std::size_t b = 0; b + 1 < qo_indptr.size(); ++b) {
    max_qo_len = std::max<int64_t>(max_qo_len, int64_t{qo_indptr[b + 1]} - qo_indptr[b]);
  }
  input.min_chunk_tokens =
      mla_min_chunk_tokens(std::clamp<int64_t>(num_heads * max_qo_len, 1, kMlaQTileRows));
  return input;
}

int64_t mla_merge_items(int64_t num_merge_tiles) {
  return num_merge_tiles * kMlaQTileRows * kMlaMergeSlices;
}

int64_t mla_merge_blocks(bool capturing, int64_t num_sms, int64_t planned_merge_tiles) {
  const int64_t cap = kMlaMergeBlocksPerSm * num_sms;
  if (capturing) return cap;
  return std::clamp<int64_t>(mla_merge_items(planned_merge_tiles), 1, cap);
}

}  // namespace tessera::plan
