// Prefill attention: many query tokens of one request against its K/V
// (FlashInfer 0.2 semantics). Query i sits at kv position
// kv_len - qo_len + i; causal masks kv positions after it. lse is float32 in
// base 2 (as decode returns it); a query with nothing to attend gets out 0
// and lse -inf.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "tessera/api/attention_options.h"
#include "tessera/api/paged_kv_cache.h"
#include "tessera/api/prefill_backend.h"
#include "tessera/core/dtype.h"
#include "tessera/core/export.h"
#include "tessera/core/validation.h"

namespace tessera {

// q: [qo_len, num_qo_heads, head_dim] fp16/bf16; k, v: [kv_len, num_kv_heads,
// head_dim] (NHD) or [num_kv_heads, kv_len, head_dim] (HND) of q's dtype, any
// strides with head_dim contiguous and 16-byte aligned rows (also for q and
// out); out like q; lse: null or float32 [qo_len, num_qo_heads] contiguous.
// head_dim 64, 80, 96, 112, 128 or 256 (those off the AOT list JIT-compiled
// on first use; else rejected naming "q"); or q and k of head_dim 192 with v
// and out of 128 (DeepSeek-style, FA2, JIT-compiled: v's last dim picks it,
// out's must match v's, named "v" / "out"). causal with qo_len > kv_len is FlashInfer's: query i sees
// keys j <= kv_len - qo_len + i, so the first qo_len - kv_len queries see none
// (out 0, lse -inf).
// Variants: plain, soft-cap, sliding window, soft-cap + window, ALiBi,
// RoPE-Llama on the fly (query i rotated at kv_len - qo_len + i, key j at j;
// the ones off the AOT list JIT-compiled on first use, docs/jit.md).
// options.custom_mask: a bit-packed [qo_len, kv_len] boolean mask (see
// AttentionOptions), ANDed with causal.
TESSERA_API void single_prefill_with_kv_cache(const DLTensor& q, const DLTensor& k,
                                              const DLTensor& v, const DLTensor& out,
                                              const DLTensor* lse, KVLayout layout, bool causal,
                                              const AttentionOptions& options,
                                              cudaStream_t stream);

// What a batch prefill plan may hold at most; fixed when a CUDA graph is
// captured, so one graph replays for any batch, query lengths and KV lengths
// within these bounds.
struct PrefillPlanBounds {
  int64_t max_batch_size = 0;
  int64_t max_total_qo_tokens = 0;  // qo_indptr[batch] of any plan
};

// page_size: the paged cache's (ignored by the ragged wrapper).
struct PrefillPlanShape {
  int64_t num_qo_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t page_size = 0;
  // kAuto: the Hopper kernels on sm90 where they serve the call, else FA2
  // (tessera/api/prefill_backend.h).
  PrefillBackend backend = PrefillBackend::kAuto;
  // v's and out's head dim; 0: head_dim. head_dim (q's and k's) 192 with
  // head_dim_vo 128 is DeepSeek-style prefill (FA2 only, JIT-served; backend
  // fa3 is rejected naming "backend", auto runs FA2).
  int64_t head_dim_vo = 0;
  int64_t head_dim_qk() const { return head_dim; }
  int64_t v_head_dim() const { return head_dim_vo == 0 ? head_dim : head_dim_vo; }
};

// Batch prefill, FlashInfer 0.2's plan/run split. plan() runs on the host
// from host index arrays (cuts every request into (query tile, KV chunk)
// units balanced over the SMs, splitting KV only when the query tiles cannot
// fill the GPU) and writes the schedule into the caller's device workspace
// with one non-blocking copy; run() only launches (prefill, then a merge of
// split tiles), so it can be captured in a CUDA graph: a graph captured once
// replays for any later plan within the bounds. A wrapper's runs must not
// overlap in time (one stream, or ordered by events: the Hopper kernels take
// their work from a counter in the workspace). Query i of a request sits
// at KV position kv_len - qo_len + i; `causal` (fixed at plan time) masks
// later positions (with qo_len > kv_len the first qo_len - kv_len queries see
// no key: out 0, lse -inf). GQA heads of a group share one K/V stream.
// head_dim 64, 80, 96, 112, 128 or 256, or head_dim 192 with head_dim_vo 128
// (PrefillPlanShape: k of 192, v and out of 128); q, k, v
// fp16/bf16 of one dtype (the paged cache may also be float8 e4m3fn or e5m2
// at head_dim 128); the planner picks 64- or 128-row query tiles per plan;
// variants plain, soft-cap, sliding window, soft-cap + window, ALiBi,
// RoPE-Llama; options.custom_mask:
// every request's packed mask in one buffer (AttentionOptions), which must
// hold at least the sum of ceil(qo_len * kv_len / 8) bytes of the plan.
// Not thread-safe: one object per stream.
class TESSERA_API BatchPrefillWithRaggedKVCache {
 public:
  BatchPrefillWithRaggedKVCache(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds,
                                void* workspace, std::size_t workspace_bytes, int device_id);
  ~BatchPrefillWithRaggedKVCache();
  BatchPrefillWithRaggedKVCache(const BatchPrefillWithRaggedKVCache&) = delete;
  BatchPrefillWithRaggedKVCache& operator=(const BatchPrefillWithRaggedKVCache&) = delete;

  // Workspace: the schedule regions (min_workspace_size_bytes: about 60
  // bytes per 64-row query tile of the bounds, i.e. per max_total_qo_tokens
  // x GQA group / 64 + max_batch_size; 0.4 MB for 100k tokens at group 4)
  // plus float32 split-KV partials. workspace_size_bytes has room for every
  // split the planner may choose (tens of MB at 32 heads: a few hundred
  // partial rows x heads x (head_dim + 1) floats); any size in between is
  // accepted and the planner splits only as far as its partials fit (short
  // queries on long KV fill the GPU less).
  static std::size_t workspace_size_bytes(const PrefillPlanShape& shape,
                                          const PrefillPlanBounds& bounds, int device_id);
  static std::size_t min_workspace_size_bytes(const PrefillPlanShape& shape,
                                              const PrefillPlanBounds& bounds, int device_id);

  // qo_indptr, kv_indptr [batch + 1]: host arrays (token offsets).
  void plan(std::span<const int32_t> qo_indptr, std::span<const int32_t> kv_indptr, bool causal,
            cudaStream_t stream);

  // q [total_qo, num_qo_heads, head_dim] (rows past qo_indptr[batch] are
  // left alone); k, v [total_kv, num_kv_heads, head_dim] with one stride set;
  // out like q; lse null or float32 [total_qo, num_qo_heads] contiguous;
  // qo_indptr / kv_indptr: int32 device copies of plan()'s arrays. Rows
  // 16-byte aligned.
  void run(const DLTensor& q, const DLTensor& k, const DLTensor& v, const DLTensor& qo_indptr,
           const DLTensor& kv_indptr, const DLTensor& out, const DLTensor* lse,
           const AttentionOptions& options, cudaStream_t stream,
           Validate validate = Validate::kFromEnv);

  // The query-tile rows (64 or 128) the last plan() chose, 0 before one.
  int64_t planned_q_tile_rows() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The paged form: KV of request b on pages kv_indices[kv_indptr[b] ..
// kv_indptr[b + 1]), the last holding kv_last_page_len[b] tokens; any page
// size >= 1 (page size 1 is vector-sparse attention), NHD/HND, strided.
class TESSERA_API BatchPrefillWithPagedKVCache {
 public:
  BatchPrefillWithPagedKVCache(const PrefillPlanShape& shape, const PrefillPlanBounds& bounds,
                               void* workspace, std::size_t workspace_bytes, int device_id);
  ~BatchPrefillWithPagedKVCache();
  BatchPrefillWithPagedKVCache(const BatchPrefillWithPagedKVCache&) = delete;
  BatchPrefillWithPagedKVCache& operator=(const BatchPrefillWithPagedKVCache&) = delete;

  // As the ragged wrapper's.
  static std::size_t workspace_size_bytes(const PrefillPlanShape& shape,
                                          const PrefillPlanBounds& bounds, int device_id);
  static std::size_t min_workspace_size_bytes(const PrefillPlanShape& shape,
                                              const PrefillPlanBounds& bounds, int device_id);

  // qo_indptr [batch + 1] tokens; kv_indptr [batch + 1] pages;
  // kv_last_page_len [batch]: host arrays.
  void plan(std::span<const int32_t> qo_indptr, std::span<const int32_t> kv_indptr,
            std::span<const int32_t> kv_last_page_len, bool causal, cudaStream_t stream);

  // As the ragged run(), with the cache and its int32 device index arrays
  // (validation mode also checks page ids against the cache).
  void run(const DLTensor& q, const PagedKVCacheArg& paged_kv_cache, const DLTensor& kv_indices,
           const DLTensor& qo_indptr, const DLTensor& kv_indptr, const DLTensor& kv_last_page_len,
           const DLTensor& out, const DLTensor* lse, const AttentionOptions& options,
           cudaStream_t stream, Validate validate = Validate::kFromEnv);

  // As the ragged wrapper's.
  int64_t planned_q_tile_rows() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Block-sparse attention (FlashInfer's BlockSparseAttentionWrapper): q [M,
// Hq, D] in block rows of R queries, k / v [N, Hk, D] in block columns of C
// keys; block row i attends to the block columns indices[indptr[i] ..
// indptr[i + 1]) (BSR), every key of those blocks. C may be any value >= 1
// (C = 1: vector sparsity). causal is FlashInfer's: within block row i
// (a request of R queries) the keys of its blocks, in the order given, are
// the request's KV, and query r sees key j when j <= kv_len - R + r; with
// sorted columns ending at the diagonal block and R = C that is the causal
// mask of the dense matrix.
// Runs on the paged prefill kernel (a block row is a request, a block column
// a page), so the same plan/run and CUDA-graph rules apply; a block row with
// no blocks gets out 0 and lse -inf.
struct BlockSparseShape {
  int64_t num_qo_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_rows = 1;  // R
  int64_t block_cols = 1;  // C
  // As PrefillPlanShape::backend (the paged wrapper underneath takes it).
  PrefillBackend backend = PrefillBackend::kAuto;
};

struct BlockSparseBounds {
  int64_t max_block_rows = 0;  // M / R of any plan
};

class TESSERA_API BlockSparseAttention {
 public:
  BlockSparseAttention(const BlockSparseShape& shape, const BlockSparseBounds& bounds,
                       void* workspace, std::size_t workspace_bytes, int device_id);
  ~BlockSparseAttention();
  BlockSparseAttention(const BlockSparseAttention&) = delete;
  BlockSparseAttention& operator=(const BlockSparseAttention&) = delete;

  // As the paged wrapper's, plus the per-block-row arrays.
  static std::size_t workspace_size_bytes(const BlockSparseShape& shape,
                                          const BlockSparseBounds& bounds, int device_id);
  static std::size_t min_workspace_size_bytes(const BlockSparseShape& shape,
                                              const BlockSparseBounds& bounds, int device_id);

  // indptr [M / R + 1], indices [indptr.back()] (block column ids < N / C):
  // host arrays, the values run() receives on the device.
  void plan(std::span<const int32_t> indptr, std::span<const int32_t> indices, cudaStream_t stream,
            bool causal = false);

  // q [M, Hq, D] (M = planned block rows x R), k, v [N, Hk, D] with N a
  // multiple of C and one stride set, out like q, lse null or float32 [M, Hq];
  // indptr / indices: int32 device copies of plan()'s arrays.
  void run(const DLTensor& q, const DLTensor& k, const DLTensor& v, const DLTensor& indptr,
           const DLTensor& indices, const DLTensor& out, const DLTensor* lse,
           const AttentionOptions& options, cudaStream_t stream,
           Validate validate = Validate::kFromEnv);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// What backend "fa3" serves and "auto" takes on an sm_90 GPU, answered
// without a GPU (the caller checks for one) for a built-in variant: the
// position encoding, with or without a soft cap / sliding window / custom
// mask, q and K/V dtypes, head_dim (0: whether it holds at every head_dim
// the Hopper kernels have). Call-time conditions are not part of it: a GQA
// group dividing 128, sm_scale * k_scale > 0, a JIT variant's Hopper kernel
// (jit::LoadedVariant::hopper_kernel). Throws tessera::Error naming
// "head_dim" when it is negative.
struct PrefillBackendSupport {
  bool fa3_serves = false;
  bool auto_takes_fa3 = false;
};
TESSERA_API PrefillBackendSupport prefill_backend_support_sm90(PosEncodingMode pos_encoding_mode,
                                                               bool soft_cap, bool sliding_window,
                                                               bool custom_mask, DType q_dtype,
                                                               DType kv_dtype, int64_t head_dim);

}  // namespace tessera
