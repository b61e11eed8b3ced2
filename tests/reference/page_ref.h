// float64 references for paged KV-cache maintenance: the token -> (request,
// position) map of a ragged append batch, and the append itself on a
// contiguous host cache in NHD or HND order.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tessera/api/paged_kv_cache.h"

namespace tessera::reference {

struct BatchIndicesPositions {
  std::vector<int32_t> batch_indices;
  std::vector<int32_t> positions;
};

// Token i of request b (append_indptr[b] <= i < append_indptr[b+1]) gets
// batch index b and position seq_lens[b] - appended(b) + (i - append_indptr[b]).
BatchIndicesPositions get_batch_indices_positions(std::span<const int32_t> append_indptr,
                                                  std::span<const int32_t> seq_lens);

// One of K or V, contiguous: [num_pages, page_size, num_heads, head_dim]
// (NHD) or [num_pages, num_heads, page_size, head_dim] (HND).
struct PagedCacheShape {
  KVLayout layout;
  int64_t num_pages;
  int64_t page_size;
  int64_t num_heads;
  int64_t head_dim;

  int64_t numel() const { return num_pages * page_size * num_heads * head_dim; }
  // Element offset of (page, slot, head, dim 0).
  int64_t offset(int64_t page, int64_t slot, int64_t head) const;
};

// cache[kv_indices[kv_indptr[b] + p / page_size], p % page_size, h, :] =
// append[i, h, :] for b = batch_indices[i], p = positions[i]; `append` is
// row-major [nnz, num_heads, head_dim]. Other cache elements are unchanged.
void append_paged_kv(std::span<const double> append, std::span<const int32_t> batch_indices,
                     std::span<const int32_t> positions, std::span<const int32_t> kv_indices,
                     std::span<const int32_t> kv_indptr, const PagedCacheShape& shape,
                     std::span<double> cache);

}  // namespace tessera::reference
