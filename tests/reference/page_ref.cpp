#include "reference/page_ref.h"

#include <stdexcept>

namespace tessera::reference {

BatchIndicesPositions get_batch_indices_positions(std::span<const int32_t> append_indptr,
                                                  std::span<const int32_t> seq_lens) {
  if (append_indptr.size() != seq_lens.size() + 1) {
    throw std::invalid_argument("append_indptr must have batch + 1 entries");
  }
  BatchIndicesPositions out;
  for (std::size_t b = 0; b < seq_lens.size(); ++b) {
    const int32_t appended = append_indptr[b + 1] - append_indptr[b];
    for (int32_t t = 0; t < appended; ++t) {
      out.batch_indices.push_back(static_cast<int32_t>(b));
      out.positions.push_back(seq_lens[b] - appended + t);
    }
  }
  return out;
}

int64_t PagedCacheShape::offset(int64_t page, int64_t slot, int64_t head) const {
  const int64_t entry =
      layout == KVLayout::kNHD ? slot * num_heads + head : head * page_size + slot;
  return (page * page_size * num_heads + entry) * head_dim;
}

void append_paged_kv(std::span<const double> append, std::span<const int32_t> batch_indices,
                     std::span<const int32_t> positions, std::span<const int32_t> kv_indices,
                     std::span<const int32_t> kv_indptr, const PagedCacheShape& shape,
                     std::span<double> cache) {
  const int64_t row = shape.num_heads * shape.head_dim;
  if (static_cast<int64_t>(append.size()) != static_cast<int64_t>(batch_indices.size()) * row ||
      positions.size() != batch_indices.size() ||
      static_cast<int64_t>(cache.size()) != shape.numel()) {
    throw std::invalid_argument("append_paged_kv: inconsistent sizes");
  }
  for (std::size_t i = 0; i < batch_indices.size(); ++i) {
    const int32_t b = batch_indices[i];
    const int32_t p = positions[i];
    const int64_t page_iter = kv_indptr[b] + p / shape.page_size;
    if (page_iter < 0 || page_iter >= static_cast<int64_t>(kv_indices.size())) {
      throw std::out_of_range("append_paged_kv: page table entry outside kv_indices");
    }
    const int32_t page = kv_indices[page_iter];
    for (int64_t h = 0; h < shape.num_heads; ++h) {
      const int64_t base = shape.offset(page, p % shape.page_size, h);
      for (int64_t d = 0; d < shape.head_dim; ++d) {
        cache[base + d] = append[static_cast<int64_t>(i) * row + h * shape.head_dim + d];
      }
    }
  }
}

}  // namespace tessera::reference
