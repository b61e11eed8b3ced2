#include "api/tma_descriptor.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <mutex>
#include <string>

#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera::detail {

namespace {

PFN_cuTensorMapEncodeTiled_v12000 encode_function() {
  static PFN_cuTensorMapEncodeTiled_v12000 function = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* pointer = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &pointer, 12000,
                                         cudaEnableDefault, &found) == cudaSuccess &&
        found == cudaDriverEntryPointSuccess) {
      function = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(pointer);
    }
  });
  if (function == nullptr) {
    throw Error(
        "tessera: the CUDA driver has no cuTensorMapEncodeTiled (needed by the Hopper "
        "prefill and segment GEMM kernels; a driver for CUDA 12 or newer)");
  }
  return function;
}

}  // namespace

sm90::TensorMap encode_tensor_map_3d(const void* base, const int64_t (&dims)[3],
                                     const int64_t (&strides_bytes)[2], const int (&box)[3],
                                     const char* argument) {
  static_assert(sizeof(sm90::TensorMap) == sizeof(CUtensorMap), "the device's copy of the map");
  sm90::TensorMap map{};
  if (dims[2] == 0 || base == nullptr) return map;
  const cuuint64_t global_dims[3] = {static_cast<cuuint64_t>(dims[0]),
                                     static_cast<cuuint64_t>(dims[1]),
                                     static_cast<cuuint64_t>(dims[2])};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(strides_bytes[0]),
                                 static_cast<cuuint64_t>(strides_bytes[1])};
  const cuuint32_t box_dims[3] = {static_cast<cuuint32_t>(box[0]), static_cast<cuuint32_t>(box[1]),
                                  static_cast<cuuint32_t>(box[2])};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult result =
      encode_function()(reinterpret_cast<CUtensorMap*>(&map), CU_TENSOR_MAP_DATA_TYPE_UINT16, 3,
                        const_cast<void*>(base), global_dims, strides, box_dims, element_strides,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  TESSERA_CHECK_ARG(result == CUDA_SUCCESS, argument,
                    "a view the TMA can copy (16-byte aligned start and strides)",
                    "cuTensorMapEncodeTiled error " + std::to_string(static_cast<int>(result)) +
                        " for strides (" + std::to_string(strides_bytes[0]) + ", " +
                        std::to_string(strides_bytes[1]) + ") bytes");
  return map;
}

sm90::TensorMap encode_rows_tensor_map(const void* base, int64_t head_dim, int64_t heads,
                                       int64_t tokens, int64_t stride_head_bytes,
                                       int64_t stride_token_bytes, int box_heads, int box_tokens,
                                       const char* argument) {
  return encode_tensor_map_3d(base, {head_dim, heads, tokens},
                              {stride_head_bytes, stride_token_bytes}, {64, box_heads, box_tokens},
                              argument);
}

}  // namespace tessera::detail
