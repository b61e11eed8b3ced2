// Host entry points of the sampling family (tessera/api/sampling.h): validate
// every argument, choose the float4 or scalar row path, launch one CTA per
// request row, or for small batches on sm90 a cluster of CTAs per row
// (cluster_sample_kernel.cuh; the size from row_split.h).
#include "tessera/api/sampling.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "api/plan_run.h"
#include "core/once_map.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"
#include "tessera/sampling/cluster_sample_kernel.cuh"
#include "tessera/sampling/renorm_kernel.cuh"
#include "tessera/sampling/row_split.h"
#include "tessera/sampling/sample_kernel.cuh"
#include "tessera/sampling/sampling_params.cuh"

namespace tessera {

namespace {

using sampling::FilterSet;
using sampling::kRowThreads;
using sampling::RenormMode;
using sampling::RenormParams;
using sampling::RowParam;
using sampling::SampleParams;

constexpr int kVecEntries = 4;  // one float4
constexpr std::size_t kVecBytes = kVecEntries * sizeof(float);

// [batch, vocab] float32 rows on the GPU, last dim contiguous.
TensorView row_tensor(const DLTensor& tensor, const char* name) {
  TensorView view(tensor, name);
  view.expect_ndim(2).expect_dtype({DType::kFloat32}).expect_cuda().expect_last_dim_contiguous();
  TESSERA_CHECK_ARG(view.size(1) >= 1 && view.size(1) <= std::numeric_limits<int32_t>::max(),
                    name, "a vocabulary (dim 1) of 1 to 2^31 - 1 entries",
                    view.shape_string());
  TESSERA_CHECK_ARG(view.size(0) <= std::numeric_limits<int32_t>::max(), name,
                    "at most 2^31 - 1 rows (dim 0)", view.shape_string());
  return view;
}

bool vector_rows(const TensorView& view) {
  return view.size(1) % kVecEntries == 0 && view.rows_aligned_to(kVecBytes);
}

// A per-request parameter tensor: [batch] of `dtype`, contiguous, on the
// device of `like`.
void check_per_request(const DLTensor& tensor, const char* name, DType dtype, int64_t batch,
                       const TensorView& like) {
  const TensorView view(tensor, name);
  view.expect_ndim(1).expect_dtype({dtype}).expect_cuda().expect_contiguous();
  view.expect_size(0, batch, "the batch size");
  expect_same_device(like, view);
}

RowParam<int32_t> top_k_param(const DLTensor* arr, int64_t top_k, int64_t batch,
                              const TensorView& like) {
  RowParam<int32_t> param;
  if (arr != nullptr) {
    check_per_request(*arr, "top_k_arr", DType::kInt32, batch, like);
    param.per_request = static_cast<const int32_t*>(TensorView(*arr, "top_k_arr").data());
    return param;
  }
  TESSERA_CHECK_ARG(top_k >= 1, "top_k", "an integer >= 1", std::to_string(top_k));
  param.value = static_cast<int32_t>(std::min<int64_t>(top_k, std::numeric_limits<int32_t>::max()));
  return param;
}

RowParam<float> real_param(const DLTensor* arr, const char* arr_name, double value,
                           const char* name, bool open_at_zero, int64_t batch,
                           const TensorView& like) {
  RowParam<float> param;
  if (arr != nullptr) {
    check_per_request(*arr, arr_name, DType::kFloat32, batch, like);
    param.per_request = static_cast<const float*>(TensorView(*arr, arr_name).data());
    return param;
  }
  const bool ok = open_at_zero ? value > 0.0 && value <= 1.0 : value >= 0.0 && value <= 1.0;
  TESSERA_CHECK_ARG(ok, name, open_at_zero ? "a value in (0, 1]" : "a value in [0, 1]",
                    std::to_string(value));
  param.value = static_cast<float>(value);
  return param;
}

cudaLaunchAttribute cluster_attribute(int cluster_size) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = static_cast<unsigned>(cluster_size);
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  return attribute;
}

using SampleKernel = void (*)(SampleParams);

// The cluster kernel of a launch: the radix sampler (top-k, joint) or the
// rejection sampler.
template <int kVec>
SampleKernel cluster_kernel(bool radix) {
  return radix ? sampling::cluster_radix_sample_kernel<kVec>
               : sampling::cluster_sample_kernel<kVec>;
}

// How many clusters of each size of cluster_kernel<kVec>(radix) the device
// holds at once; all 0 before sm90, and where the device runs the kernel
// from sm_80 PTX (a build without sm90 code, on a newer GPU: its body is
// empty there). Built once per device (thread-safe memo; leaked so that
// launches during static destruction still find it).
template <int kVec, bool kRadix>
const sampling::ClusterCapacity& cluster_capacity(int device_id) {
  static auto* memo = new detail::OnceMap<int, sampling::ClusterCapacity>();
  return memo->get(device_id, [device_id] {
    auto capacity = std::make_unique<sampling::ClusterCapacity>();
    if (detail::device_compute_major(device_id) < 9) return capacity;
    const SampleKernel kernel = cluster_kernel<kVec>(kRadix);
    cudaFuncAttributes attributes{};
    TESSERA_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
    if (attributes.ptxVersion < 90) return capacity;
    TESSERA_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    for (int log2 = 1; log2 < sampling::kClusterSizeChoices; ++log2) {
      const int size = 1 << log2;
      cudaLaunchAttribute attribute = cluster_attribute(size);
      cudaLaunchConfig_t config{};
      config.gridDim = dim3(static_cast<unsigned>(size));
      config.blockDim = dim3(kRowThreads);
      config.attrs = &attribute;
      config.numAttrs = 1;
      int clusters = 0;
      if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
        (void)cudaGetLastError();  // a size this device cannot launch: not an error here
        clusters = 0;
      }
      capacity->active_clusters[log2] = clusters;
    }
    return capacity;
  });
}

// One CTA per row, or (small batch, sm90) a cluster per row: the rejection
// and the radix samplers alike, each with its own cluster kernel.
template <int kVec>
void launch_sample(const SampleParams& params, int device_id, cudaStream_t stream) {
  const bool radix = sampling::uses_radix_select(params);
  const sampling::ClusterCapacity& capacity =
      radix ? cluster_capacity<kVec, true>(device_id) : cluster_capacity<kVec, false>(device_id);
  const int cluster_size =
      sampling::choose_cluster_size(params.batch, params.vocab, kVec, capacity);
  if (cluster_size == 1) {
    sampling::sample_kernel<kVec>
        <<<static_cast<unsigned>(params.batch), kRowThreads, 0, stream>>>(params);
    return;
  }
  cudaLaunchAttribute attribute = cluster_attribute(cluster_size);
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(params.batch * cluster_size));
  config.blockDim = dim3(kRowThreads);
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  TESSERA_CUDA_CHECK(cudaLaunchKernelEx(&config, cluster_kernel<kVec>(radix), params));
}

struct SampleCall {
  const DLTensor& probs;
  const DLTensor& uniform_samples;
  const SamplingOutputs& out;
  FilterSet filters;
  const DLTensor* top_k_arr = nullptr;
  int64_t top_k = 0;
  const DLTensor* top_p_arr = nullptr;
  double top_p = 1.0;
  const DLTensor* min_p_arr = nullptr;
  double min_p = 0.0;
};

void run_sample(const SampleCall& call, cudaStream_t stream) {
  const TensorView probs = row_tensor(call.probs, "probs");
  const int64_t batch = probs.size(0);

  const TensorView uniforms(call.uniform_samples, "uniform_samples");
  uniforms.expect_dtype({DType::kFloat32}).expect_cuda().expect_contiguous();
  TESSERA_CHECK_ARG(uniforms.ndim() == 1 || uniforms.ndim() == 2, "uniform_samples",
                    "[batch] or [num_rounds, batch]", uniforms.shape_string());
  uniforms.expect_size(-1, batch, "the batch size of probs");
  const int64_t num_rounds = uniforms.ndim() == 2 ? uniforms.size(0) : 1;
  TESSERA_CHECK_ARG(num_rounds >= 1 && num_rounds <= std::numeric_limits<int32_t>::max(),
                    "uniform_samples", "at least one round (dim 0)", uniforms.shape_string());
  expect_same_device(probs, uniforms);

  const TensorView samples(call.out.samples, "samples");
  samples.expect_ndim(1).expect_dtype({DType::kInt32}).expect_cuda().expect_contiguous();
  samples.expect_size(0, batch, "the batch size of probs");
  expect_same_device(probs, samples);
  std::optional<TensorView> success;
  if (call.out.success != nullptr) {
    success.emplace(*call.out.success, "success");
    success->expect_ndim(1).expect_dtype({DType::kUInt8}).expect_cuda().expect_contiguous();
    success->expect_size(0, batch, "the batch size of probs");
    expect_same_device(probs, *success);
  }

  SampleParams params{};
  params.filters = call.filters;
  if (call.filters.top_k) params.top_k = top_k_param(call.top_k_arr, call.top_k, batch, probs);
  if (call.filters.top_p) {
    params.top_p = real_param(call.top_p_arr, "top_p_arr", call.top_p, "top_p", true, batch, probs);
  }
  if (call.filters.min_p) {
    params.min_p = real_param(call.min_p_arr, "min_p_arr", call.min_p, "min_p", false, batch,
                              probs);
  }
  if (batch == 0) return;

  params.probs = probs.data_as<const float>();
  params.probs_row_stride = probs.stride(0);
  params.vocab = static_cast<int>(probs.size(1));
  params.batch = static_cast<int>(batch);
  params.uniforms = uniforms.data_as<const float>();
  params.num_rounds = static_cast<int>(num_rounds);
  params.check_nan = call.out.check_nan;
  params.samples = samples.data_as<int32_t>();
  params.success = success ? success->data_as<bool>() : nullptr;

  const int device_id = probs.device().device_id;
  DeviceGuard guard(device_id);
  if (vector_rows(probs)) {
    launch_sample<kVecEntries>(params, device_id, stream);
  } else {
    launch_sample<1>(params, device_id, stream);
  }
  TESSERA_CHECK_LAUNCH();
}

struct RenormCall {
  const DLTensor& input;
  const char* input_name;
  const DLTensor& out;
  const char* out_name;
  RenormMode mode;
  const DLTensor* arr;
  double value;
};

void run_renorm(const RenormCall& call, cudaStream_t stream) {
  const TensorView input = row_tensor(call.input, call.input_name);
  const TensorView out = row_tensor(call.out, call.out_name);
  expect_same_shape(input, out);
  expect_same_device(input, out);
  TESSERA_CHECK_ARG(!same_storage(input, out) || input.numel() == 0, call.out_name,
                    std::string("memory disjoint from ") + call.input_name,
                    std::string("the memory of ") + call.input_name);
  expect_identical_or_disjoint(input, out);
  const int64_t batch = input.size(0);

  RenormParams params{};
  params.mode = call.mode;
  if (call.mode == RenormMode::kTopPProbs) {
    params.top_p = real_param(call.arr, "top_p_arr", call.value, "top_p", true, batch, input);
  } else {
    params.top_k = top_k_param(call.arr, static_cast<int64_t>(call.value), batch, input);
  }
  if (batch == 0) return;
  params.input = input.data_as<const float>();
  params.input_row_stride = input.stride(0);
  params.out = out.data_as<float>();
  params.out_row_stride = out.stride(0);
  params.vocab = static_cast<int>(input.size(1));

  DeviceGuard guard(input.device().device_id);
  const dim3 grid(static_cast<unsigned>(batch));
  if (vector_rows(input) && vector_rows(out)) {
    sampling::renorm_kernel<kVecEntries><<<grid, kRowThreads, 0, stream>>>(params);
  } else {
    sampling::renorm_kernel<1><<<grid, kRowThreads, 0, stream>>>(params);
  }
  TESSERA_CHECK_LAUNCH();
}

}  // namespace

void sampling_from_probs(const DLTensor& probs, const DLTensor& uniform_samples,
                         const SamplingOutputs& out, cudaStream_t stream) {
  run_sample({probs, uniform_samples, out, FilterSet{}}, stream);
}

void top_p_sampling_from_probs(const DLTensor& probs, const DLTensor& uniform_samples,
                               const DLTensor* top_p_arr, double top_p,
                               const SamplingOutputs& out, cudaStream_t stream) {
  SampleCall call{probs, uniform_samples, out, FilterSet{.top_p = true}};
  call.top_p_arr = top_p_arr;
  call.top_p = top_p;
  run_sample(call, stream);
}

void top_k_sampling_from_probs(const DLTensor& probs, const DLTensor& uniform_samples,
                               const DLTensor* top_k_arr, int64_t top_k,
                               const SamplingOutputs& out, cudaStream_t stream) {
  SampleCall call{probs, uniform_samples, out, FilterSet{.top_k = true}};
  call.top_k_arr = top_k_arr;
  call.top_k = top_k;
  run_sample(call, stream);
}

void min_p_sampling_from_probs(const DLTensor& probs, const DLTensor& uniform_samples,
                               const DLTensor* min_p_arr, double min_p,
                               const SamplingOutputs& out, cudaStream_t stream) {
  SampleCall call{probs, uniform_samples, out, FilterSet{.min_p = true}};
  call.min_p_arr = min_p_arr;
  call.min_p = min_p;
  run_sample(call, stream);
}

void top_k_top_p_sampling_from_probs(const DLTensor& probs, const DLTensor& uniform_samples,
                                     const DLTensor* top_k_arr, int64_t top_k,
                                     const DLTensor* top_p_arr, double top_p,
                                     const SamplingOutputs& out, cudaStream_t stream) {
  SampleCall call{probs, uniform_samples, out, FilterSet{.top_k = true, .top_p = true}};
  call.top_k_arr = top_k_arr;
  call.top_k = top_k;
  call.top_p_arr = top_p_arr;
  call.top_p = top_p;
  run_sample(call, stream);
}

void top_p_renorm_probs(const DLTensor& probs, const DLTensor* top_p_arr, double top_p,
                        const DLTensor& renorm_probs, cudaStream_t stream) {
  run_renorm({probs, "probs", renorm_probs, "renorm_probs", RenormMode::kTopPProbs, top_p_arr,
              top_p},
             stream);
}

void top_k_renorm_probs(const DLTensor& probs, const DLTensor* top_k_arr, int64_t top_k,
                        const DLTensor& renorm_probs, cudaStream_t stream) {
  run_renorm({probs, "probs", renorm_probs, "renorm_probs", RenormMode::kTopKProbs, top_k_arr,
              static_cast<double>(top_k)},
             stream);
}

void top_k_mask_logits(const DLTensor& logits, const DLTensor* top_k_arr, int64_t top_k,
                       const DLTensor& masked_logits, cudaStream_t stream) {
  run_renorm({logits, "logits", masked_logits, "masked_logits", RenormMode::kTopKLogits,
              top_k_arr, static_cast<double>(top_k)},
             stream);
}

}  // namespace tessera
