// Batch prefill scheduling (ragged and paged KV): plain host C++, no CUDA
// calls, unit-tested on the CPU. Cuts every request into (q tile, KV chunk)
// work units, splits KV only when the q tiles alone cannot fill the GPU,
// balances the causal-aware cost of the units over a fixed grid of CTAs, all
// within the bounds fixed at plan time (CUDA graphs), and lays out the
// workspace the kernels read (include/tessera/attention/prefill_schedule.cuh).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tessera/attention/prefill_schedule.cuh"

namespace tessera::plan {

struct PrefillPlannerInput {
  std::span<const int32_t> qo_indptr;   // [batch + 1] host, query tokens
  std::span<const int64_t> kv_lengths;  // [batch] KV tokens per request
  // [batch + 1] host, in the K/V's own units (tokens ragged, pages paged),
  // copied into the work units (kv_start).
  std::span<const int32_t> kv_indptr;
  int64_t num_qo_heads = 1;
  int64_t num_kv_heads = 1;
  int64_t head_dim = 128;  // 64 / 128 / 256; 512 for MLA (the latent values, one KV head)
  bool causal = false;    // query i sits at KV position kv_len - qo_len + i
  bool pack_gqa = true;   // rows = (token, head of the GQA group) pairs
  int64_t max_q_tile_rows = 128;  // the largest q tile the kernel has (64 or 128)
  bool only_max_q_tile = false;   // every tile max_q_tile_rows (the Hopper kernel's 128)
  bool one_unit_per_cta = false;  // no persistent CTAs: the grid is the unit list
  int64_t num_sms = 132;
  int64_t ctas_per_sm = 2;          // prefill CTAs resident per SM
  // Bounds fixed at plan time (a CUDA graph captures them).
  int64_t max_batch_size = 0;
  int64_t max_total_qo_tokens = 0;  // qo_indptr[batch] may not exceed it
  int64_t max_work_units = 0;
  int64_t max_partial_rows = 0;
  // The shortest KV chunk a split may cut (a multiple of 64 tokens): 256
  // for prefill's tiles; MLA passes less for its 16-row decode tiles
  // (plan/mla_plan.h says why).
  int64_t min_chunk_tokens = 256;
};

struct PrefillScheduleHost {
  PrefillScheduleHeader header{};
  std::vector<PrefillWorkUnit> work_units;  // grouped by CTA
  std::vector<int32_t> cta_indptr;          // header.num_ctas + 1 entries
  std::vector<PrefillMergeTile> merge_tiles;
  std::vector<int64_t> unit_cost;           // planner's cost of each unit (tests, tuning)
  // Bytes a custom mask of this plan needs: sum over requests of
  // ceil(qo_len * kv_len / 8) (each request's bits start on a byte).
  int64_t custom_mask_bytes = 0;
};

// The argument checks plan_prefill_schedule starts with (its errors below).
void validate_prefill_planner_input(const PrefillPlannerInput& input);

// One q tile of a request (the planner's working set).
struct PrefillTile {
  int32_t request;
  int32_t row_begin;
  int32_t rows;
  int64_t kv_extent;  // KV tokens [0, kv_extent) some row of the tile sees
};

// The planner's working memory, kept by a plan object between plans so a
// plan() allocates nothing once warm.
struct PrefillPlannerScratch {
  std::vector<PrefillTile> tiles;
  std::vector<int32_t> mask_begin;
  std::vector<PrefillWorkUnit> units;  // in tile order
  std::vector<int64_t> cost;
  std::vector<PrefillMergeTile> merge_tiles;
  std::vector<int32_t> order, heaviest, owner, counts;
  std::vector<uint64_t> keys, key_buffer, heap;
};

// Where plan_prefill_schedule writes the schedule (e.g. the pinned staging
// the device copy reads): room for the bounds' units (work_units),
// units + 1 CTA offsets (cta_indptr) and units / 2 merge tiles; unit_cost may
// be empty (not written).
struct PrefillScheduleTarget {
  std::span<PrefillWorkUnit> work_units;
  std::span<int32_t> cta_indptr;
  std::span<PrefillMergeTile> merge_tiles;
  std::span<int64_t> unit_cost;
};

// Deterministic: the same input gives the same schedule. Throws
// tessera::Error naming "qo_indptr" (empty, not starting at 0, decreasing,
// more requests than max_batch_size or more tokens than max_total_qo_tokens;
// causal with qo_len > kv_len is planned: queries before the first key get
// out 0 and lse -inf),
// "kv_indptr" (batch differs from qo_indptr's, or kv_indptr is not batch + 1
// values), "shape" (heads / head_dim)
// or "bounds" (the q tiles alone exceed max_work_units).
PrefillScheduleHost plan_prefill_schedule(const PrefillPlannerInput& input);
// The same schedule written into `target` (its header returned, the custom
// mask's bytes into *custom_mask_bytes when not null), with `scratch` as
// working memory; a target too small for the schedule throws tessera::Error.
PrefillScheduleHeader plan_prefill_schedule(const PrefillPlannerInput& input,
                                            PrefillPlannerScratch& scratch,
                                            const PrefillScheduleTarget& target,
                                            int64_t* custom_mask_bytes);

// The q tile plan_prefill_schedule takes before any bounds fallback (and
// single prefill, as one request with rows_per_token 1): 128 rows where the
// kernel has them (head_dim <= 128, max_q_tile_rows 128), the non-empty
// requests average at least 128 rows and 128-row tiles times heads_y fill
// the wave (CTAs resident at once); else 64. qo_indptr: validated.
int64_t choose_q_tile_rows(std::span<const int32_t> qo_indptr, int64_t rows_per_token,
                           int64_t heads_y, int64_t head_dim, int64_t max_q_tile_rows,
                           int64_t wave);

// Row slices of the prefill merge's grid (z; attention/merge.cuh): one per
// pass of rows_per_pass rows (the rows a merge block folds at once) over a
// q tile of q_tile_rows rows, at least 1. Each pass waits on two dependent
// loads, so one block per tile and head would serialise a 128-row tile's 16
// passes on a grid of only tiles x heads blocks: the shared level of a
// cascade (2 split tiles x 8 KV heads) merged on 16 blocks.
int64_t prefill_merge_row_slices(int64_t q_tile_rows, int64_t rows_per_pass);

// Ragged KV: checks kv_indptr [batch + 1] (starts at 0, non-decreasing,
// "kv_indptr") and writes each request's length into kv_lengths.
void prefill_kv_lengths_ragged(std::span<const int32_t> kv_indptr, int64_t max_batch_size,
                               std::vector<int64_t>& kv_lengths);
// Paged KV: pages per request from kv_indptr and the last page's fill, as
// decode does ("kv_indptr", "kv_last_page_len").
void prefill_kv_lengths_paged(std::span<const int32_t> kv_indptr,
                              std::span<const int32_t> kv_last_page_len, int64_t page_size,
                              int64_t max_batch_size, std::vector<int64_t>& kv_lengths);

// Bounds when the caller gives only batch and token maxima: every unsplit
// tiling of max_total_qo_tokens fits, plus room to split for a full wave.
struct PrefillDerivedBounds {
  int64_t max_work_units = 0;
  int64_t max_partial_rows = 0;
  int64_t max_ctas = 0;
};
PrefillDerivedBounds derive_prefill_bounds(int64_t max_batch_size, int64_t max_total_qo_tokens,
                                           int64_t num_qo_heads, int64_t num_kv_heads,
                                           bool pack_gqa, int64_t num_sms, int64_t ctas_per_sm);

// Byte offsets of the workspace regions (prefill_schedule.cuh), 256-aligned.
struct PrefillWorkspaceLayout {
  std::size_t header_offset = 0;
  std::size_t work_units_offset = 0;
  std::size_t cta_indptr_offset = 0;
  std::size_t merge_tiles_offset = 0;
  std::size_t partial_out_offset = 0;
  std::size_t partial_lse_offset = 0;
  std::size_t total_bytes = 0;
  int64_t heads_y = 0;  // grid y; heads per partial row
};

PrefillWorkspaceLayout prefill_workspace_layout(int64_t max_work_units, int64_t max_ctas,
                                                int64_t max_partial_rows, int64_t num_qo_heads,
                                                int64_t num_kv_heads, int64_t head_dim,
                                                bool pack_gqa);

}  // namespace tessera::plan
