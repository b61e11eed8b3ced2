// Merging attention states (v, lse): the second pass of split-KV decode and
// the public merge_state / merge_state_in_place / merge_states ops.
//
// Computes, per item (row, head), over its states i in a fixed order (so the
// result is deterministic):
//   m = max_i s_i,  w_i = 2^(s_i - m),  v = sum_i w_i v_i / sum_i w_i,
//   s = m + log2(sum_i w_i)           (lse in base 2, as the kernels return it)
// in one pass with a running max (online softmax). A state whose lse is -inf
// contributes nothing; the public ops and the prefill merge do not even read
// its v (it may be unwritten), the decode merge reads it beside its lse (the
// decode kernels write every partial slot) and drops it. When every state
// is -inf the result is v = 0, s = -inf.
//
// Grid / block: kMergeBlockThreads threads; an item is served by a group of
// `lanes_per_item` lanes of one warp (a power of two <= 32, about
// head_dim / N), each lane looping over N-element chunks of head_dim, so the
// lse of an item is read before any lane of its warp writes it (in-place
// merge). Public ops: 1-D grid over items. Decode merge: grid (batch, head
// blocks), batch the plan's or, while a graph is captured, max_batch_size;
// it reads the batch size from the schedule header, so a captured CUDA graph
// replays for any plan within the bounds.
// No shared memory. Limits: head_dim % N == 0 (the API picks N = 1 otherwise).
//
// Sum mode (decode / prefill partials of a non-softmax variant): every
// state has lse 0, so the weights are 2^0 = 1 and the merge returns
// sum_i v_i (not divided by the count) with lse 0.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm90/grid_dependency.cuh"
#include "tessera/attention/decode_schedule.cuh"
#include "tessera/attention/prefill_schedule.cuh"
#include "tessera/core/numeric.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::attention {

inline constexpr int kMergeBlockThreads = 256;
inline constexpr int kMergeWarpSize = 32;
// States folded per round of independent loads (accumulate_states): 8 for
// the decode partials (float32, 4 per vector: 32 values in flight per lane),
// 4 for the public merge_states (up to 8 per vector).
inline constexpr int kDecodeMergeUnroll = 8;
inline constexpr int kMergeStatesUnroll = 4;
static_assert(kMergeBlockThreads % kMergeWarpSize == 0, "whole warps per block");

// Running merge of N elements of one item over its states.
template <int N>
struct MergeAccumulator {
  float max_lse;  // running max of the lse seen, -inf before any state
  float denom;    // sum of 2^(s_i - max_lse)
  FloatVec<N> acc;

  __device__ __forceinline__ void init() {
    max_lse = -INFINITY;
    denom = 0.f;
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] = 0.f;
  }

  // Only for lse > -inf (the callers skip empty states before loading v).
  __device__ __forceinline__ void add(float lse, const FloatVec<N>& v) {
    const float new_max = fmaxf(max_lse, lse);
    // exp2(-inf) = 0 on the first state: the empty accumulator drops out.
    const float scale_old = exp2f(max_lse - new_max);
    const float weight = exp2f(lse - new_max);
    denom = denom * scale_old + weight;
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] = acc[i] * scale_old + weight * v[i];
    max_lse = new_max;
  }

  // v = acc / denom and lse = max + log2(denom); all states empty: 0, -inf.
  // sum_states: v = acc (the sum of states whose lse are all 0), lse 0.
  __device__ __forceinline__ void finish(FloatVec<N>& v, float& lse,
                                         bool sum_states = false) const {
    const bool empty = !(denom > 0.f);
    const float inv = sum_states ? 1.f : empty ? 0.f : 1.f / denom;
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = acc[i] * inv;
    lse = sum_states ? 0.f : empty ? -INFINITY : max_lse + log2f(denom);
  }
};

// Loads N elements (one vector when N > 1; the API checked the alignment).
template <typename T, int N>
__device__ __forceinline__ FloatVec<N> load_chunk(const T* source) {
  if constexpr (N == 1) {
    FloatVec<1> out;
    out[0] = to_float(*source);
    return out;
  } else {
    Vec<T, N> v;
    v.load(source);
    return to_float(v);
  }
}

template <typename T, int N>
__device__ __forceinline__ void store_chunk(T* destination, const FloatVec<N>& value) {
  if constexpr (N == 1) {
    *destination = from_float<T>(value[0]);
  } else {
    from_float<T, N>(value).store(destination);
  }
}

// Folds states [0, count) into `merged`, kUnroll at a time: the kUnroll lse
// loads, then the kUnroll value loads, are independent, so a long list of
// partials (a 32k request cut into ~100 chunks) costs count / kUnroll memory
// round trips instead of 2 * count. lse_at(i) -> float, v_at(i) -> const T*.
// kValuesAlwaysReadable: every state's v may be read even when its lse is
// -inf (the decode partials: both decode kernels write every slot of the
// plan), so the value loads need not wait for the lse ones and a round is
// one memory round trip, not two; an empty state's v is still never used.
template <typename T, int N, int kUnroll, bool kValuesAlwaysReadable = false, typename LseAt,
          typename ValueAt>
__device__ __forceinline__ void accumulate_states(MergeAccumulator<N>& merged, int64_t count,
                                                  LseAt lse_at, ValueAt v_at) {
  static_assert(kUnroll >= 1, "at least one state per round");
  for (int64_t first = 0; first < count; first += kUnroll) {
    float lse[kUnroll];
    FloatVec<N> v[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) lse[j] = first + j < count ? lse_at(first + j) : -INFINITY;
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      if constexpr (kValuesAlwaysReadable) {
        if (first + j < count) v[j] = load_chunk<T, N>(v_at(first + j));
      } else {
        if (lse[j] != -INFINITY) v[j] = load_chunk<T, N>(v_at(first + j));
      }
    }
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      if (lse[j] != -INFINITY) merged.add(lse[j], v[j]);
    }
  }
}

// Which item, and which lane of the item's group, this thread serves; the
// block serves kMergeBlockThreads / lanes_per_item items from `first_item`.
// lanes_per_item divides the warp size, so a group never straddles warps.
struct ItemLane {
  int64_t item;
  int lane;  // in [0, lanes_per_item)
};

// The lanes_per_item for head_dim values in chunks of `vec`: enough for one
// chunk each, a power of two (groups tile a warp), at most a warp (wider
// heads loop over their chunks).
__host__ __device__ constexpr int merge_lanes_per_item(int64_t head_dim, int vec) {
  const int64_t chunks = (head_dim + vec - 1) / vec;
  int lanes = 1;
  while (lanes < kMergeWarpSize && lanes < chunks) lanes *= 2;
  return lanes;
}

__device__ __forceinline__ ItemLane item_lane(int64_t first_item, int lanes_per_item) {
  return {first_item + static_cast<int64_t>(threadIdx.x / lanes_per_item),
          static_cast<int>(threadIdx.x % lanes_per_item)};
}

// A [rows, heads, head_dim] value tensor and its [rows, heads] lse, strides in
// elements (head_dim contiguous).
template <typename T>
struct StateTensor {
  T* v;
  int64_t v_stride_row;
  int64_t v_stride_head;
  float* lse;
  int64_t lse_stride_row;
  int64_t lse_stride_head;

  __device__ __forceinline__ T* v_at(int64_t row, int64_t head) const {
    return v + row * v_stride_row + head * v_stride_head;
  }
  __device__ __forceinline__ float* lse_at(int64_t row, int64_t head) const {
    return lse + row * lse_stride_row + head * lse_stride_head;
  }
};

// merge_state and merge_state_in_place: out = merge(a, b). `out` may be
// exactly `a` (in place), so these pointers are deliberately not
// __restrict__: each lane reads a chunk of a before writing the same chunk,
// and the item's lse is read by every lane before a __syncwarp and written
// after it.
template <typename T>
struct MergePairParams {
  StateTensor<T> a;
  StateTensor<T> b;
  StateTensor<T> out;
  const uint8_t* mask;  // null: every row; else only rows with mask[row] != 0
  int64_t rows;
  int64_t heads;
  int64_t head_dim;
  int lanes_per_item;
};

template <typename T, int N>
__global__ void __launch_bounds__(kMergeBlockThreads)
    merge_pair_kernel(const MergePairParams<T> params) {
  const int64_t items_per_block = kMergeBlockThreads / params.lanes_per_item;
  const ItemLane me = item_lane(static_cast<int64_t>(blockIdx.x) * items_per_block,
                                params.lanes_per_item);
  const int64_t row = me.item / params.heads;
  const int64_t head = me.item - row * params.heads;
  bool active = me.item < params.rows * params.heads;
  if (active && params.mask != nullptr) active = params.mask[row] != 0;
  float lse_a = -INFINITY;
  float lse_b = -INFINITY;
  if (active) {
    lse_a = *params.a.lse_at(row, head);
    lse_b = *params.b.lse_at(row, head);
  }
  __syncwarp();  // all reads of the (possibly aliased) lse before any write
  if (!active) return;

  float lse = -INFINITY;
  for (int64_t e = static_cast<int64_t>(me.lane) * N; e < params.head_dim;
       e += static_cast<int64_t>(params.lanes_per_item) * N) {
    MergeAccumulator<N> merged;
    merged.init();
    if (lse_a != -INFINITY) merged.add(lse_a, load_chunk<T, N>(params.a.v_at(row, head) + e));
    if (lse_b != -INFINITY) merged.add(lse_b, load_chunk<T, N>(params.b.v_at(row, head) + e));
    FloatVec<N> v;
    merged.finish(v, lse);
    store_chunk<T, N>(params.out.v_at(row, head) + e, v);
  }
  if (me.lane == 0) *params.out.lse_at(row, head) = lse;
}

// merge_states: v [rows, num_states, heads, head_dim], s [rows, num_states,
// heads] -> out. The output must not overlap the inputs (the API checks).
template <typename T>
struct MergeStackParams {
  const T* __restrict__ v;
  int64_t v_stride_row;
  int64_t v_stride_state;
  int64_t v_stride_head;
  const float* __restrict__ lse;
  int64_t lse_stride_row;
  int64_t lse_stride_state;
  int64_t lse_stride_head;
  StateTensor<T> out;
  int64_t rows;
  int64_t num_states;
  int64_t heads;
  int64_t head_dim;
  int lanes_per_item;
};

template <typename T, int N>
__global__ void __launch_bounds__(kMergeBlockThreads)
    merge_stack_kernel(const MergeStackParams<T> params) {
  const int64_t items_per_block = kMergeBlockThreads / params.lanes_per_item;
  const ItemLane me = item_lane(static_cast<int64_t>(blockIdx.x) * items_per_block,
                                params.lanes_per_item);
  if (me.item >= params.rows * params.heads) return;
  const int64_t row = me.item / params.heads;
  const int64_t head = me.item - row * params.heads;
  const float* lse_in = params.lse + row * params.lse_stride_row + head * params.lse_stride_head;
  const T* v_in = params.v + row * params.v_stride_row + head * params.v_stride_head;

  float lse = -INFINITY;
  for (int64_t e = static_cast<int64_t>(me.lane) * N; e < params.head_dim;
       e += static_cast<int64_t>(params.lanes_per_item) * N) {
    MergeAccumulator<N> merged;
    merged.init();
    accumulate_states<T, N, kMergeStatesUnroll>(
        merged, params.num_states, [&](int64_t i) { return lse_in[i * params.lse_stride_state]; },
        [&](int64_t i) { return v_in + i * params.v_stride_state + e; });
    FloatVec<N> v;
    merged.finish(v, lse);
    store_chunk<T, N>(params.out.v_at(row, head) + e, v);
  }
  if (me.lane == 0) *params.out.lse_at(row, head) = lse;
}

// Decode merge: for request b with partial slots [merge_indptr[b],
// merge_indptr[b+1]) (>= 2 of them) and q head h, merges the float32
// partials partial_out [slot, num_qo_heads, head_dim] / partial_lse [slot,
// num_qo_heads] into out [b, h] (q's dtype) and lse [b, h].
// Grid (batch, num_qo_heads) (above), kDecodeMergeWarps warps: warp w folds
// slots w, w + W, ... (lanes over head_dim, N elements each), then warp 0
// combines the W running states from shared memory in warp order (fixed:
// deterministic). Splitting the slots over warps matters for small batches:
// one 32k request is 32 partials x 32 heads, which one warp per head folded
// in 22 us (ncu, H100) against the decode kernel's 67.
inline constexpr int kDecodeMergeWarps = 4;
inline constexpr int kDecodeMergeMaxHeadDim = 256;

template <typename Out>
struct DecodeMergeParams {
  DecodeScheduleView schedule;
  Out* __restrict__ out;
  int64_t out_stride_batch;
  int64_t out_stride_head;
  float* __restrict__ lse;  // null, or contiguous [batch, num_qo_heads]
  int64_t num_qo_heads;
  int64_t head_dim;  // <= kDecodeMergeMaxHeadDim
  bool sum_states;   // non-softmax variant: sum the partials (see the top)
};

template <typename Out, int N>
__global__ void __launch_bounds__(kDecodeMergeWarps * kMergeWarpSize)
    decode_merge_kernel(const DecodeMergeParams<Out> params) {
  // Per warp: running max, denominator, then the accumulator over head_dim.
  __shared__ float scratch[kDecodeMergeWarps][2 + kDecodeMergeMaxHeadDim];
  // Launched as a programmatic dependent of the decode kernel (sm90), so it
  // may start once every decode CTA is past its KV reads (decode.cuh), under
  // the decode grid's last work. The schedule was uploaded before
  // that grid started (plan), so it is read first: CTAs of idle or unsplit
  // requests (the decode kernel wrote their out / lse) leave at once, and
  // the others' two dependent reads overlap the decode tail; they then wait
  // until the partials are complete and visible. CTA (0, 0) always waits:
  // the next kernel in the stream waits for this grid only, so this grid
  // must not finish before the decode grid does.
  const int64_t request = blockIdx.x;
  bool merges = request < params.schedule.header->batch_size;
  int32_t begin = 0;
  int32_t end = 0;
  if (merges) {
    begin = params.schedule.merge_indptr[request];
    end = params.schedule.merge_indptr[request + 1];
    merges = end - begin >= 2;
  }
  if (merges || (blockIdx.x == 0 && blockIdx.y == 0)) sm90::wait_for_prior_grid();
  // The next kernel (the next step's decode, a programmatic dependent) may be
  // scheduled once the decode grid is done (SMs free, so its CTAs spread as
  // on an idle GPU); it waits for this grid before it touches anything.
  sm90::allow_dependent_launch();
  if (!merges) return;
  const int64_t head = blockIdx.y;
  const int warp = static_cast<int>(threadIdx.x) / kMergeWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kMergeWarpSize;
  const float* __restrict__ partial_lse = params.schedule.partial_lse;
  const float* __restrict__ partial_out = params.schedule.partial_out;
  const int64_t count = (end - begin - warp + kDecodeMergeWarps - 1) / kDecodeMergeWarps;
  const auto slot = [&](int64_t i) { return begin + warp + i * kDecodeMergeWarps; };
  for (int64_t e = static_cast<int64_t>(lane) * N; e < params.head_dim;
       e += static_cast<int64_t>(kMergeWarpSize) * N) {
    MergeAccumulator<N> merged;
    merged.init();
    accumulate_states<float, N, kDecodeMergeUnroll, true>(
        merged, count, [&](int64_t i) { return partial_lse[slot(i) * params.num_qo_heads + head]; },
        [&](int64_t i) {
          return partial_out + (slot(i) * params.num_qo_heads + head) * params.head_dim + e;
        });
#pragma unroll
    for (int i = 0; i < N; ++i) scratch[warp][2 + e + i] = merged.acc[i];
    if (e == 0) {
      scratch[warp][0] = merged.max_lse;
      scratch[warp][1] = merged.denom;
    }
  }
  __syncthreads();
  if (warp != 0) return;
  float max_lse = -INFINITY;
#pragma unroll
  for (int w = 0; w < kDecodeMergeWarps; ++w) max_lse = fmaxf(max_lse, scratch[w][0]);
  float weight[kDecodeMergeWarps];
  float denom = 0.f;
#pragma unroll
  for (int w = 0; w < kDecodeMergeWarps; ++w) {
    // A warp with no (non-empty) state has max -inf and denominator 0.
    weight[w] = scratch[w][0] == -INFINITY ? 0.f : exp2f(scratch[w][0] - max_lse);
    denom += scratch[w][1] * weight[w];
  }
  const bool empty = !(denom > 0.f);
  const float inv = params.sum_states ? 1.f : empty ? 0.f : 1.f / denom;
  for (int64_t e = static_cast<int64_t>(lane) * N; e < params.head_dim;
       e += static_cast<int64_t>(kMergeWarpSize) * N) {
    FloatVec<N> v;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      float sum = 0.f;
#pragma unroll
      for (int w = 0; w < kDecodeMergeWarps; ++w) {
        if (weight[w] != 0.f) sum = fmaf(scratch[w][2 + e + i], weight[w], sum);
      }
      v[i] = sum * inv;
    }
    store_chunk<Out, N>(
        params.out + request * params.out_stride_batch + head * params.out_stride_head + e, v);
  }
  if (lane == 0 && params.lse != nullptr) {
    params.lse[request * params.num_qo_heads + head] = params.sum_states ? 0.f
                                                       : empty           ? -INFINITY
                                                                         : max_lse + log2f(denom);
  }
}

}  // namespace tessera::attention

namespace tessera::attention {

// Prefill merge: for merge tile x (a q tile split into num_chunks KV chunks)
// and head y, row r of the tile merges partial rows partial_begin + c *
// qo_rows + r, c < num_chunks, into out / lse of the row's (token, qo head):
// token = row / rows_per_token, head = head_base(y) + row % rows_per_token.
// Grid (merge tiles, heads_y, row slices): the plan's tile count, or the
// bound while a graph is captured (tiles past header->num_merge_tiles exit);
// slice z folds the tile's row passes z, z + slices, ... (a pass is one row
// per lane group of the block). One slice per pass spreads a split of few
// q tiles over the GPU: each pass waits on two dependent loads (lse, then
// values), so a 128-row tile merged by one block is 16 such round trips in
// a row on a grid of tiles x heads blocks (16 at 2 tiles x 8 KV heads).
template <typename Out>
struct PrefillMergeParams {
  PrefillScheduleView schedule;
  const int32_t* __restrict__ qo_indptr;
  Out* __restrict__ out;
  int64_t out_stride_token;
  int64_t out_stride_head;
  float* __restrict__ lse;  // null, or contiguous [total_qo, num_qo_heads]
  int64_t num_qo_heads;
  int64_t heads_y;
  int64_t rows_per_token;
  int64_t head_dim;
  int lanes_per_item;
  bool sum_states;  // non-softmax variant: sum the partials
};

template <typename Out, int N>
__global__ void __launch_bounds__(kMergeBlockThreads)
    prefill_merge_kernel(const PrefillMergeParams<Out> params) {
  const PrefillScheduleView& schedule = params.schedule;
  if (static_cast<int>(blockIdx.x) >= schedule.header->num_merge_tiles) return;
  const PrefillMergeTile tile = schedule.merge_tiles[blockIdx.x];
  const int64_t y = blockIdx.y;
  const int64_t head_base = params.rows_per_token > 1 ? y * params.rows_per_token : y;
  const int64_t qo_begin = params.qo_indptr[tile.request];
  const int64_t items_per_block = kMergeBlockThreads / params.lanes_per_item;
  const int64_t pass_stride = items_per_block * gridDim.z;
  for (int64_t first = items_per_block * blockIdx.z; first < tile.qo_rows; first += pass_stride) {
    const ItemLane me = item_lane(first, params.lanes_per_item);
    if (me.item >= tile.qo_rows) break;
    const int64_t row = tile.qo_row_begin + me.item;
    const int64_t token = row / params.rows_per_token;
    const int64_t head = head_base + row % params.rows_per_token;
    const int64_t first_partial = tile.partial_begin + me.item;
    float lse = -INFINITY;
    for (int64_t e = static_cast<int64_t>(me.lane) * N; e < params.head_dim;
         e += static_cast<int64_t>(params.lanes_per_item) * N) {
      MergeAccumulator<N> merged;
      merged.init();
      accumulate_states<float, N, kDecodeMergeUnroll>(
          merged, tile.num_chunks,
          [&](int64_t c) {
            return schedule.partial_lse[(first_partial + c * tile.qo_rows) * params.heads_y + y];
          },
          [&](int64_t c) {
            return schedule.partial_out +
                   ((first_partial + c * tile.qo_rows) * params.heads_y + y) * params.head_dim + e;
          });
      FloatVec<N> v;
      merged.finish(v, lse, params.sum_states);
      store_chunk<Out, N>(params.out + (qo_begin + token) * params.out_stride_token +
                              head * params.out_stride_head + e,
                          v);
    }
    if (me.lane == 0 && params.lse != nullptr) {
      params.lse[(qo_begin + token) * params.num_qo_heads + head] = lse;
    }
  }
}

}  // namespace tessera::attention
