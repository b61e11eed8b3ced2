// RoPE on q (32 heads) and k (8 heads), head_dim 128, bf16, in place, NeoX
// style. Bytes: q and k read once and written once, positions read once.
#include <string>
#include <vector>

#include "bench_harness.h"
#include "tessera/api/rope.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {
constexpr int64_t kQoHeads = 32;
constexpr int64_t kKvHeads = 8;
constexpr int64_t kHeadDim = 128;
constexpr int64_t kMaxPosition = 32768;
constexpr int64_t kTokenSweep[] = {256, 4096, 16384};
}  // namespace

void run_rope_benchmarks(Bench& bench) {
  for (const int64_t tokens : kTokenSweep) {
    BenchTensor q(DType::kBFloat16, {tokens, kQoHeads, kHeadDim});
    BenchTensor k(DType::kBFloat16, {tokens, kKvHeads, kHeadDim});
    BenchTensor pos_ids(DType::kInt32, {tokens});
    BenchTensor cos_sin_cache(DType::kFloat32, {kMaxPosition, kHeadDim});
    fill_random(q.data(), DType::kBFloat16, q.numel(), 5, bench.stream());
    fill_random(k.data(), DType::kBFloat16, k.numel(), 6, bench.stream());
    fill_random(cos_sin_cache.data(), DType::kFloat32, cos_sin_cache.numel(), 7, bench.stream());
    std::vector<int32_t> host_positions(tokens);
    for (int64_t i = 0; i < tokens; ++i) host_positions[i] = static_cast<int32_t>((i * 7) % kMaxPosition);
    TESSERA_CUDA_CHECK(cudaMemcpy(pos_ids.data(), host_positions.data(), tokens * 4,
                                  cudaMemcpyHostToDevice));

    const std::string shape_case = "T=" + std::to_string(tokens) + ",Hq=" +
                                   std::to_string(kQoHeads) + ",Hk=" + std::to_string(kKvHeads) +
                                   ",D=" + std::to_string(kHeadDim) + ",dtype=bf16,style=neox";
    const double qk_bytes = 2.0 * tokens * (kQoHeads + kKvHeads) * kHeadDim * 2 + 4.0 * tokens;

    RopeOptions options;
    options.rope_theta = 5e5;
    const double pos_us = bench.median_us([&] {
      apply_rope_pos_ids(q.dl(), k.dl(), q.dl(), k.dl(), pos_ids.dl(), options, bench.stream());
    }, qk_bytes);
    bench.emit("apply_rope_pos_ids", shape_case, "GB/s", gbps(qk_bytes, pos_us));

    // The cache rows read are extra bytes: one fp32 row per token.
    const double cache_bytes = qk_bytes + 4.0 * tokens * kHeadDim;
    const double cache_us = bench.median_us([&] {
      apply_rope_with_cos_sin_cache(pos_ids.dl(), q.dl(), k.dl(), q.dl(), k.dl(), kHeadDim,
                                    cos_sin_cache.dl(), true, bench.stream());
    }, cache_bytes);
    bench.emit("apply_rope_with_cos_sin_cache", shape_case, "GB/s", gbps(cache_bytes, cache_us));
  }
}

}  // namespace tessera::bench
