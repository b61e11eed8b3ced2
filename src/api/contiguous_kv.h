// Single-request K/V as single decode and single prefill take them:
// [kv_len, num_kv_heads, head_dim] (NHD) or [num_kv_heads, kv_len, head_dim]
// (HND), K and V sharing shape and strides (the kernels index both with one
// set of strides, viewing them as a one-page paged cache). Also the checks
// every attention entry point makes of its dense tensors (out like q, 16-byte
// rows).
#pragma once

#include <cstdint>

#include "tessera/api/paged_kv_cache.h"
#include "tessera/core/tensor_view.h"

namespace tessera::detail {

struct ContiguousKV {
  int64_t kv_len;
  int64_t num_kv_heads;
  int64_t stride_entry;  // elements between tokens
  int64_t stride_head;   // elements between heads
};

// Checks (named errors): layout is NHD or HND, k and v share dtype, shape and
// strides, num_kv_heads divides num_qo_heads, kv_len < 2^31. Per-tensor
// checks (rank, device, dtype vs q, alignment) are the caller's.
ContiguousKV resolve_contiguous_kv(const TensorView& k, const TensorView& v, KVLayout layout,
                                   int64_t num_qo_heads);

// An attention output `out` "like q": q's rank, dtype, shape and device, on
// the GPU with head_dim contiguous, and either q itself (in place) or
// disjoint from it. Throws naming "out".
TensorView output_like_q(const DLTensor& out, const TensorView& q);
// The same with out's last dim head_dim_vo (v's; q's is head_dim_qk): equal
// to q's shape but the last dim, which must be head_dim_vo (named "out").
// Where it differs from q's, out must not overlap q.
TensorView output_like_q(const DLTensor& out, const TensorView& q, int64_t head_dim_vo);

// Throws naming the tensor unless its data and strides are 16-byte aligned
// (the prefill kernels move 16-byte rows of q, k, v and out); empty passes.
void expect_rows_aligned16(const TensorView& t);

}  // namespace tessera::detail
