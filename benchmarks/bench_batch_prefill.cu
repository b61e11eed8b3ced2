// Batch prefill, FlashInfer 0.2's published setup: causal, 32 q / 32 KV
// heads, head_dim 128, bf16, B requests of L tokens each (qo_len = kv_len =
// L) for (B, L) with B * L = 16384: (a) ragged dense K/V, (b) paged with page
// size 1 (vector-sparse) over the same values, (c) paged page 16; pages in a
// shuffled order. Also non-causal, head_dim 64 and 256, GQA 32 / 8 and fp16
// rows for the dense case.
// Metric: TFLOP/s counting the matmul FLOPs the mask keeps (4 * D per
// attended (query, key) pair).
#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_harness.h"
#include "tessera/api/prefill.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {
constexpr int64_t kHeads = 32;
struct Shape {
  int64_t batch;
  int64_t len;
};
constexpr Shape kShapes[] = {{1, 16384}, {2, 8192}, {4, 4096}, {8, 2048},
                             {16, 1024}, {32, 512}, {64, 256}};

std::string case_name(const Shape& s, int64_t head_dim, bool causal, int64_t page_size,
                      int64_t kv_heads = kHeads, DType dtype = DType::kBFloat16) {
  std::string name = "B=" + std::to_string(s.batch) + ",L=" + std::to_string(s.len) +
                     ",Hq=" + std::to_string(kHeads) + ",Hk=" + std::to_string(kv_heads) +
                     ",D=" + std::to_string(head_dim) + ",causal=" + std::to_string(causal ? 1 : 0);
  if (page_size > 0) name += ",page=" + std::to_string(page_size);
  return name + (dtype == DType::kFloat16 ? ",dtype=fp16" : ",dtype=bf16");
}

double flops(const Shape& s, int64_t head_dim, bool causal) {
  const double l = static_cast<double>(s.len);
  const double pairs = causal ? l * (l + 1) / 2 : l * l;
  return 4.0 * head_dim * kHeads * pairs * static_cast<double>(s.batch);
}

void upload(BenchTensor& tensor, const std::vector<int32_t>& values) {
  TESSERA_CUDA_CHECK(cudaMemcpy(tensor.data(), values.data(), values.size() * sizeof(int32_t),
                                cudaMemcpyHostToDevice));
}

// Whether the Hopper prefill back end runs the plain variant here (an sm_90
// GPU, and the head_dim / dtype the library's kernel table serves): its rows
// (backend fa3, what "auto" runs there) sit beside the FA2 rows of the same
// case (backend fa2, and so the fp8 / ALiBi / JIT rows that reuse the FA2
// objects).
bool backend_fa3_runs(int device, int64_t head_dim, DType dtype = DType::kBFloat16,
                      DType kv_dtype = DType::kBFloat16) {
  int major = 0;
  int minor = 0;
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  return major == 9 && minor == 0 &&
         prefill_backend_support_sm90(PosEncodingMode::kNone, false, false, false, dtype,
                                      kv_dtype, head_dim)
             .fa3_serves;
}

// kv_heads < kHeads: GQA; the ALiBi / JIT rows only for the default case.
void run_ragged(Bench& bench, const Shape& s, int64_t head_dim, bool causal,
                int64_t kv_heads = kHeads, DType dtype = DType::kBFloat16) {
  const std::string name = case_name(s, head_dim, causal, 0, kv_heads, dtype);
  if (!bench.wants(name)) return;
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  const int64_t tokens = s.batch * s.len;
  BenchTensor q(dtype, {tokens, kHeads, head_dim});
  BenchTensor k(dtype, {tokens, kv_heads, head_dim});
  BenchTensor v(dtype, {tokens, kv_heads, head_dim});
  BenchTensor out(dtype, {tokens, kHeads, head_dim});
  fill_random(q.data(), dtype, q.numel(), 31, bench.stream());
  fill_random(k.data(), dtype, k.numel(), 32, bench.stream());
  fill_random(v.data(), dtype, v.numel(), 33, bench.stream());
  std::vector<int32_t> indptr(static_cast<std::size_t>(s.batch) + 1);
  for (int64_t b = 0; b <= s.batch; ++b) indptr[static_cast<std::size_t>(b)] = static_cast<int32_t>(b * s.len);
  BenchTensor qo_dev(DType::kInt32, {s.batch + 1});
  upload(qo_dev, indptr);
  // The FA2 rows name their back end: "auto" runs fa3 on sm90 (the _fa3 rows).
  const PrefillPlanShape shape{kHeads, kv_heads, head_dim, 0, PrefillBackend::kFa2};
  const PrefillPlanBounds bounds{s.batch, tokens};
  const std::size_t bytes = BatchPrefillWithRaggedKVCache::workspace_size_bytes(shape, bounds, device);
  DeviceBuffer workspace(bytes);
  BatchPrefillWithRaggedKVCache prefill(shape, bounds, workspace.data(), bytes, device);
  prefill.plan(indptr, indptr, causal, bench.stream());
  const AttentionOptions options;
  auto run = [&] {
    prefill.run(q.dl(), k.dl(), v.dl(), qo_dev.dl(), qo_dev.dl(), out.dl(), nullptr, options,
                bench.stream(), Validate::kOff);
  };
  const double us = bench.median_us(run, 4.0 * static_cast<double>(q.bytes()));
  bench.emit("batch_prefill_ragged", name, "TFLOP/s", flops(s, head_dim, causal) / (us * 1e6));
  // The Hopper back end on the same data (rows only where it runs: sm_90).
  if (backend_fa3_runs(device, head_dim, dtype, dtype)) {
    PrefillPlanShape fa3_shape = shape;
    fa3_shape.backend = PrefillBackend::kFa3;
    BatchPrefillWithRaggedKVCache fa3(fa3_shape, bounds, workspace.data(), bytes, device);
    fa3.plan(indptr, indptr, causal, bench.stream());
    const double fa3_us = bench.median_us(
        [&] {
          fa3.run(q.dl(), k.dl(), v.dl(), qo_dev.dl(), qo_dev.dl(), out.dl(), nullptr, options,
                  bench.stream(), Validate::kOff);
        },
        4.0 * static_cast<double>(q.bytes()));
    bench.emit("batch_prefill_ragged_fa3", name, "TFLOP/s",
               flops(s, head_dim, causal) / (fa3_us * 1e6));
    // The workspace is shared: the FA2 rows below need their own schedule back.
    prefill.plan(indptr, indptr, causal, bench.stream());
  }
  if (head_dim == 128 && causal && kv_heads == kHeads && dtype == DType::kBFloat16) {
    // ALiBi with a soft cap (a JIT-served built-in combination): the logits
    // transform per element on top of the plain kernel's work.
    AttentionOptions alibi_cap;
    alibi_cap.pos_encoding_mode = PosEncodingMode::kAlibi;
    alibi_cap.logits_soft_cap = 30.0;
    const double alibi_us = bench.median_us(
        [&] {
          prefill.run(q.dl(), k.dl(), v.dl(), qo_dev.dl(), qo_dev.dl(), out.dl(), nullptr,
                      alibi_cap, bench.stream(), Validate::kOff);
        },
        4.0 * static_cast<double>(q.bytes()));
    bench.emit("batch_prefill_ragged_alibi_softcap", name, "TFLOP/s",
               flops(s, head_dim, causal) / (alibi_us * 1e6));
    // The same kernel JIT-compiled (PlainVariant's arithmetic), and sigmoid
    // attention (no softmax) through the JIT.
    // (Compiled once per process: later shapes hit the memory cache.)
    jit::LoadedVariant jit_plain(jit_plain_spec(jit::KernelKind::kBatchPrefillRagged, head_dim));
    jit::LoadedVariant jit_sigmoid(
        jit_sigmoid_spec(jit::KernelKind::kBatchPrefillRagged, head_dim));
    jit_sigmoid.extra_params().set("bias", -3.f);
    for (const jit::LoadedVariant* variant : {&jit_plain, &jit_sigmoid}) {
      AttentionOptions jit_options;
      jit_options.jit_variant = variant;
      const double jit_us = bench.median_us(
          [&] {
            prefill.run(q.dl(), k.dl(), v.dl(), qo_dev.dl(), qo_dev.dl(), out.dl(), nullptr,
                        jit_options, bench.stream(), Validate::kOff);
          },
          4.0 * static_cast<double>(q.bytes()));
      bench.emit(
          variant == &jit_plain ? "batch_prefill_ragged_jit" : "batch_prefill_ragged_jit_sigmoid",
          name, "TFLOP/s", flops(s, head_dim, causal) / (jit_us * 1e6));
    }
  }
}

void run_paged(Bench& bench, const Shape& s, int64_t page_size) {
  constexpr int64_t kDim = 128;
  const std::string name = case_name(s, kDim, true, page_size);
  if (!bench.wants(name)) return;
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  const int64_t tokens = s.batch * s.len;
  const int64_t pages_per_request = (s.len + page_size - 1) / page_size;
  const int64_t num_pages = s.batch * pages_per_request;
  BenchTensor q(DType::kBFloat16, {tokens, kHeads, kDim});
  BenchTensor out(DType::kBFloat16, {tokens, kHeads, kDim});
  BenchTensor cache(DType::kBFloat16, {num_pages, 2, page_size, kHeads, kDim});
  fill_random(q.data(), DType::kBFloat16, q.numel(), 31, bench.stream());
  fill_random(cache.data(), DType::kBFloat16, cache.numel(), 34, bench.stream());
  std::vector<int32_t> qo_indptr(static_cast<std::size_t>(s.batch) + 1);
  std::vector<int32_t> kv_indptr(static_cast<std::size_t>(s.batch) + 1);
  for (int64_t b = 0; b <= s.batch; ++b) {
    qo_indptr[static_cast<std::size_t>(b)] = static_cast<int32_t>(b * s.len);
    kv_indptr[static_cast<std::size_t>(b)] = static_cast<int32_t>(b * pages_per_request);
  }
  std::vector<int32_t> last(static_cast<std::size_t>(s.batch),
                            static_cast<int32_t>(s.len - (pages_per_request - 1) * page_size));
  std::vector<int32_t> indices(static_cast<std::size_t>(num_pages));
  std::iota(indices.begin(), indices.end(), 0);
  std::shuffle(indices.begin(), indices.end(), std::mt19937(7));
  BenchTensor qo_dev(DType::kInt32, {s.batch + 1});
  BenchTensor kv_dev(DType::kInt32, {s.batch + 1});
  BenchTensor last_dev(DType::kInt32, {s.batch});
  BenchTensor indices_dev(DType::kInt32, {num_pages});
  upload(qo_dev, qo_indptr);
  upload(kv_dev, kv_indptr);
  upload(last_dev, last);
  upload(indices_dev, indices);
  const PrefillPlanShape shape{kHeads, kHeads, kDim, page_size, PrefillBackend::kFa2};
  const PrefillPlanBounds bounds{s.batch, tokens};
  const std::size_t bytes = BatchPrefillWithPagedKVCache::workspace_size_bytes(shape, bounds, device);
  DeviceBuffer workspace(bytes);
  BatchPrefillWithPagedKVCache prefill(shape, bounds, workspace.data(), bytes, device);
  prefill.plan(qo_indptr, kv_indptr, last, true, bench.stream());
  const AttentionOptions options;
  const auto cache_arg = PagedKVCacheArg::combined(cache.dl(), KVLayout::kNHD);
  // Median time of a run of `backend`'s wrapper over `cache` (fa3: its own
  // plan in the shared workspace, FA2's schedule planned back afterwards).
  const auto median_us = [&](PrefillBackend backend, const PagedKVCacheArg& cache,
                             double working_set_bytes) {
    const auto time_on = [&](BatchPrefillWithPagedKVCache& wrapper) {
      return bench.median_us(
          [&] {
            wrapper.run(q.dl(), cache, indices_dev.dl(), qo_dev.dl(), kv_dev.dl(), last_dev.dl(),
                        out.dl(), nullptr, options, bench.stream(), Validate::kOff);
          },
          working_set_bytes);
    };
    if (backend == PrefillBackend::kFa2) return time_on(prefill);
    PrefillPlanShape fa3_shape = shape;
    fa3_shape.backend = PrefillBackend::kFa3;
    BatchPrefillWithPagedKVCache fa3(fa3_shape, bounds, workspace.data(), bytes, device);
    fa3.plan(qo_indptr, kv_indptr, last, true, bench.stream());
    const double us = time_on(fa3);
    prefill.plan(qo_indptr, kv_indptr, last, true, bench.stream());
    return us;
  };
  const auto tflops = [&](double us) { return flops(s, kDim, true) / (us * 1e6); };
  const double q_bytes = static_cast<double>(q.bytes());
  bench.emit("batch_prefill_paged", name, "TFLOP/s",
             tflops(median_us(PrefillBackend::kFa2, cache_arg, 4.0 * q_bytes)));
  if (backend_fa3_runs(device, kDim)) {
    bench.emit("batch_prefill_paged_fa3", name, "TFLOP/s",
               tflops(median_us(PrefillBackend::kFa3, cache_arg, 4.0 * q_bytes)));
  }
  if (page_size == 16) {
    // The same pages in float8 e4m3 and e5m2 (chunked prefill over an fp8 KV
    // cache): tiles are widened to bf16 in shared memory; e5m2 is JIT-served
    // (FA2 only), e4m3 also runs on fa3.
    for (const DType fp8 : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
      BenchTensor fp8_cache(fp8, {num_pages, 2, page_size, kHeads, kDim});
      fill_random(fp8_cache.data(), fp8, fp8_cache.numel(), 34, bench.stream());
      const auto fp8_arg = PagedKVCacheArg::combined(fp8_cache.dl(), KVLayout::kNHD);
      const bool e4m3 = fp8 == DType::kFloat8E4M3;
      bench.emit(e4m3 ? "batch_prefill_paged_fp8" : "batch_prefill_paged_fp8_e5m2", name,
                 "TFLOP/s", tflops(median_us(PrefillBackend::kFa2, fp8_arg, 3.0 * q_bytes)));
      if (e4m3 && backend_fa3_runs(device, kDim, DType::kBFloat16, fp8)) {
        bench.emit("batch_prefill_paged_fp8_fa3", name, "TFLOP/s",
                   tflops(median_us(PrefillBackend::kFa3, fp8_arg, 3.0 * q_bytes)));
      }
    }
  }
}
// Host time of plan() (median of 200, the schedule copy included) for a
// serving step's mixed batch: 256 requests, 32 q / 8 KV heads, page 16,
// causal, query lengths 1..512 and KV lengths up to 4096.
void run_plan_time(Bench& bench) {
  const std::string name = "B=256,Hq=32,Hk=8,D=128,page=16,causal=1,mixed";
  if (!bench.wants(name)) return;
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  std::mt19937 rng(5);
  std::vector<int32_t> qo_indptr = {0}, kv_indptr = {0}, last;
  for (int b = 0; b < 256; ++b) {
    const int32_t qo = 1 + static_cast<int32_t>(rng() % 512);
    const int32_t kv = qo + static_cast<int32_t>(rng() % 3584);
    qo_indptr.push_back(qo_indptr.back() + qo);
    const int32_t pages = (kv + 15) / 16;
    kv_indptr.push_back(kv_indptr.back() + pages);
    last.push_back(kv - (pages - 1) * 16);
  }
  const PrefillPlanShape shape{32, 8, 128, 16};
  const PrefillPlanBounds bounds{256, qo_indptr.back()};
  const std::size_t bytes = BatchPrefillWithPagedKVCache::workspace_size_bytes(shape, bounds, device);
  DeviceBuffer workspace(bytes);
  BatchPrefillWithPagedKVCache prefill(shape, bounds, workspace.data(), bytes, device);
  std::vector<double> samples;
  for (int i = 0; i < 200; ++i) {
    const auto start = std::chrono::steady_clock::now();
    prefill.plan(qo_indptr, kv_indptr, last, true, bench.stream());
    samples.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(bench.stream()));
  std::sort(samples.begin(), samples.end());
  bench.emit("batch_prefill_plan_host", name, "us", samples[samples.size() / 2]);
}
}  // namespace

void run_batch_prefill_benchmarks(Bench& bench) {
  run_plan_time(bench);
  for (const Shape& s : kShapes) {
    run_ragged(bench, s, 128, true);
    run_paged(bench, s, 1);
    run_paged(bench, s, 16);
  }
  for (const Shape& s : kShapes) run_ragged(bench, s, 128, false);
  for (const Shape& s : kShapes) run_ragged(bench, s, 64, true);
  for (const int64_t head_dim : {80, 96, 112}) {  // JIT-served; fa2 only
    for (const Shape& s : kShapes) run_ragged(bench, s, head_dim, true);
  }
  // head_dim 256 (JIT-compiled on first use: the warm-up launches pay it).
  for (const Shape& s : kShapes) run_ragged(bench, s, 256, true);
  // GQA 32 / 8 (Llama 3 8B's heads) and fp16.
  for (const Shape& s : kShapes) run_ragged(bench, s, 128, true, 8);
  for (const Shape& s : kShapes) run_ragged(bench, s, 128, true, kHeads, DType::kFloat16);
}

}  // namespace tessera::bench
