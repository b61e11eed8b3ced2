// Prefill's paged row offsets: a cache row's position as a 32-bit count of
// units (header-only: the CPU tests check the arithmetic and the errors).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>

#include "api/paged_kv_cache_view.h"
#include "tessera/core/error.h"

namespace tessera::detail {

// A cache row's offset from the cache's start as one 32-bit count of
// `bytes` units: page_id * page + slot * entry + kv_head * head (prefill's
// shared-memory row table holds these, so each 16-byte copy's address is one
// multiply-add from the kernel parameter). The unit is the gcd of the
// strides that matter (a stride of an axis of size 1 does not): a head's row
// (head_dim elements) for the usual layouts, so 2^32 units reach far past
// any GPU's memory; strides with only a 16-byte common divisor reach 64 GiB
// per K or V tensor.
struct PagedRowUnits {
  uint32_t page;
  uint32_t entry;
  uint32_t head;
  uint32_t bytes;
};
// Throws naming the cache when a stride is negative (the table's offsets
// are unsigned) or the cache's extent needs more than 2^32 units (strides
// with a small common divisor: pad the page stride to a multiple of the
// entry stride).
inline PagedRowUnits paged_row_units(const ResolvedPagedKV& cache) {
  const int64_t page = cache.num_pages > 1 ? cache.stride_page : 0;
  const int64_t entry = cache.page_size > 1 ? cache.stride_entry : 0;
  const int64_t head = cache.num_heads > 1 ? cache.stride_head : 0;
  TESSERA_CHECK_ARG(page >= 0 && entry >= 0 && head >= 0, cache.name,
                    "non-negative page, entry and head strides",
                    "strides " + std::to_string(cache.stride_page) + " (page), " +
                        std::to_string(cache.stride_entry) + " (entry), " +
                        std::to_string(cache.stride_head) + " (head)");
  constexpr int64_t kMax = std::numeric_limits<uint32_t>::max();
  const auto element_bytes = static_cast<int64_t>(dtype_size_bytes(cache.dtype));
  int64_t unit = std::max<int64_t>(std::gcd(std::gcd(page, entry), head), 1);  // elements
  // Any common divisor serves: a smaller one when the gcd is 4 GiB or more
  // (a single huge stride is all that matters).
  while (unit * element_bytes > kMax) unit = std::gcd(unit, unit / 2);
  const auto last = [](int64_t size) {
    return static_cast<unsigned __int128>(std::max<int64_t>(size, 1) - 1);
  };
  const unsigned __int128 extent = last(cache.num_pages) * static_cast<uint64_t>(page / unit) +
                                   last(cache.page_size) * static_cast<uint64_t>(entry / unit) +
                                   last(cache.num_heads) * static_cast<uint64_t>(head / unit);
  TESSERA_CHECK_ARG(extent <= static_cast<unsigned __int128>(kMax), cache.name,
                    "page, entry and head strides whose common divisor addresses the cache in at "
                    "most 2^32 units (pad the page stride to a multiple of the entry stride)",
                    "strides " + std::to_string(cache.stride_page) + ", " +
                        std::to_string(cache.stride_entry) + " and " +
                        std::to_string(cache.stride_head) + " over " +
                        std::to_string(cache.num_pages) + " pages");
  return {static_cast<uint32_t>(page / unit), static_cast<uint32_t>(entry / unit),
          static_cast<uint32_t>(head / unit), static_cast<uint32_t>(unit * element_bytes)};
}
}  // namespace tessera::detail
