// Host entry points of the gated activations: validate, view the leading
// dims as one strided row dim, pick the 16-byte or scalar path, launch.
#include "tessera/api/activation.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "tessera/activation/gated_activation.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

using activation::GatedActivation;
using activation::GatedActivationParams;
using activation::kGatedActivationThreads;
using activation::kGatedActivationVecBytes;

constexpr int kVecElems = kGatedActivationVecBytes / 2;  // 16-bit dtypes only
constexpr int64_t kMaxGridY = 65535;                      // CUDA's gridDim.y limit

struct Rows {
  int64_t count = 1;
  int64_t stride = 0;  // elements between consecutive rows (any value when count <= 1)
};

// The leading dims [0, ndim - 1) as one row dim. Possible when every leading
// dim of size > 1 has stride = row stride * (product of the leading sizes
// inside it), i.e. the rows are evenly spaced.
Rows collapse_leading_dims(const TensorView& view) {
  Rows rows;
  if (view.numel() == 0) return Rows{0, 0};
  int64_t inner_rows = 1;  // rows spanned by one step of dim d
  bool have_stride = false;
  for (int d = view.ndim() - 2; d >= 0; --d) {
    if (view.size(d) > 1) {
      if (!have_stride) {
        // The innermost leading dim of size > 1 sets the row stride (every
        // dim inside it has size 1, so inner_rows is 1 here).
        rows.stride = view.stride(d);
        have_stride = true;
      } else {
        TESSERA_CHECK_ARG(view.stride(d) == rows.stride * inner_rows, view.name(),
                          "leading dims that collapse into one evenly strided row dim",
                          "stride " + std::to_string(view.stride(d)) + " at dim " +
                              std::to_string(d) + " (shape " + view.shape_string() + ")");
      }
    }
    inner_rows *= view.size(d);
  }
  rows.count = inner_rows;
  return rows;
}

template <typename T, GatedActivation kAct>
void launch(const GatedActivationParams<T>& params, int64_t num_rows, bool vectorized,
            cudaStream_t stream) {
  const int64_t units = vectorized ? params.d / kVecElems : params.d;
  const int64_t rounded = (units + 31) / 32 * 32;
  const int threads = static_cast<int>(std::min<int64_t>(kGatedActivationThreads, rounded));
  const int64_t chunks = std::min<int64_t>((units + threads - 1) / threads, kMaxGridY);
  const dim3 grid(static_cast<unsigned>(num_rows), static_cast<unsigned>(chunks));
  if (vectorized) {
    activation::gated_activation_kernel<T, kVecElems, kAct><<<grid, threads, 0, stream>>>(params);
  } else {
    activation::gated_activation_kernel<T, 1, kAct><<<grid, threads, 0, stream>>>(params);
  }
}

template <GatedActivation kAct>
void run_gated_activation(const DLTensor& input_tensor, const DLTensor& out_tensor,
                          cudaStream_t stream) {
  const TensorView input(input_tensor, "input");
  input.expect_ndim_between(1, TensorView::kMaxDims)
      .expect_dtype({DType::kFloat16, DType::kBFloat16})
      .expect_cuda()
      .expect_last_dim_contiguous();
  const int64_t two_d = input.size(-1);
  TESSERA_CHECK_ARG(two_d % 2 == 0, "input", "an even last dim (the x and gate halves)",
                    std::to_string(two_d) + " (shape " + input.shape_string() + ")");
  const int64_t d = two_d / 2;

  const TensorView out(out_tensor, "out");
  out.expect_ndim(input.ndim()).expect_cuda().expect_last_dim_contiguous();
  expect_same_dtype(input, out);
  expect_same_device(input, out);
  for (int dim = 0; dim + 1 < input.ndim(); ++dim) {
    out.expect_size(dim, input.size(dim), "the size of input");
  }
  out.expect_size(-1, d, "half the last dim of input");

  const Rows input_rows = collapse_leading_dims(input);
  const Rows out_rows = collapse_leading_dims(out);
  TESSERA_CHECK_ARG(input_rows.count <= std::numeric_limits<int32_t>::max(), "input",
                    "at most 2^31 - 1 rows", std::to_string(input_rows.count));
  TESSERA_CHECK_ARG(out_rows.count <= 1 || out_rows.stride >= d || out_rows.stride <= -d, "out",
                    "rows that do not overlap (row stride at least " + std::to_string(d) + ")",
                    "row stride " + std::to_string(out_rows.stride));
  expect_identical_or_disjoint(input, out);  // shapes differ: never identical

  if (out.numel() == 0) return;

  const bool vectorized = d % kVecElems == 0 && input.rows_aligned_to(kGatedActivationVecBytes) &&
                          out.rows_aligned_to(kGatedActivationVecBytes);
  DeviceGuard guard(input.device().device_id);
  const auto fill = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    GatedActivationParams<T> params{};
    params.input = input.data_as<const T>();
    params.out = out.data_as<T>();
    params.input_row_stride = input_rows.stride;
    params.out_row_stride = out_rows.stride;
    params.d = d;
    launch<T, kAct>(params, input_rows.count, vectorized, stream);
  };
  if (input.dtype() == DType::kFloat16) {
    fill(static_cast<half_t*>(nullptr));
  } else {
    fill(static_cast<bfloat16_t*>(nullptr));
  }
  TESSERA_CHECK_LAUNCH();
}

}  // namespace

void silu_and_mul(const DLTensor& input, const DLTensor& out, cudaStream_t stream) {
  run_gated_activation<GatedActivation::kSilu>(input, out, stream);
}

void gelu_and_mul(const DLTensor& input, const DLTensor& out, cudaStream_t stream) {
  run_gated_activation<GatedActivation::kGelu>(input, out, stream);
}

void gelu_tanh_and_mul(const DLTensor& input, const DLTensor& out, cudaStream_t stream) {
  run_gated_activation<GatedActivation::kGeluTanh>(input, out, stream);
}

}  // namespace tessera
