// RMSNorm and fused add + RMSNorm, H = 4096 bf16 over a sweep of token
// counts (the plot of GB/s over T), plus gated SiLU. Bytes counted: every
// tensor element read once and written once (weight counted once).
#include <string>

#include "bench_harness.h"
#include "tessera/api/activation.h"
#include "tessera/api/norm.h"

namespace tessera::bench {

namespace {
constexpr int64_t kHidden = 4096;
constexpr double kEps = 1e-6;
constexpr int64_t kTokenSweep[] = {16, 256, 1024, 4096, 16384};
constexpr int64_t kActivationTokens = 4096;
constexpr int64_t kIntermediate = 14336;  // Llama-3-8B MLP width
}  // namespace

void run_norm_benchmarks(Bench& bench) {
  for (const int64_t tokens : kTokenSweep) {
    BenchTensor input(DType::kBFloat16, {tokens, kHidden});
    BenchTensor residual(DType::kBFloat16, {tokens, kHidden});
    BenchTensor out(DType::kBFloat16, {tokens, kHidden});
    BenchTensor weight(DType::kBFloat16, {kHidden});
    fill_random(input.data(), DType::kBFloat16, input.numel(), 1, bench.stream());
    fill_random(residual.data(), DType::kBFloat16, residual.numel(), 2, bench.stream());
    fill_random(weight.data(), DType::kBFloat16, weight.numel(), 3, bench.stream());
    const std::string shape_case =
        "T=" + std::to_string(tokens) + ",H=" + std::to_string(kHidden) + ",dtype=bf16";
    const double row_bytes = static_cast<double>(kHidden) * 2;

    const double norm_bytes = 2 * tokens * row_bytes + row_bytes;
    const double norm_us = bench.median_us(
        [&] { rmsnorm(input.dl(), weight.dl(), out.dl(), kEps, bench.stream()); }, norm_bytes);
    bench.emit("rmsnorm", shape_case, "GB/s", gbps(norm_bytes, norm_us));

    // In place, as engines call it; the residual grows by bounded random
    // increments each run, which does not change the work done.
    const double fused_bytes = 4 * tokens * row_bytes + row_bytes;
    const double fused_us = bench.median_us(
        [&] { fused_add_rmsnorm(input.dl(), residual.dl(), weight.dl(), kEps, bench.stream()); },
        fused_bytes);
    bench.emit("fused_add_rmsnorm", shape_case, "GB/s", gbps(fused_bytes, fused_us));
  }
}

void run_activation_benchmarks(Bench& bench) {
  BenchTensor input(DType::kBFloat16, {kActivationTokens, 2 * kIntermediate});
  BenchTensor out(DType::kBFloat16, {kActivationTokens, kIntermediate});
  fill_random(input.data(), DType::kBFloat16, input.numel(), 4, bench.stream());
  const std::string shape_case = "T=" + std::to_string(kActivationTokens) +
                                 ",D=" + std::to_string(kIntermediate) + ",dtype=bf16";
  const double bytes = 3.0 * kActivationTokens * kIntermediate * 2;
  const double us =
      bench.median_us([&] { silu_and_mul(input.dl(), out.dl(), bench.stream()); }, bytes);
  bench.emit("silu_and_mul", shape_case, "GB/s", gbps(bytes, us));
}

}  // namespace tessera::bench
