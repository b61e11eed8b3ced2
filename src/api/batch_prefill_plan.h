// What the ragged and paged batch prefill wrappers share: argument checks of
// the shape and bounds, the workspace layout, and plan() (planner + one
// non-blocking copy of the schedule into the caller's workspace), plus the
// launch contract the kernel launcher reads (batch_prefill_launch.cuh).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "api/paged_row_units.h"
#include "api/prefill_device_fit.h"
#include "api/schedule_upload.h"
#include "plan/prefill_planner.h"
#include "tessera/api/prefill.h"
#include "tessera/api/prefill_backend.h"
#include "tessera/attention/prefill_schedule.cuh"
#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"

namespace tessera::detail {

// Throws naming "shape" (heads, head_dim 64/128/256, page_size >= 1 when paged)
// or "bounds" (max_batch_size >= 1, max_total_qo_tokens >= 1, both < 2^31).
void validate_prefill_shape(const PrefillPlanShape& shape, bool paged);
void validate_prefill_bounds(const PrefillPlanBounds& bounds);

// Workspace layout for the bounds on a GPU with num_sms SMs that runs
// ctas_per_sm prefill CTAs each (prefill_device_fit), within workspace_bytes:
// the schedule regions always (the minimum), then as many split-KV partial
// rows as fit, up to the derived bound (derived.max_partial_rows is lowered
// to them; the planner then splits less). A layout over workspace_bytes
// means even the minimum does not fit.
plan::PrefillWorkspaceLayout prefill_layout(const PrefillPlanShape& shape,
                                            const PrefillPlanBounds& bounds, int64_t num_sms,
                                            int64_t ctas_per_sm,
                                            plan::PrefillDerivedBounds& derived,
                                            std::size_t workspace_bytes = SIZE_MAX);
// The same for any heads / head_dim the planner takes (MLA: one KV head,
// head_dim 512).
plan::PrefillWorkspaceLayout prefill_layout(int64_t num_qo_heads, int64_t num_kv_heads,
                                            int64_t head_dim, const PrefillPlanBounds& bounds,
                                            int64_t num_sms, int64_t ctas_per_sm,
                                            plan::PrefillDerivedBounds& derived,
                                            std::size_t workspace_bytes);

// The same for bounds the caller derived (MLA: plan::derive_mla_bounds):
// derived.max_partial_rows is lowered to what fits in workspace_bytes.
plan::PrefillWorkspaceLayout prefill_layout_within(int64_t num_qo_heads, int64_t num_kv_heads,
                                                   int64_t head_dim,
                                                   plan::PrefillDerivedBounds& derived,
                                                   std::size_t workspace_bytes);

// The schedule regions of a workspace laid out by `layout`.
PrefillScheduleView prefill_schedule_view(unsigned char* workspace,
                                          const plan::PrefillWorkspaceLayout& layout);
// Writes the schedule into pinned `staging` at the layout's offsets (the
// header, work units, cta_indptr and merge tiles: the bytes one copy moves
// into the workspace); returns that many bytes.
std::size_t stage_prefill_schedule(unsigned char* staging, const plan::PrefillScheduleHost& schedule,
                                   const plan::PrefillWorkspaceLayout& layout);

// workspace_size_bytes of either wrapper (validates shape and bounds first):
// the full split-KV room (minimum = false) or the schedule regions alone
// (minimum = true: min_workspace_size_bytes).
std::size_t prefill_workspace_size(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds,
                                   int device_id, bool paged, bool minimum = false);

class PrefillPlanState {
 public:
  PrefillPlanState(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds, bool paged,
                   void* workspace, std::size_t workspace_bytes, int device_id);

  // Plans request lengths (kv_lengths from the wrapper's own arrays) and
  // copies the schedule; remembers qo_indptr for run()'s checks.
  // kv_indptr: the caller's, in the K/V's own units (tokens or pages).
  void plan(std::span<const int32_t> qo_indptr, std::span<const int32_t> kv_indptr,
            std::span<const int64_t> kv_lengths, bool causal, cudaStream_t stream);

  const PrefillPlanShape& shape() const { return shape_; }
  const PrefillPlanBounds& bounds() const { return bounds_; }
  bool planned() const { return planned_; }
  bool causal() const { return causal_; }
  int64_t batch() const { return batch_; }
  int64_t total_qo_tokens() const { return planned_qo_indptr_.empty() ? 0 : planned_qo_indptr_.back(); }
  bool split() const { return split_; }
  // Bytes a custom mask for this plan must hold (segment_packbits layout).
  int64_t custom_mask_bytes() const { return custom_mask_bytes_; }
  int64_t rows_per_token() const { return rows_per_token_; }
  int64_t q_tile_rows() const { return q_tile_rows_; }
  int device_id() const { return device_id_; }
  // Dynamic shared memory of a launch (for the largest tile this device runs).
  int64_t shared_bytes() const { return fit_.shared_bytes; }
  const std::vector<int32_t>& planned_qo_indptr() const { return planned_qo_indptr_; }
  const plan::PrefillWorkspaceLayout& layout() const { return layout_; }
  int64_t max_ctas() const { return derived_.max_ctas; }
  int64_t num_sms() const { return num_sms_; }
  int64_t planned_units() const { return planned_units_; }
  // Merge tiles the workspace holds (a split tile has >= 2 units).
  int64_t max_merge_tiles() const { return derived_.max_work_units / 2; }
  int64_t planned_merge_tiles() const { return planned_merge_tiles_; }
  PrefillScheduleView schedule_view() const;
  std::vector<int64_t>& kv_lengths_buffer() { return kv_lengths_; }

 private:
  PrefillPlanShape shape_;
  PrefillPlanBounds bounds_;
  unsigned char* workspace_ = nullptr;
  int device_id_ = 0;
  int64_t num_sms_ = 0;
  PrefillDeviceFit fit_;
  plan::PrefillDerivedBounds derived_;
  plan::PrefillWorkspaceLayout layout_;
  std::unique_ptr<ScheduleUpload> upload_;
  int64_t q_tile_rows_ = 0;
  bool planned_ = false;
  bool causal_ = false;
  bool split_ = false;
  int64_t custom_mask_bytes_ = 0;
  int64_t batch_ = 0;
  int64_t rows_per_token_ = 1;
  int64_t planned_units_ = 0;
  int64_t planned_merge_tiles_ = 0;
  std::vector<int32_t> planned_qo_indptr_;
  std::vector<int64_t> kv_lengths_;
  plan::PrefillPlannerScratch scratch_;  // reused by every plan()
};

// Everything the launcher needs, resolved and validated by run().
struct BatchPrefillLaunch {
  DType dtype;     // q = out (and K/V unless kv_dtype says otherwise)
  DType kv_dtype;  // dtype, or float8 e4m3 (paged, head_dim 128)
  const void* q;
  int64_t q_stride_token, q_stride_head;
  void* out;
  int64_t out_stride_token, out_stride_head;
  float* lse;  // null or [total_qo, num_qo_heads] contiguous
  const int32_t* qo_indptr;  // device (the merge; the prefill kernel reads the plan's)
  // K/V: ragged (k, v [total_kv, num_kv_heads, D]) or paged (the cache,
  // kv_indices); kv_indptr / kv_last_page_len are the plan's (work units).
  const void* k;
  const void* v;
  int64_t stride_page, stride_entry, stride_head;  // ragged: stride_entry = per token
  // v's strides and row units: k's when the head dims are equal.
  int64_t v_stride_page, v_stride_entry, v_stride_head;
  int64_t page_size;                               // paged
  PagedRowUnits row_units;                         // paged: the row table's offsets
  PagedRowUnits v_row_units;
  const int32_t* kv_indices;
  int64_t num_qo_heads, num_kv_heads, head_dim;
  int64_t head_dim_vo;  // v's and out's (head_dim but for q/k 192, v/o 128)
  int64_t rows_per_token;
  bool causal;
  bool capturing;  // a graph needs the merge whatever the plan
  bool split;
  PrefillScheduleView schedule;
  // Grids (plan_run.h grid_units): the bounds while capturing, else the plan's
  // (the FA2 kernel runs unit x in CTA x: planned_units CTAs, whatever the
  // plan's CTA lists; the Hopper kernel takes (unit, head) jobs on num_sms).
  int64_t max_ctas, planned_units;
  int64_t num_sms;  // the Hopper kernel's grid: one CTA per SM taking jobs
  int64_t max_merge_tiles, planned_merge_tiles;
  int64_t q_tile_rows;   // the plan's (the merge grid's row slices)
  int64_t shared_bytes;  // dynamic shared memory (PrefillPlanState::shared_bytes)
  attention::VariantKind variant_kind;
  attention::VariantParams variant;  // resolved by run() (sm_scale, slopes)
  const void* jit_kernel;            // a JIT variant's kernel (same parameters), or null
  const void* hopper_jit_kernel;     // that variant's Hopper kernel (backend fa3), or null
  bool sum_states;                   // a non-softmax JIT variant: the merge sums partials
  const uint8_t* custom_mask;        // null or the packed mask (AttentionOptions::custom_mask)
  PrefillBackend backend;            // kFa2 or kFa3 (resolved by run())
  int64_t q_tokens;                  // rows of q (the Hopper kernel's Q tensor map)
  int64_t kv_tokens;                 // ragged: rows of k / v (its K/V tensor maps)
};

void launch_batch_prefill_ragged(const BatchPrefillLaunch& launch, cudaStream_t stream);
void launch_batch_prefill_paged(const BatchPrefillLaunch& launch, cudaStream_t stream);

}  // namespace tessera::detail
