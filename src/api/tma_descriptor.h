// Tensor maps for the Hopper prefill kernel's bulk tensor copies, encoded on
// the host through the driver's cuTensorMapEncodeTiled (reached with
// cudaGetDriverEntryPointByVersion, so libtessera does not link libcuda).
#pragma once

#include <cstdint>

#include "tessera/arch/sm90/tma.cuh"
#include "tessera/core/dtype.h"

namespace tessera::detail {

// A 3-D view of 16-bit rows: dims innermost first (head_dim, heads, tokens),
// the outer two strides in bytes (multiples of 16), box (64, box_heads,
// box_tokens) landing as 128-byte-swizzled rows. `tokens` may be 0 (an empty
// map the kernel never reads). Throws naming `argument` when the driver
// rejects the view.
sm90::TensorMap encode_rows_tensor_map(const void* base, int64_t head_dim, int64_t heads,
                                       int64_t tokens, int64_t stride_head_bytes,
                                       int64_t stride_token_bytes, int box_heads, int box_tokens,
                                       const char* argument);

}  // namespace tessera::detail
