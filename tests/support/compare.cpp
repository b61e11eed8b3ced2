#include "support/compare.h"

#include <cmath>
#include <vector>
#include <sstream>

namespace tessera::testing {

::testing::AssertionResult all_close(std::span<const float> out, std::span<const double> ref,
                                     Tolerance tolerance) {
  return all_close(out, ref, tolerance, {});
}

::testing::AssertionResult all_close(std::span<const float> out, std::span<const double> ref,
                                     Tolerance tolerance, std::span<const double> extra_atol) {
  if (!extra_atol.empty() && extra_atol.size() != ref.size()) {
    return ::testing::AssertionFailure() << "size mismatch: extra_atol " << extra_atol.size()
                                         << " vs reference " << ref.size();
  }
  if (out.size() != ref.size()) {
    return ::testing::AssertionFailure()
           << "size mismatch: out " << out.size() << " vs reference " << ref.size();
  }
  double err_sq = 0.0;
  double ref_sq = 0.0;
  std::size_t nan_count = 0;
  std::size_t violations = 0;
  std::size_t worst = 0;
  double worst_excess = -1.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double o = out[i];
    const double r = ref[i];
    if (!std::isfinite(o) && std::isfinite(r)) {
      ++nan_count;
      if (worst_excess < INFINITY) { worst_excess = INFINITY; worst = i; }
      continue;
    }
    const double diff = std::abs(o - r);
    err_sq += diff * diff;
    ref_sq += r * r;
    const double allowed = tolerance.atol + tolerance.rtol * std::abs(r) +
                           (extra_atol.empty() ? 0.0 : extra_atol[i]);
    if (diff > allowed) ++violations;
    const double excess = diff - allowed;
    if (excess > worst_excess) { worst_excess = excess; worst = i; }
  }
  const double rel_l2 = ref_sq > 0 ? std::sqrt(err_sq / ref_sq) : std::sqrt(err_sq);
  std::ostringstream report;
  report << "rel_l2 " << rel_l2 << " (max " << tolerance.max_rel_l2 << "), " << violations
         << " of " << out.size() << " elements outside atol " << tolerance.atol << " + rtol "
         << tolerance.rtol << ", " << nan_count << " non-finite";
  if (!out.empty()) {
    report << "; worst element " << worst << ": out " << out[worst] << " vs reference "
           << ref[worst];
  }
  if (nan_count == 0 && violations == 0 && rel_l2 <= tolerance.max_rel_l2) {
    return ::testing::AssertionSuccess() << report.str();
  }
  return ::testing::AssertionFailure() << report.str();
}

::testing::AssertionResult padding_untouched(const DeviceTensor& tensor) {
  const std::vector<unsigned char> bytes = tensor.download_bytes();
  std::vector<bool> logical(bytes.size(), false);
  const auto element = static_cast<int64_t>(dtype_size_bytes(tensor.dtype()));
  const auto& shape = tensor.shape();
  const auto& strides = tensor.strides();
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    int64_t rest = i;
    int64_t offset = 0;
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      offset += (rest % shape[d]) * strides[d];
      rest /= shape[d];
    }
    for (int64_t b = 0; b < element; ++b) logical[offset * element + b] = true;
  }
  std::size_t padding = 0;
  std::size_t changed = 0;
  for (std::size_t b = 0; b < bytes.size(); ++b) {
    if (logical[b]) continue;
    ++padding;
    if (bytes[b] != kPoisonByte) ++changed;
  }
  if (changed == 0) return ::testing::AssertionSuccess() << padding << " padding bytes intact";
  return ::testing::AssertionFailure() << changed << " of " << padding << " padding bytes written";
}

::testing::AssertionResult lse_close(std::span<const float> out, std::span<const double> ref,
                                     Tolerance tolerance) {
  if (out.size() != ref.size()) {
    return ::testing::AssertionFailure()
           << "size mismatch: out " << out.size() << " vs reference " << ref.size();
  }
  std::vector<float> finite_out;
  std::vector<double> finite_ref;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (std::isinf(ref[i])) {
      if (!(std::isinf(out[i]) && out[i] < 0)) {
        return ::testing::AssertionFailure() << "lse[" << i << "] = " << out[i] << ", expected -inf";
      }
    } else {
      finite_out.push_back(out[i]);
      finite_ref.push_back(ref[i]);
    }
  }
  if (finite_ref.empty()) return ::testing::AssertionSuccess();
  return all_close(finite_out, finite_ref, tolerance);
}

::testing::AssertionResult all_equal(std::span<const float> out, std::span<const float> expected) {
  if (out.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size mismatch: out " << out.size() << " vs expected " << expected.size();
  }
  std::size_t mismatches = 0;
  std::size_t first = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    // Bitwise-moved values compare equal as floats; NaN never equals.
    if (!(out[i] == expected[i])) {
      if (mismatches == 0) first = i;
      ++mismatches;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << mismatches << " of " << out.size()
                                       << " elements differ; first at " << first << ": out "
                                       << out[first] << " vs expected " << expected[first];
}

}  // namespace tessera::testing
