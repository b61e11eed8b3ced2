#include "bench_harness.h"

#include <algorithm>

#include "support/jit_examples.h"
#include "tessera/core/error.h"
#include "tessera/core/numeric.cuh"

namespace tessera::bench {

namespace {

constexpr std::size_t kCopyBytes = std::size_t{1} << 30;
constexpr int kCopyIterations = 20;

__device__ __forceinline__ float hash_to_unit(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

template <typename T>
__global__ void fill_random_kernel(T* __restrict__ data, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    data[i] = from_float<T>(hash_to_unit(seed * 0x9e3779b97f4a7c15ULL + i));
  }
}

}  // namespace

Bench::Bench(BenchConfig config) : config_(config) {
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  int l2_bytes = 0;
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
  l2_bytes_ = static_cast<std::size_t>(l2_bytes);
  l2_flush_ = DeviceBuffer(std::max<std::size_t>(2 * l2_bytes_, 1 << 20));
}

void Bench::flush_l2(int iteration) {
  TESSERA_CUDA_CHECK(cudaMemsetAsync(l2_flush_.data(), iteration & 0xff, l2_flush_.bytes(), stream()));
}

double Bench::median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  return n % 2 == 1 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
}

double Bench::copy_gbps() {
  DeviceBuffer source(kCopyBytes);
  DeviceBuffer destination(kCopyBytes);
  fill_random(source.data(), DType::kFloat32, kCopyBytes / 4, 7, stream());
  std::vector<double> samples;
  for (int i = 0; i < kCopyIterations + 3; ++i) {
    start_.record(stream());
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(destination.data(), source.data(), kCopyBytes,
                                       cudaMemcpyDeviceToDevice, stream()));
    stop_.record(stream());
    const double us = 1e3 * stop_.elapsed_ms_since(start_);
    if (i >= 3) samples.push_back(us);
  }
  return gbps(2.0 * kCopyBytes, median(samples));
}

void Bench::emit(const std::string& kernel, const std::string& shape_case,
                 const std::string& metric, double value) const {
  std::printf("result,%s,\"%s\",%s,%.4f\n", kernel.c_str(), shape_case.c_str(), metric.c_str(),
              value);
  std::fflush(stdout);
}

void fill_random(void* data, DType dtype, int64_t count, uint64_t seed, cudaStream_t stream) {
  constexpr int kThreads = 256;
  constexpr int kMaxBlocks = 4096;
  const int blocks = static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks));
  if (count == 0) return;
  switch (dtype) {
    case DType::kFloat16:
      fill_random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<half_t*>(data), count, seed);
      break;
    case DType::kBFloat16:
      fill_random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<bfloat16_t*>(data), count,
                                                          seed);
      break;
    case DType::kFloat32:
      fill_random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<float*>(data), count, seed);
      break;
    case DType::kFloat8E4M3:
      fill_random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<fp8_e4m3_t*>(data), count,
                                                          seed);
      break;
    case DType::kFloat8E5M2:
      fill_random_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<fp8_e5m2_t*>(data), count,
                                                          seed);
      break;
    default: throw Error("fill_random: unsupported dtype");
  }
  TESSERA_CHECK_LAUNCH();
}

BenchTensor::BenchTensor(DType dtype, std::vector<int64_t> shape) : shape_(std::move(shape)) {
  buffer_ = DeviceBuffer(std::max<std::size_t>(numel() * dtype_size_bytes(dtype), 16));
  tensor_.data = buffer_.data();
  tensor_.device = {kDLCUDA, 0};
  TESSERA_CUDA_CHECK(cudaGetDevice(&tensor_.device.device_id));
  tensor_.ndim = static_cast<int>(shape_.size());
  tensor_.dtype = dtype_to_dlpack(dtype);
  tensor_.shape = shape_.data();
  tensor_.strides = nullptr;
}

int64_t BenchTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape_) n *= s;
  return n;
}

namespace {
tessera::jit::VariantSpec bf16_spec(const char* name, const char* source,
                                    tessera::jit::KernelKind kernel, int64_t head_dim) {
  tessera::jit::VariantSpec spec;
  spec.name = name;
  spec.source = source;
  spec.kernel = kernel;
  spec.q_dtype = spec.kv_dtype = DType::kBFloat16;
  spec.head_dim = head_dim;
  return spec;
}
}  // namespace

tessera::jit::VariantSpec jit_plain_spec(tessera::jit::KernelKind kernel, int64_t head_dim) {
  return bf16_spec("BenchPlain", R"(
struct BenchPlain : VariantBase {
  float scale_log2;
  __device__ __forceinline__ BenchPlain(const VariantParams& p, int, int)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e) {}
  __device__ __forceinline__ float query_scale() const { return scale_log2; }
};
)",
                   kernel, head_dim);
}

tessera::jit::VariantSpec jit_sigmoid_spec(tessera::jit::KernelKind kernel, int64_t head_dim) {
  tessera::jit::VariantSpec spec = tessera::testing::jit_example("flash_sigmoid.cuh", kernel);
  spec.q_dtype = spec.kv_dtype = DType::kBFloat16;
  spec.head_dim = head_dim;
  spec.use_softmax = false;
  spec.params = {{"bias", tessera::jit::ParamType::kFloat}};
  return spec;
}

}  // namespace tessera::bench
