// Cascade decode (issue 24): a batch of 64 requests decoding one token each
// over a shared prefix of 8k or 32k tokens plus 512 tokens of their own, GQA
// 32/8, head_dim 128, bf16, page size 16. Rows: cascade_decode, the time of
// MultiLevelCascadeAttention with two levels (the prefix as one prefill of
// all 64 query rows, read once; the unique pages as a batch prefill; one
// merge), and cascade_decode_plain, Tessera's own batch decode over each
// request's concatenated page table (the same physical prefix pages, as a
// prefix cache shares them) on the same data in the same run:
// peers_torch.py reports the latter as the former's peer (tessera_decode),
// so ratio_vs_peer is the speedup (goal >= 4x). Both outputs are compared
// (a `check` line with the relative L2 difference; over 1e-2 the bench
// fails). cascade_decode_level_shared / _unique time each level alone.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_harness.h"
#include "tessera/api/cascade.h"
#include "tessera/api/decode.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera::bench {

namespace {

constexpr int64_t kBatch = 64;
constexpr int64_t kQoHeads = 32;
constexpr int64_t kKvHeads = 8;
constexpr int64_t kHeadDim = 128;
constexpr int64_t kPageSize = 16;
constexpr int64_t kUniqueTokens = 512;
constexpr int64_t kPrefixTokens[] = {8192, 32768};
constexpr int64_t kBytesPerToken = 2 * kKvHeads * kHeadDim * 2;  // K and V, bf16
constexpr double kMaxRelativeL2 = 1e-2;  // bf16 outputs, two roundings apart

void upload(BenchTensor& tensor, const std::vector<int32_t>& values) {
  TESSERA_CUDA_CHECK(cudaMemcpy(tensor.data(), values.data(), values.size() * sizeof(int32_t),
                                cudaMemcpyHostToDevice));
}

std::vector<float> download_bf16(const BenchTensor& tensor) {
  std::vector<uint16_t> bits(static_cast<std::size_t>(tensor.numel()));
  TESSERA_CUDA_CHECK(cudaMemcpy(bits.data(), tensor.data(), bits.size() * sizeof(uint16_t),
                                cudaMemcpyDeviceToHost));
  std::vector<float> values(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) {
    const uint32_t word = static_cast<uint32_t>(bits[i]) << 16;
    std::memcpy(&values[i], &word, sizeof(float));
  }
  return values;
}

double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

// The page tables: the prefix on pages [0, prefix_pages), request b's own
// tokens on the next unique_pages pages of a shuffled pool.
struct Tables {
  std::vector<int32_t> prefix_indices, unique_indptr, unique_indices, unique_last;
  std::vector<int32_t> plain_indptr, plain_indices, plain_last;
  int64_t num_pages = 0;
};

Tables make_tables(int64_t prefix_tokens) {
  Tables t;
  const int64_t prefix_pages = prefix_tokens / kPageSize;
  const int64_t unique_pages = kUniqueTokens / kPageSize;
  t.num_pages = prefix_pages + kBatch * unique_pages;
  std::vector<int32_t> pool(static_cast<std::size_t>(t.num_pages));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(7));
  t.prefix_indices.assign(pool.begin(), pool.begin() + prefix_pages);
  t.unique_indices.assign(pool.begin() + prefix_pages, pool.end());
  t.unique_indptr.push_back(0);
  t.plain_indptr.push_back(0);
  for (int64_t b = 0; b < kBatch; ++b) {
    t.unique_indptr.push_back(static_cast<int32_t>((b + 1) * unique_pages));
    t.unique_last.push_back(static_cast<int32_t>(kPageSize));
    t.plain_indices.insert(t.plain_indices.end(), t.prefix_indices.begin(), t.prefix_indices.end());
    t.plain_indices.insert(t.plain_indices.end(), t.unique_indices.begin() + b * unique_pages,
                           t.unique_indices.begin() + (b + 1) * unique_pages);
    t.plain_indptr.push_back(static_cast<int32_t>(t.plain_indices.size()));
    t.plain_last.push_back(static_cast<int32_t>(kPageSize));
  }
  return t;
}

std::string case_name(int64_t prefix_tokens) {
  return "B=" + std::to_string(kBatch) + ",prefix=" + std::to_string(prefix_tokens) +
         ",unique=" + std::to_string(kUniqueTokens) + ",page=" + std::to_string(kPageSize) +
         ",Hq=" + std::to_string(kQoHeads) + ",Hk=" + std::to_string(kKvHeads) +
         ",D=" + std::to_string(kHeadDim) + ",dtype=bf16";
}

// Where a cascade step's time goes: each level alone as the cascade runs it
// (with lse, into its own output): rows cascade_decode_level_shared (a batch
// prefill of all query rows over the prefix) and _unique (the batch decode
// kernel: one token per request), and _unique_prefill (the batch prefill the
// unique level ran on before, and still does inside a CUDA graph); the rest
// of cascade_decode is the merge and the launches between.
void emit_level_times(Bench& bench, const std::string& shape_case, BenchTensor& q,
                      const PagedKVCacheArg& cache_arg, const std::vector<CascadeLevelPlan>& plans,
                      const std::vector<CascadeLevelArrays>& arrays, double working_set) {
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  const PrefillPlanShape shape{kQoHeads, kKvHeads, kHeadDim, kPageSize};
  const PrefillPlanBounds bounds{kBatch, kBatch};
  const std::size_t bytes =
      BatchPrefillWithPagedKVCache::workspace_size_bytes(shape, bounds, device);
  BenchTensor out(DType::kBFloat16, {kBatch, kQoHeads, kHeadDim});
  BenchTensor lse(DType::kFloat32, {kBatch, kQoHeads});
  const char* names[] = {"cascade_decode_level_shared", "cascade_decode_level_unique_prefill"};
  for (std::size_t level = 0; level < 2; ++level) {
    DeviceBuffer workspace(bytes);
    BatchPrefillWithPagedKVCache prefill(shape, bounds, workspace.data(), bytes, device);
    const CascadeLevelPlan& p = plans[level];
    prefill.plan(p.qo_indptr, p.kv_indptr, p.kv_last_page_len, /*causal=*/false, bench.stream());
    const CascadeLevelArrays& a = arrays[level];
    const double us = bench.median_us(
        [&] {
          prefill.run(q.dl(), cache_arg, *a.kv_indices, *a.qo_indptr, *a.kv_indptr,
                      *a.kv_last_page_len, out.dl(), &lse.dl(), AttentionOptions{}, bench.stream(),
                      Validate::kOff);
        },
        working_set);
    bench.emit(names[level], shape_case, "us", us);
  }
  const DecodePlanShape decode_shape{kQoHeads, kKvHeads, kHeadDim, kPageSize};
  const DecodePlanBounds decode_bounds{kBatch, 0};
  const std::size_t decode_bytes =
      BatchDecodeWithPagedKVCache::workspace_size_bytes(decode_shape, decode_bounds, device);
  DeviceBuffer workspace(decode_bytes);
  BatchDecodeWithPagedKVCache decode(decode_shape, decode_bounds, workspace.data(), decode_bytes,
                                     device);
  decode.plan(plans[1].kv_indptr, plans[1].kv_last_page_len, bench.stream());
  const CascadeLevelArrays& a = arrays[1];
  const double us = bench.median_us(
      [&] {
        decode.run(q.dl(), cache_arg, *a.kv_indices, *a.kv_indptr, *a.kv_last_page_len, out.dl(),
                   &lse.dl(), AttentionOptions{}, bench.stream(), Validate::kOff);
      },
      working_set);
  bench.emit("cascade_decode_level_unique", shape_case, "us", us);
}

}  // namespace

void run_cascade_benchmarks(Bench& bench) {
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  for (const int64_t prefix_tokens : kPrefixTokens) {
    const std::string shape_case = case_name(prefix_tokens);
    if (!bench.wants(shape_case)) continue;
    const Tables t = make_tables(prefix_tokens);
    BenchTensor q(DType::kBFloat16, {kBatch, kQoHeads, kHeadDim});
    BenchTensor cascade_out(DType::kBFloat16, {kBatch, kQoHeads, kHeadDim});
    BenchTensor plain_out(DType::kBFloat16, {kBatch, kQoHeads, kHeadDim});
    BenchTensor cache(DType::kBFloat16, {t.num_pages, 2, kPageSize, kKvHeads, kHeadDim});
    fill_random(q.data(), DType::kBFloat16, q.numel(), 21, bench.stream());
    fill_random(cache.data(), DType::kBFloat16, cache.numel(), 22, bench.stream());
    const auto cache_arg = PagedKVCacheArg::combined(cache.dl(), KVLayout::kNHD);
    const AttentionOptions options;

    // Cascade: level 0 = the prefix for all 64 rows, level 1 = each request.
    const std::vector<int32_t> prefix_qo = {0, static_cast<int32_t>(kBatch)};
    const std::vector<int32_t> prefix_kv = {0, static_cast<int32_t>(t.prefix_indices.size())};
    const std::vector<int32_t> prefix_last = {static_cast<int32_t>(kPageSize)};
    std::vector<int32_t> unique_qo(kBatch + 1);
    std::iota(unique_qo.begin(), unique_qo.end(), 0);
    BenchTensor d_prefix_indices(DType::kInt32, {static_cast<int64_t>(t.prefix_indices.size())});
    BenchTensor d_prefix_qo(DType::kInt32, {2});
    BenchTensor d_prefix_kv(DType::kInt32, {2});
    BenchTensor d_prefix_last(DType::kInt32, {1});
    BenchTensor d_unique_indices(DType::kInt32, {static_cast<int64_t>(t.unique_indices.size())});
    BenchTensor d_unique_qo(DType::kInt32, {kBatch + 1});
    BenchTensor d_unique_kv(DType::kInt32, {kBatch + 1});
    BenchTensor d_unique_last(DType::kInt32, {kBatch});
    upload(d_prefix_indices, t.prefix_indices);
    upload(d_prefix_qo, prefix_qo);
    upload(d_prefix_kv, prefix_kv);
    upload(d_prefix_last, prefix_last);
    upload(d_unique_indices, t.unique_indices);
    upload(d_unique_qo, unique_qo);
    upload(d_unique_kv, t.unique_indptr);
    upload(d_unique_last, t.unique_last);
    const PrefillPlanShape shape{kQoHeads, kKvHeads, kHeadDim, kPageSize};
    const PrefillPlanBounds bounds{kBatch, kBatch};
    const std::size_t cascade_bytes =
        MultiLevelCascadeAttention::workspace_size_bytes(2, shape, bounds, device);
    DeviceBuffer cascade_workspace(cascade_bytes);
    MultiLevelCascadeAttention cascade(2, shape, bounds, cascade_workspace.data(), cascade_bytes,
                                       device);
    const std::vector<CascadeLevelPlan> plans = {{prefix_qo, prefix_kv, prefix_last},
                                                 {unique_qo, t.unique_indptr, t.unique_last}};
    cascade.plan(plans, /*causal=*/false, bench.stream());
    std::printf("check,cascade_decode,\"%s\",last_level_on_decode,%d\n", shape_case.c_str(),
                cascade.last_level_on_decode(cache_arg, bench.stream()) ? 1 : 0);
    const std::vector<CascadeLevelArrays> arrays = {
        {&d_prefix_indices.dl(), &d_prefix_qo.dl(), &d_prefix_kv.dl(), &d_prefix_last.dl()},
        {&d_unique_indices.dl(), &d_unique_qo.dl(), &d_unique_kv.dl(), &d_unique_last.dl()}};
    const auto run_cascade = [&] {
      cascade.run(q.dl(), cache_arg, arrays, cascade_out.dl(), nullptr, options, bench.stream(),
                  Validate::kOff);
    };

    // Plain decode over the concatenated page tables (same pages, same data).
    BenchTensor d_plain_indices(DType::kInt32, {static_cast<int64_t>(t.plain_indices.size())});
    BenchTensor d_plain_indptr(DType::kInt32, {kBatch + 1});
    BenchTensor d_plain_last(DType::kInt32, {kBatch});
    upload(d_plain_indices, t.plain_indices);
    upload(d_plain_indptr, t.plain_indptr);
    upload(d_plain_last, t.plain_last);
    const DecodePlanShape decode_shape{kQoHeads, kKvHeads, kHeadDim, kPageSize};
    const DecodePlanBounds decode_bounds{kBatch, 0};
    const std::size_t decode_bytes =
        BatchDecodeWithPagedKVCache::workspace_size_bytes(decode_shape, decode_bounds, device);
    DeviceBuffer decode_workspace(decode_bytes);
    BatchDecodeWithPagedKVCache decode(decode_shape, decode_bounds, decode_workspace.data(),
                                       decode_bytes, device);
    decode.plan(t.plain_indptr, t.plain_last, bench.stream());
    const auto run_plain = [&] {
      decode.run(q.dl(), cache_arg, d_plain_indices.dl(), d_plain_indptr.dl(), d_plain_last.dl(),
                 plain_out.dl(), nullptr, options, bench.stream(), Validate::kOff);
    };

    // Working sets: what each reads from memory at most (the cascade the
    // prefix once, plain decode every request's whole KV).
    const double io_bytes = 2.0 * kBatch * kQoHeads * kHeadDim * 2;
    const double cascade_set =
        static_cast<double>(prefix_tokens + kBatch * kUniqueTokens) * kBytesPerToken + io_bytes;
    const double plain_set =
        static_cast<double>(kBatch * (prefix_tokens + kUniqueTokens)) * kBytesPerToken + io_bytes;
    const double cascade_us = bench.median_us(run_cascade, cascade_set);
    const double plain_us = bench.median_us(run_plain, plain_set);
    bench.emit("cascade_decode", shape_case, "us", cascade_us);
    bench.emit("cascade_decode_plain", shape_case, "us", plain_us);
    emit_level_times(bench, shape_case, q, cache_arg, plans, arrays, cascade_set);

    run_cascade();
    run_plain();
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(bench.stream()));
    const double diff = relative_l2(download_bf16(cascade_out), download_bf16(plain_out));
    std::printf("check,cascade_decode,\"%s\",relative_l2_vs_plain_decode,%.3g\n",
                shape_case.c_str(), diff);
    if (!(diff <= kMaxRelativeL2)) {
      throw Error("cascade_decode: output differs from plain batch decode (relative L2 " +
                  std::to_string(diff) + ") at " + shape_case);
    }
  }
}

}  // namespace tessera::bench
