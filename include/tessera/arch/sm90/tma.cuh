// Bulk tensor copies (TMA, sm90): a tile of a tensor described by a
// CUtensorMap (encoded on the host, src/api/tma_descriptor) lands in shared
// memory and completes transaction bytes on an mbarrier. The map is passed
// by value as a __grid_constant__ kernel parameter (its address is then a
// generic address of parameter space, as cp.async.bulk.tensor requires).
// Coordinates are element indices, innermost first; out-of-range elements of
// a box are written as zeros and still count their bytes.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/ptx>
#include <cuda/std/cstdint>

namespace tessera::sm90 {

// 128 bytes, 64-byte aligned: the layout of the driver's CUtensorMap, so that
// device code needs no driver header.
struct alignas(64) TensorMap {
  uint64_t opaque[16];
};

__device__ __forceinline__ void tma_load_3d(void* shared_destination, const TensorMap* map,
                                            int32_t c0, int32_t c1, int32_t c2, uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const int32_t coords[3] = {c0, c1, c2};
  cuda::ptx::cp_async_bulk_tensor(cuda::ptx::space_cluster, cuda::ptx::space_global,
                                  shared_destination, map, coords, barrier);
#endif
}

// Fetches the map into the constant cache ahead of its first use.
__device__ __forceinline__ void tma_prefetch_map(const TensorMap* map) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(map) : "memory");
#endif
}

}  // namespace tessera::sm90
