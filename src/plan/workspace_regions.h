// Workspace layouts are consecutive regions, each starting on a 256-byte
// boundary (so the kernels' vector and struct loads from any region are
// aligned when the base is, as cudaMalloc's are). Shared by the planners'
// layouts and the API's own workspace tails.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tessera::plan {

inline constexpr std::size_t kRegionAlignment = 256;

inline std::size_t align_region(std::size_t bytes) {
  return (bytes + kRegionAlignment - 1) / kRegionAlignment * kRegionAlignment;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace tessera::plan
