// Timing and input helpers for tessera_bench. Every measurement: warm-up
// launches, then many timed samples bracketed by CUDA events, median
// reported. A call whose working set is under twice the L2 size is timed one
// launch per sample with L2 flushed before it (a write over twice the L2
// size), so it reads from memory; a larger call streams its data through
// memory anyway and is timed as a run of back-to-back launches per sample
// (per-launch mean), which amortises the grid ramp-up and drain the way a
// stream of kernels in a serving step does.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tessera/core/cuda_resources.h"
#include "tessera/core/dtype.h"
#include "tessera/jit/jit.h"

namespace tessera::bench {

struct BenchConfig {
  int warmup_iterations = 5;
  // Warm-up also lasts at least this long: the GPU idles (and clocks down)
  // while a case sets up, and 5 launches of a 40 us decode step did not
  // bring it back: at B=1 x 32k the first row of a case read 10% below the
  // same kernel timed again at the end of the case.
  double warmup_ms = 50.0;
  int timed_iterations = 50;           // samples of single, L2-flushed launches
  int streamed_samples = 15;           // samples of back-to-back launches
  int launches_per_streamed_sample = 10;
  std::string case_filter;  // run only cases containing it (empty: all)
};

class Bench {
 public:
  explicit Bench(BenchConfig config);

  cudaStream_t stream() const { return stream_.get(); }
  const BenchConfig& config() const { return config_; }
  // Whether a case passes --case (for profiling one shape under ncu).
  bool wants(const std::string& shape_case) const {
    return shape_case.find(config_.case_filter) != std::string::npos;
  }

  // warmup_iterations launches, then as many more as fill warmup_ms (from
  // the first ones' time), back to back; returns with the stream drained.
  template <typename Launch>
  void warm_up(Launch&& launch) {
    const int first = std::max(config_.warmup_iterations, 1);
    start_.record(stream());
    for (int i = 0; i < first; ++i) launch();
    stop_.record(stream());
    const double ms_per_launch =
        std::max(1e-3, static_cast<double>(stop_.elapsed_ms_since(start_)) / first);
    const double more = std::min(config_.warmup_ms / ms_per_launch, 20000.0);
    for (int i = 0; i < static_cast<int>(more); ++i) launch();
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }

  // Median microseconds per launch of `launch`, whose reads plus writes
  // cover `working_set_bytes`.
  template <typename Launch>
  double median_us(Launch&& launch, double working_set_bytes) {
    warm_up(launch);
    std::vector<double> samples;
    if (working_set_bytes > 2.0 * l2_bytes_) {
      const int launches = config_.launches_per_streamed_sample;
      for (int i = 0; i < config_.streamed_samples; ++i) {
        start_.record(stream());
        for (int j = 0; j < launches; ++j) launch();
        stop_.record(stream());
        samples.push_back(1e3 * stop_.elapsed_ms_since(start_) / launches);
      }
      TESSERA_CUDA_CHECK(cudaGetLastError());
      return median(samples);
    }
    samples.reserve(config_.timed_iterations);
    for (int i = 0; i < config_.timed_iterations; ++i) {
      flush_l2(i);
      start_.record(stream());
      launch();
      stop_.record(stream());
      samples.push_back(1e3 * stop_.elapsed_ms_since(start_));
    }
    TESSERA_CUDA_CHECK(cudaGetLastError());
    return median(samples);
  }

  // Device-to-device copy bandwidth (bytes read + written per second) of a
  // 1 GiB buffer: the memory ceiling of this run.
  double copy_gbps();

  // One line per measurement, parsed by benchmarks/report.py.
  void emit(const std::string& kernel, const std::string& shape_case, const std::string& metric,
            double value) const;

 private:
  void flush_l2(int iteration);
  static double median(std::vector<double> samples);

  BenchConfig config_;
  CudaStream stream_;
  CudaEvent start_;
  CudaEvent stop_;
  std::size_t l2_bytes_ = 0;
  DeviceBuffer l2_flush_;
};

// Random values in [-1, 1) of the given float dtype, generated on the device.
void fill_random(void* data, DType dtype, int64_t count, uint64_t seed, cudaStream_t stream);

// Bytes per second as GB/s given bytes and microseconds.
inline double gbps(double bytes, double microseconds) { return bytes / (microseconds * 1e3); }

// A contiguous device tensor owned by the benchmark, described as a DLTensor.
class BenchTensor {
 public:
  BenchTensor(DType dtype, std::vector<int64_t> shape);
  DLTensor& dl() { return tensor_; }
  void* data() const { return buffer_.data(); }
  int64_t numel() const;
  std::size_t bytes() const { return buffer_.bytes(); }

 private:
  std::vector<int64_t> shape_;
  DeviceBuffer buffer_;
  DLTensor tensor_{};
};

// PlainVariant's arithmetic as a JIT variant for `kernel` (bf16, head_dim):
// JIT-compiled kernels are timed beside the AOT ones (rows <kernel>_jit,
// peer tessera_aot), which should run at the same speed.
tessera::jit::VariantSpec jit_plain_spec(tessera::jit::KernelKind kernel, int64_t head_dim);
// examples/jit/flash_sigmoid.cuh (sigmoid attention, no softmax; extra
// parameter `bias`), for speed rows without a peer.
tessera::jit::VariantSpec jit_sigmoid_spec(tessera::jit::KernelKind kernel, int64_t head_dim);

// Kernel families; each registers its measurements.
void run_norm_benchmarks(Bench& bench);
void run_activation_benchmarks(Bench& bench);
void run_rope_benchmarks(Bench& bench);
void run_append_benchmarks(Bench& bench);
void run_decode_benchmarks(Bench& bench);
void run_prefill_benchmarks(Bench& bench);
void run_batch_prefill_benchmarks(Bench& bench);
void run_mla_benchmarks(Bench& bench);
void run_segment_gemm_benchmarks(Bench& bench);
void run_bmm_fp8_benchmarks(Bench& bench);
void run_cascade_benchmarks(Bench& bench);
void run_sampling_benchmarks(Bench& bench);

}  // namespace tessera::bench
