// float64 references for rotary position embedding (tessera/api/rope.h).
// Angles follow the documented float32 contract: freq_j is computed in double
// and rounded to float32, the angle is the float32 product pos * freq_j; only
// cos/sin and the rotation are then evaluated in double. That isolates what
// a kernel can get wrong (sin/cos precision, pairing, indexing) from the
// rounding the API specifies.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tessera/api/rope.h"

namespace tessera::reference {

// freq_j for j in [0, rotary_dim / 2), in double, as rope.h specifies.
std::vector<double> rope_frequencies(int64_t rotary_dim, const RopeOptions& options);

// Positions of a ragged batch: token i of request b sits at
// offsets[b] + i - indptr[b].
std::vector<int64_t> ragged_positions(std::span<const int32_t> indptr,
                                      std::span<const int32_t> offsets);

// x: [num_tokens, num_heads, head_dim] row-major; returns the rotated copy
// (dims past rotary_dim unchanged). options.rotary_dim == 0 means head_dim.
std::vector<double> apply_rope(std::span<const float> x, int64_t num_tokens, int64_t num_heads,
                               int64_t head_dim, std::span<const int64_t> positions,
                               const RopeOptions& options);

// vLLM form: cache [max_position, rotary_dim] float32, cos half then sin half.
std::vector<double> apply_rope_with_cos_sin_cache(std::span<const float> x, int64_t num_tokens,
                                                  int64_t num_heads, int64_t head_size,
                                                  std::span<const int64_t> positions,
                                                  std::span<const float> cos_sin_cache,
                                                  int64_t rotary_dim, bool is_neox);

// Builds a cos/sin cache of max_position rows from the same float32 angles.
std::vector<float> rope_cos_sin_cache(int64_t max_position, int64_t rotary_dim,
                                      const RopeOptions& options);

}  // namespace tessera::reference
