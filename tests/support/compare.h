// Tolerance checks against float64 references. A check passes when the
// relative L2 error ||out - ref|| / ||ref|| is under max_rel_l2 AND every
// element satisfies |out - ref| <= atol + rtol * |ref|. NaN never passes.
// On failure the message gives both errors and the worst element.
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <string>

#include "support/device_tensor.h"
#include "tessera/core/dtype.h"

namespace tessera::testing {

struct Tolerance {
  double max_rel_l2;
  double atol;
  double rtol;
};

// DESIGN.md's bars: 1e-2 relative L2 for bf16 data, 5e-3 for fp16.
inline constexpr Tolerance kBFloat16Tolerance{1e-2, 1e-2, 1.6e-2};
inline constexpr Tolerance kFloat16Tolerance{5e-3, 2e-3, 2e-3};

// One rounding of a float32 result to the 16-bit dtype: DESIGN.md's bars.
inline Tolerance tolerance_for(DType dtype) {
  return dtype == DType::kBFloat16 ? kBFloat16Tolerance : kFloat16Tolerance;
}

// The byte DeviceTensor::poison() writes (NaN in every float type).
inline constexpr unsigned char kPoisonByte = 0xff;

// Bytes of the tensor's allocation outside its logical elements still hold
// the poison they were given: a kernel wrote nothing outside its output.
::testing::AssertionResult padding_untouched(const DeviceTensor& tensor);

::testing::AssertionResult all_close(std::span<const float> out, std::span<const double> ref,
                                     Tolerance tolerance);
// The same with extra_atol[i] added to element i's allowance: for results
// whose rounding error grows with the terms summed rather than with the sum
// (fp8 tensor cores' reduced-precision fast accumulation).
::testing::AssertionResult all_close(std::span<const float> out, std::span<const double> ref,
                                     Tolerance tolerance, std::span<const double> extra_atol);
// lse outputs: -inf exactly where the reference is -inf (nothing attended),
// all_close with `tolerance` on the rest.
::testing::AssertionResult lse_close(std::span<const float> out, std::span<const double> ref,
                                     Tolerance tolerance);

// Exact equality, for kernels that move bits (append, copies).
::testing::AssertionResult all_equal(std::span<const float> out, std::span<const float> expected);

}  // namespace tessera::testing
