// The parameters of the segment (grouped) GEMM kernel, shared by the host
// launcher (src/api/segment_gemm.cu) and the device code: plain data, no
// CUDA calls, compiled by the host compiler too.
#pragma once

#include <cuda/std/cstdint>

namespace tessera::gemm {

// How W[w] is stored: [d_in, d_out] (d_out contiguous) or [d_out, d_in]
// (d_in contiguous, FlashInfer's weight_column_major).
enum class WeightLayout { kRowMajor, kColumnMajor };

// Segment bounds as the caller gave them, read on the device.
enum class SegmentForm : int32_t { kIndptr, kLengths };

template <typename T>
struct SegmentGemmParams {
  const T* x;        // [total_rows, d_in], rows x_row_stride apart
  const T* weights;  // num_weights matrices, weight_stride apart
  T* y;              // [total_rows, d_out], rows y_row_stride apart
  int64_t x_row_stride;
  int64_t y_row_stride;
  int64_t weight_stride;      // elements between W[w] and W[w + 1]
  int64_t weight_row_stride;  // between rows of one W (d_in rows or d_out rows)
  // seg_indptr [batch_size + 1] or seg_lens [batch_size]; int64 or int32.
  const void* segments;
  // [batch_size] or null (segment i uses W[i]); int64 or int32.
  const void* weight_indices;
  int32_t batch_size;
  int32_t num_weights;  // unvalidated weight_indices are clamped to [0, num_weights)
  int32_t total_rows;
  int32_t d_in;
  int32_t d_out;
  SegmentForm segment_form;
  bool segments_int64;
  bool weight_indices_int64;
};

// A bound on the kBlockM x kBlockN tiles of any segment lengths summing to
// at most total_rows, the tail pseudo-segment included: each of the
// batch_size + 1 (pseudo-)segments adds at most one partial row tile. The
// persistent kernels are correct for more; the launch caps its grid with it.
template <typename T>
constexpr int64_t max_segment_tiles(const SegmentGemmParams<T>& p, int64_t block_m,
                                    int64_t block_n) {
  const int64_t n_tiles = (p.d_out + block_n - 1) / block_n;
  return (p.total_rows / block_m + p.batch_size + 1) * n_tiles;
}

}  // namespace tessera::gemm
