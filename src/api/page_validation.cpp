#include "api/page_validation.h"

#include <string>

#include "tessera/core/error.h"

namespace tessera::detail {

namespace {

std::string range(int64_t lo, int64_t hi) {
  std::string text = "[";
  text += std::to_string(lo);
  text += ", ";
  text += std::to_string(hi);
  text += ')';
  return text;
}

void validate_indptr(std::span<const int32_t> kv_indptr, std::size_t num_kv_indices) {
  TESSERA_CHECK_ARG(
      !kv_indptr.empty() && kv_indptr[0] == 0, "kv_indptr", "kv_indptr[0] = 0",
      kv_indptr.empty() ? std::string("an empty tensor") : element_text("kv_indptr", 0, kv_indptr[0]));
  for (std::size_t b = 1; b < kv_indptr.size(); ++b) {
    TESSERA_CHECK_ARG(kv_indptr[b] >= kv_indptr[b - 1], "kv_indptr",
                      "non-decreasing values (kv_indptr[" + std::to_string(b - 1) +
                          "] = " + std::to_string(kv_indptr[b - 1]) + ")",
                      element_text("kv_indptr", b, kv_indptr[b]));
  }
  const std::size_t last = kv_indptr.size() - 1;
  TESSERA_CHECK_ARG(
      static_cast<std::size_t>(kv_indptr[last]) <= num_kv_indices, "kv_indptr",
      "a last value at most the length of kv_indices (" + std::to_string(num_kv_indices) + ")",
      element_text("kv_indptr", last, kv_indptr[last]));
}

}  // namespace

void validate_append_indices(const AppendIndexArrays& arrays, int64_t num_pages,
                             int64_t page_size) {
  const auto& kv_indptr = arrays.kv_indptr;
  validate_indptr(kv_indptr, arrays.kv_indices.size());
  const std::size_t batch = kv_indptr.size() - 1;
  TESSERA_CHECK_ARG(arrays.kv_last_page_len.size() == batch, "kv_last_page_len",
                    "length " + std::to_string(batch) + " (len(kv_indptr) - 1)",
                    "length " + std::to_string(arrays.kv_last_page_len.size()));

  // Only the page indices that requests use: kv_indices may be a larger
  // preallocated buffer.
  for (std::size_t j = 0; j < static_cast<std::size_t>(kv_indptr[batch]); ++j) {
    const int32_t page = arrays.kv_indices[j];
    TESSERA_CHECK_ARG(page >= 0 && page < num_pages, "kv_indices",
                      "page indices in " + range(0, num_pages), element_text("kv_indices", j, page));
  }

  for (std::size_t b = 0; b < batch; ++b) {
    const bool has_pages = kv_indptr[b + 1] > kv_indptr[b];
    const int32_t last = arrays.kv_last_page_len[b];
    const bool ok = has_pages ? (last >= 1 && last <= page_size) : (last >= 0 && last <= page_size);
    TESSERA_CHECK_ARG(ok, "kv_last_page_len",
                      has_pages ? "values in [1, page_size = " + std::to_string(page_size) +
                                      "] for a request with pages"
                                : "values in [0, page_size = " + std::to_string(page_size) +
                                      "] for a request with no pages",
                      element_text("kv_last_page_len", b, last));
  }

  TESSERA_CHECK_ARG(
      arrays.positions.size() == arrays.batch_indices.size(), "positions",
      "length " + std::to_string(arrays.batch_indices.size()) + " (len(batch_indices))",
      "length " + std::to_string(arrays.positions.size()));
  for (std::size_t i = 0; i < arrays.batch_indices.size(); ++i) {
    const int32_t b = arrays.batch_indices[i];
    TESSERA_CHECK_ARG(b >= 0 && static_cast<std::size_t>(b) < batch, "batch_indices",
                      "batch indices in " + range(0, static_cast<int64_t>(batch)),
                      element_text("batch_indices", i, b));
    const int64_t pages = kv_indptr[b + 1] - kv_indptr[b];
    const int64_t seq_len = pages == 0 ? 0 : (pages - 1) * page_size + arrays.kv_last_page_len[b];
    const int32_t position = arrays.positions[i];
    TESSERA_CHECK_ARG(
        position >= 0 && position < seq_len, "positions",
        "positions in " + range(0, seq_len) + " (the length of request " + std::to_string(b) + ")",
        element_text("positions", i, position));
  }
}

}  // namespace tessera::detail
