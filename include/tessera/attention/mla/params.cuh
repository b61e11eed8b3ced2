// What every MLA kernel (sm90, sm80) takes: the latent widths, the run's
// arguments and a work unit's K/V span (docs/mla.md).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/attention/prefill_schedule.cuh"
#include "tessera/attention/state.cuh"

namespace tessera::mla {

inline constexpr int kDimCkv = 512;  // the compressed latent (values and the nope key)
inline constexpr int kDimKpe = 64;   // the RoPE key
inline constexpr int kDimQk = kDimCkv + kDimKpe;

// q_nope [tokens, heads, 512], q_pe [tokens, heads, 64]; the caches
// [pages, page_size, 512] and [pages, page_size, 64] (any page / entry
// strides, e.g. slices of one [pages, page_size, 576] buffer); out [tokens,
// heads, 512]; lse null or float32 [tokens, heads] (base 2). Strides in
// elements; every row 16-byte aligned. The schedule is the batch prefill
// planner's with one KV head and heads packed into the rows (row = token x
// heads + head within a request).
template <typename T>
struct Params {
  const T* q_nope;
  int64_t q_nope_stride_token;
  int64_t q_nope_stride_head;
  const T* q_pe;
  int64_t q_pe_stride_token;
  int64_t q_pe_stride_head;
  const T* ckv;
  int64_t ckv_stride_page;
  int64_t ckv_stride_entry;
  const T* kpe;
  int64_t kpe_stride_page;
  int64_t kpe_stride_entry;
  const int32_t* kv_indices;  // page ids; a request's start is its unit's kv_start
  int32_t page_size;
  int32_t num_heads;
  T* out;
  int64_t out_stride_token;
  int64_t out_stride_head;
  float* lse;
  float sm_scale_log2;  // sm_scale x log2(e)
  PrefillScheduleView schedule;
  int32_t* job_counters;  // &schedule.header->next_job (the sm90 kernel's job counter)
};

// A unit's K/V tiles of kBlockN rows: [kv_begin, kv_end) cut at its last
// row's causal bound.
struct UnitSpan {
  int kv_begin;
  int kv_end;
  int num_tiles;
};

template <int kBlockN>
__device__ __forceinline__ UnitSpan unit_span(const PrefillWorkUnit& u, int num_heads,
                                              bool causal) {
  const int last_token = (u.qo_tile_begin + u.qo_rows - 1) / num_heads;
  UnitSpan span;
  span.kv_begin = u.kv_begin;
  span.kv_end = causal ? min(u.kv_end, u.kv_len - u.qo_len + last_token + 1) : u.kv_end;
  span.num_tiles =
      span.kv_end > span.kv_begin ? (span.kv_end - span.kv_begin + kBlockN - 1) / kBlockN : 0;
  return span;
}

// The KV positions row `row` of a unit's tile sees: below the span's end
// and, causal, up to its token's diagonal (padding rows take the last
// row's, and are never stored).
__device__ __forceinline__ int row_kv_limit(const PrefillWorkUnit& u, const UnitSpan& span, int row,
                                            int num_heads, bool causal) {
  const int token = (u.qo_tile_begin + min(row, u.qo_rows - 1)) / num_heads;
  return causal ? min(span.kv_end, u.kv_len - u.qo_len + token + 1) : span.kv_end;
}

// -inf for the S accumulators (mma / wgmma layout, kBlockN positions from
// kv0) at or past each of the thread's two rows' limits: the causal bound
// and the zero-filled rows past the span.
template <int kBlockN>
__device__ __forceinline__ void mask_past_limits(float (&s)[kBlockN / 2], const int (&limit)[2],
                                                 int kv0, int t) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int bound = limit[i] - kv0 - 2 * t;
#pragma unroll
    for (int n = 0; n < kBlockN / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (8 * n + e >= bound) s[4 * n + 2 * i + e] = attention::negative_infinity();
      }
    }
  }
}

}  // namespace tessera::mla
