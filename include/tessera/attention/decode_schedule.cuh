// The decode schedule: what plan() (host, src/plan) writes into the caller's
// workspace and what the decode and merge kernels read. Plain structs, shared
// by host and device code (compiles under nvcc, NVRTC and a host compiler).
//
// Workspace layout (byte offsets from the workspace base, each 256-aligned),
// sized by the bounds fixed at plan time so a CUDA graph captured once can
// replay with any schedule that fits them:
//   DecodeScheduleHeader                      (counts for this plan)
//   DecodeWorkUnit   work_units[max_work_units]
//   int32_t          merge_indptr[max_batch_size + 1]
//   float            partial_out[max_partials * num_qo_heads * head_dim]
//   float            partial_lse[max_partials * num_qo_heads]   (base 2)
#pragma once

#include <cuda/std/cstdint>

namespace tessera {

// One job, run by one CTA per KV head (unit_grid.cuh): the query of request
// `request` against KV tokens [kv_begin, kv_end) of that request.
// page_begin (kv_indptr[request]) and kv_len (the request's KV tokens) are
// the values plan() saw, carried here so a CTA's first page-id load does not
// wait on a read of kv_indptr / kv_last_page_len (run() requires the device
// arrays to hold the same values; validation mode checks it).
struct DecodeWorkUnit {
  int32_t request;
  int32_t kv_begin;
  int32_t kv_end;
  // -1: the request is not split; the CTA writes out/lse directly.
  // Otherwise the slot of this chunk's partial (out, lse) in the workspace.
  int32_t partial_index;
  int32_t page_begin;
  int32_t kv_len;
};

struct DecodeScheduleHeader {
  int32_t num_work_units;  // CTAs of later units exit at once
  int32_t batch_size;      // requests in this plan
  int32_t num_partials;    // partial slots used
  int32_t max_chunk_tokens;
};

// Partials of request b: slots [merge_indptr[b], merge_indptr[b+1]); a request
// with fewer than 2 slots needs no merge (its work unit wrote out directly).
struct DecodeScheduleView {
  const DecodeScheduleHeader* header;
  const DecodeWorkUnit* work_units;
  const int32_t* merge_indptr;
  float* partial_out;
  float* partial_lse;
};

}  // namespace tessera
