// Batch decode over a paged KV cache: 32 q heads / 8 KV heads, head_dim 128,
// bf16, NHD, page sizes 16 and 1, FlashInfer 0.2's decode shapes. Metric: GB/s
// of K and V actually read (plus q and out, negligible), with the planner's
// kernel (tensor cores at GQA 4) and, at page 16, the CUDA-core one. Also plan() host
// time at batch 256 and the CUDA-graph replay time of run(). At page 16, the
// same kernel JIT-compiled (PlainVariant's arithmetic, rows batch_decode_jit
// beside the AOT row) and sigmoid attention (JIT, CUDA cores, no softmax).
// Head dims 64 / 80 / 96 / 112 beside 128 (rows batch_decode with D= in the
// case, page 16; 80 / 96 / 112 JIT-served): GQA 32 / 8 (tensor cores) and
// MHA 32 / 32 (CUDA cores), to hold the new dims to the nearest AOT dim's GB/s.
#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_harness.h"
#include "tessera/api/decode.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {
constexpr int64_t kQoHeads = 32;
constexpr int64_t kKvHeads = 8;
constexpr int64_t kHeadDim = 128;
constexpr int64_t kPageSizes[] = {16, 1};
struct DecodeShape {
  int64_t batch;
  int64_t kv_len;
};
constexpr DecodeShape kShapes[] = {{16, 8192}, {64, 4096}, {128, 2048},
                                   {256, 1024}, {64, 16384}, {1, 32768}};
constexpr int kPlanRepeats = 200;

void upload(BenchTensor& tensor, const std::vector<int32_t>& values) {
  TESSERA_CUDA_CHECK(cudaMemcpy(tensor.data(), values.data(), values.size() * sizeof(int32_t),
                                cudaMemcpyHostToDevice));
}

struct PagedBatch {
  std::vector<int32_t> kv_indptr, kv_indices, kv_last_page_len;
  int64_t num_pages = 0;
};

// Every request holds kv_len tokens on pages scattered over the cache.
PagedBatch make_batch(int64_t batch, int64_t kv_len, int64_t page_size) {
  PagedBatch out;
  const int64_t pages_per_request = (kv_len + page_size - 1) / page_size;
  out.num_pages = batch * pages_per_request;
  out.kv_indices.resize(out.num_pages);
  std::iota(out.kv_indices.begin(), out.kv_indices.end(), 0);
  std::shuffle(out.kv_indices.begin(), out.kv_indices.end(), std::mt19937(7));
  for (int64_t b = 0; b <= batch; ++b) out.kv_indptr.push_back(static_cast<int32_t>(b * pages_per_request));
  out.kv_last_page_len.assign(batch, static_cast<int32_t>(kv_len - (pages_per_request - 1) * page_size));
  return out;
}

// Median host microseconds per call of `call` over samples of 10 calls that
// only enqueue work (the stream is drained between samples, never inside).
template <typename Call>
double host_us_per_call(Call&& call, cudaStream_t stream) {
  constexpr int kSamples = 21;
  constexpr int kCallsPerSample = 10;
  std::vector<double> samples;
  for (int i = 0; i < kSamples; ++i) {
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
    const auto start = std::chrono::steady_clock::now();
    for (int j = 0; j < kCallsPerSample; ++j) call();
    const auto stop = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::micro>(stop - start).count() /
                      kCallsPerSample);
  }
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

std::string case_name(const DecodeShape& s, int64_t page_size, int64_t kv_heads = kKvHeads,
                      int64_t head_dim = kHeadDim) {
  return "B=" + std::to_string(s.batch) + ",L=" + std::to_string(s.kv_len) + ",page=" +
         std::to_string(page_size) + ",Hq=" + std::to_string(kQoHeads) + ",Hk=" +
         std::to_string(kv_heads) + ",D=" + std::to_string(head_dim) + ",dtype=bf16";
}

// One batch_decode row at page 16 for (kv_heads, head_dim): the planner's
// kernel choice (tensor cores from GQA 4).
void run_head_dim_row(Bench& bench, int device, const DecodeShape& s, int64_t kv_heads,
                      int64_t head_dim) {
  constexpr int64_t kPage = 16;
  const std::string name = case_name(s, kPage, kv_heads, head_dim);
  if (!bench.wants(name)) return;
  const PagedBatch batch = make_batch(s.batch, s.kv_len, kPage);
  const DecodePlanShape shape{kQoHeads, kv_heads, head_dim, kPage};
  const DecodePlanBounds bounds{s.batch, 0};
  const std::size_t workspace_bytes =
      BatchDecodeWithPagedKVCache::workspace_size_bytes(shape, bounds, device);
  DeviceBuffer workspace(workspace_bytes);
  BatchDecodeWithPagedKVCache decode(shape, bounds, workspace.data(), workspace_bytes, device);
  BenchTensor q(DType::kBFloat16, {s.batch, kQoHeads, head_dim});
  BenchTensor out(DType::kBFloat16, {s.batch, kQoHeads, head_dim});
  BenchTensor cache(DType::kBFloat16, {batch.num_pages, 2, kPage, kv_heads, head_dim});
  BenchTensor kv_indices(DType::kInt32, {batch.num_pages});
  BenchTensor kv_indptr(DType::kInt32, {s.batch + 1});
  BenchTensor kv_last_page_len(DType::kInt32, {s.batch});
  fill_random(q.data(), DType::kBFloat16, q.numel(), 11, bench.stream());
  fill_random(cache.data(), DType::kBFloat16, cache.numel(), 12, bench.stream());
  upload(kv_indices, batch.kv_indices);
  upload(kv_indptr, batch.kv_indptr);
  upload(kv_last_page_len, batch.kv_last_page_len);
  decode.plan(batch.kv_indptr, batch.kv_last_page_len, bench.stream());
  const auto cache_arg = PagedKVCacheArg::combined(cache.dl(), KVLayout::kNHD);
  const AttentionOptions options;
  auto run = [&] {
    decode.run(q.dl(), cache_arg, kv_indices.dl(), kv_indptr.dl(), kv_last_page_len.dl(),
               out.dl(), nullptr, options, bench.stream(), Validate::kOff);
  };
  run();  // a JIT-served head dim compiles (or loads) its kernel outside the timing
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(bench.stream()));
  const double kv_bytes = 2.0 * s.batch * s.kv_len * kv_heads * head_dim * 2;
  const double io_bytes = 2.0 * s.batch * kQoHeads * head_dim * 2;
  const double us = bench.median_us(run, kv_bytes + io_bytes);
  bench.emit("batch_decode", name, "GB/s", gbps(kv_bytes, us));
}
}  // namespace

void run_decode_benchmarks(Bench& bench) {
  int device = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  for (const DecodeShape& s : {DecodeShape{64, 4096}, DecodeShape{16, 8192}}) {
    for (const int64_t kv_heads : {kKvHeads, kQoHeads}) {
      for (const int64_t head_dim : {64, 80, 96, 112}) {
        run_head_dim_row(bench, device, s, kv_heads, head_dim);
      }
      if (kv_heads == kQoHeads) run_head_dim_row(bench, device, s, kv_heads, kHeadDim);
    }
  }
  const DecodePlanShape shape{kQoHeads, kKvHeads, kHeadDim, 0};
  jit::LoadedVariant jit_plain(jit_plain_spec(jit::KernelKind::kBatchDecode, kHeadDim));
  jit::LoadedVariant jit_sigmoid(jit_sigmoid_spec(jit::KernelKind::kBatchDecode, kHeadDim));
  jit_sigmoid.extra_params().set("bias", -3.f);
  for (const int64_t page_size : kPageSizes) {
    for (const DecodeShape& s : kShapes) {
      if (!bench.wants(case_name(s, page_size))) continue;
      PagedBatch batch = make_batch(s.batch, s.kv_len, page_size);
      DecodePlanShape plan_shape = shape;
      plan_shape.page_size = page_size;
      const DecodePlanBounds bounds{s.batch, 0};
      const std::size_t workspace_bytes =
          BatchDecodeWithPagedKVCache::workspace_size_bytes(plan_shape, bounds, device);
      DeviceBuffer workspace(workspace_bytes);
      BatchDecodeWithPagedKVCache decode(plan_shape, bounds, workspace.data(), workspace_bytes,
                                         device);
      BenchTensor q(DType::kBFloat16, {s.batch, kQoHeads, kHeadDim});
      BenchTensor out(DType::kBFloat16, {s.batch, kQoHeads, kHeadDim});
      BenchTensor cache(DType::kBFloat16, {batch.num_pages, 2, page_size, kKvHeads, kHeadDim});
      BenchTensor kv_indices(DType::kInt32, {batch.num_pages});
      BenchTensor kv_indptr(DType::kInt32, {s.batch + 1});
      BenchTensor kv_last_page_len(DType::kInt32, {s.batch});
      fill_random(q.data(), DType::kBFloat16, q.numel(), 11, bench.stream());
      fill_random(cache.data(), DType::kBFloat16, cache.numel(), 12, bench.stream());
      upload(kv_indices, batch.kv_indices);
      upload(kv_indptr, batch.kv_indptr);
      upload(kv_last_page_len, batch.kv_last_page_len);
      decode.plan(batch.kv_indptr, batch.kv_last_page_len, bench.stream());
      const auto cache_arg = PagedKVCacheArg::combined(cache.dl(), KVLayout::kNHD);
      const AttentionOptions options;
      auto run = [&] {
        decode.run(q.dl(), cache_arg, kv_indices.dl(), kv_indptr.dl(), kv_last_page_len.dl(),
                   out.dl(), nullptr, options, bench.stream(), Validate::kOff);
      };
      const double kv_bytes = 2.0 * s.batch * s.kv_len * kKvHeads * kHeadDim * 2;
      const double io_bytes = 2.0 * s.batch * kQoHeads * kHeadDim * 2;
      const double us = bench.median_us(run, kv_bytes + io_bytes);
      bench.emit("batch_decode", case_name(s, page_size), "GB/s", gbps(kv_bytes, us));
      if (page_size == 16) {
        // Host time of one run() call (enqueue only): above the GPU time of
        // a step, the back-to-back samples above measure the host instead.
        bench.emit("batch_decode_run_host", case_name(s, page_size), "us",
                   host_us_per_call(run, bench.stream()));
        // The CUDA-core kernel on the same data (kAuto picks tensor cores
        // for this GQA 4 shape): what the tensor-core kernel gains.
        DecodePlanOptions cuda_cores;
        cuda_cores.backend = DecodeBackend::kCudaCores;
        decode.plan(batch.kv_indptr, batch.kv_last_page_len, bench.stream(), cuda_cores);
        bench.emit("batch_decode_cuda_cores", case_name(s, page_size), "GB/s",
                   gbps(kv_bytes, bench.median_us(run, kv_bytes + io_bytes)));
        decode.plan(batch.kv_indptr, batch.kv_last_page_len, bench.stream());
        for (const jit::LoadedVariant* variant : {&jit_plain, &jit_sigmoid}) {
          AttentionOptions jit_options;
          jit_options.jit_variant = variant;
          bench.emit(variant == &jit_plain ? "batch_decode_jit" : "batch_decode_jit_sigmoid",
                     case_name(s, page_size), "GB/s",
                     gbps(kv_bytes, bench.median_us(
                                        [&] {
                                          decode.run(q.dl(), cache_arg, kv_indices.dl(),
                                                     kv_indptr.dl(), kv_last_page_len.dl(),
                                                     out.dl(), nullptr, jit_options, bench.stream(),
                                                     Validate::kOff);
                                        },
                                        kv_bytes + io_bytes)));
        }
      }

      if (page_size == 16) {
        // The same cache read as HND ([page, 2, head, token, dim]): a KV
        // head's tokens of a page are one 4 KB block instead of 16 rows of
        // 256 bytes 2 KB apart (the strides are all the kernel sees).
        BenchTensor hnd(DType::kBFloat16, {batch.num_pages, 2, kKvHeads, page_size, kHeadDim});
        fill_random(hnd.data(), DType::kBFloat16, hnd.numel(), 12, bench.stream());
        const auto hnd_arg = PagedKVCacheArg::combined(hnd.dl(), KVLayout::kHND);
        bench.emit("batch_decode_hnd", case_name(s, page_size), "GB/s",
                   gbps(kv_bytes, bench.median_us(
                                      [&] {
                                        decode.run(q.dl(), hnd_arg, kv_indices.dl(),
                                                   kv_indptr.dl(), kv_last_page_len.dl(),
                                                   out.dl(), nullptr, options, bench.stream(),
                                                   Validate::kOff);
                                      },
                                      kv_bytes + io_bytes)));
        // fp8 caches (CUDA-core kernel; e4m3 AOT, e5m2 JIT-served): GB/s of
        // the fp8 bytes read, half the 16-bit cache's.
        for (const DType fp8 : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
          BenchTensor fp8_cache(fp8, {batch.num_pages, 2, page_size, kKvHeads, kHeadDim});
          fill_random(fp8_cache.data(), fp8, fp8_cache.numel(), 12, bench.stream());
          const auto fp8_arg = PagedKVCacheArg::combined(fp8_cache.dl(), KVLayout::kNHD);
          const double fp8_bytes = kv_bytes / 2;
          bench.emit(fp8 == DType::kFloat8E4M3 ? "batch_decode_fp8" : "batch_decode_fp8_e5m2",
                     case_name(s, page_size), "GB/s",
                     gbps(fp8_bytes, bench.median_us(
                                         [&] {
                                           decode.run(q.dl(), fp8_arg, kv_indices.dl(),
                                                      kv_indptr.dl(), kv_last_page_len.dl(),
                                                      out.dl(), nullptr, options, bench.stream(),
                                                      Validate::kOff);
                                         },
                                         fp8_bytes + io_bytes)));
        }
      }

      if (page_size == 16 && ((s.batch == 64 && s.kv_len == 4096) || s.batch == 1)) {
        // CUDA-graph replay of run(): the serving engine's decode step (at
        // B=1 also without the host's launches between the kernels).
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        TESSERA_CUDA_CHECK(cudaStreamBeginCapture(bench.stream(), cudaStreamCaptureModeThreadLocal));
        run();
        TESSERA_CUDA_CHECK(cudaStreamEndCapture(bench.stream(), &graph));
        TESSERA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        const double graph_us = bench.median_us(
            [&] { TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, bench.stream())); }, kv_bytes + io_bytes);
        bench.emit("batch_decode_graph_replay", case_name(s, page_size), "us", graph_us);
        TESSERA_CUDA_CHECK(cudaGraphExecDestroy(exec));
        TESSERA_CUDA_CHECK(cudaGraphDestroy(graph));
      }
      if (page_size == 16 && s.batch <= 16) {
        // The planner's one-wave split against fixed split sizes (more,
        // shorter CTAs balance better but pay more prologues and partials).
        for (const int64_t split : {256, 512, 2048}) {
          decode.plan(batch.kv_indptr, batch.kv_last_page_len, bench.stream(),
                      DecodePlanOptions{split});
          const double split_us = bench.median_us(run, kv_bytes + io_bytes);
          bench.emit("batch_decode_fixed_split",
                     case_name(s, page_size) + ",split=" + std::to_string(split), "GB/s",
                     gbps(kv_bytes, split_us));
        }
        decode.plan(batch.kv_indptr, batch.kv_last_page_len, bench.stream());
        // The first row again, last: B=1 rows measured later in this case
        // read faster (the JIT copy of the same kernel 1.10x), so this tells
        // an order effect from a kernel difference.
        bench.emit("batch_decode_repeat", case_name(s, page_size), "GB/s",
                   gbps(kv_bytes, bench.median_us(run, kv_bytes + io_bytes)));
      }
      if (page_size == 16 && s.batch == 256) {
        // Host time of plan() (median), the copy to the device included.
        std::vector<double> samples;
        for (int i = 0; i < kPlanRepeats; ++i) {
          const auto start = std::chrono::steady_clock::now();
          decode.plan(batch.kv_indptr, batch.kv_last_page_len, bench.stream());
          const auto stop = std::chrono::steady_clock::now();
          samples.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
        }
        std::sort(samples.begin(), samples.end());
        bench.emit("batch_decode_plan_host", case_name(s, page_size), "us",
                   samples[samples.size() / 2]);
      }
    }
  }
}

}  // namespace tessera::bench
