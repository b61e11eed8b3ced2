// Tensor maps for the Hopper kernels' bulk tensor copies (prefill, segment
// GEMM), encoded on the host through the driver's cuTensorMapEncodeTiled (reached with
// cudaGetDriverEntryPointByVersion, so libtessera does not link libcuda).
#pragma once

#include <cstdint>

#include "tessera/arch/sm90/tma.cuh"
#include "tessera/core/dtype.h"

namespace tessera::detail {

// A 3-D view of 16-bit values: dims innermost first, the outer two strides
// in bytes (positive multiples of 16), box dims of at most 256 with an
// innermost box of 64 values, landing as 128-byte-swizzled rows; box
// elements outside the view land as zeros. An outermost dim of 0 (or a null
// base) gives an empty map the kernel never reads. Throws naming `argument`
// when the driver rejects the view.
sm90::TensorMap encode_tensor_map_3d(const void* base, const int64_t (&dims)[3],
                                     const int64_t (&strides_bytes)[2], const int (&box)[3],
                                     const char* argument);

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
