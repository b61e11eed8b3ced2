// Host checks of BatchDecodeWithPagedKVCache's construction and plan()
// arguments: plain C++, no CUDA, so every rejection is unit-tested on the CPU.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tessera/api/decode.h"
#include "tessera/attention/head_dims.h"

namespace tessera::detail {

// Decode CTAs resident per SM: the planner's wave size is num_sms times this.
// Matches decode::kMinCtasPerSm (the kernel's launch bounds, include/
// tessera/attention/decode.cuh); kept here so this header stays host-only.
inline constexpr int64_t kDecodeCtasPerSm = 2;

bool decode_head_dim_supported(int64_t head_dim);

// Throws tessera::Error naming "shape": heads >= 1 (num_kv_heads <= 65535,
// the grid's y), num_qo_heads a multiple of num_kv_heads, head_dim one of attention::kHeadDims, page_size in [1, 2^31).
void validate_decode_shape(const DecodePlanShape& shape);

// Throws naming "bounds": max_batch_size in [1, 2^31 - 2]; max_work_units 0
// (derived) or in [max_batch_size, 2^31 - 1] (every request needs one unit).
void validate_decode_bounds(const DecodePlanBounds& bounds);

// max_work_units when the bounds leave it 0: one unit per request plus a full
// wave of split chunks, so the planner can always reach a full wave.
int64_t derived_max_work_units(int64_t max_batch_size, int64_t num_sms);

// Checks plan()'s host arrays ("kv_indptr", "kv_last_page_len") and writes
// the KV length of every request into `kv_lengths` (resized, no allocation
// once its capacity holds max_batch_size): kv_indptr [batch + 1] starts at 0
// and never decreases, batch <= max_batch_size, kv_last_page_len [batch] in
// [1, page_size] for a request with pages ([0, page_size] without), lengths
// below 2^31.
void plan_kv_lengths(std::span<const int32_t> kv_indptr, std::span<const int32_t> kv_last_page_len,
                     int64_t page_size, int64_t max_batch_size, std::vector<int64_t>& kv_lengths);

}  // namespace tessera::detail
