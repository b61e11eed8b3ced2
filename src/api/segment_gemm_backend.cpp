#include "api/segment_gemm_backend.h"

#include <algorithm>
#include <string>

#include "tessera/core/error.h"

namespace tessera::detail {

namespace {

// The sm80 kernel's small tile serves outputs this narrow, or segments this
// short on average, where 128-row / -column tiles would be mostly padding.
constexpr int64_t kSmallTileMaxDOut = 64;
constexpr int64_t kSmallTileMaxAverageRows = 64;
// The GEMV kernel serves segments this short on average with k-contiguous
// W: memory bound, where the tiled kernels run one CTA's k loop per 64
// columns. Its grid's y dimension (<= 65535) holds d_out / 4 columns.
constexpr int64_t kGemvMaxAverageRows = 4;
constexpr int64_t kGemvMaxDOut = int64_t{65535} * 4;

bool gemv_problem(const SegmentGemmCall& c) {
  return c.column_major && c.d_out <= kGemvMaxDOut &&
         c.total_rows <= kGemvMaxAverageRows * std::max<int64_t>(1, c.batch_size);
}

bool small_problem(const SegmentGemmCall& c) {
  return c.d_out <= kSmallTileMaxDOut ||
         c.total_rows <= kSmallTileMaxAverageRows * std::max<int64_t>(1, c.batch_size);
}

// The argument whose strides the Hopper kernel's tensor maps cannot take,
// or null. A map stride must be a positive multiple of 16 bytes (the API
// layer checked the multiple); a stride of zero (a broadcast view) is not.
const char* sm90_unsupported_strides(const SegmentGemmCall& c) {
  if (c.total_rows == 0 || c.d_out == 0) return nullptr;  // nothing is read
  if (c.total_rows > 1 && c.x_row_stride <= 0) return "x";
  if (c.weight_row_stride <= 0 || (c.num_weights > 1 && c.weight_matrix_stride <= 0)) {
    return "weights";
  }
  return nullptr;
}

}  // namespace

SegmentGemmKernel choose_segment_gemm_kernel(const SegmentGemmCall& c) {
  const SegmentGemmKernel sm80 = gemv_problem(c)    ? SegmentGemmKernel::kSm80Gemv
                                 : small_problem(c) ? SegmentGemmKernel::kSm80Small
                                                    : SegmentGemmKernel::kSm80Large;
  switch (c.backend) {
    case SegmentGemmBackend::kSm80:
      return sm80;
    case SegmentGemmBackend::kSm90: {
      TESSERA_CHECK_ARG(c.device_runs_sm90a, "backend",
                        "sm90 only on a GPU of compute capability 9.0 (Hopper, sm_90a)",
                        "sm90 on device " + std::to_string(c.device_id) + ", another GPU");
      const char* strides = sm90_unsupported_strides(c);
      TESSERA_CHECK_ARG(strides == nullptr, strides == nullptr ? "weights" : strides,
                        "row and matrix strides above zero (backend sm90 reads through TMA)",
                        "a zero stride (a broadcast view)");
      return SegmentGemmKernel::kSm90;
    }
    case SegmentGemmBackend::kAuto:
      break;
  }
  const bool sm90 =
      c.device_runs_sm90a && !small_problem(c) && sm90_unsupported_strides(c) == nullptr;
  return sm90 ? SegmentGemmKernel::kSm90 : sm80;
}

}  // namespace tessera::detail
