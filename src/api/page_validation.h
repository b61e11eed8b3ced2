// Host checks of the index tensors of append_paged_kv_cache, run in
// validation mode (Validate::kOn or TESSERA_VALIDATE=1) after the API layer
// has copied them to the host. Plain C++, no CUDA: unit-tested on the CPU.
#pragma once

#include <cstdint>
#include <span>

namespace tessera::detail {

struct AppendIndexArrays {
  std::span<const int32_t> batch_indices;     // [nnz]
  std::span<const int32_t> positions;         // [nnz]
  std::span<const int32_t> kv_indices;        // [>= kv_indptr[batch]]
  std::span<const int32_t> kv_indptr;         // [batch + 1]
  std::span<const int32_t> kv_last_page_len;  // [batch]
};

// Throws tessera::Error naming the argument and the first offending index
// and value when: kv_indptr does not start at 0, decreases, or ends past
// kv_indices; a used page index is outside [0, num_pages); a request with
// pages has kv_last_page_len outside [1, page_size] (a request with no pages
// may have 0); a batch index is outside [0, batch); a position is outside
// [0, seq_len(b)) with seq_len(b) = (pages_b - 1) * page_size +
// kv_last_page_len[b] (0 for a request with no pages).
void validate_append_indices(const AppendIndexArrays& arrays, int64_t num_pages, int64_t page_size);

}  // namespace tessera::detail
