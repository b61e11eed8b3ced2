// How a caller hands Tessera a paged KV cache: one tensor holding K and V
// ([num_pages, 2, page_size, num_kv_heads, head_dim] for NHD,
//  [num_pages, 2, num_kv_heads, page_size, head_dim] for HND) or two tensors
// of [num_pages, page_size, num_kv_heads, head_dim] (NHD) /
// [num_pages, num_kv_heads, page_size, head_dim] (HND). Strides are free
// (the cache may be a slice of a larger buffer) except head_dim, which must be
// contiguous; K and V must share shape and strides.
#pragma once

#include <dlpack/dlpack.h>

namespace tessera {

enum class KVLayout { kNHD, kHND };

// Holds copies of the DLTensor descriptors (not pointers to them), so an
// argument built from a temporary descriptor stays valid; the shape and
// strides arrays the descriptors point to must outlive the call.
class PagedKVCacheArg {
 public:
  static PagedKVCacheArg combined(const DLTensor& kv_data, KVLayout layout) {
    return PagedKVCacheArg(kv_data, DLTensor{}, /*combined=*/true, layout);
  }
  static PagedKVCacheArg separate(const DLTensor& k_data, const DLTensor& v_data, KVLayout layout) {
    return PagedKVCacheArg(k_data, v_data, /*combined=*/false, layout);
  }

  bool is_combined() const { return combined_; }
  // The combined tensor, or the K tensor.
  const DLTensor& first() const { return first_; }
  const DLTensor& v_data() const { return v_; }
  KVLayout layout() const { return layout_; }

 private:
  PagedKVCacheArg(const DLTensor& first, const DLTensor& v, bool combined, KVLayout layout)
      : first_(first), v_(v), combined_(combined), layout_(layout) {}
  DLTensor first_;
  DLTensor v_;
  bool combined_;
  KVLayout layout_;
};

}  // namespace tessera
