// MLA's use of the batch prefill planner (docs/mla.md, "Split-KV
// scheduling"): the planner input BatchMlaPagedAttention plans with, the
// workspace bounds of its split-KV partials, and the grid of its merge.
// Host only, no CUDA calls: the split decision is unit-tested on the CPU
// with exactly the input the API passes.
#pragma once

#include <cstdint>
#include <span>

#include "plan/prefill_planner.h"

namespace tessera::plan {

// Rows of an MLA q tile (both kernels' M; batch_mla.cu checks them), and
// the latent width the partials hold.
inline constexpr int64_t kMlaQTileRows = 64;
inline constexpr int64_t kMlaDimCkv = 512;
inline constexpr int64_t kMlaLatentRowBytes = (512 + 64) * 2;  // ckv + kpe, 16-bit

// Split units the partials have room for: two waves of one CTA per SM.
// The planner keeps a split within one wave (one_unit_per_cta), so the
// second is headroom, not a policy; with 64-row tiles that is
// 2 x 132 x 64 rows x 513 floats = 34.7 MB on an H100.
inline constexpr int64_t kMlaSplitWaves = 2;

// Unsplit tiles of the bounds (one per 64 rows plus a ragged tail per
// request) plus kMlaSplitWaves x num_sms split units; partial rows for
// those split units at 64 rows each; one CTA slot per unit.
PrefillDerivedBounds derive_mla_bounds(int64_t max_batch_size, int64_t max_total_qo_tokens,
                                       int64_t num_heads, int64_t num_sms);

// The shortest chunk an MLA split may cut, for q tiles of `tile_rows`
// live rows: a unit's partial (rows x 513 floats, written and read back)
// at most about half the latent its chunk reads (chunk x 1152 B), rounded
// up to 64 tokens, and within [128, 256]: 128 = two sm90 K/V tiles (its
// two stages both busy), 256 = prefill's minimum. 16 rows (H=16 decode):
// 128, so B=1 L=16k fills a wave (128 units) where 256 gave 64; 32 rows
// and more: 256, as before. The partials of one wave (<= 4.3 MB at 16
// rows) stay in L2 between the kernel and the merge.
int64_t mla_min_chunk_tokens(int64_t tile_rows);

// The planner input of BatchMlaPagedAttention::plan: one KV head, the
// heads packed into 64-row tiles, the latent as head_dim, one unit per CTA
// (the sm80 kernel's grid; the sm90 kernel takes the same units as jobs on
// one CTA per SM), so a split is cut into the fewest chunks that still fit
// one wave of num_sms, none shorter than mla_min_chunk_tokens of the
// plan's largest tile (min(64, heads x longest qo_len)).
PrefillPlannerInput mla_planner_input(std::span<const int32_t> qo_indptr,
                                      std::span<const int64_t> kv_lengths,
                                      std::span<const int32_t> kv_indptr, int64_t num_heads,
                                      bool causal, int64_t num_sms, int64_t max_batch_size,
                                      int64_t max_total_qo_tokens,
                                      const PrefillDerivedBounds& derived);

// The merge (include/tessera/attention/mla/merge.cuh) works on items
// (merge tile, tile row, column slice of kMlaMergeSliceColumns), one block
// at a time, its warps splitting the row's chunks. Items of a plan: its
// merge tiles x 64 rows x slices (rows past a tile's qo_rows exit at once).
inline constexpr int64_t kMlaMergeSliceColumns = 128;  // 32 lanes x 4 floats
inline constexpr int64_t kMlaMergeSlices = kMlaDimCkv / kMlaMergeSliceColumns;
// Blocks per SM the grid asks for: what is resident at once (256 threads
// of 96 registers, the kernel's __launch_bounds__ minimum of 2).
inline constexpr int64_t kMlaMergeBlocksPerSm = 2;

int64_t mla_merge_items(int64_t num_merge_tiles);
// Blocks of the merge grid (they stride over the items): the plan's items
// up to kMlaMergeBlocksPerSm x num_sms; while a graph is captured that cap
// itself, so a replay covers any later plan (the kernel reads the merge
// tile count from the schedule header).
int64_t mla_merge_blocks(bool capturing, int64_t num_sms, int64_t planned_merge_tiles);

}  // namespace tessera::plan
