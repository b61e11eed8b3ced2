// MLA (DeepSeek multi-head latent attention) over a paged latent cache,
// after the matrix absorption (docs/mla.md): for query token i of a
// request and head h, s_j = (q_nope[i,h] . ckv[j] + q_pe[i,h] . kpe[j]) x
// sm_scale, out[i,h] = sum_j softmax(s)_j ckv[j] ([512]), lse base 2.
// causal: token i sees positions <= kv_len - qo_len + i
// (bottom-right). A token that sees no key gets out 0 and lse -inf.
// Two kernels (docs/mla.md): the Hopper one (wgmma, warp-specialised;
// sm_90a) and a portable mma.sync one (sm80+ with 144 KB of shared memory
// per block: A100, H100; not sm_86 / sm_89).
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "tessera/api/prefill_backend.h"
#include "tessera/core/export.h"
#include "tessera/core/validation.h"

namespace tessera {

struct MlaPlanShape {
  int64_t num_heads = 0;       // query heads (tensor-parallel shard of the model's)
  int64_t head_dim_ckv = 512;  // the latent width: 512 only
  int64_t head_dim_kpe = 64;   // the RoPE key width: 64 only
  int64_t page_size = 0;       // >= 1
  // kFa3: the Hopper kernel (an error elsewhere); kFa2: the mma.sync
  // kernel; kAuto: kFa3 on sm_90a, else kFa2.
  PrefillBackend backend = PrefillBackend::kAuto;
};

// What a plan may hold at most; fixed when a CUDA graph is captured.
struct MlaPlanBounds {
  int64_t max_batch_size = 0;
  int64_t max_total_qo_tokens = 0;
};

struct MlaRunOptions {
  double sm_scale = 0;  // > 0; DeepSeek: 1 / sqrt(128 + 64) (x YaRN's mscale^2)
};

// Plan / run as the batch prefill wrappers: plan() on the host from host
// arrays, schedule copied into the caller's workspace without blocking;
// run() only launches (capturable). Not thread-safe: one object per stream.
class TESSERA_API BatchMlaPagedAttention {
 public:
  BatchMlaPagedAttention(const MlaPlanShape& shape, const MlaPlanBounds& bounds, void* workspace,
                         std::size_t workspace_bytes, int device_id);
  ~BatchMlaPagedAttention();
  BatchMlaPagedAttention(const BatchMlaPagedAttention&) = delete;
  BatchMlaPagedAttention& operator=(const BatchMlaPagedAttention&) = delete;

  // The room for every split-KV plan within the bounds; any size from
  // min_workspace_size_bytes (the schedule alone: no split) up is accepted.
  static std::size_t workspace_size_bytes(const MlaPlanShape& shape, const MlaPlanBounds& bounds,
                                          int device_id);
  static std::size_t min_workspace_size_bytes(const MlaPlanShape& shape,
                                              const MlaPlanBounds& bounds, int device_id);

  // Host arrays: qo_indptr [batch + 1] (query tokens), kv_indptr [batch + 1]
  // (pages, into kv_indices), kv_len [batch] (KV tokens, at most the
  // request's pages x page_size).
  void plan(std::span<const int32_t> qo_indptr, std::span<const int32_t> kv_indptr,
            std::span<const int32_t> kv_len, bool causal, cudaStream_t stream);

  // q_nope [tokens, heads, 512], q_pe [tokens, heads, 64]; ckv_cache
  // [pages, page_size, 512], kpe_cache [pages, page_size, 64] (any page and
  // entry strides, last dim contiguous, rows 16-byte aligned: slices of one
  // [pages, page_size, 576] buffer work); all of q's dtype (fp16 / bf16).
  // out [tokens, heads, 512] like q; lse null or float32 [tokens, heads]
  // contiguous. kv_indices int32 page ids on the device; qo_indptr /
  // kv_indptr / kv_len int32 on the device, the arrays plan() saw.
  void run(const DLTensor& q_nope, const DLTensor& q_pe, const DLTensor& ckv_cache,
           const DLTensor& kpe_cache, const DLTensor& kv_indices, const DLTensor& qo_indptr,
           const DLTensor& kv_indptr, const DLTensor& kv_len, const DLTensor& out,
           const DLTensor* lse, const MlaRunOptions& options, cudaStream_t stream,
           Validate validate = Validate::kFromEnv);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessera
