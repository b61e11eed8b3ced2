// Tolerance checks against float64 references. A check passes when the
// relative L2 error ||out - ref|| / ||ref|| is under max_rel_l2 AND every
// element satisfies |out - ref| <= atol + rtol * |ref|. NaN never passes.
// On failure the message gives both errors and the worst element.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <string>

namespace tessera::testing {

struct Tolerance {
  double max_rel_l2;
  double atol;
  double rtol;
};

// DESIGN.md's bars: 1e-2 relative L2 for bf16 data, 5e-3 for fp16.
inline constexpr Tolerance kBFloat16Tolerance{1e-2, 1e-2, 1.6e-2};
inline constexpr Tolerance kFloat16Tolerance{5e-3, 2e-3, 2e-3};

::testing::AssertionResult all_close(std::span<const float> out, std::span<const double> ref,
                                     Tolerance tolerance);
// Exact equality, for kernels that move bits (append, copies).
::testing::AssertionResult all_equal(std::span<const float> out, std::span<const float> expected);

}  // namespace tessera::testing
