// segment_gemm (tessera/api/gemm.h): validate every argument, pick the
// back end and tile shape from host-known sizes only (segment_gemm_backend.h:
// a captured graph replays for any device-side lengths), size the
// persistent grid, launch the sm80 grouped kernel
// (include/tessera/gemm/segment_gemm_sm80.cuh) or the Hopper one
// (segment_gemm_sm90.cu).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "api/plan_run.h"
#include "api/prefill_backend.h"
#include "api/segment_gemm_backend.h"
#include "api/segment_gemm_sm90_launch.h"
#include "api/segment_gemm_validation.h"
#include "tessera/api/gemm.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"
#include "tessera/gemm/segment_gemm_sm80.cuh"
#include "tessera/gemm/segment_gemv.cuh"

namespace tessera {

namespace {

using gemm::SegmentForm;
using gemm::SegmentGemmLargeTile;
using gemm::SegmentGemmParams;
using gemm::SegmentGemmSmallTile;
using gemm::WeightLayout;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kDimMultiple = 8;  // 16 bytes of a 16-bit type: whole cp.async chunks
constexpr std::size_t kRowAlignBytes = 16;
constexpr int kMinComputeCapabilityMajor = 8;

// A 1-D contiguous int32 / int64 index tensor of `length` entries on x's device.
TensorView index_tensor(const DLTensor& tensor, const char* name, int64_t length, const char* what,
                        const TensorView& x) {
  TensorView view(tensor, name);
  view.expect_ndim(1).expect_dtype({DType::kInt64, DType::kInt32}).expect_cuda();
  expect_same_device(x, view);
  view.expect_contiguous().expect_size(0, length, what);
  return view;
}

std::vector<int64_t> copy_indices_to_host(const TensorView& view, cudaStream_t stream) {
  std::vector<int64_t> host(static_cast<std::size_t>(view.numel()));
  if (host.empty()) return host;
  if (view.dtype() == DType::kInt64) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(host.data(), view.data(), host.size() * sizeof(int64_t),
                                       cudaMemcpyDeviceToHost, stream));
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else {
    std::vector<int32_t> narrow(host.size());
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(narrow.data(), view.data(), narrow.size() * sizeof(int32_t),
                                       cudaMemcpyDeviceToHost, stream));
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::copy(narrow.begin(), narrow.end(), host.begin());
  }
  return host;
}

void expect_known_backend(SegmentGemmBackend backend) {
  TESSERA_CHECK_ARG(backend == SegmentGemmBackend::kAuto || backend == SegmentGemmBackend::kSm80 ||
                        backend == SegmentGemmBackend::kSm90,
                    "backend", "auto, sm80 or sm90", "an unknown back end");
}

template <typename T, typename Shape, WeightLayout kLayout>
void launch(const SegmentGemmParams<T>& params, int64_t max_tiles, int device_id,
            cudaStream_t stream) {
  const auto kernel = gemm::segment_gemm_kernel<T, Shape, kLayout>;
  TESSERA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          Shape::kSharedBytes));
  int ctas_per_sm = 0;
  TESSERA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &ctas_per_sm, kernel, Shape::kThreads, Shape::kSharedBytes));
  const int64_t resident = std::max<int64_t>(1, ctas_per_sm) * detail::device_sm_count(device_id);
  const auto ctas = static_cast<unsigned>(std::clamp<int64_t>(max_tiles, 1, resident));
  kernel<<<ctas, Shape::kThreads, Shape::kSharedBytes, stream>>>(params);
  TESSERA_CHECK_LAUNCH();
}

template <typename T>
void dispatch(const SegmentGemmParams<T>& params, WeightLayout layout,
              detail::SegmentGemmKernel kernel, int64_t weight_matrix_stride, int device_id,
              cudaStream_t stream) {
  if (kernel == detail::SegmentGemmKernel::kSm90) {
    detail::launch_segment_gemm_sm90(params, layout, weight_matrix_stride, device_id, stream);
    return;
  }
  if (kernel == detail::SegmentGemmKernel::kSm80Gemv) {  // column-major W (the choice's rule)
    const int lanes = gemm::gemv_group_lanes(params.d_in);
    const int columns_per_cta = gemm::kGemvWarps * (32 / lanes);
    const dim3 grid(static_cast<unsigned>(params.batch_size) + 1,
                    static_cast<unsigned>((params.d_out + columns_per_cta - 1) / columns_per_cta));
    gemm::segment_gemv_kernel<T><<<grid, gemm::kGemvThreads, 0, stream>>>(params, lanes);
    TESSERA_CHECK_LAUNCH();
    return;
  }
  const auto run = [&]<typename Shape>() {
    const int64_t tiles = gemm::max_segment_tiles(params, Shape::kBlockM, Shape::kBlockN);
    if (layout == WeightLayout::kColumnMajor) {
      launch<T, Shape, WeightLayout::kColumnMajor>(params, tiles, device_id, stream);
    } else {
      launch<T, Shape, WeightLayout::kRowMajor>(params, tiles, device_id, stream);
    }
  };
  if (kernel == detail::SegmentGemmKernel::kSm80Small) {
    run.template operator()<SegmentGemmSmallTile>();
  } else {
    run.template operator()<SegmentGemmLargeTile>();
  }
}

}  // namespace

void segment_gemm(const DLTensor& x, const DLTensor& weights, const DLTensor& y, int64_t batch_size,
                  bool weight_column_major, const DLTensor* seg_lens, const DLTensor* seg_indptr,
                  const DLTensor* weight_indices, cudaStream_t stream, SegmentGemmBackend backend,
                  Validate validate) {
  expect_known_backend(backend);
  const TensorView xv(x, "x");
  xv.expect_ndim(2)
      .expect_dtype({DType::kFloat16, DType::kBFloat16})
      .expect_cuda()
      .expect_last_dim_contiguous();
  const int64_t total_rows = xv.size(0);
  const int64_t d_in = xv.size(1);
  TESSERA_CHECK_ARG(d_in > 0 && d_in % kDimMultiple == 0 && d_in <= kInt32Max, "x",
                    "d_in (dim 1) a positive multiple of 8 below 2^31",
                    std::to_string(d_in) + " (shape " + xv.shape_string() + ")");
  TESSERA_CHECK_ARG(total_rows <= kInt32Max, "x", "fewer than 2^31 rows",
                    std::to_string(total_rows));
  TESSERA_CHECK_ARG(xv.rows_aligned_to(kRowAlignBytes), "x",
                    "a data pointer and row stride that are multiples of 16 bytes",
                    "row stride " + std::to_string(xv.stride(0)));

  const TensorView wv(weights, "weights");
  wv.expect_ndim(3).expect_cuda().expect_last_dim_contiguous();
  expect_same_dtype(xv, wv);
  expect_same_device(xv, wv);
  const int in_dim = weight_column_major ? 2 : 1;
  const int out_dim = weight_column_major ? 1 : 2;
  wv.expect_size(in_dim, d_in,
                 weight_column_major ? "d_in of x (weight_column_major: [num_weights, d_out, "
                                       "d_in])"
                                     : "d_in of x ([num_weights, d_in, d_out])");
  const int64_t num_weights = wv.size(0);
  const int64_t d_out = wv.size(out_dim);
  TESSERA_CHECK_ARG(d_out % kDimMultiple == 0 && d_out <= kInt32Max, "weights",
                    "d_out (dim " + std::to_string(out_dim) + ") a multiple of 8 below 2^31",
                    std::to_string(d_out) + " (shape " + wv.shape_string() + ")");
  TESSERA_CHECK_ARG(
      wv.rows_aligned_to(kRowAlignBytes) && wv.stride(0) >= 0 && wv.stride(1) >= 0, "weights",
      "a data pointer and matrix / row strides that are non-negative multiples "
      "of 16 bytes",
      "strides (" + std::to_string(wv.stride(0)) + ", " + std::to_string(wv.stride(1)) + ")");

  TESSERA_CHECK_ARG(batch_size >= 0 && batch_size < kInt32Max - 64, "batch_size",
                    "a number of segments in [0, 2^31 - 64)", std::to_string(batch_size));
  TESSERA_CHECK_ARG(
      batch_size == 0 || num_weights > 0, "weights",
      "at least one weight matrix (dim 0) for " + std::to_string(batch_size) + " segments",
      "shape " + wv.shape_string());

  const TensorView yv(y, "y");
  yv.expect_ndim(2).expect_cuda().expect_last_dim_contiguous();
  expect_same_dtype(xv, yv);
  expect_same_device(xv, yv);
  yv.expect_size(0, total_rows, "the rows of x").expect_size(1, d_out, "d_out of weights");
  TESSERA_CHECK_ARG(yv.rows_aligned_to(kRowAlignBytes), "y",
                    "a data pointer and row stride that are multiples of 16 bytes",
                    "row stride " + std::to_string(yv.stride(0)));
  TESSERA_CHECK_ARG(total_rows <= 1 || yv.stride(0) >= d_out, "y",
                    "rows that do not overlap (row stride >= d_out " + std::to_string(d_out) + ")",
                    "row stride " + std::to_string(yv.stride(0)));
  expect_identical_or_disjoint(xv, yv);
  expect_identical_or_disjoint(wv, yv);
  TESSERA_CHECK_ARG(!same_storage(xv, yv) || yv.numel() == 0, "y", "memory disjoint from x",
                    "the same memory as x");

  TESSERA_CHECK_ARG(seg_indptr != nullptr || seg_lens != nullptr, "seg_lens",
                    "seg_lens or seg_indptr (a tensor)", "neither");
  const bool indptr_form = seg_indptr != nullptr;  // seg_indptr wins, as in FlashInfer
  const TensorView segments =
      indptr_form ? index_tensor(*seg_indptr, "seg_indptr", batch_size + 1, "batch_size + 1", xv)
                  : index_tensor(*seg_lens, "seg_lens", batch_size, "batch_size", xv);
  const TensorView* indices = nullptr;
  std::optional<TensorView> indices_view;
  if (weight_indices != nullptr) {
    indices_view.emplace(
        index_tensor(*weight_indices, "weight_indices", batch_size, "batch_size", xv));
    indices = &*indices_view;
  }
  // Without weight_indices segment i reads W[i]: a host-known bound, so an
  // out-of-range matrix is an argument error, never a read past weights.
  TESSERA_CHECK_ARG(weight_indices != nullptr || num_weights >= batch_size, "weights",
                    "at least batch_size = " + std::to_string(batch_size) +
                        " weight matrices (dim 0; segment i uses W[i] without weight_indices)",
                    "shape " + wv.shape_string());
  for (const TensorView* index_view : {&segments, indices}) {
    if (index_view == nullptr) continue;
    expect_identical_or_disjoint(*index_view, yv);
  }

  const int device_id = xv.device().device_id;
  DeviceGuard guard(device_id);
  TESSERA_CHECK_ARG(detail::device_compute_major(device_id) >= kMinComputeCapabilityMajor, "x",
                    "a tensor on a GPU of compute capability 8.0 or newer (mma.sync bf16)",
                    "device " + std::to_string(device_id) + " of compute capability " +
                        std::to_string(detail::device_compute_major(device_id)) + ".x");

  if (validation_requested(validate)) {
    detail::expect_validation_outside_capture(detail::stream_is_capturing(stream));
    const std::vector<int64_t> host_segments = copy_indices_to_host(segments, stream);
    const std::vector<int64_t> host_indices =
        indices == nullptr ? std::vector<int64_t>{} : copy_indices_to_host(*indices, stream);
    detail::validate_segment_arrays({host_segments, indptr_form, host_indices}, total_rows,
                                    num_weights);
  }
  detail::SegmentGemmCall call;
  call.backend = backend;
  call.device_runs_sm90a = detail::device_runs_sm90a(device_id);
  call.device_id = device_id;
  call.total_rows = total_rows;
  call.batch_size = batch_size;
  call.d_out = d_out;
  call.column_major = weight_column_major;
  call.num_weights = num_weights;
  call.x_row_stride = xv.stride(0);
  call.weight_row_stride = wv.stride(1);
  call.weight_matrix_stride = wv.stride(0);
  const detail::SegmentGemmKernel kernel = detail::choose_segment_gemm_kernel(call);
  if (total_rows == 0 || d_out == 0) return;

  const auto fill = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    SegmentGemmParams<T> params{};
    params.x = xv.data_as<const T>();
    params.weights = wv.data_as<const T>();
    params.y = yv.data_as<T>();
    params.x_row_stride = total_rows > 1 ? xv.stride(0) : d_in;
    params.y_row_stride = total_rows > 1 ? yv.stride(0) : d_out;
    params.weight_stride = num_weights > 1 ? wv.stride(0) : 0;
    params.weight_row_stride = wv.stride(1);
    params.segments = segments.data();
    params.weight_indices = indices == nullptr ? nullptr : indices->data();
    params.batch_size = static_cast<int32_t>(batch_size);
    params.num_weights =
        static_cast<int32_t>(std::min<int64_t>(num_weights, std::numeric_limits<int32_t>::max()));
    params.total_rows = static_cast<int32_t>(total_rows);
    params.d_in = static_cast<int32_t>(d_in);
    params.d_out = static_cast<int32_t>(d_out);
    params.segment_form = indptr_form ? SegmentForm::kIndptr : SegmentForm::kLengths;
    params.segments_int64 = segments.dtype() == DType::kInt64;
    params.weight_indices_int64 = indices != nullptr && indices->dtype() == DType::kInt64;
    dispatch(params, weight_column_major ? WeightLayout::kColumnMajor : WeightLayout::kRowMajor,
             kernel, wv.stride(0), device_id, stream);
  };
  if (xv.dtype() == DType::kFloat16) {
    fill(static_cast<half_t*>(nullptr));
  } else {
    fill(static_cast<bfloat16_t*>(nullptr));
  }
}

}  // namespace tessera
