// Paged KV-cache maintenance (FlashInfer 0.2 semantics).
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include "tessera/api/paged_kv_cache.h"
#include "tessera/core/export.h"
#include "tessera/core/validation.h"

namespace tessera {

// For a ragged append batch: request b appends tokens
// [append_indptr[b], append_indptr[b+1]) and, after the append, holds
// seq_lens[b] tokens. Writes, for every appended token i, its request
// batch_indices[i] and its position positions[i] = seq_lens[b] -
// (append_indptr[b+1] - append_indptr[b]) + (i - append_indptr[b]).
// append_indptr [batch+1], seq_lens [batch], batch_indices/positions [nnz]:
// int32 on the device.
TESSERA_API void get_batch_indices_positions(const DLTensor& append_indptr,
                                             const DLTensor& seq_lens,
                                             const DLTensor& batch_indices,
                                             const DLTensor& positions, cudaStream_t stream);

// Writes append_key/append_value [nnz, num_kv_heads, head_dim] into the
// cache: token i goes to page kv_indices[kv_indptr[b] + positions[i] /
// page_size], slot positions[i] % page_size, with b = batch_indices[i].
// Parallel over (token, head, 16-byte chunk). fp16/bf16 appends go into a
// cache of the same dtype or into an fp8 cache, e4m3fn or e5m2 (rounded to
// nearest, saturating at +-448 / +-57344: never NaN or infinity from a
// finite value); fp8 appends into a cache of their format are copied. Index
// tensors are int32 on the device.
// With validation on, the index tensors are copied to the host and every page
// index, batch index and position is checked before the launch.
TESSERA_API void append_paged_kv_cache(const DLTensor& append_key, const DLTensor& append_value,
                                       const DLTensor& batch_indices, const DLTensor& positions,
                                       const PagedKVCacheArg& paged_kv_cache,
                                       const DLTensor& kv_indices, const DLTensor& kv_indptr,
                                       const DLTensor& kv_last_page_len, cudaStream_t stream,
                                       Validate validate = Validate::kFromEnv);

}  // namespace tessera
