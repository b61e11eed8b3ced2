// Sorting-free sampling over a batch x vocab sweep (the issue 25 grid:
// batch 1 / 32 / 128 / 512, vocab 32000 / 128256). Rows are softmax-shaped
// (exp(3 * N(0, 1)), unnormalised: the kernels take any positive mass), so
// the rejection rounds see a realistic peaked distribution. Bytes counted:
// the probabilities read once (the passes re-read them; GB/s here says how
// close one call comes to a single read at memory speed), plus the
// uniforms and the samples.
#include <cmath>
#include <cstdint>
#include <string>

#include "bench_harness.h"
#include "tessera/api/sampling.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {

constexpr int64_t kBatchSweep[] = {1, 32, 128, 512};
constexpr int64_t kVocabSweep[] = {32000, 128256};
constexpr int64_t kRounds = 32;
constexpr int64_t kTopK = 50;
constexpr double kTopP = 0.9;
constexpr double kMinP = 0.05;
constexpr float kLogitScale = 3.f;

__device__ float hash_uniform(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return (static_cast<float>(x >> 40) + 0.5f) * (1.f / 16777216.f);  // (0, 1)
}

// probs[i] = exp(scale * z), z ~ N(0, 1) by Box-Muller from two hashes.
__global__ void fill_softmax_shaped(float* probs, int64_t count, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float u1 = hash_uniform(seed + 2 * i), u2 = hash_uniform(seed + 2 * i + 1);
    const float z = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
    probs[i] = expf(scale * z);
  }
}

__global__ void fill_uniform(float* out, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = hash_uniform(seed + i) * 0.999999f;  // [0, 1)
  }
}

constexpr int kFillBlocks = 1024, kFillThreads = 256;

}  // namespace

void run_sampling_benchmarks(Bench& bench) {
  for (const int64_t vocab : kVocabSweep) {
    for (const int64_t batch : kBatchSweep) {
      const std::string shape_case = "B=" + std::to_string(batch) + ",V=" + std::to_string(vocab);
      if (!bench.wants(shape_case)) continue;
      BenchTensor probs(DType::kFloat32, {batch, vocab});
      BenchTensor out(DType::kFloat32, {batch, vocab});
      BenchTensor uniforms(DType::kFloat32, {kRounds, batch});
      BenchTensor samples(DType::kInt32, {batch});
      BenchTensor success(DType::kUInt8, {batch});
      fill_softmax_shaped<<<kFillBlocks, kFillThreads, 0, bench.stream()>>>(
          static_cast<float*>(probs.data()), batch * vocab, 11, kLogitScale);
      fill_uniform<<<kFillBlocks, kFillThreads, 0, bench.stream()>>>(
          static_cast<float*>(uniforms.data()), kRounds * batch, 12);
      TESSERA_CHECK_LAUNCH();
      const SamplingOutputs outputs{samples.dl(), &success.dl()};
      const double bytes = 4.0 * batch * vocab + 4.0 * kRounds * batch + 5.0 * batch;
      const auto measure = [&](const char* kernel, auto&& launch) {
        const double us = bench.median_us(launch, bytes);
        bench.emit(kernel, shape_case, "us", us);
        bench.emit(kernel, shape_case, "GB/s", gbps(bytes, us));
      };
      measure("sampling_from_probs", [&] {
        sampling_from_probs(probs.dl(), uniforms.dl(), outputs, bench.stream());
      });
      measure("top_k_sampling", [&] {
        top_k_sampling_from_probs(probs.dl(), uniforms.dl(), nullptr, kTopK, outputs,
                                  bench.stream());
      });
      measure("top_p_sampling", [&] {
        top_p_sampling_from_probs(probs.dl(), uniforms.dl(), nullptr, kTopP, outputs,
                                  bench.stream());
      });
      measure("min_p_sampling", [&] {
        min_p_sampling_from_probs(probs.dl(), uniforms.dl(), nullptr, kMinP, outputs,
                                  bench.stream());
      });
      measure("top_k_top_p_sampling", [&] {
        top_k_top_p_sampling_from_probs(probs.dl(), uniforms.dl(), nullptr, kTopK, nullptr,
                                        kTopP, outputs, bench.stream());
      });
      // The renorm / mask rows also write the row: count it.
      const double renorm_bytes = 8.0 * batch * vocab;
      const double renorm_us = bench.median_us(
          [&] { top_p_renorm_probs(probs.dl(), nullptr, kTopP, out.dl(), bench.stream()); },
          renorm_bytes);
      bench.emit("top_p_renorm_probs", shape_case, "us", renorm_us);
      bench.emit("top_p_renorm_probs", shape_case, "GB/s", gbps(renorm_bytes, renorm_us));
      const double mask_us = bench.median_us(
          [&] { top_k_mask_logits(probs.dl(), nullptr, kTopK, out.dl(), bench.stream()); },
          renorm_bytes);
      bench.emit("top_k_mask_logits", shape_case, "us", mask_us);
      bench.emit("top_k_mask_logits", shape_case, "GB/s", gbps(renorm_bytes, mask_us));
    }
  }
}

}  // namespace tessera::bench
