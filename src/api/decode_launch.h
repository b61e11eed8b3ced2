// Internal contract between the decode entry points (batch run(), single
// decode) and the decode kernel launcher: everything resolved and validated,
// ready to launch. The grid is grid_units x num_kv_heads CTAs, unit-major
// (include/tessera/attention/unit_grid.cuh); CTAs of units past
// schedule.header->num_work_units exit at once, so a graph captured with
// grid_units = the bound replays for any schedule within the bounds.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "api/paged_kv_cache_view.h"
#include "tessera/api/attention_options.h"
#include "tessera/api/decode.h"
#include "tessera/attention/decode_schedule.cuh"
#include "tessera/core/dtype.h"

namespace tessera::detail {

struct DecodeLaunch {
  // q [batch, num_qo_heads, head_dim] (strides in elements, head_dim contiguous)
  const void* q;
  DType q_dtype;
  int64_t q_stride_batch;
  int64_t q_stride_head;
  // out like q (same dtype as q)
  void* out;
  int64_t out_stride_batch;
  int64_t out_stride_head;
  // lse: null or float32 [batch, num_qo_heads], contiguous (base 2)
  float* lse;
  ResolvedPagedKV kv;             // dtype fp16 / bf16 / fp8 e4m3fn / fp8 e5m2
  const int32_t* kv_indices;      // device (kv_indptr / lengths: in the schedule's units)
  int64_t num_qo_heads;
  int64_t num_kv_heads;
  int64_t head_dim;
  DecodeScheduleView schedule;    // device pointers into the workspace
  int64_t grid_units;             // work units the grid covers (plan_run.h grid_units)
  AttentionOptions options;       // sm_scale resolved (> 0)
  const void* jit_kernel;         // options.jit_variant's kernel, checked by the entry point
  const float* alibi_slopes;      // device [num_qo_heads] when kAlibi, else null
  DecodeBackend backend;          // kAuto unless the plan asked for one
};

// Launches the decode kernel (partials for split requests, out/lse for the
// rest) on `stream`. The caller then merges partials (launch_decode_merge).
void launch_decode(const DecodeLaunch& launch, cudaStream_t stream);

// Merges the partial (out, lse) of split requests into out/lse. Grid covers
// grid_batch requests (the bound while capturing, else the plan's batch) x
// num_qo_heads; requests with < 2 partials are skipped.
void launch_decode_merge(const DecodeLaunch& launch, int64_t grid_batch, cudaStream_t stream);

}  // namespace tessera::detail
