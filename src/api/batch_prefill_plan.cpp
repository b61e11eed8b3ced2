#include "api/batch_prefill_plan.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "api/plan_run.h"
#include "api/prefill_backend.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/attention/head_dims.h"
#include "tessera/core/error.h"

namespace tessera::detail {

namespace {
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxGridY = 65535;
}  // namespace

void validate_prefill_shape(const PrefillPlanShape& shape, bool paged) {
  TESSERA_CHECK_ARG(shape.num_qo_heads >= 1 && shape.num_qo_heads <= kMaxGridY, "shape",
                    "num_qo_heads in [1, 65535]",
                    "num_qo_heads " + std::to_string(shape.num_qo_heads));
  TESSERA_CHECK_ARG(shape.num_kv_heads >= 1 && shape.num_qo_heads % shape.num_kv_heads == 0,
                    "shape", "num_kv_heads >= 1 dividing num_qo_heads (" +
                                 std::to_string(shape.num_qo_heads) + ")",
                    "num_kv_heads " + std::to_string(shape.num_kv_heads));
  TESSERA_CHECK_ARG(attention::supported_prefill_head_dims(shape.head_dim, shape.v_head_dim()),
                    "shape", attention::kPrefillHeadDimsText,
                    "head_dim " + std::to_string(shape.head_dim) + ", head_dim_vo " +
                        std::to_string(shape.v_head_dim()));
  if (paged) {
    // The kernel has the paged 192 / 128 pair (a V row table of its own);
    // the paged cache's argument checks (one head_dim for K and V) do not yet.
    TESSERA_CHECK_ARG(shape.v_head_dim() == shape.head_dim, "shape",
                      "head_dim_vo = head_dim with a paged cache (192 / 128: ragged or single)",
                      "head_dim " + std::to_string(shape.head_dim) + ", head_dim_vo " +
                          std::to_string(shape.v_head_dim()));
    TESSERA_CHECK_ARG(shape.page_size >= 1 && shape.page_size <= kInt32Max, "shape",
                      "page_size in [1, 2^31)", "page_size " + std::to_string(shape.page_size));
  }
}

void validate_prefill_bounds(const PrefillPlanBounds& bounds) {
  TESSERA_CHECK_ARG(bounds.max_batch_size >= 1 && bounds.max_batch_size < kInt32Max, "bounds",
                    "max_batch_size in [1, 2^31 - 1)",
                    "max_batch_size " + std::to_string(bounds.max_batch_size));
  TESSERA_CHECK_ARG(bounds.max_total_qo_tokens >= 1 && bounds.max_total_qo_tokens < kInt32Max,
                    "bounds", "max_total_qo_tokens in [1, 2^31 - 1)",
                    "max_total_qo_tokens " + std::to_string(bounds.max_total_qo_tokens));
}

plan::PrefillWorkspaceLayout prefill_layout(const PrefillPlanShape& shape,
                                            const PrefillPlanBounds& bounds, int64_t num_sms,
                                            int64_t ctas_per_sm,
                                            plan::PrefillDerivedBounds& derived,
                                            std::size_t workspace_bytes) {
  return prefill_layout(shape.num_qo_heads, shape.num_kv_heads, shape.head_dim, bounds, num_sms,
                        ctas_per_sm, derived, workspace_bytes);
}

plan::PrefillWorkspaceLayout prefill_layout(int64_t num_qo_heads, int64_t num_kv_heads,
                                            int64_t head_dim, const PrefillPlanBounds& bounds,
                                            int64_t num_sms, int64_t ctas_per_sm,
                                            plan::PrefillDerivedBounds& derived,
                                            std::size_t workspace_bytes) {
  derived = plan::derive_prefill_bounds(bounds.max_batch_size, bounds.max_total_qo_tokens,
                                        num_qo_heads, num_kv_heads, /*pack_gqa=*/true, num_sms,
                                        ctas_per_sm);
  derived.max_ctas = derived.max_work_units;  // one unit per CTA (plan())
  return prefill_layout_within(num_qo_heads, num_kv_heads, head_dim, derived, workspace_bytes);
}

plan::PrefillWorkspaceLayout prefill_layout_within(int64_t num_qo_heads, int64_t num_kv_heads,
                                                   int64_t head_dim,
                                                   plan::PrefillDerivedBounds& derived,
                                                   std::size_t workspace_bytes) {
  const auto layout_with = [&](int64_t partial_rows) {
    return plan::prefill_workspace_layout(derived.max_work_units, derived.max_ctas, partial_rows,
                                          num_qo_heads, num_kv_heads, head_dim,
                                          /*pack_gqa=*/true);
  };
  plan::PrefillWorkspaceLayout layout = layout_with(derived.max_partial_rows);
  if (layout.total_bytes <= workspace_bytes) return layout;
  // The partials dominate the full size (split_units x 128 rows x heads x
  // head_dim floats: tens of MB), while a plan of short queries on short KV
  // never splits: a smaller workspace keeps what fits and the planner grows
  // its chunks until its partials fit (no split at all with none).
  layout = layout_with(0);
  if (layout.total_bytes > workspace_bytes) {
    derived.max_partial_rows = 0;
    return layout;
  }
  const std::size_t per_row = static_cast<std::size_t>(num_kv_heads) *
                              static_cast<std::size_t>(head_dim + 1) * sizeof(float);
  int64_t rows =
      std::min<int64_t>(derived.max_partial_rows,
                        static_cast<int64_t>((workspace_bytes - layout.total_bytes) / per_row));
  // Region alignment may cost a row or two.
  while (rows > 0 && layout_with(rows).total_bytes > workspace_bytes) --rows;
  derived.max_partial_rows = rows;
  return layout_with(rows);
}

std::size_t prefill_workspace_size(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds,
                                   int device_id, bool paged, bool minimum) {
  validate_prefill_shape(shape, paged);
  validate_prefill_bounds(bounds);
  plan::PrefillDerivedBounds derived;
  const PrefillDeviceFit fit =
      prefill_device_fit(shape.head_dim, device_id, "shape", shape.v_head_dim());
  return prefill_layout(shape, bounds, fit.num_sms, fit.ctas_per_sm, derived,
                        minimum ? 0 : SIZE_MAX)
      .total_bytes;
}

PrefillPlanState::PrefillPlanState(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds,
                                   bool paged, void* workspace, std::size_t workspace_bytes,
                                   int device_id)
    : shape_(shape), bounds_(bounds), device_id_(device_id) {
  validate_prefill_shape(shape, paged);
  validate_prefill_bounds(bounds);
  expect_workspace_argument(workspace, device_id);
  workspace_ = static_cast<unsigned char*>(workspace);
  fit_ = prefill_device_fit(shape.head_dim, device_id, "shape", shape.v_head_dim());
  num_sms_ = fit_.num_sms;
  layout_ = prefill_layout(shape, bounds, num_sms_, fit_.ctas_per_sm, derived_, workspace_bytes);
  TESSERA_CHECK_ARG(workspace_bytes >= layout_.total_bytes, "workspace",
                    "at least " + std::to_string(layout_.total_bytes) +
                        " bytes (min_workspace_size_bytes(shape, bounds); workspace_size_bytes "
                        "gives room for every split-KV plan)",
                    std::to_string(workspace_bytes) + " bytes");
  // Header, work units and cta_indptr, then the merge tiles: one copy.
  upload_ = std::make_unique<ScheduleUpload>(layout_.partial_out_offset);
  planned_qo_indptr_.reserve(static_cast<std::size_t>(bounds.max_batch_size) + 1);
  kv_lengths_.reserve(static_cast<std::size_t>(bounds.max_batch_size));
}

void PrefillPlanState::plan(std::span<const int32_t> qo_indptr, std::span<const int32_t> kv_indptr,
                            std::span<const int64_t> kv_lengths, bool causal, cudaStream_t stream) {
  planned_ = false;
  plan::PrefillPlannerInput input;
  input.qo_indptr = qo_indptr;
  input.kv_lengths = kv_lengths;
  input.kv_indptr = kv_indptr;
  input.num_qo_heads = shape_.num_qo_heads;
  input.num_kv_heads = shape_.num_kv_heads;
  input.head_dim = shape_.head_dim;
  input.causal = causal;
  input.pack_gqa = true;
  input.max_q_tile_rows = fit_.max_q_tile_rows;
  input.one_unit_per_cta = true;
  input.num_sms = num_sms_;
  input.ctas_per_sm = fit_.ctas_per_sm;
  if (plan_for_sm90(shape_.backend, device_id_, shape_.head_dim)) {
    // The Hopper kernel: 128-row tiles, one 384-thread CTA per SM taking
    // the units (heaviest first) as jobs from a counter.
    input.max_q_tile_rows = kSm90QTileRows;
    input.only_max_q_tile = true;
    input.ctas_per_sm = 1;
  }
  input.max_batch_size = bounds_.max_batch_size;
  input.max_total_qo_tokens = bounds_.max_total_qo_tokens;
  input.max_work_units = derived_.max_work_units;
  input.max_partial_rows = derived_.max_partial_rows;
  // Argument errors first (as before any CUDA call), then the schedule is
  // planned straight into the pinned staging slot the device copy reads.
  plan::validate_prefill_planner_input(input);
  DeviceGuard guard(device_id_);
  expect_stream_not_capturing(stream);
  unsigned char* staging = upload_->acquire();
  const auto units = static_cast<std::size_t>(derived_.max_work_units);
  const plan::PrefillScheduleTarget target{
      {reinterpret_cast<PrefillWorkUnit*>(staging + layout_.work_units_offset), units},
      {reinterpret_cast<int32_t*>(staging + layout_.cta_indptr_offset),
       static_cast<std::size_t>(derived_.max_ctas) + 1},
      {reinterpret_cast<PrefillMergeTile*>(staging + layout_.merge_tiles_offset), units / 2},
      {}};
  int64_t custom_mask_bytes = 0;
  const PrefillScheduleHeader header =
      plan::plan_prefill_schedule(input, scratch_, target, &custom_mask_bytes);
  std::memcpy(staging + layout_.header_offset, &header, sizeof(header));
  const std::size_t bytes = layout_.merge_tiles_offset +
                            static_cast<std::size_t>(header.num_merge_tiles) *
                                sizeof(PrefillMergeTile);
  upload_->commit(workspace_, bytes, stream);

  planned_ = true;
  causal_ = causal;
  split_ = header.split_kv != 0;
  custom_mask_bytes_ = custom_mask_bytes;
  batch_ = static_cast<int64_t>(qo_indptr.size()) - 1;
  rows_per_token_ = header.rows_per_token;
  q_tile_rows_ = header.q_tile_rows;
  planned_units_ = header.num_work_units;
  planned_merge_tiles_ = header.num_merge_tiles;
  planned_qo_indptr_.assign(qo_indptr.begin(), qo_indptr.end());
}

PrefillScheduleView PrefillPlanState::schedule_view() const {
  return prefill_schedule_view(workspace_, layout_);
}

PrefillScheduleView prefill_schedule_view(unsigned char* workspace,
                                          const plan::PrefillWorkspaceLayout& layout) {
  PrefillScheduleView v{};
  v.header = reinterpret_cast<const PrefillScheduleHeader*>(workspace + layout.header_offset);
  v.work_units = reinterpret_cast<const PrefillWorkUnit*>(workspace + layout.work_units_offset);
  v.cta_indptr = reinterpret_cast<const int32_t*>(workspace + layout.cta_indptr_offset);
  v.merge_tiles =
      reinterpret_cast<const PrefillMergeTile*>(workspace + layout.merge_tiles_offset);
  v.partial_out = reinterpret_cast<float*>(workspace + layout.partial_out_offset);
  v.partial_lse = reinterpret_cast<float*>(workspace + layout.partial_lse_offset);
  return v;
}

std::size_t stage_prefill_schedule(unsigned char* staging, const plan::PrefillScheduleHost& schedule,
                                   const plan::PrefillWorkspaceLayout& layout) {
  std::memcpy(staging + layout.header_offset, &schedule.header, sizeof(schedule.header));
  std::memcpy(staging + layout.work_units_offset, schedule.work_units.data(),
              schedule.work_units.size() * sizeof(PrefillWorkUnit));
  std::memcpy(staging + layout.cta_indptr_offset, schedule.cta_indptr.data(),
              schedule.cta_indptr.size() * sizeof(int32_t));
  std::memcpy(staging + layout.merge_tiles_offset, schedule.merge_tiles.data(),
              schedule.merge_tiles.size() * sizeof(PrefillMergeTile));
  return layout.merge_tiles_offset + schedule.merge_tiles.size() * sizeof(PrefillMergeTile);
}

}  // namespace tessera::detail
