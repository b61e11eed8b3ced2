// Multi-level cascade attention (FlashInfer 0.2's
// MultiLevelCascadeAttentionWrapper): the KV of every query token is split
// into levels that live in one paged cache, each level with its own page
// table. Level i's qo_indptr groups the query tokens that share level i's
// KV: level 0 is typically one shared prefix for the whole batch
// (qo_indptr {0, total_tokens}), the last level each request's own tokens.
// Each level runs as one batch prefill over its page table, so the query
// rows of every request that share a prefix go through one pass over it
// (the prefix is read once per step, not once per request: the speed of
// cascade decoding; a last level of one token per request runs on the batch
// decode kernel), and the levels' (out, lse) states are merged
// (merge_state_in_place, lse in base 2). The result equals attention over
// the concatenation of a token's levels in order.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "tessera/api/attention_options.h"
#include "tessera/api/paged_kv_cache.h"
#include "tessera/api/prefill.h"
#include "tessera/core/export.h"
#include "tessera/core/validation.h"

namespace tessera {

// One level's page table as plan() reads it: host arrays.
struct CascadeLevelPlan {
  std::span<const int32_t> qo_indptr;         // [level batch + 1] query-token offsets
  std::span<const int32_t> kv_indptr;         // [level batch + 1] page offsets into kv_indices
  std::span<const int32_t> kv_last_page_len;  // [level batch] tokens on the last page
};

// The same level on the device as run() reads it: int32 tensors holding the
// values plan() saw, and the level's page ids.
struct CascadeLevelArrays {
  const DLTensor* kv_indices = nullptr;
  const DLTensor* qo_indptr = nullptr;
  const DLTensor* kv_indptr = nullptr;
  const DLTensor* kv_last_page_len = nullptr;
};

// Plan/run as the batch prefill wrappers (tessera/api/prefill.h): plan() on
// the host from host arrays, run() only launches (each level's prefill, then
// one merge per level but the last), so it can be captured in a CUDA graph
// that replays for any later plan within the bounds. One
// BatchPrefillWithPagedKVCache per level over its slice of the workspace,
// all with `shape` and `bounds` (max_batch_size: the largest level's batch;
// max_total_qo_tokens: the query tokens, which every level covers).
// causal applies to the last level only (FlashInfer's rule): every earlier
// level's KV precedes the tokens' own, so this is causal attention over the
// concatenated KV. A token with no visible key in any level gets out 0 and
// lse -inf. Not thread-safe: one object per stream.
class TESSERA_API MultiLevelCascadeAttention {
 public:
  // num_levels >= 1. Workspace: the scratch of the merges (a q-dtype output
  // and two float32 lse arrays of max_total_qo_tokens rows, a row mask), then
  // num_levels equal slices for the levels' prefill wrappers, each at least
  // their min_workspace_size_bytes (more room: more split-KV, as prefill's),
  // and, where the buffer holds it beside their minimum, a batch decode
  // wrapper's for a last level of one token per request (run() below).
  MultiLevelCascadeAttention(int64_t num_levels, const PrefillPlanShape& shape,
                             const PrefillPlanBounds& bounds, void* workspace,
                             std::size_t workspace_bytes, int device_id);
  ~MultiLevelCascadeAttention();
  MultiLevelCascadeAttention(const MultiLevelCascadeAttention&) = delete;
  MultiLevelCascadeAttention& operator=(const MultiLevelCascadeAttention&) = delete;

  // The scratch plus every level's full split-KV room and the decode
  // wrapper's / the scratch plus every level's minimum (no decode path).
  static std::size_t workspace_size_bytes(int64_t num_levels, const PrefillPlanShape& shape,
                                          const PrefillPlanBounds& bounds, int device_id);
  static std::size_t min_workspace_size_bytes(int64_t num_levels, const PrefillPlanShape& shape,
                                              const PrefillPlanBounds& bounds, int device_id);

  // One entry per level, outermost (shared) first. Every level's
  // qo_indptr ends at the same token count (each token sees every level).
  // Named errors: "levels" (count), "levels[i].qo_indptr" / ".kv_indptr" /
  // ".kv_last_page_len" for the level's arrays.
  void plan(std::span<const CascadeLevelPlan> levels, bool causal, cudaStream_t stream);

  // q [tokens, num_qo_heads, head_dim] fp16/bf16 (rows past the planned
  // tokens are left alone, in out and lse too); the paged cache holding
  // every level's pages; one CascadeLevelArrays per level; out like q; lse
  // null or float32 [tokens, num_qo_heads]. options: sm_scale, the soft cap
  // and the fp8 scales (a query's position differs per level, so position
  // encodings and windows are rejected naming "options", as are custom
  // masks and JIT variants).
  void run(const DLTensor& q, const PagedKVCacheArg& paged_kv_cache,
           std::span<const CascadeLevelArrays> levels, const DLTensor& out, const DLTensor* lse,
           const AttentionOptions& options, cudaStream_t stream,
           Validate validate = Validate::kFromEnv);

  int64_t num_levels() const;

  // Whether run() on `stream` would run the last level on the batch decode
  // kernel: the plan's last level has one query token per request, the
  // workspace held the decode region, the cache rows are 16-byte aligned, and
  // the stream is not being captured (a captured graph keeps the prefill
  // path, which every plan within the bounds serves).
  bool last_level_on_decode(const PagedKVCacheArg& paged_kv_cache, cudaStream_t stream) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessera
