// Single-request prefill (FA2-style back end): 32 q / 32 KV heads, head_dim
// 128 (and 64), bf16, NHD, causal and non-causal, qo_len = kv_len = L.
// Metric: TFLOP/s counting the matmul FLOPs that the mask keeps
// (4 * D per (query, key) pair attended: QK^T and PV, 2 FLOPs per MAC).
#include <string>

#include "bench_harness.h"
#include "tessera/api/prefill.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {
constexpr int64_t kHeads = 32;
constexpr int64_t kLengths[] = {16384, 8192, 4096, 2048, 1024, 512};

// Query-key pairs attended by one head: L^2, or L (L + 1) / 2 when causal.
double attended_pairs(int64_t len, bool causal) {
  const double l = static_cast<double>(len);
  return causal ? l * (l + 1) / 2 : l * l;
}

std::string case_name(int64_t len, int64_t head_dim, bool causal) {
  return "B=1,L=" + std::to_string(len) + ",Hq=" + std::to_string(kHeads) +
         ",Hk=" + std::to_string(kHeads) + ",D=" + std::to_string(head_dim) +
         ",causal=" + std::to_string(causal ? 1 : 0) + ",dtype=bf16";
}

void run_one(Bench& bench, int64_t len, int64_t head_dim, bool causal) {
  if (!bench.wants(case_name(len, head_dim, causal))) return;
  BenchTensor q(DType::kBFloat16, {len, kHeads, head_dim});
  BenchTensor k(DType::kBFloat16, {len, kHeads, head_dim});
  BenchTensor v(DType::kBFloat16, {len, kHeads, head_dim});
  BenchTensor out(DType::kBFloat16, {len, kHeads, head_dim});
  fill_random(q.data(), DType::kBFloat16, q.numel(), 21, bench.stream());
  fill_random(k.data(), DType::kBFloat16, k.numel(), 22, bench.stream());
  fill_random(v.data(), DType::kBFloat16, v.numel(), 23, bench.stream());
  const AttentionOptions options;
  auto run = [&] {
    single_prefill_with_kv_cache(q.dl(), k.dl(), v.dl(), out.dl(), nullptr, KVLayout::kNHD,
                                 causal, options, bench.stream());
  };
  const double bytes = 4.0 * static_cast<double>(q.bytes());
  const double us = bench.median_us(run, bytes);
  const double flops = 4.0 * head_dim * kHeads * attended_pairs(len, causal);
  bench.emit("single_prefill", case_name(len, head_dim, causal), "TFLOP/s", flops / (us * 1e6));
}
}  // namespace

void run_prefill_benchmarks(Bench& bench) {
  for (const bool causal : {true, false}) {
    for (const int64_t len : kLengths) run_one(bench, len, 128, causal);
  }
  // Head dims beside 128: 64 (AOT) and 80 / 96 / 112 (JIT-served; the goal
  // is within 10% of the nearest AOT head dim's TFLOP/s).
  for (const int64_t head_dim : {64, 80, 96, 112}) {
    for (const int64_t len : {int64_t{16384}, int64_t{4096}, int64_t{1024}}) {
      run_one(bench, len, head_dim, true);
    }
  }
}

}  // namespace tessera::bench
