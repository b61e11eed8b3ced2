// MultiLevelCascadeAttention's host-side checks and workspace layout
// (cascade_levels.h).
#include "api/cascade_levels.h"

#include <string>

#include "plan/workspace_regions.h"
#include "tessera/core/error.h"

namespace tessera::detail {

namespace {

constexpr int64_t kMaxLevels = 1024;         // far beyond any cascade; keeps names and sizes small
constexpr std::size_t kMergeValueBytes = 2;  // fp16 / bf16 outputs

// qo_indptr / kv_indptr of one level: starts at 0, never decreases.
void check_indptr(std::span<const int32_t> indptr, const std::string& name) {
  TESSERA_CHECK_ARG(indptr[0] == 0, name, "a first value of 0", element_text(name, 0, indptr[0]));
  for (std::size_t i = 1; i < indptr.size(); ++i) {
    TESSERA_CHECK_ARG(indptr[i] >= indptr[i - 1], name,
                      "non-decreasing values (" + name + "[" + std::to_string(i - 1) +
                          "] = " + std::to_string(indptr[i - 1]) + ")",
                      element_text(name, i, indptr[i]));
  }
}

void check_level(const CascadeLevelPlan& level, std::size_t index, int64_t page_size,
                 const PrefillPlanBounds& bounds) {
  const std::string qo_name = level_argument(index, "qo_indptr");
  const std::string kv_name = level_argument(index, "kv_indptr");
  const std::string last_name = level_argument(index, "kv_last_page_len");
  TESSERA_CHECK_ARG(!level.qo_indptr.empty(), qo_name, "batch_size + 1 >= 1 values",
                    "an empty array");
  const std::size_t batch = level.qo_indptr.size() - 1;
  TESSERA_CHECK_ARG(static_cast<int64_t>(batch) <= bounds.max_batch_size, qo_name,
                    "at most max_batch_size = " + std::to_string(bounds.max_batch_size) +
                        " requests (the bounds)",
                    std::to_string(batch) + " requests");
  TESSERA_CHECK_ARG(level.kv_indptr.size() == level.qo_indptr.size(), kv_name,
                    std::to_string(level.qo_indptr.size()) + " values (as " + qo_name + ")",
                    std::to_string(level.kv_indptr.size()) + " values");
  TESSERA_CHECK_ARG(level.kv_last_page_len.size() == batch, last_name,
                    std::to_string(batch) + " values (the level's batch size)",
                    std::to_string(level.kv_last_page_len.size()) + " values");
  check_indptr(level.qo_indptr, qo_name);
  check_indptr(level.kv_indptr, kv_name);
  for (std::size_t b = 0; b < batch; ++b) {
    const bool has_pages = level.kv_indptr[b + 1] > level.kv_indptr[b];
    const int32_t last = level.kv_last_page_len[b];
    const int32_t lowest = has_pages ? 1 : 0;
    TESSERA_CHECK_ARG(last >= lowest && last <= page_size, last_name,
                      "values in [" + std::to_string(lowest) +
                          ", page_size = " + std::to_string(page_size) + "] for a request " +
                          (has_pages ? "with" : "without") + " pages",
                      element_text(last_name, b, last));
  }
}

}  // namespace

std::string level_argument(std::size_t level, std::string_view name) {
  return "levels[" + std::to_string(level) + "]." + std::string(name);
}

void validate_num_levels(int64_t num_levels) {
  TESSERA_CHECK_ARG(num_levels >= 1 && num_levels <= kMaxLevels, "num_levels",
                    "a level count in [1, " + std::to_string(kMaxLevels) + "]",
                    std::to_string(num_levels));
}

int64_t check_cascade_levels(std::span<const CascadeLevelPlan> levels, int64_t num_levels,
                             int64_t page_size, const PrefillPlanBounds& bounds) {
  TESSERA_CHECK_ARG(static_cast<int64_t>(levels.size()) == num_levels, "levels",
                    std::to_string(num_levels) + " levels (num_levels of the wrapper)",
                    std::to_string(levels.size()) + " levels");
  int64_t total = 0;
  for (std::size_t i = 0; i < levels.size(); ++i) {
    check_level(levels[i], i, page_size, bounds);
    const int64_t level_total = levels[i].qo_indptr.back();
    if (i == 0) {
      total = level_total;
      TESSERA_CHECK_ARG(total <= bounds.max_total_qo_tokens, level_argument(0, "qo_indptr"),
                        "at most max_total_qo_tokens = " +
                            std::to_string(bounds.max_total_qo_tokens) + " query tokens",
                        std::to_string(total) + " query tokens");
    }
    TESSERA_CHECK_ARG(level_total == total, level_argument(i, "qo_indptr"),
                      "a last value of " + std::to_string(total) +
                          " (levels[0]'s query tokens: every level covers every token)",
                      std::to_string(level_total));
  }
  return total;
}

bool one_token_per_request(std::span<const int32_t> qo_indptr) {
  for (std::size_t i = 0; i < qo_indptr.size(); ++i) {
    if (qo_indptr[i] != static_cast<int32_t>(i)) return false;
  }
  return !qo_indptr.empty();
}

void check_cascade_options(const AttentionOptions& options) {
  TESSERA_CHECK_ARG(options.pos_encoding_mode == PosEncodingMode::kNone, "options",
                    "pos_encoding_mode kNone (a token's position differs per cascade level; "
                    "apply RoPE before the call)",
                    options.pos_encoding_mode == PosEncodingMode::kAlibi ? "kAlibi" : "kRopeLlama");
  TESSERA_CHECK_ARG(options.window_left < 0, "options",
                    "window_left -1 (a window needs the token's position, which differs per "
                    "cascade level)",
                    "window_left " + std::to_string(options.window_left));
  TESSERA_CHECK_ARG(options.custom_mask == nullptr, "options",
                    "no custom_mask (a cascade has one page table per level)", "a custom mask");
  TESSERA_CHECK_ARG(options.jit_variant == nullptr, "options",
                    "no jit_variant (the levels' states merge by their softmax lse)",
                    "a JIT variant");
}

CascadeWorkspaceLayout cascade_workspace_layout(const PrefillPlanShape& shape,
                                                const PrefillPlanBounds& bounds) {
  using plan::align_region;
  const auto rows = static_cast<std::size_t>(bounds.max_total_qo_tokens);
  const std::size_t row_heads = rows * static_cast<std::size_t>(shape.num_qo_heads);
  CascadeWorkspaceLayout l{};
  l.merge_out_offset = 0;
  l.merge_lse_offset =
      align_region(row_heads * static_cast<std::size_t>(shape.head_dim) * kMergeValueBytes);
  l.own_lse_offset = l.merge_lse_offset + align_region(row_heads * sizeof(float));
  l.row_mask_offset = l.own_lse_offset + align_region(row_heads * sizeof(float));
  l.levels_offset = l.row_mask_offset + align_region(rows);
  return l;
}

std::size_t cascade_level_bytes(const CascadeWorkspaceLayout& layout, int64_t num_levels,
                                std::size_t workspace_bytes) {
  if (workspace_bytes < layout.levels_offset || num_levels < 1) return 0;
  const std::size_t share =
      (workspace_bytes - layout.levels_offset) / static_cast<std::size_t>(num_levels);
  return share / plan::kRegionAlignment * plan::kRegionAlignment;
}

}  // namespace tessera::detail
