// Host checks of segment_gemm's device index arrays (seg_indptr or seg_lens,
// weight_indices), run in validation mode after the API layer has copied
// them to the host. Plain C++, no CUDA: unit-tested on the CPU.
#pragma once

#include <cstdint>
#include <span>

namespace tessera::detail {

struct SegmentIndexArrays {
  // seg_indptr [batch_size + 1] when `indptr`, else seg_lens [batch_size].
  std::span<const int64_t> segments;
  bool indptr = true;
  // [batch_size], or empty when the call has none.
  std::span<const int64_t> weight_indices;
};

// Throws tessera::Error naming the argument and the first offending entry
// when: seg_indptr does not start at 0, decreases, or does not end at
// total_rows; a length in seg_lens is negative or they do not sum to
// total_rows; a weight index is outside [0, num_weights).
void validate_segment_arrays(const SegmentIndexArrays& arrays, int64_t total_rows,
                             int64_t num_weights);

}  // namespace tessera::detail
