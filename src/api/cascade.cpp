// MultiLevelCascadeAttention (tessera/api/cascade.h): one paged batch prefill
// per level over its slice of the workspace, and the merges of the levels'
// states. run() runs the last (per-request, possibly causal) level into the
// caller's out and lse (or the workspace's lse), then every earlier level
// into the workspace's scratch and merges it in place, as FlashInfer's
// wrapper does. A last level of one query token per request (decoding) runs
// on the batch decode kernel instead when the workspace has room for it:
// the prefill kernel would pad each request's one row to a whole tile. All
// work covers the first min(q rows, max_total_qo_tokens) rows, a count fixed
// by the caller's tensors and the bounds, so a captured graph replays for any
// later plan; the merge's row mask (written by plan()) leaves rows past the
// planned tokens alone.
#include "tessera/api/cascade.h"

#include <algorithm>
#include <string>
#include <vector>

#include "api/batch_decode_args.h"
#include "api/batch_prefill_plan.h"
#include "api/cascade_levels.h"
#include "api/paged_kv_cache_view.h"
#include "api/plan_run.h"
#include "tessera/api/decode.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

using detail::level_argument;
using plan::align_region;

void validate_arguments(int64_t num_levels, const PrefillPlanShape& shape,
                        const PrefillPlanBounds& bounds) {
  detail::validate_num_levels(num_levels);
  detail::validate_prefill_shape(shape, /*paged=*/true);
  detail::validate_prefill_bounds(bounds);
}

// `tensor` with its first dimension cut to `rows` (same strides and data).
DLTensor first_rows(const DLTensor& tensor, int64_t* shape, int64_t rows) {
  DLTensor view = tensor;
  for (int d = 0; d < tensor.ndim; ++d) shape[d] = tensor.shape[d];
  shape[0] = rows;
  view.shape = shape;
  return view;
}

// A contiguous tensor in the workspace.
DLTensor scratch_tensor(void* data, DLDevice device, DLDataType dtype, int ndim, int64_t* shape) {
  DLTensor t{};
  t.data = data;
  t.device = device;
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = shape;
  t.strides = nullptr;
  return t;
}

const DLTensor& level_tensor(const DLTensor* tensor, std::size_t level, const char* name) {
  TESSERA_CHECK_ARG(tensor != nullptr, level_argument(level, name), "an int32 device tensor",
                    "null");
  return *tensor;
}

// The last level's decode wrapper: batch = every query token.
DecodePlanShape decode_shape(const PrefillPlanShape& shape) {
  return {shape.num_qo_heads, shape.num_kv_heads, shape.head_dim, shape.page_size};
}

DecodePlanBounds decode_bounds(const PrefillPlanBounds& bounds) {
  return {bounds.max_total_qo_tokens, 0};
}

// The decode wrapper's workspace (aligned), 0 where the decode kernel does
// not serve the shape (the last level then always runs as a prefill).
std::size_t last_level_decode_bytes(const PrefillPlanShape& shape,
                                    const PrefillPlanBounds& bounds, int device_id) {
  try {
    detail::validate_decode_shape(decode_shape(shape));
  } catch (const Error&) {
    return 0;
  }
  return align_region(BatchDecodeWithPagedKVCache::workspace_size_bytes(
      decode_shape(shape), decode_bounds(bounds), device_id));
}

}  // namespace

struct MultiLevelCascadeAttention::State {
  int64_t num_levels;
  PrefillPlanShape shape;
  PrefillPlanBounds bounds;
  detail::CascadeWorkspaceLayout layout;
  unsigned char* workspace;
  int device_id;
  std::vector<std::unique_ptr<BatchPrefillWithPagedKVCache>> levels;
  // The last level on the decode kernel: null when the workspace has no
  // room for it or the kernel does not serve the shape.
  std::unique_ptr<BatchDecodeWithPagedKVCache> last_level_decode;
  int64_t planned_tokens = 0;
  bool planned = false;
  bool last_level_decode_planned = false;  // this plan's last level is one token a request
};

std::size_t MultiLevelCascadeAttention::workspace_size_bytes(int64_t num_levels,
                                                             const PrefillPlanShape& shape,
                                                             const PrefillPlanBounds& bounds,
                                                             int device_id) {
  validate_arguments(num_levels, shape, bounds);
  const std::size_t level =
      BatchPrefillWithPagedKVCache::workspace_size_bytes(shape, bounds, device_id);
  return detail::cascade_workspace_layout(shape, bounds).levels_offset +
         static_cast<std::size_t>(num_levels) * align_region(level) +
         last_level_decode_bytes(shape, bounds, device_id);
}

std::size_t MultiLevelCascadeAttention::min_workspace_size_bytes(int64_t num_levels,
                                                                 const PrefillPlanShape& shape,
                                                                 const PrefillPlanBounds& bounds,
                                                                 int device_id) {
  validate_arguments(num_levels, shape, bounds);
  const std::size_t level =
      BatchPrefillWithPagedKVCache::min_workspace_size_bytes(shape, bounds, device_id);
  return detail::cascade_workspace_layout(shape, bounds).levels_offset +
         static_cast<std::size_t>(num_levels) * align_region(level);
}

MultiLevelCascadeAttention::MultiLevelCascadeAttention(int64_t num_levels,
                                                       const PrefillPlanShape& shape,
                                                       const PrefillPlanBounds& bounds,
                                                       void* workspace, std::size_t workspace_bytes,
                                                       int device_id) {
  validate_arguments(num_levels, shape, bounds);
  detail::expect_workspace_argument(workspace, device_id);
  const std::size_t needed = min_workspace_size_bytes(num_levels, shape, bounds, device_id);
  TESSERA_CHECK_ARG(workspace_bytes >= needed, "workspace",
                    "at least " + std::to_string(needed) +
                        " bytes (min_workspace_size_bytes(num_levels, shape, bounds))",
                    std::to_string(workspace_bytes) + " bytes");
  auto s = std::make_unique<State>();
  s->num_levels = num_levels;
  s->shape = shape;
  s->bounds = bounds;
  s->layout = detail::cascade_workspace_layout(shape, bounds);
  s->workspace = static_cast<unsigned char*>(workspace);
  s->device_id = device_id;
  // The decode wrapper's region at the end of the workspace where the levels
  // keep at least their minimum beside it.
  const std::size_t decode_bytes = last_level_decode_bytes(shape, bounds, device_id);
  const bool room_for_decode = decode_bytes > 0 && workspace_bytes >= needed + decode_bytes;
  const std::size_t level_bytes = detail::cascade_level_bytes(
      s->layout, num_levels, workspace_bytes - (room_for_decode ? decode_bytes : 0));
  if (room_for_decode) {
    unsigned char* region = s->workspace + (workspace_bytes - decode_bytes) /
                                               plan::kRegionAlignment * plan::kRegionAlignment;
    s->last_level_decode = std::make_unique<BatchDecodeWithPagedKVCache>(
        decode_shape(shape), decode_bounds(bounds), region, decode_bytes, device_id);
  }
  for (int64_t i = 0; i < num_levels; ++i) {
    unsigned char* slice =
        s->workspace + s->layout.levels_offset + static_cast<std::size_t>(i) * level_bytes;
    s->levels.push_back(std::make_unique<BatchPrefillWithPagedKVCache>(shape, bounds, slice,
                                                                       level_bytes, device_id));
  }
  state_ = std::move(s);
}

MultiLevelCascadeAttention::~MultiLevelCascadeAttention() = default;

bool MultiLevelCascadeAttention::last_level_on_decode(const PagedKVCacheArg& paged_kv_cache,
                                                      cudaStream_t stream) const {
  const State& s = *state_;
  if (!s.last_level_decode_planned) return false;
  // Decode gathers K/V rows with 16-byte copies; the prefill path takes any.
  if (!detail::rows_aligned16(detail::resolve_paged_kv_cache(paged_kv_cache))) return false;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  TESSERA_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  return capture == cudaStreamCaptureStatusNone;
}

int64_t MultiLevelCascadeAttention::num_levels() const {
  return state_->num_levels;
}

void MultiLevelCascadeAttention::plan(std::span<const CascadeLevelPlan> levels, bool causal,
                                      cudaStream_t stream) {
  State& s = *state_;
  s.planned = false;
  const int64_t tokens =
      detail::check_cascade_levels(levels, s.num_levels, s.shape.page_size, s.bounds);
  for (int64_t i = 0; i < s.num_levels; ++i) {
    const CascadeLevelPlan& level = levels[static_cast<std::size_t>(i)];
    // FlashInfer's rule: earlier levels precede every token they serve.
    const bool level_causal = causal && i == s.num_levels - 1;
    s.levels[static_cast<std::size_t>(i)]->plan(level.qo_indptr, level.kv_indptr,
                                                level.kv_last_page_len, level_causal, stream);
  }
  // The prefill plan of the last level stays too: a graph captured around
  // run() always holds the prefill path, so it replays for any later plan.
  const CascadeLevelPlan& last = levels.back();
  s.last_level_decode_planned = false;
  if (s.last_level_decode && detail::one_token_per_request(last.qo_indptr)) {
    s.last_level_decode->plan(last.kv_indptr, last.kv_last_page_len, stream);
    s.last_level_decode_planned = true;
  }
  if (s.num_levels > 1) {
    // The merges' row mask: the planned tokens merge, the rows after them
    // (graph-sized buffers) stay as they are.
    DeviceGuard guard(s.device_id);
    unsigned char* mask = s.workspace + s.layout.row_mask_offset;
    TESSERA_CUDA_CHECK(cudaMemsetAsync(mask, 1, static_cast<std::size_t>(tokens), stream));
    TESSERA_CUDA_CHECK(cudaMemsetAsync(
        mask + tokens, 0, static_cast<std::size_t>(s.bounds.max_total_qo_tokens - tokens), stream));
  }
  s.planned_tokens = tokens;
  s.planned = true;
}

void MultiLevelCascadeAttention::run(const DLTensor& q, const PagedKVCacheArg& paged_kv_cache,
                                     std::span<const CascadeLevelArrays> levels,
                                     const DLTensor& out, const DLTensor* lse,
                                     const AttentionOptions& options, cudaStream_t stream,
                                     Validate validate) {
  const State& s = *state_;
  TESSERA_CHECK_ARG(s.planned, "plan", "plan() called before run()", "run() without a plan");
  detail::check_cascade_options(options);
  TESSERA_CHECK_ARG(static_cast<int64_t>(levels.size()) == s.num_levels, "levels",
                    std::to_string(s.num_levels) + " levels (num_levels of the wrapper)",
                    std::to_string(levels.size()) + " levels");
  for (std::size_t i = 0; i < levels.size(); ++i) {
    level_tensor(levels[i].kv_indices, i, "kv_indices");
    level_tensor(levels[i].qo_indptr, i, "qo_indptr");
    level_tensor(levels[i].kv_indptr, i, "kv_indptr");
    level_tensor(levels[i].kv_last_page_len, i, "kv_last_page_len");
  }
  const TensorView qv(q, "q");
  qv.expect_ndim(3).expect_cuda().expect_dtype({DType::kFloat16, DType::kBFloat16});
  TESSERA_CHECK_ARG(
      qv.size(0) >= s.planned_tokens, "q",
      "at least " + std::to_string(s.planned_tokens) + " rows (the planned query tokens)",
      std::to_string(qv.size(0)) + " rows");
  const TensorView ov(out, "out");
  ov.expect_ndim(3).expect_size(0, qv.size(0), "q's rows");
  if (lse != nullptr) {
    const TensorView lv(*lse, "lse");
    lv.expect_ndim(2).expect_size(0, qv.size(0), "q's rows");
  }

  // Every call works on the same `rows` rows (q's, up to the bounds).
  const int64_t rows = std::min(qv.size(0), s.bounds.max_total_qo_tokens);
  int64_t q_shape[3], out_shape[3], lse_shape[2];
  const DLTensor q_rows = first_rows(q, q_shape, rows);
  const DLTensor out_rows = first_rows(out, out_shape, rows);
  const DLDevice device = qv.device();
  const DLDataType f32{kDLFloat, 32, 1};
  int64_t state_lse_shape[2] = {rows, s.shape.num_qo_heads};
  const DLTensor state_lse = lse != nullptr ? first_rows(*lse, lse_shape, rows)
                                            : scratch_tensor(s.workspace + s.layout.own_lse_offset,
                                                             device, f32, 2, state_lse_shape);
  const auto run_level = [&](int64_t i, const DLTensor& level_out, const DLTensor& level_lse) {
    const CascadeLevelArrays& a = levels[static_cast<std::size_t>(i)];
    s.levels[static_cast<std::size_t>(i)]->run(q_rows, paged_kv_cache, *a.kv_indices, *a.qo_indptr,
                                               *a.kv_indptr, *a.kv_last_page_len, level_out,
                                               &level_lse, options, stream, validate);
  };
  if (last_level_on_decode(paged_kv_cache, stream)) {
    const CascadeLevelArrays& a = levels.back();
    s.last_level_decode->run(q_rows, paged_kv_cache, *a.kv_indices, *a.kv_indptr,
                             *a.kv_last_page_len, out_rows, &state_lse, options, stream, validate);
  } else {
    run_level(s.num_levels - 1, out_rows, state_lse);
  }
  if (s.num_levels == 1) return;

  int64_t merge_out_shape[3] = {rows, s.shape.num_qo_heads, s.shape.head_dim};
  int64_t merge_lse_shape[2] = {rows, s.shape.num_qo_heads};
  int64_t mask_shape[1] = {rows};
  const DLTensor merge_out =
      scratch_tensor(s.workspace + s.layout.merge_out_offset, device, q.dtype, 3, merge_out_shape);
  const DLTensor merge_lse =
      scratch_tensor(s.workspace + s.layout.merge_lse_offset, device, f32, 2, merge_lse_shape);
  const DLTensor row_mask = scratch_tensor(s.workspace + s.layout.row_mask_offset, device,
                                           DLDataType{kDLUInt, 8, 1}, 1, mask_shape);
  for (int64_t i = 0; i + 1 < s.num_levels; ++i) {
    run_level(i, merge_out, merge_lse);
    merge_state_in_place(out_rows, state_lse, merge_out, merge_lse, &row_mask, stream);
  }
}

}  // namespace tessera
