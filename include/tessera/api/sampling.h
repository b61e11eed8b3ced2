// Sorting-free sampling (FlashInfer 0.2's flashinfer.sampling semantics).
//
// probs / logits: [batch, vocab] float32 on the GPU, rows may be strided,
// last dim contiguous. Each function reads one row per request.
// uniform_samples: float32 uniforms in [0, 1), [batch] or [num_rounds, batch]
// (contiguous). The filtered samplers use rounds 0 .. num_rounds - 2 for
// rejection rounds and the last one for the exact fallback, so every row gets
// a sample from the exact filtered distribution whatever num_rounds is.
// samples: [batch] int32 out. success: optional [batch] uint8 out, 1 when the
// row was sampled; 0 for a row with no positive entry, or with a NaN when
// check_nan (its sample is then 0).
// Per-request parameters: a [batch] tensor (top_k int32, top_p / min_p
// float32) or, when the tensor pointer is null, the scalar for every row:
// top_k >= 1, top_p in (0, 1], min_p in [0, 1].
// Kept sets: top-k keeps the entries with fewer than top_k entries strictly
// above them, top-p those with less than top_p of the row's mass strictly
// above them (ties at a threshold are kept together), min-p those >= min_p
// times the row maximum; top_k_top_p keeps what both keep ("joint").
// Output is bitwise reproducible for the same inputs (`deterministic` is
// accepted for FlashInfer compatibility: every path is deterministic).
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstdint>

#include "tessera/core/export.h"

namespace tessera {

// Output and options shared by every sampling function.
struct SamplingOutputs {
  const DLTensor& samples;
  const DLTensor* success = nullptr;
  bool deterministic = true;
  bool check_nan = false;
};

TESSERA_API void sampling_from_probs(const DLTensor& probs, const DLTensor& uniform_samples,
                                     const SamplingOutputs& out, cudaStream_t stream);
TESSERA_API void top_p_sampling_from_probs(const DLTensor& probs,
                                           const DLTensor& uniform_samples,
                                           const DLTensor* top_p_arr, double top_p,
                                           const SamplingOutputs& out, cudaStream_t stream);
TESSERA_API void top_k_sampling_from_probs(const DLTensor& probs,
                                           const DLTensor& uniform_samples,
                                           const DLTensor* top_k_arr, int64_t top_k,
                                           const SamplingOutputs& out, cudaStream_t stream);
TESSERA_API void min_p_sampling_from_probs(const DLTensor& probs,
                                           const DLTensor& uniform_samples,
                                           const DLTensor* min_p_arr, double min_p,
                                           const SamplingOutputs& out, cudaStream_t stream);
// Joint filter (FlashInfer's filter_apply_order="joint"); "top_k_first" is
// top_k_renorm_probs followed by top_p_sampling_from_probs.
TESSERA_API void top_k_top_p_sampling_from_probs(const DLTensor& probs,
                                                 const DLTensor& uniform_samples,
                                                 const DLTensor* top_k_arr, int64_t top_k,
                                                 const DLTensor* top_p_arr, double top_p,
                                                 const SamplingOutputs& out,
                                                 cudaStream_t stream);

// renorm_probs / masked_logits: [batch, vocab] float32, memory disjoint from
// the input.
TESSERA_API void top_p_renorm_probs(const DLTensor& probs, const DLTensor* top_p_arr,
                                    double top_p, const DLTensor& renorm_probs,
                                    cudaStream_t stream);
TESSERA_API void top_k_renorm_probs(const DLTensor& probs, const DLTensor* top_k_arr,
                                    int64_t top_k, const DLTensor& renorm_probs,
                                    cudaStream_t stream);
TESSERA_API void top_k_mask_logits(const DLTensor& logits, const DLTensor* top_k_arr,
                                   int64_t top_k, const DLTensor& masked_logits,
                                   cudaStream_t stream);

// Chain speculative sampling (speculative_kernel.cuh states the rule).
// draft_probs [batch, n, vocab] and target_probs [batch, n + 1, vocab]
// float32 contiguous; draft_token_ids [batch, n] int32; uniform_samples
// [batch, n + 1] float32; output_token_ids [batch, n + 1] int32 out (-1 past
// the emitted tokens); output_accepted_token_num / output_emitted_token_num
// [batch] int32, added to (FlashInfer's accumulating counters).
struct SpeculativeOutputs {
  const DLTensor& output_token_ids;
  const DLTensor& output_accepted_token_num;
  const DLTensor& output_emitted_token_num;
};

TESSERA_API void chain_speculative_sampling(const DLTensor& draft_probs,
                                            const DLTensor& draft_token_ids,
                                            const DLTensor& uniform_samples,
                                            const DLTensor& target_probs,
                                            const SpeculativeOutputs& out, bool deterministic,
                                            cudaStream_t stream);

}  // namespace tessera
