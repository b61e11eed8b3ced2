// BatchMlaPagedAttention (tessera/api/mla.h): the batch prefill planner
// with one KV head, the heads packed into 64-row tiles and the latent's
// 512 values as head_dim (plan/mla_plan.h); the Hopper or mma.sync MLA
// kernel (attention/mla/), then the MLA merge for split units.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "api/batch_prefill_plan.h"
#include "api/index_tensor.h"
#include "api/plan_run.h"
#include "api/prefill_backend.h"
#include "api/schedule_upload.h"
#include "plan/mla_plan.h"
#include "plan/prefill_planner.h"
#include "tessera/api/mla.h"
#include "tessera/attention/mla/kernel_sm80.cuh"
#include "tessera/attention/mla/kernel_sm90.cuh"
#include "tessera/attention/mla/merge.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/numeric.cuh"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

void validate_shape(const MlaPlanShape& shape) {
  TESSERA_CHECK_ARG(shape.num_heads >= 1 && shape.num_heads <= 65535, "num_heads", "in [1, 65535]",
                    std::to_string(shape.num_heads));
  TESSERA_CHECK_ARG(shape.head_dim_ckv == mla::kDimCkv, "head_dim_ckv", "512",
                    std::to_string(shape.head_dim_ckv));
  TESSERA_CHECK_ARG(shape.head_dim_kpe == mla::kDimKpe, "head_dim_kpe", "64",
                    std::to_string(shape.head_dim_kpe));
  TESSERA_CHECK_ARG(shape.page_size >= 1 && shape.page_size <= kInt32Max, "page_size",
                    "in [1, 2^31)", std::to_string(shape.page_size));
}

void validate_bounds(const MlaPlanBounds& bounds) {
  TESSERA_CHECK_ARG(bounds.max_batch_size >= 1 && bounds.max_batch_size < kInt32Max, "bounds",
                    "max_batch_size in [1, 2^31 - 1)", std::to_string(bounds.max_batch_size));
  TESSERA_CHECK_ARG(bounds.max_total_qo_tokens >= 1 && bounds.max_total_qo_tokens < kInt32Max,
                    "bounds", "max_total_qo_tokens in [1, 2^31 - 1)",
                    std::to_string(bounds.max_total_qo_tokens));
}

// Whether the Hopper kernel runs the calls: the backend asked for, checked
// against the device (named errors where it cannot run).
bool resolve_hopper(PrefillBackend backend, int device_id) {
  const bool sm90a = detail::device_runs_sm90a(device_id);
  if (backend == PrefillBackend::kFa3) {
    TESSERA_CHECK_ARG(sm90a, "backend", "fa2 or auto on this GPU (fa3 needs sm_90a)",
                      "fa3 on compute capability " +
                          std::to_string(detail::device_compute_major(device_id)) + ".x");
  }
  if (backend == PrefillBackend::kFa3 || (backend == PrefillBackend::kAuto && sm90a)) return true;
  int per_block = 0;
  TESSERA_CUDA_CHECK(
      cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_id));
  TESSERA_CHECK_ARG(
      detail::device_compute_major(device_id) >= 8 && per_block >= mla_sm80::kSharedBytes, "device",
      "an sm_80+ GPU with " + std::to_string(mla_sm80::kSharedBytes) +
          " bytes of shared memory per block (A100, H100)",
      std::to_string(per_block) + " bytes");
  return false;
}

static_assert(mla_sm90::kBlockM == plan::kMlaQTileRows &&
                  mla_sm80::kBlockM == plan::kMlaQTileRows &&
                  mla::kMergeTileRows == plan::kMlaQTileRows,
              "one q tile for the planner, both kernels and the merge");
static_assert(mla::kDimCkv == plan::kMlaDimCkv && mla::kMergeSlices == plan::kMlaMergeSlices &&
                  mla::kMergeMinBlocksPerSm == plan::kMlaMergeBlocksPerSm,
              "the merge items and blocks the host counts are the kernel's");
// Chunks are multiples of the planner's 64 tokens: whole K/V tiles of both
// kernels (64 rows sm90, 32 sm80).
static_assert(64 % mla_sm90::kBlockN == 0 && 64 % mla_sm80::kBlockN == 0,
              "a chunk boundary never falls inside a K/V tile");

// Workspace: the batch prefill layout with one KV head and the latent's
// 512 values, split-KV room for two waves of 64-row units
// (plan::derive_mla_bounds) as far as workspace_bytes allows.
plan::PrefillWorkspaceLayout mla_layout(const MlaPlanShape& shape, const MlaPlanBounds& bounds,
                                        int64_t num_sms, plan::PrefillDerivedBounds& derived,
                                        std::size_t workspace_bytes) {
  derived = plan::derive_mla_bounds(bounds.max_batch_size, bounds.max_total_qo_tokens,
                                    shape.num_heads, num_sms);
  return detail::prefill_layout_within(shape.num_heads, 1, mla::kDimCkv, derived,
                                       workspace_bytes);
}

}  // namespace

struct BatchMlaPagedAttention::State {
  MlaPlanShape shape;
  MlaPlanBounds bounds;
  unsigned char* workspace = nullptr;
  int device_id = 0;
  int64_t num_sms = 0;
  plan::PrefillDerivedBounds derived;
  plan::PrefillWorkspaceLayout layout;
  std::unique_ptr<detail::ScheduleUpload> upload;
  bool hopper = false;  // the sm90 kernel, else the sm80 one
  bool planned = false;
  bool split = false;
  int64_t planned_units = 0;
  int64_t planned_merge_tiles = 0;
  std::vector<int32_t> qo_indptr;
  std::vector<int32_t> kv_indptr;
  std::vector<int32_t> kv_len;
  std::vector<int64_t> kv_lengths;

  PrefillScheduleView schedule() const { return detail::prefill_schedule_view(workspace, layout); }
};

BatchMlaPagedAttention::BatchMlaPagedAttention(const MlaPlanShape& shape,
                                               const MlaPlanBounds& bounds, void* workspace,
                                               std::size_t workspace_bytes, int device_id)
    : state_(std::make_unique<State>()) {
  validate_shape(shape);
  validate_bounds(bounds);
  detail::expect_workspace_argument(workspace, device_id);
  State& s = *state_;
  s.hopper = resolve_hopper(shape.backend, device_id);
  s.shape = shape;
  s.bounds = bounds;
  s.workspace = static_cast<unsigned char*>(workspace);
  s.device_id = device_id;
  s.num_sms = detail::device_sm_count(device_id);
  s.layout = mla_layout(shape, bounds, s.num_sms, s.derived, workspace_bytes);
  TESSERA_CHECK_ARG(workspace_bytes >= s.layout.total_bytes, "workspace",
                    "at least " + std::to_string(s.layout.total_bytes) +
                        " bytes (min_workspace_size_bytes(shape, bounds))",
                    std::to_string(workspace_bytes) + " bytes");
  s.upload = std::make_unique<detail::ScheduleUpload>(s.layout.partial_out_offset);
}

BatchMlaPagedAttention::~BatchMlaPagedAttention() = default;

std::size_t BatchMlaPagedAttention::workspace_size_bytes(const MlaPlanShape& shape,
                                                         const MlaPlanBounds& bounds,
                                                         int device_id) {
  validate_shape(shape);
  validate_bounds(bounds);
  plan::PrefillDerivedBounds derived;
  return mla_layout(shape, bounds, detail::device_sm_count(device_id), derived, SIZE_MAX)
      .total_bytes;
}

std::size_t BatchMlaPagedAttention::min_workspace_size_bytes(const MlaPlanShape& shape,
                                                             const MlaPlanBounds& bounds,
                                                             int device_id) {
  validate_shape(shape);
  validate_bounds(bounds);
  plan::PrefillDerivedBounds derived;
  return mla_layout(shape, bounds, detail::device_sm_count(device_id), derived, 0).total_bytes;
}

void BatchMlaPagedAttention::plan(std::span<const int32_t> qo_indptr,
                                  std::span<const int32_t> kv_indptr,
                                  std::span<const int32_t> kv_len, bool causal,
                                  cudaStream_t stream) {
  State& s = *state_;
  s.planned = false;
  TESSERA_CHECK_ARG(!qo_indptr.empty(), "qo_indptr", "batch + 1 values", "none");
  const std::size_t batch = qo_indptr.size() - 1;
  TESSERA_CHECK_ARG(kv_indptr.size() == batch + 1, "kv_indptr",
                    std::to_string(batch + 1) + " values (qo_indptr's)",
                    std::to_string(kv_indptr.size()));
  TESSERA_CHECK_ARG(kv_len.size() == batch, "kv_len", std::to_string(batch) + " values",
                    std::to_string(kv_len.size()));
  TESSERA_CHECK_ARG(kv_indptr[0] == 0, "kv_indptr", "kv_indptr[0] == 0",
                    std::to_string(kv_indptr[0]));
  s.kv_lengths.assign(batch, 0);
  for (std::size_t b = 0; b < batch; ++b) {
    TESSERA_CHECK_ARG(
        kv_indptr[b + 1] >= kv_indptr[b], "kv_indptr", "non-decreasing",
        "kv_indptr[" + std::to_string(b + 1) + "] < kv_indptr[" + std::to_string(b) + "]");
    const int64_t room = int64_t{kv_indptr[b + 1] - kv_indptr[b]} * s.shape.page_size;
    TESSERA_CHECK_ARG(kv_len[b] >= 0 && kv_len[b] <= room, "kv_len",
                      "in [0, pages x page_size] of its request",
                      "kv_len[" + std::to_string(b) + "] " + std::to_string(kv_len[b]) +
                          " with room for " + std::to_string(room));
    s.kv_lengths[b] = kv_len[b];
  }
  const plan::PrefillPlannerInput input = plan::mla_planner_input(
      qo_indptr, s.kv_lengths, kv_indptr, s.shape.num_heads, causal, s.num_sms,
      s.bounds.max_batch_size, s.bounds.max_total_qo_tokens, s.derived);
  const plan::PrefillScheduleHost schedule = plan::plan_prefill_schedule(input);
  if (schedule.header.num_ctas > s.derived.max_ctas ||
      static_cast<int64_t>(schedule.merge_tiles.size()) > s.derived.max_work_units / 2) {
    throw Error("tessera: MLA planner exceeded the workspace bounds");
  }
  DeviceGuard guard(s.device_id);
  detail::expect_stream_not_capturing(stream);
  unsigned char* staging = s.upload->acquire();
  s.upload->commit(s.workspace, detail::stage_prefill_schedule(staging, schedule, s.layout),
                   stream);
  s.planned = true;
  s.split = schedule.header.split_kv != 0;
  s.planned_units = schedule.header.num_work_units;
  s.planned_merge_tiles = schedule.header.num_merge_tiles;
  s.qo_indptr.assign(qo_indptr.begin(), qo_indptr.end());
  s.kv_indptr.assign(kv_indptr.begin(), kv_indptr.end());
  s.kv_len.assign(kv_len.begin(), kv_len.end());
}

namespace {

// Device arrays against the plan's, page ids against the cache (validation
// mode: copies and synchronises).
struct PlannedArrays {
  const std::vector<int32_t>& qo_indptr;
  const std::vector<int32_t>& kv_indptr;
  const std::vector<int32_t>& kv_len;
};

void validate_device_arrays(const PlannedArrays& s, const TensorView& qo_indptr,
                            const TensorView& kv_indptr, const TensorView& kv_len,
                            const TensorView& kv_indices, int64_t num_pages, cudaStream_t stream) {
  const std::vector<int32_t> qo = detail::copy_to_host(qo_indptr, stream);
  const std::vector<int32_t> kv = detail::copy_to_host(kv_indptr, stream);
  const std::vector<int32_t> len = detail::copy_to_host(kv_len, stream);
  const std::vector<int32_t> pages = detail::copy_to_host(kv_indices, stream);
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  // The planned prefix: a CUDA-graph caller passes its whole fixed buffers.
  const auto same_prefix = [](const std::vector<int32_t>& device,
                              const std::vector<int32_t>& planned) {
    return device.size() >= planned.size() &&
           std::equal(planned.begin(), planned.end(), device.begin());
  };
  TESSERA_CHECK_ARG(same_prefix(qo, s.qo_indptr), "qo_indptr", "the values plan() saw",
                    "different values");
  TESSERA_CHECK_ARG(same_prefix(kv, s.kv_indptr), "kv_indptr", "the values plan() saw",
                    "different values");
  TESSERA_CHECK_ARG(same_prefix(len, s.kv_len), "kv_len", "the values plan() saw",
                    "different values");
  for (int32_t i = 0; i < s.kv_indptr.back(); ++i) {
    TESSERA_CHECK_ARG(pages[i] >= 0 && pages[i] < num_pages, "kv_indices",
                      "page ids in [0, " + std::to_string(num_pages) + ")",
                      "kv_indices[" + std::to_string(i) + "] = " + std::to_string(pages[i]));
  }
}

// The grids: the plan's (or, capturing, the bounds') CTAs and merge tiles.
struct MlaLaunch {
  int64_t num_sms;
  int64_t num_heads;
  int64_t max_ctas;
  int64_t planned_units;
  int64_t planned_merge_tiles;
  bool split;
  bool capturing;
  bool hopper;
};

template <typename T>
void launch_mla(mla::Params<T>& p, const MlaLaunch& s, const int32_t* qo_indptr,
                cudaStream_t stream) {
  const bool capturing = s.capturing;
  const int64_t jobs = detail::grid_units(capturing, s.max_ctas, s.planned_units);
  void* args[] = {&p};
  if (s.hopper) {
    // Persistent: one CTA per SM takes the units as jobs.
    const void* kernel = reinterpret_cast<const void*>(&mla_sm90::mla_sm90_kernel<T>);
    TESSERA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            mla_sm90::kSharedBytes));
    const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, std::min(s.num_sms, jobs))));
    TESSERA_CUDA_CHECK(cudaLaunchKernel(kernel, grid, dim3(mla_sm90::kThreads), args,
                                        mla_sm90::kSharedBytes, stream));
  } else {
    // One CTA per unit (a captured grid holds the bounds' units; the rest exit).
    const void* kernel = reinterpret_cast<const void*>(&mla_sm80::mla_sm80_kernel<T>);
    TESSERA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            mla_sm80::kSharedBytes));
    const dim3 grid(static_cast<unsigned>(std::max<int64_t>(1, jobs)));
    TESSERA_CUDA_CHECK(cudaLaunchKernel(kernel, grid, dim3(mla_sm80::kThreads), args,
                                        mla_sm80::kSharedBytes, stream));
  }
  if (!s.split && !capturing) return;
  mla::MergeParams<T> m{};
  m.schedule = p.schedule;
  m.qo_indptr = qo_indptr;
  m.out = p.out;
  m.out_stride_token = p.out_stride_token;
  m.out_stride_head = p.out_stride_head;
  m.lse = p.lse;
  m.num_heads = p.num_heads;
  // Blocks striding over (merge tile, row, column slice) items: a split
  // request's rows x 4 slices spread over the SMs (mla/merge.cuh says why
  // the prefill merge's block per tile did not).
  const int64_t blocks = plan::mla_merge_blocks(capturing, s.num_sms, s.planned_merge_tiles);
  mla::mla_merge_kernel<T>
      <<<dim3(static_cast<unsigned>(blocks)), mla::kMergeThreads, 0, stream>>>(m);
  TESSERA_CHECK_LAUNCH();
}

}  // namespace

void BatchMlaPagedAttention::run(const DLTensor& q_nope_arg, const DLTensor& q_pe_arg,
                                 const DLTensor& ckv_arg, const DLTensor& kpe_arg,
                                 const DLTensor& kv_indices_arg, const DLTensor& qo_indptr_arg,
                                 const DLTensor& kv_indptr_arg, const DLTensor& kv_len_arg,
                                 const DLTensor& out_arg, const DLTensor* lse_arg,
                                 const MlaRunOptions& options, cudaStream_t stream,
                                 Validate validate) {
  const State& s = *state_;
  TESSERA_CHECK_ARG(s.planned, "plan", "plan() before run()", "no plan");
  const int64_t heads = s.shape.num_heads;
  const int64_t tokens = s.qo_indptr.back();
  const TensorView q_nope(q_nope_arg, "q_nope");
  q_nope.expect_cuda().expect_dtype({DType::kFloat16, DType::kBFloat16}).expect_ndim(3);
  q_nope.expect_last_dim_contiguous();
  TESSERA_CHECK_ARG(q_nope.size(0) >= tokens, "q_nope",
                    "at least the planned " + std::to_string(tokens) + " tokens",
                    q_nope.shape_string());
  q_nope.expect_size(1, heads, "num_heads").expect_size(2, mla::kDimCkv, "head_dim_ckv");
  const TensorView q_pe(q_pe_arg, "q_pe");
  q_pe.expect_ndim(3).expect_last_dim_contiguous();
  expect_same_device(q_nope, q_pe);
  expect_same_dtype(q_nope, q_pe);
  TESSERA_CHECK_ARG(q_pe.size(0) >= tokens, "q_pe",
                    "at least the planned " + std::to_string(tokens) + " tokens",
                    q_pe.shape_string());
  q_pe.expect_size(1, heads, "num_heads").expect_size(2, mla::kDimKpe, "head_dim_kpe");
  const TensorView ckv(ckv_arg, "ckv_cache");
  ckv.expect_ndim(3).expect_last_dim_contiguous();
  expect_same_device(q_nope, ckv);
  expect_same_dtype(q_nope, ckv);
  ckv.expect_size(1, s.shape.page_size, "page_size").expect_size(2, mla::kDimCkv, "head_dim_ckv");
  const TensorView kpe(kpe_arg, "kpe_cache");
  kpe.expect_ndim(3).expect_last_dim_contiguous();
  expect_same_device(q_nope, kpe);
  expect_same_dtype(q_nope, kpe);
  kpe.expect_size(0, ckv.size(0), "ckv_cache's pages")
      .expect_size(1, s.shape.page_size, "page_size")
      .expect_size(2, mla::kDimKpe, "head_dim_kpe");
  const TensorView out(out_arg, "out");
  out.expect_ndim(3).expect_last_dim_contiguous();
  expect_same_device(q_nope, out);
  expect_same_dtype(q_nope, out);
  TESSERA_CHECK_ARG(out.size(0) >= tokens, "out",
                    "at least the planned " + std::to_string(tokens) + " tokens",
                    out.shape_string());
  out.expect_size(1, heads, "num_heads").expect_size(2, mla::kDimCkv, "head_dim_ckv");
  for (const TensorView* v : {&q_nope, &q_pe, &ckv, &kpe, &out}) {
    TESSERA_CHECK_ARG(v->rows_aligned_to(16), std::string(v->name()),
                      "16-byte aligned rows (data pointer and strides)", v->shape_string());
  }
  float* lse = nullptr;
  if (lse_arg != nullptr) {
    const TensorView l(*lse_arg, "lse");
    l.expect_dtype({DType::kFloat32}).expect_ndim(2).expect_contiguous();
    expect_same_device(q_nope, l);
    TESSERA_CHECK_ARG(l.size(0) >= tokens && l.size(1) == heads, "lse",
                      "[>= " + std::to_string(tokens) + ", " + std::to_string(heads) + "]",
                      l.shape_string());
    lse = l.data_as<float>();
  }
  TESSERA_CHECK_ARG(options.sm_scale > 0 && std::isfinite(options.sm_scale), "sm_scale",
                    "a finite value > 0", std::to_string(options.sm_scale));
  TESSERA_CHECK_ARG(q_nope.device().device_id == s.device_id, "q_nope",
                    "a tensor on the plan's device cuda:" + std::to_string(s.device_id),
                    device_name(q_nope.device()));
  const TensorView kv_indices = detail::index_view(kv_indices_arg, "kv_indices", q_nope);
  const TensorView qo_indptr = detail::index_view(qo_indptr_arg, "qo_indptr", q_nope);
  const TensorView kv_indptr = detail::index_view(kv_indptr_arg, "kv_indptr", q_nope);
  const TensorView kv_len = detail::index_view(kv_len_arg, "kv_len", q_nope);
  // Sizes the kernels index by (no copy needed; the values are checked in
  // validation mode).
  const auto at_least = [](const TensorView& v, int64_t n, const char* what) {
    TESSERA_CHECK_ARG(v.size(0) >= n, std::string(v.name()),
                      "at least " + std::to_string(n) + " entries (" + what + ")",
                      v.shape_string());
  };
  const int64_t batch = static_cast<int64_t>(s.kv_len.size());
  at_least(qo_indptr, batch + 1, "the planned batch + 1");
  at_least(kv_indptr, batch + 1, "the planned batch + 1");
  at_least(kv_len, batch, "the planned batch");
  at_least(kv_indices, s.kv_indptr.back(), "the planned kv_indptr[batch]");
  DeviceGuard guard(s.device_id);
  const bool capturing = detail::stream_is_capturing(stream);
  if (validation_requested(validate)) {
    detail::expect_validation_outside_capture(capturing);
    validate_device_arrays({s.qo_indptr, s.kv_indptr, s.kv_len}, qo_indptr, kv_indptr, kv_len,
                           kv_indices, ckv.size(0), stream);
  }
  const MlaLaunch launch{s.num_sms,
                         heads,
                         s.derived.max_ctas,
                         s.planned_units,
                         s.planned_merge_tiles,
                         s.split,
                         capturing,
                         s.hopper};
  const auto fill = [&]<typename T>(mla::Params<T>& p) {
    p.q_nope = q_nope.data_as<const T>();
    p.q_nope_stride_token = q_nope.stride(0);
    p.q_nope_stride_head = q_nope.stride(1);
    p.q_pe = q_pe.data_as<const T>();
    p.q_pe_stride_token = q_pe.stride(0);
    p.q_pe_stride_head = q_pe.stride(1);
    p.ckv = ckv.data_as<const T>();
    p.ckv_stride_page = ckv.stride(0);
    p.ckv_stride_entry = ckv.stride(1);
    p.kpe = kpe.data_as<const T>();
    p.kpe_stride_page = kpe.stride(0);
    p.kpe_stride_entry = kpe.stride(1);
    p.kv_indices = kv_indices.data_as<const int32_t>();
    p.page_size = static_cast<int32_t>(s.shape.page_size);
    p.num_heads = static_cast<int32_t>(heads);
    p.out = out.data_as<T>();
    p.out_stride_token = out.stride(0);
    p.out_stride_head = out.stride(1);
    p.lse = lse;
    p.sm_scale_log2 = static_cast<float>(options.sm_scale * std::numbers::log2e);
    p.schedule = s.schedule();
    p.job_counters = const_cast<int32_t*>(&p.schedule.header->next_job);
    launch_mla<T>(p, launch, qo_indptr.data_as<const int32_t>(), stream);
  };
  if (q_nope.dtype() == DType::kBFloat16) {
    mla::Params<bfloat16_t> p{};
    fill(p);
  } else {
    mla::Params<half_t> p{};
    fill(p);
  }
}

}  // namespace tessera
