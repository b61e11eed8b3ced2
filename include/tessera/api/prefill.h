// Prefill attention: many query tokens of one request against its K/V
// (FlashInfer 0.2 semantics). Query i sits at kv position
// kv_len - qo_len + i; causal masks kv positions after it. lse is float32 in
// base 2 (as decode returns it); a query with nothing to attend gets out 0
// and lse -inf.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include "tessera/api/attention_options.h"
#include "tessera/api/paged_kv_cache.h"
#include "tessera/core/export.h"

namespace tessera {

// q: [qo_len, num_qo_heads, head_dim] fp16/bf16; k, v: [kv_len, num_kv_heads,
// head_dim] (NHD) or [num_kv_heads, kv_len, head_dim] (HND) of q's dtype, any
// strides with head_dim contiguous and 16-byte aligned rows (also for q and
// out); out like q; lse: null or float32 [qo_len, num_qo_heads] contiguous.
// head_dim 64 or 128 (else rejected naming "q"). causal with qo_len > kv_len
// is rejected naming "q" (the queries would sit before the first key).
// Variants: plain, soft-cap, sliding window, ALiBi; RoPE on the fly and
// soft-cap + window are not built for prefill yet (rejected naming "options").
TESSERA_API void single_prefill_with_kv_cache(const DLTensor& q, const DLTensor& k,
                                              const DLTensor& v, const DLTensor& out,
                                              const DLTensor* lse, KVLayout layout, bool causal,
                                              const AttentionOptions& options,
                                              cudaStream_t stream);

}  // namespace tessera
