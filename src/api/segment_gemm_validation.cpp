#include "api/segment_gemm_validation.h"

#include <string>

#include "tessera/core/error.h"

namespace tessera::detail {

namespace {

void validate_indptr(std::span<const int64_t> indptr, int64_t total_rows) {
  constexpr const char* kName = "seg_indptr";
  TESSERA_CHECK_ARG(!indptr.empty() && indptr[0] == 0, kName, "seg_indptr[0] = 0",
                    indptr.empty() ? std::string("no entries") : element_text(kName, 0, indptr[0]));
  for (std::size_t i = 1; i < indptr.size(); ++i) {
    TESSERA_CHECK_ARG(
        indptr[i] >= indptr[i - 1], kName, "non-decreasing offsets",
        element_text(kName, i, indptr[i]) + " after " + element_text(kName, i - 1, indptr[i - 1]));
  }
  const std::size_t last = indptr.size() - 1;
  TESSERA_CHECK_ARG(indptr[last] == total_rows, kName,
                    "seg_indptr[batch_size] = the rows of x (" + std::to_string(total_rows) + ")",
                    element_text(kName, last, indptr[last]));
}

void validate_lengths(std::span<const int64_t> lengths, int64_t total_rows) {
  constexpr const char* kName = "seg_lens";
  int64_t sum = 0;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    TESSERA_CHECK_ARG(lengths[i] >= 0, kName, "lengths >= 0", element_text(kName, i, lengths[i]));
    // Checked before adding, so that no sum overflows.
    TESSERA_CHECK_ARG(lengths[i] <= total_rows - sum, kName,
                      "lengths summing to the rows of x (" + std::to_string(total_rows) + ")",
                      "more rows by " + element_text(kName, i, lengths[i]) + " (after " +
                          std::to_string(sum) + ")");
    sum += lengths[i];
  }
  TESSERA_CHECK_ARG(sum == total_rows, kName,
                    "lengths summing to the rows of x (" + std::to_string(total_rows) + ")",
                    "a sum of " + std::to_string(sum));
}

}  // namespace

void validate_segment_arrays(const SegmentIndexArrays& arrays, int64_t total_rows,
                             int64_t num_weights) {
  if (arrays.indptr) {
    validate_indptr(arrays.segments, total_rows);
  } else {
    validate_lengths(arrays.segments, total_rows);
  }
  constexpr const char* kName = "weight_indices";
  for (std::size_t i = 0; i < arrays.weight_indices.size(); ++i) {
    const int64_t index = arrays.weight_indices[i];
    TESSERA_CHECK_ARG(index >= 0 && index < num_weights, kName,
                      "indices in [0, " + std::to_string(num_weights) + ") (the weight matrices)",
                      element_text(kName, i, index));
  }
}

}  // namespace tessera::detail
