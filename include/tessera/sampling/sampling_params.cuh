// Parameters of the sampling kernels (tessera/api/sampling.h), shared by the
// host launch code and the device templates. Plain structs passed by value.
#pragma once

#include <cstdint>

namespace tessera::sampling {

// Threads of the one CTA that owns a request row: 16 warps, so one pass over
// a 128k-entry row issues 63 float4 loads per thread. (1024 threads cap a
// thread at 64 registers, and the passes spilled there.)
inline constexpr int kRowThreads = 512;
// Row CTAs resident per SM the kernels are compiled for (64 registers a
// thread); without it ptxas aimed at 40 registers on sm_80 and spilled.
inline constexpr int kRowCtasPerSm = 2;

// One filter parameter: a per-request array when `per_request` is set, else
// one value for every row.
template <typename T>
struct RowParam {
  const T* per_request = nullptr;
  T value{};
  __device__ __forceinline__ T at(int row) const {
    return per_request != nullptr ? per_request[row] : value;
  }
};

// Which filters a sampling call applies. Off filters keep every token.
struct FilterSet {
  bool top_k = false;
  bool top_p = false;
  bool min_p = false;
};

struct SampleParams {
  const float* probs;            // [rows, vocab], row stride probs_row_stride
  int64_t probs_row_stride;
  const int64_t* row_indices;    // optional: output b samples row row_indices[b]
  int vocab;
  int batch;                     // outputs (and uniform columns)
  const float* uniforms;         // [num_rounds, batch], row stride batch
  int num_rounds;                // >= 1; the last round is the exact fallback's
  FilterSet filters;
  RowParam<int32_t> top_k;
  RowParam<float> top_p;
  RowParam<float> min_p;
  bool check_nan;
  int32_t* samples;              // [batch]
  bool* success;                 // optional [batch]
};

// What a renorm / mask kernel writes for each row.
enum class RenormMode : int {
  kTopPProbs,   // probs kept by top-p, divided by their sum; the rest 0
  kTopKProbs,   // probs kept by top-k, divided by their sum; the rest 0
  kTopKLogits,  // logits kept by top-k unchanged; the rest -inf
};

struct RenormParams {
  const float* input;  // [rows, vocab]
  int64_t input_row_stride;
  float* out;          // [rows, vocab]
  int64_t out_row_stride;
  int vocab;
  RenormMode mode;
  RowParam<int32_t> top_k;
  RowParam<float> top_p;
};

}  // namespace tessera::sampling
