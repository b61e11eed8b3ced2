// Host entry points of the RMSNorm family: validate every argument, pick the
// register-resident launch shape from the hidden size, launch.
#include "tessera/api/norm.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"
#include "tessera/norm/rmsnorm.cuh"

namespace tessera {

namespace {

using norm::kRmsNormMaxHidden;
using norm::kRmsNormVecBytes;
using norm::RmsNormParams;

// Elements per 16-byte vector for the 16-bit dtypes this family takes.
constexpr int kVecElems = kRmsNormVecBytes / 2;
// A row CTA of at least 4 warps: enough threads to issue the row's loads
// quickly, few enough that many rows (CTAs) share an SM and hide each
// other's reduction and tail.
constexpr int kMinRowThreads = 128;
// Items per thread the AOT set instantiates (see launch_for_dtype).
constexpr int kVectorItems[] = {8, 4, 2, 1};  // largest first
constexpr int kScalarItems[] = {32, 4};

struct LaunchShape {
  bool vectorized = false;
  int items = 1;    // vectors (or scalars) per thread
  int threads = 0;  // multiple of 32
};

int64_t round_up_to_warp(int64_t n) { return (n + kWarpSize - 1) / kWarpSize * kWarpSize; }

// The largest items-per-thread that still leaves kMinRowThreads threads per
// row (more bytes in flight per thread, same occupancy); rows too short for
// that get the smallest item count and fewer threads.
template <std::size_t kN>
LaunchShape choose_shape(int64_t units_per_row, const int (&items_choices)[kN], int elems_per_item) {
  LaunchShape shape;
  shape.items = items_choices[kN - 1];
  for (int items : items_choices) {
    if ((units_per_row + items - 1) / items >= kMinRowThreads) {
      shape.items = items;
      break;
    }
  }
  shape.threads = static_cast<int>(
      std::max<int64_t>(round_up_to_warp((units_per_row + shape.items - 1) / shape.items), kWarpSize));
  // kRmsNormMaxHidden is chosen so that this always holds; keep it checked.
  if (shape.threads > norm::rmsnorm_max_threads(shape.items * elems_per_item)) {
    throw Error("tessera: internal: no RMSNorm launch shape for " +
                std::to_string(units_per_row * elems_per_item) + " elements per row");
  }
  return shape;
}

template <typename T, int kVec, int kItems, bool kFused>
void launch(const RmsNormParams<T>& params, int64_t num_tokens, int threads, cudaStream_t stream) {
  norm::rmsnorm_kernel<T, kVec, kItems, kFused>
      <<<static_cast<unsigned>(num_tokens), threads, 0, stream>>>(params);
}

// The explicit AOT list: per dtype and form, 16-byte vectors with 1/2/4/8
// items per thread and scalars with 4/32.
template <typename T, bool kFused>
void launch_for_dtype(const RmsNormParams<T>& params, int64_t num_tokens, LaunchShape shape,
                      cudaStream_t stream) {
  if (shape.vectorized) {
    switch (shape.items) {
      case 1: return launch<T, kVecElems, 1, kFused>(params, num_tokens, shape.threads, stream);
      case 2: return launch<T, kVecElems, 2, kFused>(params, num_tokens, shape.threads, stream);
      case 4: return launch<T, kVecElems, 4, kFused>(params, num_tokens, shape.threads, stream);
      case 8: return launch<T, kVecElems, 8, kFused>(params, num_tokens, shape.threads, stream);
      default: break;
    }
  } else {
    switch (shape.items) {
      case 4: return launch<T, 1, 4, kFused>(params, num_tokens, shape.threads, stream);
      case 32: return launch<T, 1, 32, kFused>(params, num_tokens, shape.threads, stream);
      default: break;
    }
  }
  throw Error("tessera: internal: RMSNorm items per thread " + std::to_string(shape.items) +
              " not instantiated");
}

// A written tensor's rows must not overlap each other (stride 0 or a stride
// shorter than the row would make CTAs race on the same elements).
void expect_distinct_rows(const TensorView& view) {
  const int64_t rows = view.size(0);
  const int64_t hidden = view.size(1);
  const int64_t row_stride = view.stride(0);
  TESSERA_CHECK_ARG(rows <= 1 || row_stride >= hidden || row_stride <= -hidden, view.name(),
                    "a row stride of at least the hidden size " + std::to_string(hidden) +
                        " (rows must not overlap)",
                    "row stride " + std::to_string(row_stride));
}

void expect_norm_tensor(const TensorView& view) {
  view.expect_ndim(2)
      .expect_dtype({DType::kFloat16, DType::kBFloat16})
      .expect_cuda()
      .expect_last_dim_contiguous();
}

struct NormArgs {
  const DLTensor& input;
  const DLTensor* residual;  // null for the plain form
  const DLTensor& weight;
  const DLTensor& out;       // the input itself for the fused form
  double eps;
  float weight_offset;
};

template <bool kFused>
void run_rmsnorm(const NormArgs& args, cudaStream_t stream) {
  const TensorView input(args.input, "input");
  expect_norm_tensor(input);
  const int64_t num_tokens = input.size(0);
  const int64_t hidden = input.size(1);
  TESSERA_CHECK_ARG(hidden <= kRmsNormMaxHidden, "input",
                    "hidden size (dim 1) at most " + std::to_string(kRmsNormMaxHidden),
                    std::to_string(hidden) + " (shape " + input.shape_string() + ")");
  TESSERA_CHECK_ARG(num_tokens <= std::numeric_limits<int32_t>::max(), "input",
                    "at most 2^31 - 1 tokens (dim 0)", std::to_string(num_tokens));

  const TensorView weight(args.weight, "weight");
  weight.expect_ndim(1).expect_cuda();
  expect_same_dtype(input, weight);
  expect_same_device(input, weight);
  weight.expect_size(0, hidden, "the hidden size of input");

  const TensorView out(args.out, kFused ? "input" : "out");
  if constexpr (!kFused) {
    expect_norm_tensor(out);
    expect_same_dtype(input, out);
    expect_same_device(input, out);
    expect_same_shape(input, out);
    expect_identical_or_disjoint(input, out);
  }
  expect_distinct_rows(out);
  expect_identical_or_disjoint(weight, out);  // never identical: ranks differ

  int64_t residual_row_stride = 0;
  void* residual_data = nullptr;
  bool residual_aligned = true;
  if constexpr (kFused) {
    const TensorView residual(*args.residual, "residual");
    expect_norm_tensor(residual);
    expect_same_dtype(input, residual);
    expect_same_device(input, residual);
    expect_same_shape(input, residual);
    // Both are written: residual may not be input, not even exactly.
    TESSERA_CHECK_ARG(!same_storage(input, residual) || input.numel() == 0, "residual",
                      "memory disjoint from input", "the same memory as input");
    expect_identical_or_disjoint(input, residual);
    expect_identical_or_disjoint(weight, residual);
    expect_distinct_rows(residual);
    residual_row_stride = residual.stride(0);
    residual_data = residual.data();
    residual_aligned = residual.rows_aligned_to(kRmsNormVecBytes);
  }

  TESSERA_CHECK_ARG(args.eps > 0.0 && std::isfinite(args.eps), "eps", "a finite value > 0",
                    std::to_string(args.eps));

  if (input.numel() == 0) return;

  const bool vectorized = hidden % kVecElems == 0 && input.rows_aligned_to(kRmsNormVecBytes) &&
                          out.rows_aligned_to(kRmsNormVecBytes) &&
                          weight.rows_aligned_to(kRmsNormVecBytes) && residual_aligned;
  LaunchShape shape = vectorized ? choose_shape(hidden / kVecElems, kVectorItems, kVecElems)
                                 : choose_shape(hidden, kScalarItems, 1);
  shape.vectorized = vectorized;

  DeviceGuard guard(input.device().device_id);
  const auto fill = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    RmsNormParams<T> params{};
    params.input = input.data_as<const T>();
    params.out = out.data_as<T>();
    params.residual = static_cast<T*>(residual_data);
    params.weight = weight.data_as<const T>();
    params.input_row_stride = input.stride(0);
    params.out_row_stride = out.stride(0);
    params.residual_row_stride = residual_row_stride;
    params.hidden = static_cast<int>(hidden);
    params.eps = static_cast<float>(args.eps);
    params.weight_offset = args.weight_offset;
    launch_for_dtype<T, kFused>(params, num_tokens, shape, stream);
  };
  if (input.dtype() == DType::kFloat16) {
    fill(static_cast<half_t*>(nullptr));
  } else {
    fill(static_cast<bfloat16_t*>(nullptr));
  }
  TESSERA_CHECK_LAUNCH();
}

constexpr float kPlainWeightOffset = 0.f;
constexpr float kGemmaWeightOffset = 1.f;

}  // namespace

void rmsnorm(const DLTensor& input, const DLTensor& weight, const DLTensor& out, double eps,
             cudaStream_t stream) {
  run_rmsnorm<false>({input, nullptr, weight, out, eps, kPlainWeightOffset}, stream);
}

void fused_add_rmsnorm(const DLTensor& input, const DLTensor& residual, const DLTensor& weight,
                       double eps, cudaStream_t stream) {
  run_rmsnorm<true>({input, &residual, weight, input, eps, kPlainWeightOffset}, stream);
}

void gemma_rmsnorm(const DLTensor& input, const DLTensor& weight, const DLTensor& out, double eps,
                   cudaStream_t stream) {
  run_rmsnorm<false>({input, nullptr, weight, out, eps, kGemmaWeightOffset}, stream);
}

void gemma_fused_add_rmsnorm(const DLTensor& input, const DLTensor& residual,
                             const DLTensor& weight, double eps, cudaStream_t stream) {
  run_rmsnorm<true>({input, &residual, weight, input, eps, kGemmaWeightOffset}, stream);
}

}  // namespace tessera
