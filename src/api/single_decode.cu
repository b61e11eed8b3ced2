// single_decode_with_kv_cache: one query token against one contiguous K/V.
// Validates every argument, views K/V as a paged cache with ONE page
// (page_size = kv_len, kv_indices = {0}), splits the KV range over the SMs
// with the decode planner, stages the schedule and index arrays in
// stream-ordered device memory (one upload, freed on the stream after the
// kernels), then runs the decode kernel and the merge of split partials.
// Not capturable in a CUDA graph (pageable upload); the batch plan/run API is.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "api/attention_variant.h"
#include "api/contiguous_kv.h"
#include "api/decode_launch.h"
#include "api/plan_run.h"
#include "plan/decode_planner.h"
#include "plan/workspace_regions.h"
#include "tessera/api/decode.h"
#include "tessera/attention/decode.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/attention/head_dims.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

constexpr std::size_t kKVAlignmentBytes = 16;  // cp.async rows
using plan::align_region;

bool supported_head_dim(int64_t head_dim) {
  return attention::supported_head_dim(head_dim);
}

void check_kv_tensor(const TensorView& t, const TensorView& q) {
  t.expect_ndim(3).expect_cuda().expect_last_dim_contiguous();
  TESSERA_CHECK_ARG(
      t.dtype() == q.dtype() || is_float8(t.dtype()), t.name(),
      std::string("dtype ") + dtype_name(q.dtype()) + " (as q), float8_e4m3fn or float8_e5m2",
      dtype_name(t.dtype()));
  expect_same_device(q, t);
  t.expect_size(2, q.size(1), "head_dim (as q)");
  TESSERA_CHECK_ARG(t.numel() == 0 || t.rows_aligned_to(kKVAlignmentBytes), t.name(),
                    "16-byte aligned data and strides (the kernel copies 16-byte rows)",
                    "unaligned data or strides");
}

// The staged arrays: schedule (planner layout) then kv_indices (the one
// page), each region 256-aligned.
struct StagedLayout {
  plan::DecodeWorkspaceLayout schedule;
  std::size_t indices_offset;
  std::size_t total_bytes;
};

StagedLayout staged_layout(int64_t max_work_units, int64_t num_qo_heads, int64_t head_dim) {
  StagedLayout l{};
  l.schedule = plan::decode_workspace_layout(/*max_batch_size=*/1, max_work_units, num_qo_heads,
                                             head_dim);
  l.indices_offset = align_region(l.schedule.total_bytes);
  l.total_bytes = align_region(l.indices_offset + sizeof(int32_t));
  return l;
}

template <typename T>
void put(std::vector<unsigned char>& bytes, std::size_t offset, const T* values, std::size_t n) {
  std::memcpy(bytes.data() + offset, values, n * sizeof(T));
}

}  // namespace

void single_decode_with_kv_cache(const DLTensor& q, const DLTensor& k, const DLTensor& v,
                                 const DLTensor& out, const DLTensor* lse, KVLayout layout,
                                 const AttentionOptions& options, cudaStream_t stream,
                                 DecodeBackend backend) {
  // ---- validation: every argument, before any CUDA call
  const TensorView qv(q, "q");
  qv.expect_ndim(2).expect_dtype({DType::kFloat16, DType::kBFloat16}).expect_cuda();
  qv.expect_last_dim_contiguous();
  const int64_t num_qo_heads = qv.size(0);
  const int64_t head_dim = qv.size(1);
  TESSERA_CHECK_ARG(supported_head_dim(head_dim), "q", attention::kHeadDimsText,
                    "head_dim " + std::to_string(head_dim));

  const TensorView kv(k, "k");
  const TensorView vv(v, "v");
  check_kv_tensor(kv, qv);
  check_kv_tensor(vv, qv);
  const detail::ContiguousKV kv_shape = detail::resolve_contiguous_kv(kv, vv, layout, num_qo_heads);
  const int64_t kv_len = kv_shape.kv_len;
  const int64_t num_kv_heads = kv_shape.num_kv_heads;
  TESSERA_CHECK_ARG(num_kv_heads <= 65535, "k", "num_kv_heads <= 65535 (grid.y)",
                    std::to_string(num_kv_heads));

  const TensorView ov = detail::output_like_q(out, qv);
  float* lse_data = nullptr;
  if (lse != nullptr) {
    const TensorView lv(*lse, "lse");
    lv.expect_dtype({DType::kFloat32}).expect_ndim(1).expect_cuda().expect_contiguous();
    lv.expect_size(0, num_qo_heads, "num_qo_heads");
    expect_same_device(qv, lv);
    lse_data = lv.data_as<float>();
  }
  detail::ResolvedVariant variant =
      detail::resolve_variant(options, head_dim, num_qo_heads, qv.device());
  detail::expect_no_custom_mask(options);
  // A JIT variant for another kernel is rejected before any allocation.
  const void* jit_kernel = detail::jit_kernel_for(options, jit::KernelKind::kBatchDecode,
                                                  qv.dtype(), kv.dtype(), head_dim);
  if (num_qo_heads == 0) return;  // nothing to compute

  // ---- the one-page view of K/V
  detail::ResolvedPagedKV cache{};
  cache.dtype = kv.dtype();
  cache.device = kv.device();
  cache.k_data = kv.data();
  cache.v_data = vv.data();
  cache.num_pages = 1;
  cache.page_size = std::max<int64_t>(kv_len, 1);
  cache.num_heads = num_kv_heads;
  cache.head_dim = head_dim;
  cache.stride_page = 0;  // only page 0 exists
  cache.stride_entry = kv_shape.stride_entry;
  cache.stride_head = kv_shape.stride_head;
  cache.name = "k";

  DeviceGuard guard(qv.device().device_id);
  const int64_t num_sms = detail::device_sm_count(qv.device().device_id);

  // ---- schedule: enough chunks for a full wave of CTAs over the KV heads
  const int64_t wave_ctas = num_sms * decode::kMinCtasPerSm;
  const int64_t max_work_units = std::max<int64_t>(1, (wave_ctas + num_kv_heads - 1) / num_kv_heads);
  const StagedLayout staged = staged_layout(max_work_units, num_qo_heads, head_dim);
  const int64_t lengths[1] = {kv_len};
  plan::DecodePlannerInput input{};
  input.kv_lengths = lengths;
  input.num_kv_heads = num_kv_heads;
  input.num_sms = num_sms;
  input.ctas_per_sm = decode::kMinCtasPerSm;
  input.max_work_units = max_work_units;
  input.max_partials = staged.schedule.max_partials;
  const plan::DecodeScheduleHost schedule = plan::plan_decode_schedule(input);

  std::vector<unsigned char> host(staged.total_bytes, 0);
  put(host, staged.schedule.header_offset, &schedule.header, 1);
  put(host, staged.schedule.work_units_offset, schedule.work_units.data(),
      schedule.work_units.size());
  put(host, staged.schedule.merge_indptr_offset, schedule.merge_indptr.data(),
      schedule.merge_indptr.size());
  const int32_t kv_indices[1] = {0};
  put(host, staged.indices_offset, kv_indices, 1);

  void* device_buffer = nullptr;
  TESSERA_CUDA_CHECK(cudaMallocAsync(&device_buffer, staged.total_bytes, stream));
  auto* base = static_cast<unsigned char*>(device_buffer);
  // From pageable memory: returns once `host` is staged, so it may go out of scope.
  const cudaError_t copied =
      cudaMemcpyAsync(base, host.data(), staged.total_bytes, cudaMemcpyHostToDevice, stream);
  if (copied != cudaSuccess) {
    cudaFreeAsync(device_buffer, stream);
    TESSERA_CUDA_CHECK(copied);
  }

  detail::DecodeLaunch launch{};
  launch.q = qv.data();
  launch.q_dtype = qv.dtype();
  launch.q_stride_batch = 0;  // one request
  launch.q_stride_head = qv.stride(0);
  launch.out = ov.data();
  launch.out_stride_batch = 0;
  launch.out_stride_head = ov.stride(0);
  launch.lse = lse_data;
  launch.kv = cache;
  launch.kv_indices = reinterpret_cast<const int32_t*>(base + staged.indices_offset);
  launch.num_qo_heads = num_qo_heads;
  launch.num_kv_heads = num_kv_heads;
  launch.head_dim = head_dim;
  launch.schedule.header =
      reinterpret_cast<const DecodeScheduleHeader*>(base + staged.schedule.header_offset);
  launch.schedule.work_units =
      reinterpret_cast<const DecodeWorkUnit*>(base + staged.schedule.work_units_offset);
  launch.schedule.merge_indptr =
      reinterpret_cast<const int32_t*>(base + staged.schedule.merge_indptr_offset);
  launch.schedule.partial_out = reinterpret_cast<float*>(base + staged.schedule.partial_out_offset);
  launch.schedule.partial_lse = reinterpret_cast<float*>(base + staged.schedule.partial_lse_offset);
  // The plan is this call's own (a graph captures it too): launch only the
  // units it made.
  launch.grid_units = std::max<int64_t>(1, schedule.header.num_work_units);
  launch.options = options;
  launch.jit_kernel = jit_kernel;
  launch.options.sm_scale = variant.params.sm_scale;
  launch.alibi_slopes = variant.params.alibi_slopes;
  launch.backend = backend;

  try {
    detail::launch_decode(launch, stream);
    if (schedule.header.num_partials > 0) detail::launch_decode_merge(launch, 1, stream);
  } catch (...) {
    cudaFreeAsync(device_buffer, stream);  // stream-ordered: after anything already queued
    throw;
  }
  TESSERA_CUDA_CHECK(cudaFreeAsync(device_buffer, stream));
}

}  // namespace tessera
