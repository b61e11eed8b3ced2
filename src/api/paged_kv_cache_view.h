// Resolves a PagedKVCacheArg into sizes and strides (validated once here for
// append, decode and prefill alike).
#pragma once

#include <cstdint>

#include "tessera/api/paged_kv_cache.h"
#include "tessera/core/tensor_view.h"

namespace tessera::detail {

struct ResolvedPagedKV {
  DType dtype;
  DLDevice device;
  void* k_data;
  void* v_data;
  int64_t num_pages;
  int64_t page_size;
  int64_t num_heads;
  int64_t head_dim;
  int64_t stride_page;
  int64_t stride_entry;
  int64_t stride_head;
  const char* name;  // "paged_kv_cache" or "paged_k_cache" for messages
};

ResolvedPagedKV resolve_paged_kv_cache(const PagedKVCacheArg& cache);

}  // namespace tessera::detail
