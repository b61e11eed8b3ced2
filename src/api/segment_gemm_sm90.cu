#include <algorithm>
#include <cstdint>

#include "api/plan_run.h"
#include "api/segment_gemm_sm90_launch.h"
#include "api/tma_descriptor.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/numeric.cuh"
#include "tessera/gemm/segment_gemm_sm90.cuh"

namespace tessera::detail {

namespace {

using gemm::SegmentGemmSm90Params;
using gemm::SegmentGemmSm90Tile;
using gemm::WeightLayout;

constexpr int64_t kElementBytes = 2;

template <typename T, WeightLayout kLayout>
void launch_layout(const SegmentGemmSm90Params<T>& params, int device_id, cudaStream_t stream) {
  using Shape = SegmentGemmSm90Tile;
  constexpr int kShared = gemm::kSm90SharedBytes<Shape>;
  const auto kernel = gemm::segment_gemm_sm90_kernel<T, Shape, kLayout>;
  TESSERA_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kShared));
  // One CTA per SM (192 KB of shared memory, 384 threads at 168 registers).
  const int64_t max_tiles = gemm::max_segment_tiles(params.base, Shape::kBlockM, Shape::kBlockN);
  const int64_t ctas = std::clamp<int64_t>(max_tiles, 1, device_sm_count(device_id));
  kernel<<<static_cast<unsigned>(ctas), Shape::kThreads, kShared, stream>>>(params);
  TESSERA_CHECK_LAUNCH();
}

}  // namespace

template <typename T>
void launch_segment_gemm_sm90(const gemm::SegmentGemmParams<T>& params, WeightLayout layout,
                              int64_t weight_matrix_stride, int device_id, cudaStream_t stream) {
  using Shape = SegmentGemmSm90Tile;
  SegmentGemmSm90Params<T> p{};
  p.base = params;
  const int64_t x_row_bytes = params.x_row_stride * kElementBytes;
  p.x_map = encode_tensor_map_3d(params.x, {params.d_in, params.total_rows, 1},
                                 {x_row_bytes, x_row_bytes * std::max(params.total_rows, 1)},
                                 {Shape::kBlockK, Shape::kBlockM, 1}, "x");
  const bool column_major = layout == WeightLayout::kColumnMajor;
  // Column-major W ([d_out, d_in]): rows of n, k innermost, a box of
  // kBlockN rows; row-major ([d_in, d_out]): rows of k, n innermost, a box
  // per 64-column panel.
  const int64_t inner = column_major ? params.d_in : params.d_out;
  const int64_t rows = column_major ? params.d_out : params.d_in;
  const int64_t w_row_bytes = params.weight_row_stride * kElementBytes;
  const int64_t w_matrix_bytes =
      params.num_weights > 1 ? weight_matrix_stride * kElementBytes : w_row_bytes * rows;
  p.w_map = encode_tensor_map_3d(
      params.weights, {inner, rows, params.num_weights}, {w_row_bytes, w_matrix_bytes},
      {Shape::kBlockK, column_major ? Shape::kBlockN : Shape::kBlockK, 1}, "weights");
  if (column_major) {
    launch_layout<T, WeightLayout::kColumnMajor>(p, device_id, stream);
  } else {
    launch_layout<T, WeightLayout::kRowMajor>(p, device_id, stream);
  }
}

template void launch_segment_gemm_sm90<half_t>(const gemm::SegmentGemmParams<half_t>&, WeightLayout,
                                               int64_t, int, cudaStream_t);
template void launch_segment_gemm_sm90<bfloat16_t>(const gemm::SegmentGemmParams<bfloat16_t>&,
                                                   WeightLayout, int64_t, int, cudaStream_t);

}  // namespace tessera::detail
