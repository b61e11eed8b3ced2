// Append new keys and values to a paged KV cache (FlashInfer 0.2 semantics).
//
// Computes, for every appended token i with request b = batch_indices[i] and
// position p = positions[i], and every KV head h:
//   page = kv_indices[kv_indptr[b] + p / page_size], slot = p % page_size
//   K_cache[page, slot, h, :] = append_key[i, h, :]
//   V_cache[page, slot, h, :] = append_value[i, h, :]
// cast with saturation when the cache is fp8 and the append is fp16/bf16,
// copied bit for bit when the dtypes match.
//
// Grid: 1-D, one thread per (token, head, chunk of kVecSize elements), in
// that order from slowest to fastest, kAppendBlockThreads per block. The work
// is parallel per element, not per request, so a decode step (few tokens)
// and a skewed batch (one long prompt) both fill the machine. K and V of one
// chunk are handled by the same thread: two independent loads in flight, and
// the index chain (batch index -> indptr -> page) is resolved once for both.
// Shared memory: none. Registers: a few dozen, no local memory.
// Limits: tokens * heads * chunks < 2^31 (checked by the API layer); element
// offsets are 64-bit because pages * stride_page can pass 2^31.
// Robustness: a batch index, page slot or page index out of range skips the
// write (never touches memory outside the cache); the validation mode of the
// API layer reports such inputs as errors instead.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/attention/kv_cache.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::page {

inline constexpr int kAppendBlockThreads = 256;
inline constexpr int kAppendVectorBytes = 16;

// Elements per thread on the wide path: the wider of the input and cache
// element types moves 16 bytes (fp16 -> fp8 loads 16 and stores 8 bytes).
template <typename In, typename Out>
inline constexpr int kAppendWideVecSize = kAppendVectorBytes /
                                          (sizeof(In) > sizeof(Out) ? sizeof(In) : sizeof(Out));

template <typename In, typename Out>
struct AppendPagedKVParams {
  const In* __restrict__ append_key;    // [nnz, num_heads, head_dim], head_dim contiguous
  const In* __restrict__ append_value;  // same shape, own strides
  int64_t key_stride_token;
  int64_t key_stride_head;
  int64_t value_stride_token;
  int64_t value_stride_head;
  PagedKVView<Out> cache;
  const int32_t* __restrict__ batch_indices;  // [nnz]
  const int32_t* __restrict__ positions;      // [nnz]
  const int32_t* __restrict__ kv_indices;     // [num_kv_indices]
  const int32_t* __restrict__ kv_indptr;      // [batch_size + 1]
  int64_t num_kv_indices;
  int32_t num_pages;
  int32_t batch_size;
  int32_t nnz;
  int32_t chunks_per_row;  // head_dim / kVecSize
};

// Same dtype: a bit copy. fp16/bf16 -> fp8: round to nearest, saturating.
template <typename Out, typename In, int N>
__device__ __forceinline__ Vec<Out, N> convert_append_vec(const Vec<In, N>& in) {
  if constexpr (cuda::std::is_same_v<In, Out>) {
    return in;
  } else {
    Vec<Out, N> out;
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = from_float<Out>(to_float(in[i]));
    return out;
  }
}

template <typename In, typename Out, int kVecSize>
__global__ void __launch_bounds__(kAppendBlockThreads)
    append_paged_kv_kernel(const AppendPagedKVParams<In, Out> params) {
  static_assert(kVecSize * sizeof(In) <= kAppendVectorBytes, "input vector wider than 16 bytes");
  static_assert(kVecSize * sizeof(Out) <= kAppendVectorBytes, "cache vector wider than 16 bytes");
  const PagedKVView<Out>& cache = params.cache;

  // Unsigned: blockIdx.x * blockDim.x may pass INT32_MAX on the last block.
  const uint32_t item = blockIdx.x * blockDim.x + threadIdx.x;
  const uint32_t rows = static_cast<uint32_t>(params.nnz) * static_cast<uint32_t>(cache.num_heads);
  const uint32_t chunks = static_cast<uint32_t>(params.chunks_per_row);
  if (item >= rows * chunks) return;
  const uint32_t row = item / chunks;
  const int32_t dim = static_cast<int32_t>(item - row * chunks) * kVecSize;
  const int32_t token = static_cast<int32_t>(row / static_cast<uint32_t>(cache.num_heads));
  const int32_t head = static_cast<int32_t>(row) - token * cache.num_heads;

  // Issue both data loads before the dependent index chain so their latency
  // overlaps it.
  Vec<In, kVecSize> key;
  Vec<In, kVecSize> value;
  key.load(params.append_key + token * params.key_stride_token + head * params.key_stride_head +
           dim);
  value.load(params.append_value + token * params.value_stride_token +
             head * params.value_stride_head + dim);

  const int32_t batch = __ldg(params.batch_indices + token);
  const int32_t position = __ldg(params.positions + token);
  if (batch < 0 || batch >= params.batch_size || position < 0) return;
  const int64_t page_iter =
      static_cast<int64_t>(__ldg(params.kv_indptr + batch)) + position / cache.page_size;
  if (page_iter < 0 || page_iter >= params.num_kv_indices) return;
  const int32_t page = __ldg(params.kv_indices + page_iter);
  if (page < 0 || page >= params.num_pages) return;

  const int64_t offset = cache.offset(page, position % cache.page_size, head) + dim;
  convert_append_vec<Out>(key).store(cache.k_data + offset);
  convert_append_vec<Out>(value).store(cache.v_data + offset);
}

}  // namespace tessera::page
