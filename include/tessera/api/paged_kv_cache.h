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

class PagedKVCacheArg {
 public:
  static PagedKVCacheArg combined(const DLTensor& kv_data, KVLayout layout) {
    return PagedKVCacheArg(&kv_data, nullptr, layout);
  }
  static PagedKVCacheArg separate(const DLTensor& k_data, const DLTensor& v_data, KVLayout layout) {
    return PagedKVCacheArg(&k_data, &v_data, layout);
  }

  bool is_combined() const { return v_ == nullptr; }
  // The combined tensor, or the K tensor.
  const DLTensor& first() const { return *first_; }
  const DLTensor& v_data() const { return *v_; }
  KVLayout layout() const { return layout_; }

 private:
  PagedKVCacheArg(const DLTensor* first, const DLTensor* v, KVLayout layout)
      : first_(first), v_(v), layout_(layout) {}
  const DLTensor* first_;
  const DLTensor* v_;
  KVLayout layout_;
};

}  // namespace tessera
