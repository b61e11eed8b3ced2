// GEMM families (issue 23), bf16 unless named:
//   segment_gemm, MoE: T = 4096 tokens routed unevenly (segment i gets a
//     share proportional to 1 / (i + 1), the remainder to segment 0) over E =
//     8 or 64 experts, up (d_in 4096 -> d_out 14336) and down (14336 ->
//     4096), weights [E, d_out, d_in] (column-major, nn.Linear's storage);
//     TFLOP/s of 2 T d_in d_out.
//   segment_gemm, multi-LoRA: S = 1..256 segments of one row (decode),
//     each its own adapter of rank r = 16 or 64, d = 4096; shrink (d -> r)
//     and expand (r -> d); GB/s of weights + x + y moved.
//   bmm_fp8: e4m3 x e4m3 -> bf16, per-tensor scales; TFLOP/s.
// segment_gemm rows run on each back end the GPU has (backend=sm80 always,
// backend=sm90 on compute capability 9.0), in the same run; the LoRA rows'
// sm80 back end is its GEMV kernel (one row per segment, column-major W).
// benchmarks/peers_torch.py rebuilds the same shapes (and the same uneven
// split) for torch._grouped_mm, a loop of torch.matmul, one dense GEMM of
// equal FLOPs and torch._scaled_mm.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_harness.h"
#include "tessera/api/gemm.h"
#include "tessera/core/cuda_check.h"

namespace tessera::bench {

namespace {

constexpr int64_t kMoeTokens = 4096;
constexpr int64_t kHidden = 4096;
constexpr int64_t kIntermediate = 14336;
constexpr int64_t kMoeExperts[] = {8, 64};
constexpr int64_t kLoraSegments[] = {1, 4, 16, 64, 256};
constexpr int64_t kLoraRanks[] = {16, 64};

struct BackendRow {
  SegmentGemmBackend backend;
  const char* name;
};

// sm80 everywhere; sm90 on compute capability 9.0 (elsewhere it is an error).
std::vector<BackendRow> segment_gemm_backends() {
  std::vector<BackendRow> rows = {{SegmentGemmBackend::kSm80, "sm80"}};
  int device = 0;
  int major = 0;
  int minor = 0;
  TESSERA_CUDA_CHECK(cudaGetDevice(&device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major == 9 && minor == 0) rows.push_back({SegmentGemmBackend::kSm90, "sm90"});
  return rows;
}

// Segment i's share of `tokens` proportional to 1 / (i + 1), floor, the
// remainder to segment 0 (peers_torch.py: uneven_lengths).
std::vector<int64_t> uneven_lengths(int64_t tokens, int64_t segments) {
  double total_weight = 0;
  for (int64_t i = 0; i < segments; ++i) total_weight += 1.0 / static_cast<double>(i + 1);
  std::vector<int64_t> lengths(static_cast<std::size_t>(segments));
  int64_t assigned = 0;
  for (int64_t i = 0; i < segments; ++i) {
    lengths[i] = static_cast<int64_t>(static_cast<double>(tokens) / static_cast<double>(i + 1) /
                                      total_weight);
    assigned += lengths[i];
  }
  lengths[0] += tokens - assigned;
  return lengths;
}

BenchTensor device_indptr(const std::vector<int64_t>& lengths, cudaStream_t stream) {
  std::vector<int64_t> indptr(lengths.size() + 1, 0);
  for (std::size_t i = 0; i < lengths.size(); ++i) indptr[i + 1] = indptr[i] + lengths[i];
  BenchTensor tensor(DType::kInt64, {static_cast<int64_t>(indptr.size())});
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(tensor.data(), indptr.data(), indptr.size() * 8,
                                     cudaMemcpyHostToDevice, stream));
  TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  return tensor;
}

// y = segment_gemm(x, W) over `lengths`; returns microseconds per call.
double time_segment_gemm(Bench& bench, const std::vector<int64_t>& lengths, int64_t d_in,
                         int64_t d_out, SegmentGemmBackend backend, double* bytes_moved) {
  int64_t rows = 0;
  for (int64_t length : lengths) rows += length;
  const auto segments = static_cast<int64_t>(lengths.size());
  BenchTensor x(DType::kBFloat16, {rows, d_in});
  BenchTensor weights(DType::kBFloat16, {segments, d_out, d_in});
  BenchTensor y(DType::kBFloat16, {rows, d_out});
  fill_random(x.data(), DType::kBFloat16, x.numel(), 11, bench.stream());
  fill_random(weights.data(), DType::kBFloat16, weights.numel(), 12, bench.stream());
  BenchTensor indptr = device_indptr(lengths, bench.stream());
  *bytes_moved = 2.0 * (static_cast<double>(weights.numel()) + static_cast<double>(x.numel()) +
                        static_cast<double>(y.numel()));
  return bench.median_us(
      [&] {
        segment_gemm(x.dl(), weights.dl(), y.dl(), segments, true, nullptr, &indptr.dl(), nullptr,
                     bench.stream(), backend, Validate::kOff);
      },
      *bytes_moved);
}

}  // namespace

void run_segment_gemm_benchmarks(Bench& bench) {
  const std::vector<BackendRow> backends = segment_gemm_backends();
  for (const int64_t experts : kMoeExperts) {
    for (const bool up : {true, false}) {
      for (const BackendRow& b : backends) {
        const int64_t d_in = up ? kHidden : kIntermediate;
        const int64_t d_out = up ? kIntermediate : kHidden;
        const std::string shape_case = "kind=moe,E=" + std::to_string(experts) +
                                       ",T=" + std::to_string(kMoeTokens) +
                                       ",d_in=" + std::to_string(d_in) +
                                       ",d_out=" + std::to_string(d_out) + ",backend=" + b.name;
        if (!bench.wants(shape_case)) continue;
        double bytes = 0;
        const double us = time_segment_gemm(bench, uneven_lengths(kMoeTokens, experts), d_in, d_out,
                                            b.backend, &bytes);
        const double flops = 2.0 * kMoeTokens * d_in * d_out;
        bench.emit("segment_gemm", shape_case, "TFLOP/s", flops / (us * 1e6));
      }
    }
  }
  for (const int64_t rank : kLoraRanks) {
    for (const int64_t segments : kLoraSegments) {
      for (const bool shrink : {true, false}) {
        for (const BackendRow& b : backends) {
          const int64_t d_in = shrink ? kHidden : rank;
          const int64_t d_out = shrink ? rank : kHidden;
          const std::string shape_case =
              std::string("kind=lora_") + (shrink ? "shrink" : "expand") +
              ",S=" + std::to_string(segments) + ",rows=1,r=" + std::to_string(rank) +
              ",d=" + std::to_string(kHidden) + ",backend=" + b.name;
          if (!bench.wants(shape_case)) continue;
          double bytes = 0;
          const std::vector<int64_t> lengths(static_cast<std::size_t>(segments), 1);
          const double us = time_segment_gemm(bench, lengths, d_in, d_out, b.backend, &bytes);
          bench.emit("segment_gemm", shape_case, "GB/s", gbps(bytes, us));
        }
      }
    }
  }
}

void run_bmm_fp8_benchmarks(Bench& bench) {
  struct Shape {
    int64_t b, m, n, k;
  };
  constexpr Shape kShapes[] = {
      {1, 4096, 14336, 4096}, {1, 128, 14336, 4096}, {8, 1024, 4096, 4096}};
  for (const Shape& s : kShapes) {
    const std::string shape_case = "b=" + std::to_string(s.b) + ",m=" + std::to_string(s.m) +
                                   ",n=" + std::to_string(s.n) + ",k=" + std::to_string(s.k) +
                                   ",dtype=e4m3,out=bf16";
    if (!bench.wants(shape_case)) continue;
    BenchTensor a(DType::kFloat8E4M3, {s.b, s.m, s.k});
    BenchTensor b(DType::kFloat8E4M3, {s.b, s.n, s.k});  // row-major [b, n, k] = col-major B
    BenchTensor a_scale(DType::kFloat32, {1});
    BenchTensor b_scale(DType::kFloat32, {1});
    BenchTensor out(DType::kBFloat16, {s.b, s.m, s.n});
    BenchTensor workspace(DType::kUInt8, {32 << 20});
    fill_random(a.data(), DType::kFloat8E4M3, a.numel(), 21, bench.stream());
    fill_random(b.data(), DType::kFloat8E4M3, b.numel(), 22, bench.stream());
    const float scales[2] = {0.5f, 0.25f};
    TESSERA_CUDA_CHECK(
        cudaMemcpyAsync(a_scale.data(), &scales[0], 4, cudaMemcpyHostToDevice, bench.stream()));
    TESSERA_CUDA_CHECK(
        cudaMemcpyAsync(b_scale.data(), &scales[1], 4, cudaMemcpyHostToDevice, bench.stream()));
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(bench.stream()));
    // B as [b, k, n] with k contiguous: the same memory, transposed view.
    std::vector<int64_t> b_shape = {s.b, s.k, s.n};
    std::vector<int64_t> b_strides = {s.n * s.k, 1, s.k};
    DLTensor b_view = b.dl();
    b_view.shape = b_shape.data();
    b_view.strides = b_strides.data();
    const double bytes = static_cast<double>(a.numel() + b.numel()) + 2.0 * out.numel();
    const double us = bench.median_us(
        [&] {
          bmm_fp8(a.dl(), b_view, a_scale.dl(), b_scale.dl(), out.dl(), &workspace.dl(),
                  bench.stream());
        },
        bytes);
    bench.emit("bmm_fp8", shape_case, "TFLOP/s", 2.0 * s.b * s.m * s.n * s.k / (us * 1e6));
  }
}

}  // namespace tessera::bench
