// tessera_bench: measures the copy ceiling and every kernel family, printing
// "ceiling,..." and "result,..." CSV lines for benchmarks/report.py.
// Usage: tessera_bench [--quick] [--case SUBSTRING]  (decode and prefill cases)
//                     [--only FAMILY[,FAMILY...]]
//   FAMILY: norm, activation, rope, append, decode, prefill, batch_prefill, mla,
//           segment_gemm, bmm_fp8, cascade, sampling
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "bench_harness.h"

int main(int argc, char** argv) {
  using namespace tessera::bench;
  BenchConfig config;
  const char* only = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      config.timed_iterations = 10;
      config.warmup_ms = 5.0;
    }
    if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    if (std::strcmp(argv[i], "--case") == 0 && i + 1 < argc) config.case_filter = argv[++i];
  }
  // --only takes one family or a comma-separated list.
  const auto wanted = [only](const char* family) {
    if (only == nullptr) return true;
    const std::string list = std::string(",") + only + ",";
    return list.find(std::string(",") + family + ",") != std::string::npos;
  };
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "no CUDA device: tessera_bench needs a GPU\n");
    return 2;
  }
  try {
    cudaDeviceProp props{};
    TESSERA_CUDA_CHECK(cudaGetDeviceProperties(&props, 0));
    std::printf("device,\"%s\",sms=%d,l2_bytes=%d\n", props.name, props.multiProcessorCount,
                props.l2CacheSize);
    Bench bench(config);
    std::printf("ceiling,copy,GB/s,%.1f\n", bench.copy_gbps());
    if (wanted("norm")) run_norm_benchmarks(bench);
    if (wanted("activation")) run_activation_benchmarks(bench);
    if (wanted("rope")) run_rope_benchmarks(bench);
    if (wanted("append")) run_append_benchmarks(bench);
    if (wanted("decode")) run_decode_benchmarks(bench);
    if (wanted("prefill")) run_prefill_benchmarks(bench);
    if (wanted("batch_prefill")) run_batch_prefill_benchmarks(bench);
    if (wanted("mla")) run_mla_benchmarks(bench);
    if (wanted("segment_gemm")) run_segment_gemm_benchmarks(bench);
    if (wanted("bmm_fp8")) run_bmm_fp8_benchmarks(bench);
    if (wanted("cascade")) run_cascade_benchmarks(bench);
    if (wanted("sampling")) run_sampling_benchmarks(bench);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tessera_bench failed: %s\n", error.what());
    return 1;
  }
  return 0;
}
