// tessera_jit_bench: JIT compile and load times on this machine's CPUs (no
// GPU needed): one new variant compiled for the decode and the paged-prefill
// kernels, a disk-cache hit (a "fresh process": memory cache emptied), a
// memory-cache hit, and the warm-up of the kernels a Llama-3-8B serving step
// needs, beside FlashInfer's reported ~15 s to JIT its kernels for a model.
// Writes CSV rows (benchmarks/results columns) to stdout, or appends them to
// the file given as the first argument.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tessera/jit/jit.h"

namespace {

using tessera::jit::KernelKind;
using tessera::jit::VariantSpec;

constexpr const char* kPlainSource = R"(
struct Plain : VariantBase {
  float scale_log2;
  __device__ Plain(const VariantParams& p, int, int) : scale_log2(p.sm_scale * p.k_scale * kLog2e) {}
  __device__ float query_scale() const { return scale_log2; }
};
)";
constexpr double kFlashInferReportedSeconds = 15.0;  // FlashInfer 0.2 paper, JIT of a model's kernels

VariantSpec spec_for(KernelKind kernel, const std::string& nonce) {
  VariantSpec spec;
  spec.name = "Plain";
  spec.source = std::string(kPlainSource) + "// " + nonce + "\n";
  spec.kernel = kernel;
  return spec;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Row {
  std::string kernel, shape_case, metric;
  double value;
  std::string peer = "none";
  double peer_value = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = std::filesystem::temp_directory_path() /
                          ("tessera_jit_bench_" + std::to_string(getpid()));
  setenv("TESSERA_CACHE_DIR", dir.c_str(), 1);
  const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  const std::string where = "cpus=" + std::to_string(cpus) + ",arch=sm_90a";
  std::vector<Row> rows;
  try {
    for (const auto& [kernel, name] : {std::pair{KernelKind::kBatchDecode, "batch_decode"},
                                       std::pair{KernelKind::kBatchPrefillPaged, "batch_prefill_paged"}}) {
      std::vector<double> compile_s, disk_ms, memory_us;
      for (int sample = 0; sample < 3; ++sample) {
        const VariantSpec spec = spec_for(kernel, name + std::to_string(sample));
        auto start = std::chrono::steady_clock::now();
        tessera::jit::compile(spec);
        compile_s.push_back(seconds_since(start));
        for (int hit = 0; hit < 7; ++hit) {
          tessera::jit::clear_memory_cache();
          start = std::chrono::steady_clock::now();
          const auto k = tessera::jit::compile(spec);
          disk_ms.push_back(seconds_since(start) * 1e3);
          if (!k.from_disk) throw std::runtime_error("expected a disk-cache hit");
          start = std::chrono::steady_clock::now();
          tessera::jit::compile(spec);
          memory_us.push_back(seconds_since(start) * 1e6);
        }
      }
      const std::string shape_case = std::string("kernel=") + name + ",D=128,dtype=bf16," + where;
      rows.push_back({"jit_compile_new_variant", shape_case, "s", median(compile_s)});
      rows.push_back({"jit_load_disk_hit", shape_case, "ms", median(disk_ms)});
      rows.push_back({"jit_load_memory_hit", shape_case, "us", median(memory_us)});
    }
    // The Llama-3-8B step: batch decode, paged prefill, ragged prefill and
    // single prefill, bf16, head_dim 128 (GQA is a run-time argument).
    std::vector<VariantSpec> llama;
    for (const KernelKind kernel : {KernelKind::kBatchDecode, KernelKind::kBatchPrefillPaged,
                                    KernelKind::kBatchPrefillRagged, KernelKind::kSinglePrefill}) {
      llama.push_back(spec_for(kernel, "llama"));
    }
    tessera::jit::clear_memory_cache();
    const auto warm = tessera::jit::warm_up(llama, {}, 0, stderr);
    rows.push_back({"jit_warm_up_llama_set", "kernels=4,D=128,dtype=bf16," + where, "s",
                    warm.seconds, "flashinfer_reported", kFlashInferReportedSeconds});
    tessera::jit::clear_memory_cache();
    const auto start = std::chrono::steady_clock::now();
    tessera::jit::warm_up(llama, {}, 0, nullptr);
    rows.push_back({"jit_warm_up_llama_set_cached", "kernels=4,D=128,dtype=bf16," + where, "ms",
                    seconds_since(start) * 1e3});
  } catch (const std::exception& error) {
    std::fprintf(stderr, "tessera_jit_bench failed: %s\n", error.what());
    std::filesystem::remove_all(dir);
    return 1;
  }
  std::filesystem::remove_all(dir);

  const char* commit = std::getenv("TESSERA_COMMIT");
  std::FILE* out = stdout;
  bool header = true;
  if (argc > 1) {
    header = !std::filesystem::exists(argv[1]);
    out = std::fopen(argv[1], "a");
    if (out == nullptr) return 1;
  }
  if (header) {
    std::fprintf(out, "kernel,case,metric,tessera,peer,peer_value,ratio_vs_peer,ceiling,ratio_vs_ceiling,commit\n");
  }
  for (const Row& r : rows) {
    std::string peer_value, ratio;
    if (r.peer != "none") {
      peer_value = std::to_string(r.peer_value);
      ratio = std::to_string(r.peer_value / r.value);  // times faster than the peer
    }
    std::fprintf(out, "%s,\"%s\",%s,%.4f,%s,%s,%s,,,%s\n", r.kernel.c_str(), r.shape_case.c_str(),
                 r.metric.c_str(), r.value, r.peer.c_str(), peer_value.c_str(), ratio.c_str(),
                 commit != nullptr ? commit : "unknown");
  }
  if (out != stdout) std::fclose(out);
  return 0;
}
