// float64 references for the GEMMs: segment GEMM (selected rows, so large
// shapes stay cheap) and the scaled batched GEMM of bmm_fp8.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tessera::reference {

struct SegmentGemmShape {
  int64_t d_in = 0;
  int64_t d_out = 0;
  bool weight_column_major = false;  // W[w] stored [d_out, d_in]
};

// Rows `rows` of y = x @ W[w_i] per segment: x [total_rows, d_in] row-major,
// weights [num_weights, d_in, d_out] (or [num_weights, d_out, d_in]),
// seg_indptr [batch + 1], weight_indices [batch] or empty (segment i uses
// W[i]). Returns rows.size() x d_out values; a row outside every segment is 0.
std::vector<double> segment_gemm_rows(std::span<const float> x, std::span<const float> weights,
                                      std::span<const int64_t> seg_indptr,
                                      std::span<const int64_t> weight_indices,
                                      const SegmentGemmShape& shape, std::span<const int64_t> rows);

// out[b] = (a[b] * a_scale) @ (b[b] * b_scale): a [batch, m, k], b [batch, k,
// n] (logical, row-major here), out [batch, m, n].
std::vector<double> scaled_bmm(std::span<const float> a, std::span<const float> b, int64_t batch,
                               int64_t m, int64_t n, int64_t k, double a_scale, double b_scale);

}  // namespace tessera::reference
