#include "demo_step.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "reference/attention_ref.h"
#include "reference/norm_ref.h"
#include "reference/page_ref.h"
#include "reference/rope_ref.h"
#include "support/device_tensor.h"
#include "support/host_convert.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/tessera.h"

namespace tessera::demo {

namespace {

using testing::DeviceTensor;
constexpr double kEps = 1e-6;
constexpr int kTimedRuns = 20;
// bf16 output against a float64 reference: DESIGN.md's bar.
constexpr double kMaxRelativeL2 = 1e-2;

std::vector<float> random_values(std::mt19937_64& rng, std::size_t n, float mean, float stddev) {
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> values(n);
  for (float& v : values) v = testing::round_to(DType::kBFloat16, dist(rng));
  return values;
}

double relative_l2(const std::vector<float>& out, const std::vector<double>& ref) {
  double err = 0, norm = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    err += (out[i] - ref[i]) * (out[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(err / std::max(norm, 1e-300));
}

void record_check(KernelReport& report, double rel_l2) {
  char text[64];
  report.passed = rel_l2 <= kMaxRelativeL2;
  std::snprintf(text, sizeof(text), "%s (rel %.1e)", report.passed ? "ok" : "FAILED", rel_l2);
  report.check = text;
}

void record_exact(KernelReport& report, bool equal) {
  report.passed = equal;
  report.check = equal ? "ok (exact)" : "FAILED (mismatch)";
}

// Median microseconds of `launch`, L2 flushed before each run.
template <typename Launch>
double time_us(cudaStream_t stream, Launch&& launch) {
  static DeviceBuffer flush(size_t{128} << 20);
  CudaEvent start, stop;
  launch();
  std::vector<double> samples;
  for (int i = 0; i < kTimedRuns; ++i) {
    TESSERA_CUDA_CHECK(cudaMemsetAsync(flush.data(), i, flush.bytes(), stream));
    start.record(stream);
    launch();
    stop.record(stream);
    samples.push_back(1e3 * stop.elapsed_ms_since(start));
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// Batch decode (plan on the host, run on the device) checked against the
// float64 reference over each request's K/V gathered from the host cache.
KernelReport run_decode(const StepShape& shape, cudaStream_t stream, const DeviceTensor& d_q,
                        const std::vector<float>& cache,
                        const std::vector<int32_t>& kv_indices,
                        const std::vector<int32_t>& kv_indptr,
                        const std::vector<int32_t>& last_page_len,
                        const std::vector<int32_t>& append_indptr,
                        const std::vector<int32_t>& seq_lens, DeviceTensor& d_kv_indices,
                        DeviceTensor& d_kv_indptr, DeviceTensor& d_last_page_len,
                        const PagedKVCacheArg& cache_arg) {
  KernelReport report{"batch_decode (paged)"};
  const int64_t batch = static_cast<int64_t>(seq_lens.size());
  const int64_t hq = shape.num_qo_heads, hk = shape.num_kv_heads, d = shape.head_dim;
  const int64_t ps = shape.page_size;
  // Query of request b: the last new token's rotated q.
  const std::vector<float> q_all = d_q.download();
  std::vector<float> q(batch * hq * d);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t token = append_indptr[b + 1] - 1;
    std::copy_n(q_all.begin() + token * hq * d, hq * d, q.begin() + b * hq * d);
  }
  DeviceTensor d_query(DType::kBFloat16, {batch, hq, d});
  DeviceTensor d_out(DType::kBFloat16, {batch, hq, d});
  d_query.upload(q);
  d_out.poison();

  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  const DecodePlanShape plan_shape{hq, hk, d, ps};
  const DecodePlanBounds bounds{batch, 0};
  const std::size_t workspace_bytes =
      BatchDecodeWithPagedKVCache::workspace_size_bytes(plan_shape, bounds, device);
  DeviceBuffer workspace(workspace_bytes);
  BatchDecodeWithPagedKVCache decode(plan_shape, bounds, workspace.data(), workspace_bytes, device);
  decode.plan(kv_indptr, last_page_len, stream);
  const AttentionOptions options;
  auto run = [&] {
    decode.run(d_query.dl(), cache_arg, d_kv_indices.dl(), d_kv_indptr.dl(), d_last_page_len.dl(),
               d_out.dl(), nullptr, options, stream, Validate::kOff);
  };
  run();
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));

  // Reference: gather each request's K and V rows from the host cache (NHD,
  // K and V interleaved per page) and attend with the float64 reference.
  std::vector<double> expected(batch * hq * d);
  double kv_tokens = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = seq_lens[b];
    kv_tokens += static_cast<double>(len);
    std::vector<float> k(len * hk * d), v(len * hk * d);
    for (int64_t t = 0; t < len; ++t) {
      const int64_t page = kv_indices[kv_indptr[b] + t / ps];
      const int64_t slot = t % ps;
      const int64_t k_row = ((page * 2 + 0) * ps + slot) * hk * d;
      const int64_t v_row = ((page * 2 + 1) * ps + slot) * hk * d;
      std::copy_n(cache.begin() + k_row, hk * d, k.begin() + t * hk * d);
      std::copy_n(cache.begin() + v_row, hk * d, v.begin() + t * hk * d);
    }
    reference::AttentionRefParams params;
    params.qo_len = 1;
    params.kv_len = len;
    params.num_qo_heads = hq;
    params.num_kv_heads = hk;
    params.head_dim = d;
    const auto ref = reference::attention_reference(
        std::span<const float>(q.data() + b * hq * d, hq * d), k, v, params);
    std::copy(ref.out.begin(), ref.out.end(), expected.begin() + b * hq * d);
  }
  record_check(report, relative_l2(d_out.download(), expected));
  report.microseconds = time_us(stream, run);
  report.bytes = 2.0 * kv_tokens * hk * d * 2;
  return report;
}

}  // namespace

std::vector<KernelReport> run_step(const StepShape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  CudaStream stream;
  const int64_t batch = static_cast<int64_t>(shape.new_tokens.size());
  std::vector<int32_t> append_indptr(batch + 1, 0), seq_lens(batch), kv_indptr(batch + 1, 0),
      last_page_len(batch);
  for (int64_t b = 0; b < batch; ++b) {
    append_indptr[b + 1] = append_indptr[b] + shape.new_tokens[b];
    seq_lens[b] = shape.context_tokens[b] + shape.new_tokens[b];
    const int32_t pages = (seq_lens[b] + shape.page_size - 1) / shape.page_size;
    kv_indptr[b + 1] = kv_indptr[b] + pages;
    last_page_len[b] = seq_lens[b] - (pages - 1) * static_cast<int32_t>(shape.page_size);
  }
  const int64_t tokens = append_indptr[batch];
  const int64_t num_pages = kv_indptr[batch];
  std::vector<int32_t> kv_indices(num_pages);
  std::iota(kv_indices.begin(), kv_indices.end(), 0);
  std::shuffle(kv_indices.begin(), kv_indices.end(), rng);  // pages scattered over the cache

  std::vector<KernelReport> reports;
  auto to_i64 = [](const std::vector<int32_t>& v) { return std::vector<int64_t>(v.begin(), v.end()); };

  // 1. Fused add + RMSNorm, in place on the hidden states and the residual.
  {
    KernelReport report{"fused_add_rmsnorm"};
    const auto input = random_values(rng, tokens * shape.hidden, 0.f, 1.f);
    const auto residual = random_values(rng, tokens * shape.hidden, 0.f, 4.f);
    const auto weight = random_values(rng, shape.hidden, 1.f, 0.1f);
    DeviceTensor d_input(DType::kBFloat16, {tokens, shape.hidden});
    DeviceTensor d_residual(DType::kBFloat16, {tokens, shape.hidden});
    DeviceTensor d_weight(DType::kBFloat16, {shape.hidden});
    d_input.upload(input);
    d_residual.upload(residual);
    d_weight.upload(weight);
    fused_add_rmsnorm(d_input.dl(), d_residual.dl(), d_weight.dl(), kEps, stream.get());
    stream.synchronize();
    const auto ref = reference::fused_add_rmsnorm(input, residual, weight, tokens, shape.hidden, kEps);
    record_check(report, std::max(relative_l2(d_input.download(), ref.out),
                                  relative_l2(d_residual.download(), ref.residual)));
    report.microseconds = time_us(stream.get(), [&] {
      fused_add_rmsnorm(d_input.dl(), d_residual.dl(), d_weight.dl(), kEps, stream.get());
    });
    report.bytes = 4.0 * tokens * shape.hidden * 2;
    reports.push_back(report);
  }

  // 2. Token -> (request, position) for the ragged batch.
  DeviceTensor d_append_indptr(DType::kInt32, {batch + 1});
  DeviceTensor d_seq_lens(DType::kInt32, {batch});
  DeviceTensor d_batch_indices(DType::kInt32, {tokens});
  DeviceTensor d_positions(DType::kInt32, {tokens});
  d_append_indptr.upload_ints(to_i64(append_indptr));
  d_seq_lens.upload_ints(to_i64(seq_lens));
  {
    KernelReport report{"get_batch_indices_positions"};
    d_batch_indices.poison();
    d_positions.poison();
    get_batch_indices_positions(d_append_indptr.dl(), d_seq_lens.dl(), d_batch_indices.dl(),
                                d_positions.dl(), stream.get());
    stream.synchronize();
    const auto ref = reference::get_batch_indices_positions(append_indptr, seq_lens);
    record_exact(report, d_batch_indices.download_ints() == to_i64(ref.batch_indices) &&
                             d_positions.download_ints() == to_i64(ref.positions));
    report.microseconds = time_us(stream.get(), [&] {
      get_batch_indices_positions(d_append_indptr.dl(), d_seq_lens.dl(), d_batch_indices.dl(),
                                  d_positions.dl(), stream.get());
    });
    report.bytes = 8.0 * tokens + 8.0 * batch;
    reports.push_back(report);
  }
  const std::vector<int64_t> positions = d_positions.download_ints();

  // 3. RoPE (Llama 3.1 scaling) on q and k, in place. q/k/v are random here,
  // standing in for the QKV projection (a GEMM, not part of Tessera yet).
  DeviceTensor d_q(DType::kBFloat16, {tokens, shape.num_qo_heads, shape.head_dim});
  DeviceTensor d_k(DType::kBFloat16, {tokens, shape.num_kv_heads, shape.head_dim});
  DeviceTensor d_v(DType::kBFloat16, {tokens, shape.num_kv_heads, shape.head_dim});
  {
    KernelReport report{"apply_rope_pos_ids"};
    const auto q = random_values(rng, d_q.numel(), 0.f, 1.f);
    const auto k = random_values(rng, d_k.numel(), 0.f, 1.f);
    d_q.upload(q);
    d_k.upload(k);
    d_v.upload(random_values(rng, d_v.numel(), 0.f, 1.f));
    RopeOptions options;
    options.rope_theta = 5e5;
    options.rope_scale = 8.0;
    options.llama31 = Llama31Scaling{};
    apply_rope_pos_ids(d_q.dl(), d_k.dl(), d_q.dl(), d_k.dl(), d_positions.dl(), options,
                       stream.get());
    stream.synchronize();
    const auto q_ref = reference::apply_rope(q, tokens, shape.num_qo_heads, shape.head_dim,
                                             positions, options);
    const auto k_ref = reference::apply_rope(k, tokens, shape.num_kv_heads, shape.head_dim,
                                             positions, options);
    record_check(report, std::max(relative_l2(d_q.download(), q_ref),
                                  relative_l2(d_k.download(), k_ref)));
    // Timed on copies so the checked tensors stay as they are.
    DeviceTensor t_q(DType::kBFloat16, d_q.shape()), t_k(DType::kBFloat16, d_k.shape());
    t_q.upload(q);
    t_k.upload(k);
    report.microseconds = time_us(stream.get(), [&] {
      apply_rope_pos_ids(t_q.dl(), t_k.dl(), t_q.dl(), t_k.dl(), d_positions.dl(), options,
                         stream.get());
    });
    report.bytes = 2.0 * tokens * (shape.num_qo_heads + shape.num_kv_heads) * shape.head_dim * 2;
    reports.push_back(report);
  }

  // 4. Append the rotated k and v to the paged cache (NHD, K and V in one
  // tensor); the existing context's pages hold random values that must stay.
  {
    KernelReport report{"append_paged_kv_cache"};
    DeviceTensor d_cache(DType::kBFloat16,
                         {num_pages, 2, shape.page_size, shape.num_kv_heads, shape.head_dim});
    const auto cache_before = random_values(rng, d_cache.numel(), 0.f, 1.f);
    d_cache.upload(cache_before);
    DeviceTensor d_kv_indices(DType::kInt32, {num_pages});
    DeviceTensor d_kv_indptr(DType::kInt32, {batch + 1});
    DeviceTensor d_last_page_len(DType::kInt32, {batch});
    d_kv_indices.upload_ints(to_i64(kv_indices));
    d_kv_indptr.upload_ints(to_i64(kv_indptr));
    d_last_page_len.upload_ints(to_i64(last_page_len));
    const auto cache_arg = PagedKVCacheArg::combined(d_cache.dl(), KVLayout::kNHD);
    auto append = [&] {
      append_paged_kv_cache(d_k.dl(), d_v.dl(), d_batch_indices.dl(), d_positions.dl(), cache_arg,
                            d_kv_indices.dl(), d_kv_indptr.dl(), d_last_page_len.dl(),
                            stream.get(), Validate::kOn);
    };
    append();
    stream.synchronize();
    // Reference: the same append on the host, page by page for K then V.
    const reference::PagedCacheShape one_side{KVLayout::kNHD, num_pages * 2, shape.page_size,
                                              shape.num_kv_heads, shape.head_dim};
    std::vector<double> expected(cache_before.begin(), cache_before.end());
    const auto k_rot = d_k.download();
    const auto v_in = d_v.download();
    // Page p of K is row 2p of the [2 * pages] view, page p of V is row 2p+1.
    std::vector<int32_t> k_pages(kv_indices), v_pages(kv_indices);
    for (auto& p : k_pages) p = 2 * p;
    for (auto& p : v_pages) p = 2 * p + 1;
    const auto batch_idx64 = d_batch_indices.download_ints();
    const std::vector<int32_t> batch_idx(batch_idx64.begin(), batch_idx64.end());
    const std::vector<int32_t> pos32(positions.begin(), positions.end());
    reference::append_paged_kv(std::vector<double>(k_rot.begin(), k_rot.end()), batch_idx, pos32,
                               k_pages, kv_indptr, one_side, expected);
    reference::append_paged_kv(std::vector<double>(v_in.begin(), v_in.end()), batch_idx, pos32,
                               v_pages, kv_indptr, one_side, expected);
    const auto cache_after = d_cache.download();
    record_exact(report, std::equal(cache_after.begin(), cache_after.end(), expected.begin()));
    report.microseconds = time_us(stream.get(), [&] {
      append_paged_kv_cache(d_k.dl(), d_v.dl(), d_batch_indices.dl(), d_positions.dl(), cache_arg,
                            d_kv_indices.dl(), d_kv_indptr.dl(), d_last_page_len.dl(),
                            stream.get(), Validate::kOff);
    });
    report.bytes = 4.0 * tokens * shape.num_kv_heads * shape.head_dim * 2 + 8.0 * tokens;
    reports.push_back(report);

    // 5. Batch decode over the cache just appended to: each request's query is
    // the rotated q of its last new token, attending to all its tokens.
    reports.push_back(run_decode(shape, stream.get(), d_q, cache_after, kv_indices,
                                 kv_indptr, last_page_len, append_indptr, seq_lens,
                                 d_kv_indices, d_kv_indptr, d_last_page_len, cache_arg));
  }
  return reports;
}

}  // namespace tessera::demo
