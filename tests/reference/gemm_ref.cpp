#include "reference/gemm_ref.h"

#include <stdexcept>

namespace tessera::reference {

std::vector<double> segment_gemm_rows(std::span<const float> x, std::span<const float> weights,
                                      std::span<const int64_t> seg_indptr,
                                      std::span<const int64_t> weight_indices,
                                      const SegmentGemmShape& shape,
                                      std::span<const int64_t> rows) {
  const int64_t d_in = shape.d_in;
  const int64_t d_out = shape.d_out;
  const int64_t batch = static_cast<int64_t>(seg_indptr.size()) - 1;
  std::vector<double> out(rows.size() * static_cast<std::size_t>(d_out), 0.0);
  std::vector<double> x_row(static_cast<std::size_t>(d_in));
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const int64_t row = rows[r];
    int64_t segment = -1;
    for (int64_t s = 0; s < batch; ++s) {
      if (row >= seg_indptr[s] && row < seg_indptr[s + 1]) segment = s;
    }
    if (segment < 0) continue;  // past the last segment: zeros
    const int64_t w = weight_indices.empty() ? segment : weight_indices[segment];
    const float* matrix = weights.data() + w * d_in * d_out;
    for (int64_t k = 0; k < d_in; ++k) x_row[k] = x[row * d_in + k];
    double* y = out.data() + r * d_out;
    if (shape.weight_column_major) {
      for (int64_t n = 0; n < d_out; ++n) {
        const float* w_row = matrix + n * d_in;  // row n of the stored [d_out, d_in]
        double sum = 0.0;
        for (int64_t k = 0; k < d_in; ++k) sum += x_row[k] * w_row[k];
        y[n] = sum;
      }
    } else {
      for (int64_t k = 0; k < d_in; ++k) {
        const float* w_row = matrix + k * d_out;
        for (int64_t n = 0; n < d_out; ++n) y[n] += x_row[k] * w_row[n];
      }
    }
  }
  return out;
}

std::vector<double> scaled_bmm(std::span<const float> a, std::span<const float> b, int64_t batch,
                               int64_t m, int64_t n, int64_t k, double a_scale, double b_scale) {
  if (static_cast<int64_t>(a.size()) != batch * m * k ||
      static_cast<int64_t>(b.size()) != batch * k * n) {
    throw std::invalid_argument("scaled_bmm: sizes do not match the shape");
  }
  std::vector<double> out(static_cast<std::size_t>(batch * m * n), 0.0);
  for (int64_t bi = 0; bi < batch; ++bi) {
    for (int64_t i = 0; i < m; ++i) {
      double* row = out.data() + (bi * m + i) * n;
      for (int64_t kk = 0; kk < k; ++kk) {
        const double av = a[(bi * m + i) * k + kk] * a_scale;
        const float* b_row = b.data() + (bi * k + kk) * n;
        for (int64_t j = 0; j < n; ++j) row[j] += av * b_row[j] * b_scale;
      }
    }
  }
  return out;
}

}  // namespace tessera::reference
