// BatchDecodeWithPagedKVCache: plan on the host (src/plan), one non-blocking
// copy of the schedule into the caller's workspace, and a run() that only
// validates host-side descriptors and launches (decode, then merge), so it
// can be captured in a CUDA graph: no allocation, no synchronisation, no read
// of device data (unless validation mode is on), grids sized by the bounds.
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "api/attention_variant.h"
#include "api/batch_decode_args.h"
#include "api/contiguous_kv.h"
#include "api/decode_launch.h"
#include "api/page_validation.h"
#include "api/index_tensor.h"
#include "api/paged_kv_cache_view.h"
#include "api/plan_run.h"
#include "api/schedule_upload.h"
#include "plan/decode_planner.h"
#include "tessera/api/decode.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

using detail::copy_to_host;
using detail::index_view;

using detail::device_sm_count;

int64_t resolved_max_work_units(const DecodePlanBounds& bounds, int device_id) {
  return bounds.max_work_units > 0
             ? bounds.max_work_units
             : detail::derived_max_work_units(bounds.max_batch_size, device_sm_count(device_id));
}


}  // namespace

struct BatchDecodeWithPagedKVCache::State {
  DecodePlanShape shape;
  DecodePlanBounds bounds;  // max_work_units resolved
  unsigned char* workspace = nullptr;
  int device_id = 0;
  plan::DecodeWorkspaceLayout layout;
  int64_t num_sms = 0;  // queried at the first plan()

  // Staging for header + work units + merge_indptr; one copy per plan().
  std::unique_ptr<detail::ScheduleUpload> upload;

  bool planned = false;
  int64_t planned_batch = 0;
  int32_t planned_partials = 0;
  int64_t planned_units = 0;  // the schedule's work units
  DecodeBackend backend = DecodeBackend::kAuto;
  std::vector<int64_t> kv_lengths;
  // What plan() saw, compared with the device arrays in validation mode.
  std::vector<int32_t> planned_indptr;
  std::vector<int32_t> planned_last_page_len;
};

BatchDecodeWithPagedKVCache::BatchDecodeWithPagedKVCache(const DecodePlanShape& shape,
                                                         const DecodePlanBounds& bounds,
                                                         void* workspace,
                                                         std::size_t workspace_bytes,
                                                         int device_id)
    : state_(std::make_unique<State>()) {
  detail::validate_decode_shape(shape);
  detail::validate_decode_bounds(bounds);
  detail::expect_workspace_argument(workspace, device_id);
  State& s = *state_;
  s.shape = shape;
  s.bounds = bounds;
  s.device_id = device_id;
  s.workspace = static_cast<unsigned char*>(workspace);
  // No CUDA call when the bounds give max_work_units (CPU tests rely on it).
  s.bounds.max_work_units = resolved_max_work_units(bounds, device_id);
  s.layout = plan::decode_workspace_layout(s.bounds.max_batch_size, s.bounds.max_work_units,
                                           shape.num_qo_heads, shape.head_dim);
  TESSERA_CHECK_ARG(workspace_bytes >= s.layout.total_bytes, "workspace",
                    "at least " + std::to_string(s.layout.total_bytes) +
                        " bytes (workspace_size_bytes(shape, bounds))",
                    std::to_string(workspace_bytes) + " bytes");
  s.upload = std::make_unique<detail::ScheduleUpload>(
      s.layout.merge_indptr_offset +
      static_cast<std::size_t>(s.bounds.max_batch_size + 1) * sizeof(int32_t));
  const auto max_batch = static_cast<std::size_t>(s.bounds.max_batch_size);
  s.kv_lengths.reserve(max_batch);
  s.planned_indptr.reserve(max_batch + 1);
  s.planned_last_page_len.reserve(max_batch);
}

BatchDecodeWithPagedKVCache::~BatchDecodeWithPagedKVCache() = default;

std::size_t BatchDecodeWithPagedKVCache::workspace_size_bytes(const DecodePlanShape& shape,
                                                              const DecodePlanBounds& bounds,
                                                              int device_id) {
  detail::validate_decode_shape(shape);
  detail::validate_decode_bounds(bounds);
  TESSERA_CHECK_ARG(device_id >= 0, "device_id", "a CUDA device index >= 0",
                    std::to_string(device_id));
  return plan::decode_workspace_layout(bounds.max_batch_size,
                                       resolved_max_work_units(bounds, device_id),
                                       shape.num_qo_heads, shape.head_dim)
      .total_bytes;
}

void BatchDecodeWithPagedKVCache::plan(std::span<const int32_t> kv_indptr,
                                       std::span<const int32_t> kv_last_page_len,
                                       cudaStream_t stream, const DecodePlanOptions& options) {
  State& s = *state_;
  TESSERA_CHECK_ARG(options.fixed_split_size >= 0 &&
                        options.fixed_split_size <= std::numeric_limits<int32_t>::max(),
                    "fixed_split_size", "0 (planner's choice) or a chunk length in KV tokens",
                    std::to_string(options.fixed_split_size));
  detail::plan_kv_lengths(kv_indptr, kv_last_page_len, s.shape.page_size,
                          s.bounds.max_batch_size, s.kv_lengths);
  s.planned = false;  // until this plan's copy is enqueued

  DeviceGuard guard(s.device_id);
  detail::expect_stream_not_capturing(stream);
  if (s.num_sms == 0) s.num_sms = device_sm_count(s.device_id);

  plan::DecodePlannerInput input;
  input.kv_lengths = s.kv_lengths;
  input.kv_indptr = kv_indptr;
  input.num_kv_heads = s.shape.num_kv_heads;
  input.num_sms = s.num_sms;
  input.ctas_per_sm = detail::kDecodeCtasPerSm;
  input.max_work_units = s.layout.max_work_units;
  input.max_partials = s.layout.max_partials;
  input.fixed_chunk_tokens = options.fixed_split_size;
  const plan::DecodeScheduleHost schedule = plan::plan_decode_schedule(input);

  unsigned char* staging = s.upload->acquire();
  std::memcpy(staging + s.layout.header_offset, &schedule.header, sizeof(schedule.header));
  std::memcpy(staging + s.layout.work_units_offset, schedule.work_units.data(),
              schedule.work_units.size() * sizeof(DecodeWorkUnit));
  std::memcpy(staging + s.layout.merge_indptr_offset, schedule.merge_indptr.data(),
              schedule.merge_indptr.size() * sizeof(int32_t));
  // One copy from the header to the end of this plan's merge_indptr (the
  // regions are consecutive; unused unit slots in between are ignored).
  const std::size_t copy_bytes =
      s.layout.merge_indptr_offset + schedule.merge_indptr.size() * sizeof(int32_t);
  s.upload->commit(s.workspace, copy_bytes, stream);

  s.planned = true;
  s.planned_batch = static_cast<int64_t>(kv_last_page_len.size());
  s.planned_partials = schedule.header.num_partials;
  s.planned_units = schedule.header.num_work_units;
  s.backend = options.backend;
  s.planned_indptr.assign(kv_indptr.begin(), kv_indptr.end());
  s.planned_last_page_len.assign(kv_last_page_len.begin(), kv_last_page_len.end());
}

void BatchDecodeWithPagedKVCache::run(const DLTensor& q, const PagedKVCacheArg& paged_kv_cache,
                                      const DLTensor& kv_indices, const DLTensor& kv_indptr,
                                      const DLTensor& kv_last_page_len, const DLTensor& out,
                                      const DLTensor* lse, const AttentionOptions& options,
                                      cudaStream_t stream, Validate validate) {
  const State& s = *state_;
  TESSERA_CHECK_ARG(s.planned, "plan", "plan() called before run()", "run() without a plan");
  const DecodePlanShape& shape = s.shape;
  const int64_t batch = s.planned_batch;

  const TensorView qv(q, "q");
  qv.expect_ndim(3).expect_cuda().expect_last_dim_contiguous().expect_dtype(
      {DType::kFloat16, DType::kBFloat16});
  // Rows past the planned batch are allowed (CUDA-graph buffers are sized for
  // the bounds) and left untouched.
  TESSERA_CHECK_ARG(qv.size(0) >= batch && qv.size(0) <= s.bounds.max_batch_size, "q",
                    "between the planned batch " + std::to_string(batch) + " and max_batch_size " +
                        std::to_string(s.bounds.max_batch_size) + " rows",
                    std::to_string(qv.size(0)) + " rows");
  qv.expect_size(1, shape.num_qo_heads, "num_qo_heads of the plan shape");
  qv.expect_size(2, shape.head_dim, "head_dim of the plan shape");

  const detail::ResolvedPagedKV cache = detail::resolve_paged_kv_cache(paged_kv_cache);
  const TensorView cache_view(paged_kv_cache.first(), cache.name);
  cache_view.expect_dtype(
      {DType::kFloat16, DType::kBFloat16, DType::kFloat8E4M3, DType::kFloat8E5M2});
  expect_same_device(qv, cache_view);
  TESSERA_CHECK_ARG(
      cache.dtype == qv.dtype() || is_float8(cache.dtype), cache.name,
      std::string("dtype ") + dtype_name(qv.dtype()) + " (q's), float8_e4m3fn or float8_e5m2",
      dtype_name(cache.dtype));
  detail::expect_cache_matches_plan(cache, shape.num_kv_heads, shape.head_dim, shape.page_size);

  const TensorView outv = detail::output_like_q(out, qv);
  float* lse_data = nullptr;
  if (lse != nullptr) {
    const TensorView lsev(*lse, "lse");
    lsev.expect_dtype({DType::kFloat32}).expect_ndim(2).expect_cuda().expect_contiguous();
    lsev.expect_size(0, qv.size(0), "q's rows");
    lsev.expect_size(1, shape.num_qo_heads, "num_qo_heads of the plan shape");
    expect_same_device(qv, lsev);
    lse_data = lsev.data_as<float>();
  }

  const detail::PagedIndexViews index = detail::resolve_paged_indices(
      kv_indices, kv_indptr, kv_last_page_len, qv, batch, s.planned_indptr.back());
  const TensorView& indices_view = index.indices;
  const TensorView& indptr_view = index.indptr;
  const TensorView& last_view = index.last_page_len;

  // Validates the options and the ALiBi slopes tensor (named errors).
  const detail::ResolvedVariant variant =
      detail::resolve_variant(options, shape.head_dim, shape.num_qo_heads, qv.device());
  detail::expect_no_custom_mask(options);
  // A JIT variant for another kernel is rejected here, not mid-capture.
  const void* jit_kernel = detail::jit_kernel_for(options, jit::KernelKind::kBatchDecode,
                                                  qv.dtype(), cache.dtype, shape.head_dim);
  detail::expect_rows_aligned16(cache);  // the kernel gathers K/V rows with 16-byte cp.async
  if (batch == 0) return;

  DeviceGuard guard(qv.device().device_id);
  const bool capturing = detail::stream_is_capturing(stream);
  if (validation_requested(validate)) {
    detail::expect_validation_outside_capture(capturing);
    const std::vector<int32_t> host_indices = copy_to_host(indices_view, stream);
    std::vector<int32_t> host_indptr = copy_to_host(indptr_view, stream);
    std::vector<int32_t> host_last = copy_to_host(last_view, stream);
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
    // Only the planned requests count; graph-sized arrays may hold more.
    host_indptr.resize(static_cast<std::size_t>(batch + 1));
    host_last.resize(static_cast<std::size_t>(batch));
    detail::validate_append_indices({{}, {}, host_indices, host_indptr, host_last},
                                    cache.num_pages, cache.page_size);
    TESSERA_CHECK_ARG(host_indptr == s.planned_indptr, "kv_indptr",
                      "the values plan() saw", "different values on the device");
    TESSERA_CHECK_ARG(host_last == s.planned_last_page_len, "kv_last_page_len",
                      "the values plan() saw", "different values on the device");
  }

  detail::DecodeLaunch launch{};
  launch.q = qv.data();
  launch.q_dtype = qv.dtype();
  launch.q_stride_batch = qv.stride(0);
  launch.q_stride_head = qv.stride(1);
  launch.out = outv.data();
  launch.out_stride_batch = outv.stride(0);
  launch.out_stride_head = outv.stride(1);
  launch.lse = lse_data;
  launch.kv = cache;
  // The kernels take kv_indptr / kv_last_page_len from the plan (the work
  // units); the device arrays were checked above (shapes; values in
  // validation mode).
  launch.kv_indices = indices_view.data_as<const int32_t>();
  launch.num_qo_heads = shape.num_qo_heads;
  launch.num_kv_heads = shape.num_kv_heads;
  launch.head_dim = shape.head_dim;
  const plan::DecodeWorkspaceLayout& layout = s.layout;
  launch.schedule.header =
      reinterpret_cast<const DecodeScheduleHeader*>(s.workspace + layout.header_offset);
  launch.schedule.work_units =
      reinterpret_cast<const DecodeWorkUnit*>(s.workspace + layout.work_units_offset);
  launch.schedule.merge_indptr =
      reinterpret_cast<const int32_t*>(s.workspace + layout.merge_indptr_offset);
  launch.schedule.partial_out = reinterpret_cast<float*>(s.workspace + layout.partial_out_offset);
  launch.schedule.partial_lse = reinterpret_cast<float*>(s.workspace + layout.partial_lse_offset);
  launch.grid_units = detail::grid_units(capturing, layout.max_work_units, s.planned_units);
  launch.options = options;
  launch.jit_kernel = jit_kernel;
  launch.options.sm_scale = detail::resolved_sm_scale(options, shape.head_dim);
  launch.alibi_slopes = variant.params.alibi_slopes;
  launch.backend = s.backend;

  detail::launch_decode(launch, stream);
  // While capturing, a later plan may split requests, so the graph needs the
  // merge regardless; outside a graph it is skipped when nothing is split.
  if (capturing || s.planned_partials > 0) {
    detail::launch_decode_merge(launch, detail::grid_units(capturing, layout.max_batch_size, batch),
                                stream);
  }
}

}  // namespace tessera
