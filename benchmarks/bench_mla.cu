// MLA over a paged latent cache (issue 22's rows, docs/mla.md): the
// memory-bound decode shapes in GB/s of latent read (kv_len x 576 x 2 B per
// request, once for all heads, plus q and out) and the compute-bound ones
// (128 heads x qo_len 2 / 4) in TFLOP/s, counting 2 x rows x visible keys x
// (576 + 512) per request, causal pairs only (FlashMLA's count). bf16,
// sm_scale 1/sqrt(192), pages shuffled over the cache.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench_harness.h"
#include "tessera/api/mla.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {

constexpr int64_t kCkv = 512;
constexpr int64_t kKpe = 64;

struct MlaShape {
  int64_t batch, kv_len, heads, qo_len, page_size;
};

constexpr MlaShape kShapes[] = {
    {128, 4096, 16, 1, 64}, {128, 4096, 16, 1, 1},  {1, 32768, 16, 1, 64},  {128, 4096, 16, 4, 64},
    {64, 4096, 128, 1, 64}, {64, 4096, 128, 2, 64}, {64, 4096, 128, 4, 64},
};

void upload(BenchTensor& tensor, const std::vector<int32_t>& values) {
  TESSERA_CUDA_CHECK(cudaMemcpy(tensor.data(), values.data(), values.size() * sizeof(int32_t),
                                cudaMemcpyHostToDevice));
}

}  // namespace

void run_mla_benchmarks(Bench& bench) {
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  TESSERA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  // Rows mla_decode: the Hopper kernel (fa3); mla_decode_fa2: the mma.sync
  // kernel, on any GPU with its 144 KB of shared memory per block.
  std::vector<std::pair<PrefillBackend, std::string>> backends;
  if (prop.major == 9 && prop.minor == 0) backends.emplace_back(PrefillBackend::kFa3, "mla_decode");
  if (prop.major >= 8 && prop.sharedMemPerBlockOptin >= 144 * 1024) {
    backends.emplace_back(PrefillBackend::kFa2, "mla_decode_fa2");
  }
  for (const auto& [backend, kernel] : backends) {
    for (const MlaShape& m : kShapes) {
      const std::string shape_case =
          "B=" + std::to_string(m.batch) + ",L=" + std::to_string(m.kv_len) +
          ",H=" + std::to_string(m.heads) + ",qo=" + std::to_string(m.qo_len) +
          ",page=" + std::to_string(m.page_size) + ",dtype=bf16";
      if (!bench.wants(shape_case)) continue;
      const int64_t pages_per_request = (m.kv_len + m.page_size - 1) / m.page_size;
      const int64_t pages = m.batch * pages_per_request;
      const int64_t tokens = m.batch * m.qo_len;
      std::vector<int32_t> page_ids(static_cast<std::size_t>(pages));
      std::iota(page_ids.begin(), page_ids.end(), 0);
      std::shuffle(page_ids.begin(), page_ids.end(), std::mt19937(7));
      std::vector<int32_t> qo_indptr, kv_indptr,
          kv_len(static_cast<std::size_t>(m.batch), static_cast<int32_t>(m.kv_len));
      for (int64_t b = 0; b <= m.batch; ++b) {
        qo_indptr.push_back(static_cast<int32_t>(b * m.qo_len));
        kv_indptr.push_back(static_cast<int32_t>(b * pages_per_request));
      }
      BenchTensor q_nope(DType::kBFloat16, {tokens, m.heads, kCkv});
      BenchTensor q_pe(DType::kBFloat16, {tokens, m.heads, kKpe});
      BenchTensor ckv(DType::kBFloat16, {pages, m.page_size, kCkv});
      BenchTensor kpe(DType::kBFloat16, {pages, m.page_size, kKpe});
      BenchTensor out(DType::kBFloat16, {tokens, m.heads, kCkv});
      BenchTensor d_indices(DType::kInt32, {pages});
      BenchTensor d_qo(DType::kInt32, {m.batch + 1});
      BenchTensor d_kv(DType::kInt32, {m.batch + 1});
      BenchTensor d_len(DType::kInt32, {m.batch});
      for (BenchTensor* t : {&q_nope, &q_pe, &ckv, &kpe}) {
        fill_random(t->data(), DType::kBFloat16, t->numel(), 11, bench.stream());
      }
      upload(d_indices, page_ids);
      upload(d_qo, qo_indptr);
      upload(d_kv, kv_indptr);
      upload(d_len, kv_len);
      const MlaPlanShape shape{.num_heads = m.heads, .page_size = m.page_size, .backend = backend};
      const MlaPlanBounds bounds{m.batch, tokens};
      const std::size_t bytes = BatchMlaPagedAttention::workspace_size_bytes(shape, bounds, device);
      DeviceBuffer workspace(bytes);
      BatchMlaPagedAttention mla(shape, bounds, workspace.data(), bytes, device);
      const bool causal = m.qo_len > 1;
      mla.plan(qo_indptr, kv_indptr, kv_len, causal, bench.stream());
      const double latent_bytes = 2.0 * m.batch * m.kv_len * (kCkv + kKpe);
      const double io_bytes = 2.0 * tokens * m.heads * (kCkv + kKpe + kCkv);
      const double us = bench.median_us(
          [&] {
            mla.run(q_nope.dl(), q_pe.dl(), ckv.dl(), kpe.dl(), d_indices.dl(), d_qo.dl(),
                    d_kv.dl(), d_len.dl(), out.dl(), nullptr, {.sm_scale = 1.0 / std::sqrt(192.0)},
                    bench.stream(), Validate::kOff);
          },
          latent_bytes + io_bytes);
      double pairs = 0;  // (row, key) pairs attended, per request
      for (int64_t i = 0; i < m.qo_len; ++i) {
        pairs += static_cast<double>(m.heads) * (causal ? m.kv_len - m.qo_len + i + 1 : m.kv_len);
      }
      const double flops = 2.0 * m.batch * pairs * (kCkv + kKpe + kCkv);
      bench.emit(kernel, shape_case, "GB/s", gbps(latent_bytes + io_bytes, us));
      bench.emit(kernel, shape_case, "TFLOP/s", flops / (us * 1e6));
    }
  }
}

}  // namespace tessera::bench
