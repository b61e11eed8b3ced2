// Where a prefill unit's rows live, for both prefill back ends (FA2,
// prefill_sm80.cuh; Hopper, prefill_sm90/) and the tensor-core decode: query
// rows of a request (GQA-packed), K/V rows by kv position (contiguous or
// paged: the one owner of page / slot / offset arithmetic), output rows, and
// the batch kernels' ragged / paged K/V of a request.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/core/fast_divmod.cuh"

namespace tessera::prefill {

// Query rows of one request: row r is token r / rows_per_token, qo head
// head_base + r % rows_per_token (rows_per_token = 1: one head per CTA).
template <typename T>
struct QueryRows {
  const T* q;  // the request's first token, head 0
  int64_t stride_token;
  int64_t stride_head;
  FastDivmod per_token;  // by rows_per_token
  int head_base;
  __device__ __forceinline__ int token(int row) const { return per_token.div(row); }
  __device__ __forceinline__ int head(int row) const {
    return head_base + row - token(row) * static_cast<int>(per_token.divisor);
  }
  __device__ __forceinline__ int64_t offset(int row) const {
    return token(row) * stride_token + head(row) * stride_head;
  }
};

// K/V rows of one KV head of one request by kv position; K and V share the
// offsets. Contiguous: position p at p * stride (single prefill, ragged batch).
//
// A KvRows type also says where a thread's rows of one tile are: fetch()
// returns a TileRows for the thread's kRows positions pos0 + i * kStep
// (before pos_end), fetch_at() for positions pos_of(i) (the irregular copies
// of head_dim 80 / 96 / 112), and offset(rows, i, pos) the element offset of
// row i.
// Paged caches load the page ids there, one tile ahead of the copies, so the
// id loads never stall the copy issue (one dependent global load per tile
// and K/V otherwise, measured at 0.66-0.8x of ragged for page size 1).
template <typename T>
struct ContiguousKvRows {
  using Element = T;
  static constexpr bool kContiguous = true;
  const T* k;  // the request's position 0 of this KV head
  const T* v;
  int64_t stride;
  // V's row stride where it differs from K's (q/k and v/o head dims that
  // differ); kernels with equal head dims use `stride` for both.
  int64_t v_stride;
  // V's rows as a KvRows of their own (K = V).
  __device__ __forceinline__ ContiguousKvRows values() const { return {v, v, v_stride, v_stride}; }
  template <int kRows>
  struct TileRows {};
  template <int kRows, int kStep>
  __device__ __forceinline__ TileRows<kRows> fetch(int /*pos0*/, int /*pos_end*/) const {
    return {};
  }
  template <int kRows, typename PosOf>
  __device__ __forceinline__ TileRows<kRows> fetch_at(const PosOf&, int /*pos_end*/) const {
    return {};
  }
  template <int kRows>
  __device__ __forceinline__ int64_t offset(const TileRows<kRows>&, int /*i*/, int pos) const {
    return pos * stride;
  }
};

// A cache row's offset from the cache's start as a 32-bit count of `bytes`
// units, page_id * page + slot * entry + kv_head * head (the host's
// paged_row_units picks the unit and checks that the cache's extent fits):
// PagedRowTable's entries. In PagedKvRows, `head` is the head's offset
// (kv_head * head).
struct PagedRowUnits {
  uint32_t page;
  uint32_t entry;
  uint32_t head;
  uint32_t bytes;
};

// Paged: position p at slot p % page_size of page pages[p / page_size].
template <typename T>
struct PagedKvRows {
  using Element = T;
  static constexpr bool kContiguous = false;
  const T* k;  // k_data + head * stride_head
  const T* v;
  int64_t stride_page;
  int64_t stride_entry;
  const int32_t* pages;  // the request's page ids
  FastDivmod page_div;
  // Prefill's row table addresses rows from the cache's start (the kernel
  // parameters: no registers for a head pointer); the tensor-core decode
  // leaves these empty.
  PagedRowUnits units;
  const T* k_data;
  const T* v_data;
  // V's units where its strides differ from K's (q/k and v/o head dims that
  // differ: a second row table); unused otherwise.
  PagedRowUnits v_units;
  template <int kRows>
  struct TileRows {
    int32_t page_id[kRows];
  };
  // Page id of position pos; 0 past pos_end (such rows copy nothing).
  __device__ __forceinline__ int32_t page_of(int pos, int pos_end) const {
    return pos < pos_end ? pages[page_div.div(pos)] : 0;
  }
  // Slot of position pos on its page.
  __device__ __forceinline__ int slot_of(int pos) const {
    return pos - page_div.div(pos) * static_cast<int>(page_div.divisor);
  }
  // Element offset of position pos on page page_id.
  __device__ __forceinline__ int64_t offset_in_page(int32_t page_id, int pos) const {
    return static_cast<int64_t>(page_id) * stride_page + slot_of(pos) * stride_entry;
  }
  // The row's offset from k_data / v_data in units.bytes units (exact in
  // 32 bits: the host checked the cache's extent).
  __device__ __forceinline__ uint32_t units_from_start(int32_t page_id, int pos) const {
    return units_from_start(units, page_id, pos);
  }
  // The same in units `u` (V's own, where its strides differ from K's).
  __device__ __forceinline__ uint32_t units_from_start(const PagedRowUnits& u, int32_t page_id,
                                                       int pos) const {
    return static_cast<uint32_t>(page_id) * u.page + static_cast<uint32_t>(slot_of(pos)) * u.entry +
           u.head;
  }
  template <int kRows, int kStep>
  __device__ __forceinline__ TileRows<kRows> fetch(int pos0, int pos_end) const {
    TileRows<kRows> rows;
#pragma unroll
    for (int i = 0; i < kRows; ++i) rows.page_id[i] = page_of(pos0 + i * kStep, pos_end);
    return rows;
  }
  template <int kRows, typename PosOf>
  __device__ __forceinline__ TileRows<kRows> fetch_at(const PosOf& pos_of, int pos_end) const {
    TileRows<kRows> rows;
#pragma unroll
    for (int i = 0; i < kRows; ++i) rows.page_id[i] = page_of(pos_of(i), pos_end);
    return rows;
  }
  template <int kRows>
  __device__ __forceinline__ int64_t offset(const TileRows<kRows>& rows, int i, int pos) const {
    return offset_in_page(rows.page_id[i], pos);
  }
};

// Where a unit's results go. partial_out null: out/lse rows of the request
// (lse null: not wanted); else float32 partial rows (normalised out, lse)
// partial_out + i * partial_stride for the unit's row i.
template <typename T>
struct OutputRows {
  T* out;  // the request's first token, head 0
  int64_t stride_token;
  int64_t stride_head;
  float* lse;  // null or the request's first token: lse[token * lse_stride + head]
  int64_t lse_stride;
  float* partial_out;
  float* partial_lse;
  int64_t partial_stride;      // floats between partial rows of partial_out
  int64_t partial_lse_stride;  // floats between partial rows of partial_lse
};

// The batch kernels' K/V: ragged (contiguous rows per request, from token
// kv_start = kv_indptr[request]) or paged (pages from kv_indices[kv_start]).
template <typename T>
struct RaggedKv {
  using Element = T;
  const T* k;  // [total_kv, num_kv_heads, head_dim_qk] strided
  const T* v;  // [total_kv, num_kv_heads, head_dim_vo] strided
  int64_t stride_token;
  int64_t stride_head;
  int64_t v_stride_token;  // v's (the same as k's when the head dims are)
  int64_t v_stride_head;
  __device__ __forceinline__ ContiguousKvRows<T> rows(int kv_start, int kv_head) const {
    const int64_t base = kv_start * stride_token + kv_head * stride_head;
    const int64_t v_base = kv_start * v_stride_token + kv_head * v_stride_head;
    return {k + base, v + v_base, stride_token, v_stride_token};
  }
};

template <typename T>
struct PagedKv {
  using Element = T;  // q's type, or fp8 e4m3 / e5m2 (widened in shared memory)
  const T* k_data;
  const T* v_data;
  int64_t stride_page;
  int64_t stride_entry;
  int64_t stride_head;
  const int32_t* kv_indices;
  FastDivmod page_div;
  PagedRowUnits units;  // head: one head's offset
  PagedRowUnits v_units;  // V's, where its strides differ from K's (else unused)
  __device__ __forceinline__ PagedKvRows<T> rows(int kv_start, int kv_head) const {
    return {k_data + kv_head * stride_head,
            v_data + kv_head * stride_head,
            stride_page,
            stride_entry,
            kv_indices + kv_start,
            page_div,
            {units.page, units.entry, static_cast<uint32_t>(kv_head) * units.head, units.bytes},
            k_data,
            v_data,
            {v_units.page, v_units.entry, static_cast<uint32_t>(kv_head) * v_units.head,
             v_units.bytes}};
  }
};

}  // namespace tessera::prefill
