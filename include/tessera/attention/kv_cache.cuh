// Device view of a paged KV cache. NHD and HND differ only in which of
// stride_entry / stride_head is larger, so kernels index through this one
// struct and never branch on the layout. head_dim is contiguous (stride 1).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

namespace tessera {

template <typename T>
struct PagedKVView {
  T* __restrict__ k_data;
  T* __restrict__ v_data;
  int64_t stride_page;   // elements between pages
  int64_t stride_entry;  // elements between slots of one page
  int64_t stride_head;   // elements between heads
  int32_t page_size;
  int32_t num_heads;
  int32_t head_dim;

  // Element offset of (page, slot, head, dim 0), the same for K and V.
  __device__ __forceinline__ int64_t offset(int64_t page, int64_t slot, int64_t head) const {
    return page * stride_page + slot * stride_entry + head * stride_head;
  }
};

}  // namespace tessera
