// Decode attention: one query token per request against its KV cache
// (FlashInfer 0.2 semantics). `lse` outputs are float32 and, as FlashInfer
// returns them, in base 2: log2(sum_j 2^(s_j * log2(e))) for the scaled logits
// s_j = sm_scale * q.k_j (after soft-cap), i.e. the natural-log lse times
// log2(e). A request with no KV tokens gives output 0 and lse -inf.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "tessera/api/attention_options.h"
#include "tessera/api/paged_kv_cache.h"
#include "tessera/core/export.h"
#include "tessera/core/validation.h"

namespace tessera {

// Which decode kernel runs. kTensorCores scores a GQA group's query heads
// as the M of mma.sync tiles (FlashInfer's use_tensor_cores); it needs 16-bit
// K/V of q's dtype, head_dim 64 or 128, num_qo_heads / num_kv_heads <= 16 and
// a built-in variant other than RoPE-on-the-fly (else run() throws naming
// "backend"). kAuto takes it wherever it applies and the group has >= 4 heads
// (1.2-1.3x the CUDA-core kernel at GQA 4 on an H200; groups of 1-3 stay on
// CUDA cores, where the mma rows would be mostly padding: not yet measured);
// CUDA cores also run fp8 KV (e4m3fn, e5m2), head_dim 256, RoPE and JIT variants.
enum class DecodeBackend { kAuto, kCudaCores, kTensorCores };

// q: [num_qo_heads, head_dim]; k, v: [kv_len, num_kv_heads, head_dim] (NHD)
// or [num_kv_heads, kv_len, head_dim] (HND), any strides with head_dim
// contiguous; out: [num_qo_heads, head_dim]; lse: null or float32
// [num_qo_heads]. Splits long KV over the SMs internally (workspace from the
// stream-ordered allocator). `backend` as in DecodePlanOptions (FlashInfer's
// use_tensor_cores).
TESSERA_API void single_decode_with_kv_cache(const DLTensor& q, const DLTensor& k,
                                             const DLTensor& v, const DLTensor& out,
                                             const DLTensor* lse, KVLayout layout,
                                             const AttentionOptions& options,
                                             cudaStream_t stream,
                                             DecodeBackend backend = DecodeBackend::kAuto);

// What a plan may hold at most; fixed when a CUDA graph is captured, so one
// graph replays for any batch and lengths within these bounds.
struct DecodePlanBounds {
  int64_t max_batch_size = 0;
  int64_t max_work_units = 0;  // 0: derived from the GPU (enough for every SM)
};

// Per-plan choices.
struct DecodePlanOptions {
  // 0: the planner picks how to split long requests over the SMs. > 0: every
  // request longer than this many KV tokens is cut into chunks of exactly
  // that size (FlashInfer's fixed_split_size), so a request's result does
  // not depend on the rest of the batch (batch invariance); grown to the
  // smallest size the bounds allow if they cannot hold that many chunks.
  int64_t fixed_split_size = 0;
  // The kernel run() launches for this plan (DecodeBackend above).
  DecodeBackend backend = DecodeBackend::kAuto;
};

struct DecodePlanShape {
  int64_t num_qo_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t page_size = 0;
};

// Plan/run decode over a paged KV cache. plan() runs on the host from host
// index arrays and writes the schedule into the caller's device workspace
// with one non-blocking copy (from a pinned staging buffer the object owns);
// run() only launches, so it can be captured in a CUDA graph. Not thread-safe:
// one object per stream.
class TESSERA_API BatchDecodeWithPagedKVCache {
 public:
  // `workspace` is a device buffer of at least workspace_size_bytes(bounds).
  BatchDecodeWithPagedKVCache(const DecodePlanShape& shape, const DecodePlanBounds& bounds,
                              void* workspace, std::size_t workspace_bytes, int device_id);
  ~BatchDecodeWithPagedKVCache();
  BatchDecodeWithPagedKVCache(const BatchDecodeWithPagedKVCache&) = delete;
  BatchDecodeWithPagedKVCache& operator=(const BatchDecodeWithPagedKVCache&) = delete;

  static std::size_t workspace_size_bytes(const DecodePlanShape& shape,
                                          const DecodePlanBounds& bounds, int device_id);

  // kv_indptr [batch + 1], kv_last_page_len [batch]: host arrays (the same
  // values run() later receives on the device).
  void plan(std::span<const int32_t> kv_indptr, std::span<const int32_t> kv_last_page_len,
            cudaStream_t stream, const DecodePlanOptions& options = {});

  // q [batch, num_qo_heads, head_dim]; out like q; lse null or float32
  // [batch, num_qo_heads]; kv_indptr / kv_indices / kv_last_page_len int32 on
  // the device, the arrays plan() saw.
  void run(const DLTensor& q, const PagedKVCacheArg& paged_kv_cache, const DLTensor& kv_indices,
           const DLTensor& kv_indptr, const DLTensor& kv_last_page_len, const DLTensor& out,
           const DLTensor* lse, const AttentionOptions& options, cudaStream_t stream,
           Validate validate = Validate::kFromEnv);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Merging attention states (the base of split-KV and cascade attention).
// v: [seq, heads, head_dim] fp16/bf16/fp32, s: float32 [seq, heads] lse in
// base 2 (as the attention entry points return it). merge_state: (v_a, s_a) + (v_b, s_b) -> (v_merged, s_merged).
// merge_state_in_place: into (v, s), with an optional uint8 mask [seq]
// selecting the rows to merge. merge_states: v [seq, num_states, heads,
// head_dim], s [seq, num_states, heads] -> v_merged [seq, heads, head_dim],
// s_merged [seq, heads]. Rows whose lse is -inf contribute nothing; all -inf
// gives output 0 and lse -inf.
TESSERA_API void merge_state(const DLTensor& v_a, const DLTensor& s_a, const DLTensor& v_b,
                             const DLTensor& s_b, const DLTensor& v_merged,
                             const DLTensor& s_merged, cudaStream_t stream);
TESSERA_API void merge_state_in_place(const DLTensor& v, const DLTensor& s,
                                      const DLTensor& v_other, const DLTensor& s_other,
                                      const DLTensor* mask, cudaStream_t stream);
TESSERA_API void merge_states(const DLTensor& v, const DLTensor& s, const DLTensor& v_merged,
                              const DLTensor& s_merged, cudaStream_t stream);

}  // namespace tessera
