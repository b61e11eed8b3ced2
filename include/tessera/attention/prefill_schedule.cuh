// The batch prefill schedule: what plan() (host, src/plan/prefill_planner)
// writes into the caller's workspace and what the batch prefill kernels
// (ragged and paged) and the merge kernel read. Plain structs, shared by host
// and device code (compiles under nvcc, NVRTC and a host compiler).
//
// Rows. The planner works in "rows": with GQA packing (header.rows_per_token
// = num_qo_heads / num_kv_heads) row r of a request is query token
// r / rows_per_token, qo head (kv_head * rows_per_token + r % rows_per_token),
// and a CTA (blockIdx.y = KV head) loads each K/V tile once for the whole
// group; without packing rows_per_token = 1 and blockIdx.y is the qo head.
//
// Launch. Grid (ctas, heads_y), heads_y = num_kv_heads (packed) or
// num_qo_heads, ctas the plan's num_ctas or, while a graph is captured,
// max_ctas. A persistent kernel's CTA x runs work units [cta_indptr[x],
// cta_indptr[x + 1]) in order, for its head y; the FA2-style kernel is
// planned with one unit per CTA (cta_indptr the identity) and CTA x runs
// unit x. The Hopper kernel takes the same order as jobs from a counter
// (header.next_job: job k is unit k % num_work_units of head k /
// num_work_units) on a grid of one CTA per SM, so two launches of one plan
// must not overlap in time (run() calls of a wrapper are stream-ordered).
// CTAs past the plan's count exit at once, so a graph captured with the
// bounds replays any schedule that fits them. The merge grid is (merge
// tiles, heads_y), sized the same way. Head-major on purpose (x fastest):
// the CTAs resident at once are a few heads' units, whose K/V fits in L2
// (unit_grid.cuh says why decode differs).
//
// Workspace layout (byte offsets from the workspace base, each 256-aligned):
//   PrefillScheduleHeader                        (counts for this plan)
//   PrefillWorkUnit   work_units[max_work_units]  (grouped by CTA)
//   int32_t           cta_indptr[max_ctas + 1]
//   PrefillMergeTile  merge_tiles[max_work_units / 2]
//   float             partial_out[max_partial_rows * heads_y * head_dim]
//   float             partial_lse[max_partial_rows * heads_y]   (base 2)
// Partial row p of head y: partial_out[(p * heads_y + y) * head_dim + d].
#pragma once

#include <cuda/std/cstdint>

namespace tessera {

// One job of a CTA, for its head y: rows [qo_tile_begin, qo_tile_begin +
// qo_rows) of request `request` (rows relative to the request's first row,
// qo_indptr[request] * rows_per_token) against that request's KV tokens
// [kv_begin, kv_end). Causal masking is still the kernel's: the planner only
// trims kv_end to the last KV token any row of the tile may see.
struct PrefillWorkUnit {
  int32_t request;
  int32_t qo_tile_begin;
  int32_t qo_rows;   // 1 .. header.q_tile_rows
  int32_t kv_begin;
  int32_t kv_end;    // kv_end == kv_begin (KV length 0): write out 0, lse -inf
  // -1: the tile is not split; the CTA writes out/lse directly. Otherwise the
  // first of the qo_rows consecutive partial rows this chunk writes.
  int32_t partial_index;
  // Where the request's bits start in a custom mask (bytes): the sum of
  // ceil(qo_len * kv_len / 8) over the requests before it (FlashInfer's
  // segment_packbits layout). Read only when run() is given a mask.
  int32_t mask_byte_begin;
  // The request's qo_indptr entry and length, kv_indptr entry (tokens for
  // ragged K/V, pages for paged) and KV length, as plan() saw them: the CTA
  // starts its Q and K/V (or page-id) loads without first reading the
  // indptr arrays (run() requires the device arrays to hold the same
  // values; validation mode checks it).
  int32_t qo_begin;
  int32_t qo_len;
  int32_t kv_start;
  int32_t kv_len;
};

// One split q tile: rows [qo_row_begin, qo_row_begin + qo_rows) of `request`
// were cut into num_chunks KV chunks; chunk c's partial for tile row r is
// partial row partial_begin + c * qo_rows + r. The merge kernel combines the
// num_chunks partials (out, lse) of each row into out/lse. Consecutive merge
// tiles own consecutive partial ranges: this is the merge indptr per
// (request, q row block), with the block's coordinates beside it.
struct PrefillMergeTile {
  int32_t request;
  int32_t qo_row_begin;
  int32_t qo_rows;
  int32_t partial_begin;
  int32_t num_chunks;  // >= 2
};

struct PrefillScheduleHeader {
  int32_t num_work_units;
  int32_t num_ctas;          // grid x in use
  int32_t batch_size;
  int32_t q_tile_rows;       // 64 or 128
  int32_t rows_per_token;    // GQA group when packed, else 1
  int32_t num_merge_tiles;
  int32_t num_partial_rows;
  int32_t max_chunk_tokens;  // largest kv_end - kv_begin of any unit
  int32_t total_qo_tokens;   // qo_indptr[batch]
  int32_t split_kv;          // 1 when any tile was split
  int32_t causal;            // 1: query i sees KV positions <= kv_len - qo_len + i
  // The Hopper kernel's job counters (plan() writes 0; its CTAs take jobs
  // from next_job and the last CTA to finish sets both back to 0, so every
  // launch, graph replays included, starts from 0). Other kernels leave them.
  int32_t next_job;
  int32_t finished_ctas;
};

struct PrefillScheduleView {
  const PrefillScheduleHeader* header;
  const PrefillWorkUnit* work_units;
  const int32_t* cta_indptr;
  const PrefillMergeTile* merge_tiles;
  float* partial_out;
  float* partial_lse;
};

}  // namespace tessera
