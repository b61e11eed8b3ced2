// The Hopper prefill launchers (prefill_sm90_launch.cuh instantiates them):
// batch prefill with ragged or paged K/V, and single prefill. Host-only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "api/batch_prefill_plan.h"
#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"

namespace tessera::detail {

// Single prefill's tensors and sizes, resolved (single_prefill.cu): what
// both back ends' launches start from.
struct SinglePrefillTensors {
  const void* q;
  int64_t q_stride_token, q_stride_head;
  void* out;
  int64_t out_stride_token, out_stride_head;
  float* lse;
  const void* k;
  const void* v;
  int64_t kv_stride_entry, kv_stride_head;
  int64_t qo_len, kv_len, num_qo_heads, num_kv_heads, head_dim;
  bool causal;
  attention::VariantParams variant;
  const uint8_t* custom_mask;  // null or bit-packed [qo_len, kv_len]
};

struct SinglePrefillSm90Launch {
  SinglePrefillTensors t;
  DType dtype;
  attention::VariantKind variant_kind;
  const void* jit_kernel;  // a JIT variant's Hopper kernel (LoadedVariant::hopper_kernel), or null
};

void launch_batch_prefill_sm90_ragged(const BatchPrefillLaunch& launch, cudaStream_t stream);
void launch_batch_prefill_sm90_paged(const BatchPrefillLaunch& launch, cudaStream_t stream);
void launch_single_prefill_sm90(const SinglePrefillSm90Launch& launch, cudaStream_t stream);

}  // namespace tessera::detail
