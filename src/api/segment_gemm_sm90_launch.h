// The Hopper segment GEMM's launch (src/api/segment_gemm_sm90.cu): tensor
// maps of x and W, the persistent grid, the kernel of include/tessera/gemm/
// segment_gemm_sm90.cuh. Its own translation unit, so the sm_90a kernels
// compile beside the sm80 ones.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "tessera/gemm/segment_gemm_params.h"

namespace tessera::detail {

// `params` as segment_gemm.cu fills them for the sm80 kernel; T is half_t
// or bfloat16_t (explicitly instantiated). `weight_matrix_stride`: elements
// between W matrices as the caller's tensor has them (params.weight_stride
// is 0 for a single matrix).
template <typename T>
void launch_segment_gemm_sm90(const gemm::SegmentGemmParams<T>& params, gemm::WeightLayout layout,
                              int64_t weight_matrix_stride, int device_id, cudaStream_t stream);

}  // namespace tessera::detail
