// BatchPrefillWithRaggedKVCache and BatchPrefillWithPagedKVCache: host plan
// (batch_prefill_plan.h), run() validating host-side descriptors only (no
// allocation, no synchronisation, no device reads unless validation mode is
// on) so it can be captured in a CUDA graph, then the launcher.
#include <cstdint>
#include <string>
#include <vector>

#include "api/attention_variant.h"
#include "api/batch_prefill_plan.h"
#include "api/prefill_backend.h"
#include "api/contiguous_kv.h"
#include "api/index_tensor.h"
#include "api/page_validation.h"
#include "api/paged_kv_cache_view.h"
#include "api/plan_run.h"
#include "plan/prefill_planner.h"
#include "tessera/api/prefill.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

using detail::copy_to_host;
using detail::index_view;

// q, out, lse and qo_indptr, the same for both wrappers; fills their part of
// the launch.
void resolve_queries(const detail::PrefillPlanState& s, const DLTensor& q, const DLTensor& out,
                     const DLTensor* lse, const DLTensor& qo_indptr, TensorView& qv,
                     detail::BatchPrefillLaunch& l) {
  TESSERA_CHECK_ARG(s.planned(), "plan", "plan() called before run()", "run() without a plan");
  const PrefillPlanShape& shape = s.shape();
  qv = TensorView(q, "q");
  qv.expect_ndim(3).expect_cuda().expect_last_dim_contiguous().expect_dtype(
      {DType::kFloat16, DType::kBFloat16});
  // Rows past the planned tokens are allowed (graph buffers sized for the
  // bounds) and left untouched.
  TESSERA_CHECK_ARG(qv.size(0) >= s.total_qo_tokens(), "q",
                    "at least qo_indptr[batch] = " + std::to_string(s.total_qo_tokens()) +
                        " rows (as plan() saw)",
                    std::to_string(qv.size(0)) + " rows");
  qv.expect_size(1, shape.num_qo_heads, "num_qo_heads of the plan shape");
  qv.expect_size(2, shape.head_dim, "head_dim of the plan shape");
  detail::expect_rows_aligned16(qv);
  const TensorView ov = detail::output_like_q(out, qv, shape.v_head_dim());
  detail::expect_rows_aligned16(ov);
  l.lse = nullptr;
  if (lse != nullptr) {
    const TensorView lv(*lse, "lse");
    lv.expect_dtype({DType::kFloat32}).expect_ndim(2).expect_cuda().expect_contiguous();
    lv.expect_size(0, qv.size(0), "q's rows").expect_size(1, shape.num_qo_heads, "num_qo_heads");
    expect_same_device(qv, lv);
    l.lse = lv.data_as<float>();
  }
  const TensorView qo_view = index_view(qo_indptr, "qo_indptr", qv);
  TESSERA_CHECK_ARG(qo_view.size(0) >= s.batch() + 1, "qo_indptr",
                    "at least batch_size + 1 = " + std::to_string(s.batch() + 1) + " entries",
                    std::to_string(qo_view.size(0)));
  l.dtype = qv.dtype();
  l.kv_dtype = qv.dtype();  // the paged run() sets its cache's
  l.q = qv.data();
  l.q_stride_token = qv.stride(0);
  l.q_stride_head = qv.stride(1);
  l.out = ov.data();
  l.out_stride_token = ov.stride(0);
  l.out_stride_head = ov.stride(1);
  l.qo_indptr = qo_view.data_as<const int32_t>();
  l.num_qo_heads = shape.num_qo_heads;
  l.num_kv_heads = shape.num_kv_heads;
  l.head_dim = shape.head_dim;
  l.head_dim_vo = shape.v_head_dim();
  l.rows_per_token = s.rows_per_token();
  l.causal = s.causal();
  l.split = s.split();
  l.schedule = s.schedule_view();
  l.max_ctas = s.max_ctas();
  l.planned_units = s.planned_units();
  l.num_sms = s.num_sms();
  l.max_merge_tiles = s.max_merge_tiles();
  l.planned_merge_tiles = s.planned_merge_tiles();
  l.q_tile_rows = s.q_tile_rows();
  l.shared_bytes = s.shared_bytes();
}

void resolve_variant_into(const AttentionOptions& options, const TensorView& qv,
                          jit::KernelKind kernel, const detail::PrefillPlanState& plan,
                          detail::BatchPrefillLaunch& l) {
  const int64_t custom_mask_bytes = plan.custom_mask_bytes();
  const detail::ResolvedVariant variant =
      detail::resolve_variant(options, l.head_dim, l.num_qo_heads, qv.device());
  l.variant_kind = variant.kind;
  l.variant = variant.params;
  l.jit_kernel = detail::jit_kernel_for(options, kernel, qv.dtype(), l.kv_dtype, l.head_dim);
  l.hopper_jit_kernel = l.jit_kernel != nullptr ? options.jit_variant->hopper_kernel() : nullptr;
  l.sum_states = detail::sums_partial_states(options);
  l.custom_mask = detail::resolve_custom_mask(options, custom_mask_bytes, qv.device());
  detail::PrefillCase c;
  c.device_id = qv.device().device_id;
  c.dtype = qv.dtype();
  c.kv_dtype = l.kv_dtype;
  c.head_dim = l.head_dim;
  c.variant = l.variant_kind;
  c.custom_mask = l.custom_mask != nullptr;
  c.jit_variant = l.jit_kernel != nullptr;
  c.jit_hopper_kernel = l.hopper_jit_kernel != nullptr;
  c.rows_per_token = l.rows_per_token;
  c.q_tile_rows = plan.q_tile_rows();
  c.query_scale = static_cast<double>(l.variant.sm_scale) * l.variant.k_scale;
  l.backend = detail::resolve_prefill_backend(plan.shape().backend, c);
  l.q_tokens = qv.size(0);
}

void check_planned_indptr(const TensorView& view, const std::vector<int32_t>& planned,
                          cudaStream_t stream, const char* name) {
  std::vector<int32_t> host = copy_to_host(view, stream);
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  host.resize(planned.size());
  TESSERA_CHECK_ARG(host == planned, name, "the values plan() saw", "different values on the device");
}


}  // namespace

// ------------------------------------------------------------------ ragged

struct BatchPrefillWithRaggedKVCache::State {
  detail::PrefillPlanState plan;
  std::vector<int32_t> planned_kv_indptr;
  State(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds, void* workspace,
        std::size_t bytes, int device_id)
      : plan(shape, bounds, /*paged=*/false, workspace, bytes, device_id) {}
};

BatchPrefillWithRaggedKVCache::BatchPrefillWithRaggedKVCache(const PrefillPlanShape& shape,
                                                             const PrefillPlanBounds& bounds,
                                                             void* workspace,
                                                             std::size_t workspace_bytes,
                                                             int device_id)
    : state_(std::make_unique<State>(shape, bounds, workspace, workspace_bytes, device_id)) {}

BatchPrefillWithRaggedKVCache::~BatchPrefillWithRaggedKVCache() = default;

int64_t BatchPrefillWithRaggedKVCache::planned_q_tile_rows() const {
  return state_->plan.planned() ? state_->plan.q_tile_rows() : 0;
}

std::size_t BatchPrefillWithRaggedKVCache::min_workspace_size_bytes(const PrefillPlanShape& shape,
                                                                    const PrefillPlanBounds& bounds,
                                                                    int device_id) {
  return detail::prefill_workspace_size(shape, bounds, device_id, /*paged=*/false,
                                        /*minimum=*/true);
}

std::size_t BatchPrefillWithRaggedKVCache::workspace_size_bytes(const PrefillPlanShape& shape,
                                                                const PrefillPlanBounds& bounds,
                                                                int device_id) {
  return detail::prefill_workspace_size(shape, bounds, device_id, /*paged=*/false);
}

void BatchPrefillWithRaggedKVCache::plan(std::span<const int32_t> qo_indptr,
                                         std::span<const int32_t> kv_indptr, bool causal,
                                         cudaStream_t stream) {
  State& s = *state_;
  std::vector<int64_t>& lengths = s.plan.kv_lengths_buffer();
  plan::prefill_kv_lengths_ragged(kv_indptr, s.plan.bounds().max_batch_size, lengths);
  s.plan.plan(qo_indptr, kv_indptr, lengths, causal, stream);
  s.planned_kv_indptr.assign(kv_indptr.begin(), kv_indptr.end());
}

void BatchPrefillWithRaggedKVCache::run(const DLTensor& q, const DLTensor& k, const DLTensor& v,
                                        const DLTensor& qo_indptr, const DLTensor& kv_indptr,
                                        const DLTensor& out, const DLTensor* lse,
                                        const AttentionOptions& options, cudaStream_t stream,
                                        Validate validate) {
  const State& s = *state_;
  detail::BatchPrefillLaunch l{};
  TensorView qv(q, "q");
  resolve_queries(s.plan, q, out, lse, qo_indptr, qv, l);
  const PrefillPlanShape& shape = s.plan.shape();
  const TensorView kv(k, "k");
  const TensorView vv(v, "v");
  for (const TensorView* t : {&kv, &vv}) {
    t->expect_ndim(3).expect_cuda().expect_last_dim_contiguous();
    expect_same_dtype(qv, *t);
    expect_same_device(qv, *t);
    t->expect_size(1, shape.num_kv_heads, "num_kv_heads of the plan shape");
    if (t == &kv) {
      t->expect_size(2, shape.head_dim, "head_dim of the plan shape");
    } else {
      t->expect_size(2, shape.v_head_dim(), "head_dim_vo of the plan shape");
    }
    TESSERA_CHECK_ARG(t->size(0) >= s.planned_kv_indptr.back(), t->name(),
                      "at least kv_indptr[batch] = " + std::to_string(s.planned_kv_indptr.back()) +
                          " rows (as plan() saw)",
                      std::to_string(t->size(0)) + " rows");
    detail::expect_rows_aligned16(*t);
  }
  // Equal head dims: the kernels index v with k's strides. At q/k 192 with
  // v/o 128 v's rows are narrower and have strides of their own.
  const bool same_strides = kv.stride(0) == vv.stride(0) && kv.stride(1) == vv.stride(1);
  TESSERA_CHECK_ARG(same_strides || shape.v_head_dim() != shape.head_dim, "v",
                    "the strides of k (" + std::to_string(kv.stride(0)) + ", " +
                        std::to_string(kv.stride(1)) + ")",
                    "(" + std::to_string(vv.stride(0)) + ", " + std::to_string(vv.stride(1)) + ")");
  const TensorView kv_view = index_view(kv_indptr, "kv_indptr", qv);
  TESSERA_CHECK_ARG(kv_view.size(0) >= s.plan.batch() + 1, "kv_indptr",
                    "at least batch_size + 1 = " + std::to_string(s.plan.batch() + 1) + " entries",
                    std::to_string(kv_view.size(0)));
  resolve_variant_into(options, qv, jit::KernelKind::kBatchPrefillRagged, s.plan, l);
  if (s.plan.batch() == 0) return;

  DeviceGuard guard(qv.device().device_id);
  l.capturing = detail::stream_is_capturing(stream);
  if (validation_requested(validate)) {
    detail::expect_validation_outside_capture(l.capturing);
    check_planned_indptr(index_view(qo_indptr, "qo_indptr", qv), s.plan.planned_qo_indptr(),
                         stream, "qo_indptr");
    check_planned_indptr(kv_view, s.planned_kv_indptr, stream, "kv_indptr");
  }
  l.k = kv.data();
  l.v = vv.data();
  l.stride_entry = kv.stride(0);
  l.stride_head = kv.stride(1);
  l.v_stride_entry = vv.stride(0);
  l.v_stride_head = vv.stride(1);
  l.kv_tokens = kv.size(0);
  detail::launch_batch_prefill_ragged(l, stream);
}

// ------------------------------------------------------------------- paged

struct BatchPrefillWithPagedKVCache::State {
  detail::PrefillPlanState plan;
  std::vector<int32_t> planned_kv_indptr;
  std::vector<int32_t> planned_last_page_len;
  State(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds, void* workspace,
        std::size_t bytes, int device_id)
      : plan(shape, bounds, /*paged=*/true, workspace, bytes, device_id) {}
};

BatchPrefillWithPagedKVCache::BatchPrefillWithPagedKVCache(const PrefillPlanShape& shape,
                                                           const PrefillPlanBounds& bounds,
                                                           void* workspace,
                                                           std::size_t workspace_bytes,
                                                           int device_id)
    : state_(std::make_unique<State>(shape, bounds, workspace, workspace_bytes, device_id)) {}

BatchPrefillWithPagedKVCache::~BatchPrefillWithPagedKVCache() = default;

int64_t BatchPrefillWithPagedKVCache::planned_q_tile_rows() const {
  return state_->plan.planned() ? state_->plan.q_tile_rows() : 0;
}

std::size_t BatchPrefillWithPagedKVCache::min_workspace_size_bytes(const PrefillPlanShape& shape,
                                                                   const PrefillPlanBounds& bounds,
                                                                   int device_id) {
  return detail::prefill_workspace_size(shape, bounds, device_id, /*paged=*/true,
                                        /*minimum=*/true);
}

std::size_t BatchPrefillWithPagedKVCache::workspace_size_bytes(const PrefillPlanShape& shape,
                                                               const PrefillPlanBounds& bounds,
                                                               int device_id) {
  return detail::prefill_workspace_size(shape, bounds, device_id, /*paged=*/true);
}

void BatchPrefillWithPagedKVCache::plan(std::span<const int32_t> qo_indptr,
                                        std::span<const int32_t> kv_indptr,
                                        std::span<const int32_t> kv_last_page_len, bool causal,
                                        cudaStream_t stream) {
  State& s = *state_;
  std::vector<int64_t>& lengths = s.plan.kv_lengths_buffer();
  plan::prefill_kv_lengths_paged(kv_indptr, kv_last_page_len, s.plan.shape().page_size,
                                 s.plan.bounds().max_batch_size, lengths);
  s.plan.plan(qo_indptr, kv_indptr, lengths, causal, stream);
  s.planned_kv_indptr.assign(kv_indptr.begin(), kv_indptr.end());
  s.planned_last_page_len.assign(kv_last_page_len.begin(), kv_last_page_len.end());
}

void BatchPrefillWithPagedKVCache::run(const DLTensor& q, const PagedKVCacheArg& paged_kv_cache,
                                       const DLTensor& kv_indices, const DLTensor& qo_indptr,
                                       const DLTensor& kv_indptr,
                                       const DLTensor& kv_last_page_len, const DLTensor& out,
                                       const DLTensor* lse, const AttentionOptions& options,
                                       cudaStream_t stream, Validate validate) {
  const State& s = *state_;
  detail::BatchPrefillLaunch l{};
  TensorView qv(q, "q");
  resolve_queries(s.plan, q, out, lse, qo_indptr, qv, l);
  const PrefillPlanShape& shape = s.plan.shape();
  const int64_t batch = s.plan.batch();

  const detail::ResolvedPagedKV cache = detail::resolve_paged_kv_cache(paged_kv_cache);
  const TensorView cache_view(paged_kv_cache.first(), cache.name);
  expect_same_device(qv, cache_view);
  TESSERA_CHECK_ARG(
      cache.dtype == qv.dtype() || is_float8(cache.dtype), cache.name,
      std::string("dtype ") + dtype_name(qv.dtype()) + " (q's), float8_e4m3fn or float8_e5m2",
      dtype_name(cache.dtype));
  l.kv_dtype = cache.dtype;
  TESSERA_CHECK_ARG(!is_float8(cache.dtype) || shape.head_dim == 128, cache.name,
                    "head_dim 128 with a float8 cache (the fp8 prefill kernels)",
                    "head_dim " + std::to_string(shape.head_dim));
  detail::expect_cache_matches_plan(cache, shape.num_kv_heads, shape.head_dim, shape.page_size);
  detail::expect_rows_aligned16(cache);
  l.row_units = detail::paged_row_units(cache);
  l.v_row_units = l.row_units;  // (one head_dim: v shares k's offsets)
  const detail::PagedIndexViews index = detail::resolve_paged_indices(
      kv_indices, kv_indptr, kv_last_page_len, qv, batch, s.planned_kv_indptr.back());
  const TensorView& indices_view = index.indices;
  const TensorView& indptr_view = index.indptr;
  const TensorView& last_view = index.last_page_len;
  resolve_variant_into(options, qv, jit::KernelKind::kBatchPrefillPaged, s.plan, l);
  if (batch == 0) return;

  DeviceGuard guard(qv.device().device_id);
  l.capturing = detail::stream_is_capturing(stream);
  if (validation_requested(validate)) {
    detail::expect_validation_outside_capture(l.capturing);
    check_planned_indptr(index_view(qo_indptr, "qo_indptr", qv), s.plan.planned_qo_indptr(),
                         stream, "qo_indptr");
    check_planned_indptr(indptr_view, s.planned_kv_indptr, stream, "kv_indptr");
    check_planned_indptr(last_view, s.planned_last_page_len, stream, "kv_last_page_len");
    const std::vector<int32_t> host_indices = copy_to_host(indices_view, stream);
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
    detail::validate_append_indices({{}, {}, host_indices, s.planned_kv_indptr,
                                     s.planned_last_page_len},
                                    cache.num_pages, cache.page_size);
  }
  l.k = cache.k_data;
  l.v = cache.v_data;
  l.stride_page = cache.stride_page;
  l.stride_entry = cache.stride_entry;
  l.stride_head = cache.stride_head;
  l.page_size = cache.page_size;
  l.kv_indices = indices_view.data_as<const int32_t>();
  detail::launch_batch_prefill_paged(l, stream);
}

}  // namespace tessera
