// Split-KV scheduling for decode: plain host C++, no CUDA calls, unit-tested
// on the CPU. Decides how each request's KV is cut into chunks so that
// (work units x KV heads) CTAs fill every SM, within the bounds fixed at plan
// time (CUDA graphs), and lays out the workspace the kernels read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tessera/attention/decode_schedule.cuh"

namespace tessera::plan {

struct DecodePlannerInput {
  std::span<const int64_t> kv_lengths;  // tokens per request
  // kv_indptr (batch + 1 page offsets), copied into the work units; empty:
  // every request's pages start at kv_indices[0] (single decode).
  std::span<const int32_t> kv_indptr;
  int64_t num_kv_heads = 1;
  int64_t num_sms = 132;
  int64_t ctas_per_sm = 2;       // CTAs of the decode kernel resident per SM
  int64_t max_work_units = 0;    // hard bound (workspace / captured grid)
  int64_t max_partials = 0;      // hard bound on partial slots
  int64_t fixed_chunk_tokens = 0;  // > 0: split every longer request into such chunks
};

struct DecodeScheduleHost {
  DecodeScheduleHeader header{};
  std::vector<DecodeWorkUnit> work_units;  // header.num_work_units entries
  std::vector<int32_t> merge_indptr;       // batch_size + 1 entries
};

// Deterministic: the same input gives the same schedule.
DecodeScheduleHost plan_decode_schedule(const DecodePlannerInput& input);

// Byte offsets of the workspace regions (decode_schedule.cuh), 256-aligned.
struct DecodeWorkspaceLayout {
  std::size_t header_offset = 0;
  std::size_t work_units_offset = 0;
  std::size_t merge_indptr_offset = 0;
  std::size_t partial_out_offset = 0;
  std::size_t partial_lse_offset = 0;
  std::size_t total_bytes = 0;
  int64_t max_work_units = 0;
  int64_t max_batch_size = 0;
  int64_t max_partials = 0;
};

DecodeWorkspaceLayout decode_workspace_layout(int64_t max_batch_size, int64_t max_work_units,
                                              int64_t num_qo_heads, int64_t head_dim);

}  // namespace tessera::plan
