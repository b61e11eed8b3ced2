// One synthetic Llama-3-8B-shaped serving step on a paged KV cache, run by
// tessera-demo: fused add + RMSNorm on the hidden states, token positions of
// the ragged batch, RoPE on q/k, append of k/v into the paged cache, batch
// decode over that cache. Each kernel's output is checked against the float64
// reference, then timed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::demo {

struct StepShape {
  std::string name;
  std::vector<int32_t> new_tokens;       // per request, this step
  std::vector<int32_t> context_tokens;   // per request, already cached
  int64_t hidden = 4096;
  int64_t num_qo_heads = 32;
  int64_t num_kv_heads = 8;
  int64_t head_dim = 128;
  int64_t page_size = 16;
};

struct KernelReport {
  std::string kernel;
  std::string check;  // "ok (...)" or "FAILED (...)"
  bool passed = false;
  double microseconds = 0;
  double bytes = 0;
};

// Runs, checks and times the step; one report per kernel.
std::vector<KernelReport> run_step(const StepShape& shape, uint64_t seed);

}  // namespace tessera::demo
