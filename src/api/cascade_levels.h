// Host-side pieces of MultiLevelCascadeAttention (tessera/api/cascade.h) that
// need no GPU, so the CPU tests reach them directly: the checks of the level
// count and of every level's host arrays (before any level is planned), the
// check of the attention options a cascade can serve, and the workspace
// layout (the merge scratch, then one slice per level).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tessera/api/attention_options.h"
#include "tessera/api/cascade.h"
#include "tessera/api/prefill.h"

namespace tessera::detail {

// "levels[i].name": how errors name one level's array.
std::string level_argument(std::size_t level, std::string_view name);

// Throws naming "num_levels" unless it is >= 1 (and small enough to index).
void validate_num_levels(int64_t num_levels);

// Checks `levels` against the wrapper's level count, page size and bounds
// (names in tessera/api/cascade.h) and returns the query tokens they cover:
// every level's qo_indptr[batch], which must agree.
int64_t check_cascade_levels(std::span<const CascadeLevelPlan> levels, int64_t num_levels,
                             int64_t page_size, const PrefillPlanBounds& bounds);

// True when every request of a level's qo_indptr has exactly one query
// token (qo_indptr == 0, 1, ..., batch): the batch decode kernel can run it.
bool one_token_per_request(std::span<const int32_t> qo_indptr);

// Throws naming "options" for what a cascade cannot serve: a position
// encoding or a sliding window (a token's position differs per level), a
// custom mask or a JIT variant.
void check_cascade_options(const AttentionOptions& options);

// Byte offsets in the workspace (256-byte aligned regions).
struct CascadeWorkspaceLayout {
  std::size_t merge_out_offset;  // [max_total_qo, Hq, D] in q's dtype (2 bytes)
  std::size_t merge_lse_offset;  // float32 [max_total_qo, Hq]: a level's lse
  std::size_t own_lse_offset;    // float32 [max_total_qo, Hq]: the result's lse when
                                 // the caller passes none
  std::size_t row_mask_offset;   // uint8 [max_total_qo]: 1 for the planned rows
  std::size_t levels_offset;     // the levels' slices from here
};

CascadeWorkspaceLayout cascade_workspace_layout(const PrefillPlanShape& shape,
                                                const PrefillPlanBounds& bounds);

// Each level's slice of `workspace_bytes` (equal slices, aligned down), 0
// when the scratch alone does not fit.
std::size_t cascade_level_bytes(const CascadeWorkspaceLayout& layout, int64_t num_levels,
                                std::size_t workspace_bytes);

}  // namespace tessera::detail
