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

// Throws naming the cache unless it has the plan's num_kv_heads, head_dim and
// page_size.
void expect_cache_matches_plan(const ResolvedPagedKV& cache, int64_t num_kv_heads,
                               int64_t head_dim, int64_t page_size);

// Whether K and V data and every stride are 16-byte aligned (the attention
// kernels gather rows with 16-byte copies).
bool rows_aligned16(const ResolvedPagedKV& cache);
// Throws naming the cache when they are not.
void expect_rows_aligned16(const ResolvedPagedKV& cache);

// The device index arrays of a paged batch (int32, on `reference`'s device),
// checked against what plan() saw: kv_indptr >= batch + 1 entries,
// kv_last_page_len >= batch, kv_indices >= planned_pages.
struct PagedIndexViews {
  TensorView indices;
  TensorView indptr;
  TensorView last_page_len;
};
PagedIndexViews resolve_paged_indices(const DLTensor& kv_indices, const DLTensor& kv_indptr,
                                      const DLTensor& kv_last_page_len, const TensorView& reference,
                                      int64_t batch, int64_t planned_pages);

}  // namespace tessera::detail
