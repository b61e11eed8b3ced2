// Appending K and V to a paged cache: 8 KV heads, head_dim 128, bf16, NHD.
// Prefill-shaped appends (requests of up to 1024 new tokens after 100
// existing ones) and a decode step (16 requests, one token each), page sizes
// 16 and 1, pages of each request scattered over the cache. Bytes: K and V
// read once and written once, plus the per-token index reads.
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_harness.h"
#include "tessera/api/page.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {
constexpr int64_t kKvHeads = 8;
constexpr int64_t kHeadDim = 128;
constexpr int64_t kExistingTokens = 100;
constexpr int64_t kPrefillChunk = 1024;
constexpr int64_t kTokenSweep[] = {16, 256, 1024, 4096, 16384};
constexpr int64_t kPageSizes[] = {16, 1};

void upload(BenchTensor& tensor, const std::vector<int32_t>& values) {
  TESSERA_CUDA_CHECK(cudaMemcpy(tensor.data(), values.data(), values.size() * sizeof(int32_t),
                                cudaMemcpyHostToDevice));
}

struct AppendBatch {
  std::vector<int32_t> batch_indices, positions, kv_indices, kv_indptr, kv_last_page_len;
  int64_t num_pages = 0;
};

// Requests of `tokens_per_request` new tokens after kExistingTokens old ones.
AppendBatch make_batch(int64_t tokens, int64_t tokens_per_request, int64_t page_size) {
  AppendBatch batch;
  const int64_t requests = tokens / tokens_per_request;
  const int64_t seq_len = kExistingTokens + tokens_per_request;
  const int64_t pages_per_request = (seq_len + page_size - 1) / page_size;
  batch.num_pages = requests * pages_per_request;
  std::vector<int32_t> pages(batch.num_pages);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), std::mt19937(42));
  batch.kv_indices = pages;
  for (int64_t r = 0; r <= requests; ++r) batch.kv_indptr.push_back(static_cast<int32_t>(r * pages_per_request));
  for (int64_t r = 0; r < requests; ++r) {
    batch.kv_last_page_len.push_back(static_cast<int32_t>(seq_len - (pages_per_request - 1) * page_size));
    for (int64_t t = 0; t < tokens_per_request; ++t) {
      batch.batch_indices.push_back(static_cast<int32_t>(r));
      batch.positions.push_back(static_cast<int32_t>(kExistingTokens + t));
    }
  }
  return batch;
}
}  // namespace

void run_append_benchmarks(Bench& bench) {
  for (const int64_t page_size : kPageSizes) {
    for (const int64_t tokens : kTokenSweep) {
      const bool decode_step = tokens == 16;
      const int64_t per_request = decode_step ? 1 : std::min(tokens, kPrefillChunk);
      AppendBatch batch = make_batch(tokens, per_request, page_size);
      const int64_t requests = static_cast<int64_t>(batch.kv_last_page_len.size());

      BenchTensor key(DType::kBFloat16, {tokens, kKvHeads, kHeadDim});
      BenchTensor value(DType::kBFloat16, {tokens, kKvHeads, kHeadDim});
      BenchTensor cache(DType::kBFloat16, {batch.num_pages, 2, page_size, kKvHeads, kHeadDim});
      BenchTensor batch_indices(DType::kInt32, {tokens});
      BenchTensor positions(DType::kInt32, {tokens});
      BenchTensor kv_indices(DType::kInt32, {batch.num_pages});
      BenchTensor kv_indptr(DType::kInt32, {requests + 1});
      BenchTensor kv_last_page_len(DType::kInt32, {requests});
      fill_random(key.data(), DType::kBFloat16, key.numel(), 8, bench.stream());
      fill_random(value.data(), DType::kBFloat16, value.numel(), 9, bench.stream());
      upload(batch_indices, batch.batch_indices);
      upload(positions, batch.positions);
      upload(kv_indices, batch.kv_indices);
      upload(kv_indptr, batch.kv_indptr);
      upload(kv_last_page_len, batch.kv_last_page_len);

      const auto cache_arg = PagedKVCacheArg::combined(cache.dl(), KVLayout::kNHD);
      const double bytes = 4.0 * tokens * kKvHeads * kHeadDim * 2 + 8.0 * tokens;
      const double us = bench.median_us([&] {
        append_paged_kv_cache(key.dl(), value.dl(), batch_indices.dl(), positions.dl(), cache_arg,
                              kv_indices.dl(), kv_indptr.dl(), kv_last_page_len.dl(),
                              bench.stream(), Validate::kOff);
      }, bytes);
      const std::string shape_case = "T=" + std::to_string(tokens) + ",B=" +
                                     std::to_string(requests) + ",Hk=" + std::to_string(kKvHeads) +
                                     ",D=" + std::to_string(kHeadDim) +
                                     ",page=" + std::to_string(page_size) + ",layout=NHD,dtype=bf16";
      bench.emit("append_paged_kv_cache", shape_case, "GB/s", gbps(bytes, us));
      if (decode_step) bench.emit("append_paged_kv_cache", shape_case, "us", us);
    }
  }
}

}  // namespace tessera::bench
