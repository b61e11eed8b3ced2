// Request index and position of every token of a ragged append batch.
//
// Computes, for every appended token i in [0, nnz):
//   b = the request with append_indptr[b] <= i < append_indptr[b + 1]
//   batch_indices[i] = b
//   positions[i] = seq_lens[b] - (append_indptr[b + 1] - append_indptr[b])
//                  + (i - append_indptr[b])
// i.e. the new tokens sit at the end of each request's sequence.
//
// Grid: 1-D, one thread per token, kBatchIndicesBlockThreads per block. Each
// thread finds its request by binary search over append_indptr (log2(batch)
// loads that every thread of a block shares, so they hit L1), which keeps the
// work balanced however skewed the request lengths are (one CTA per request
// would leave one CTA looping over a long prompt).
// Shared memory: none.
// Limits: nnz < 2^31. A token outside [append_indptr[0], append_indptr[batch])
// (inconsistent input) is left unwritten; nothing outside [0, nnz) is
// written whatever append_indptr holds.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

namespace tessera::page {

inline constexpr int kBatchIndicesBlockThreads = 256;

__global__ void __launch_bounds__(kBatchIndicesBlockThreads)
    batch_indices_positions_kernel(const int32_t* __restrict__ append_indptr,
                                   const int32_t* __restrict__ seq_lens,
                                   int32_t* __restrict__ batch_indices,
                                   int32_t* __restrict__ positions, int32_t batch_size,
                                   int32_t nnz) {
  const uint32_t token_unsigned = blockIdx.x * blockDim.x + threadIdx.x;
  if (token_unsigned >= static_cast<uint32_t>(nnz)) return;
  const int32_t token = static_cast<int32_t>(token_unsigned);

  // Upper bound: the first b in [0, batch] with append_indptr[b] > token.
  // Empty requests share their indptr with the next one, so the request
  // found (upper bound - 1) is the last of equal entries: the non-empty one.
  int32_t lo = 0;
  int32_t hi = batch_size + 1;
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo) / 2;
    if (__ldg(append_indptr + mid) <= token)
      lo = mid + 1;
    else
      hi = mid;
  }
  const int32_t batch = lo - 1;
  if (batch < 0 || batch >= batch_size) return;

  const int32_t start = __ldg(append_indptr + batch);
  const int32_t end = __ldg(append_indptr + batch + 1);
  batch_indices[token] = batch;
  positions[token] = __ldg(seq_lens + batch) - (end - start) + (token - start);
}

}  // namespace tessera::page
