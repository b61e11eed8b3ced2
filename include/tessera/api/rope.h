// Rotary position embedding (FlashInfer 0.2 semantics), sin/cos in float32.
// q: [nnz, num_qo_heads, head_dim], k: [nnz, num_kv_heads, head_dim], fp16 or
// bf16, last dim contiguous, other strides free. q_rope/k_rope have the same
// shapes; passing q as q_rope (same memory) rotates in place. Dimensions past
// rotary_dim are copied unchanged.
// Pair j (0 <= j < rotary_dim / 2) rotates by angle pos * freq_j, with
//   freq_j = 1 / (rope_scale * rope_theta^(2j / rotary_dim)),
// NeoX style pairs (j, j + rotary_dim/2); interleaved (GPT-J) pairs (2j, 2j+1).
// With llama31 scaling, freq_j blends theta^(-2j/rotary_dim) and that divided
// by rope_scale by wavelength, as Llama 3.1 specifies.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstdint>
#include <optional>

#include "tessera/core/export.h"
#include "tessera/core/validation.h"

namespace tessera {

struct Llama31Scaling {
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double old_context_len = 8192.0;
};

struct RopeOptions {
  int64_t rotary_dim = 0;  // 0 means head_dim
  bool interleave = false;
  double rope_scale = 1.0;
  double rope_theta = 1e4;
  std::optional<Llama31Scaling> llama31;
};

// Positions from a ragged batch: token i of request b (indptr[b] <= i <
// indptr[b+1]) sits at offsets[b] + i - indptr[b]. indptr: [batch+1] int32,
// offsets: [batch] int32, both on the device. With validation (see
// tessera/core/validation.h) indptr is copied to the host and checked:
// starts at 0, non-decreasing, ends at the token count.
TESSERA_API void apply_rope(const DLTensor& q, const DLTensor& k, const DLTensor& q_rope,
                            const DLTensor& k_rope, const DLTensor& indptr, const DLTensor& offsets,
                            const RopeOptions& options, cudaStream_t stream,
                            Validate validate = Validate::kFromEnv);

// Positions given per token: pos_ids [nnz] int32 or int64 on the device.
TESSERA_API void apply_rope_pos_ids(const DLTensor& q, const DLTensor& k, const DLTensor& q_rope,
                                    const DLTensor& k_rope, const DLTensor& pos_ids,
                                    const RopeOptions& options, cudaStream_t stream);

// vLLM-style: cos_sin_cache [max_position, rotary_dim] float32 holds cos in the
// first half of each row and sin in the second; positions [nnz] int32/int64.
// query/key: [nnz, heads * head_size] or [nnz, heads, head_size]; outputs of
// the same shape (may alias the inputs). is_neox selects NeoX pairs. With
// validation, positions are copied to the host and checked against max_position.
TESSERA_API void apply_rope_with_cos_sin_cache(const DLTensor& positions, const DLTensor& query,
                                               const DLTensor& key, const DLTensor& query_out,
                                               const DLTensor& key_out, int64_t head_size,
                                               const DLTensor& cos_sin_cache, bool is_neox,
                                               cudaStream_t stream,
                                               Validate validate = Validate::kFromEnv);

}  // namespace tessera
