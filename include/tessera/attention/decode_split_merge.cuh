// The merge of a split decode request, run by the CTA that writes the
// request's last partial for its KV head (both decode kernels call it at
// their end), instead of by a second kernel after the decode grid.
//
// Why: one 32k request is cut into 32 chunks per KV head so the grid fills
// the GPU; a separate merge kernel had to wait for the whole decode grid to
// drain, then paid its own schedule reads and two dependent rounds of loads:
// ~5 us of a ~47 us step on an H200 (measured through a serial in-CTA fold,
// logs of the fourth session). Here the merge of (request, KV head) starts
// as soon as its last chunk is done, overlapping the other heads' tails, and
// reads the partials in count / kMergeUnroll rounds of independent loads.
//
// Protocol (the grid-barrier pattern): every thread of a split unit has
// stored its partial; a CTA barrier; thread 0 fences (release, gpu scope)
// and increments merge_counters[request * num_kv_heads + kv_head]. The CTA
// that brings it to the request's chunk count fences again (acquire),
// resets the counter to 0 (a graph replay without a new plan finds it
// zeroed) and merges. Partials and lse are loaded with ld.global.cg: this
// SM's L1 may hold a line of partial_lse read by a merge of another request
// before these values were written.
//
// Deterministic: the fold runs over the request's slots in slot order,
// whichever CTA runs it. The lse of a block of states goes through shared
// memory (`scratch`, the caller's spent stages) so the value loads do not
// wait on them.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/attention/decode_schedule.cuh"
#include "tessera/attention/merge.cuh"
#include "tessera/core/numeric.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::decode {

// States per round of independent partial loads (4 floats each): 32 KV
// chunks of one request are two rounds.
inline constexpr int kMergeUnroll = 16;
inline constexpr int kMergeVec = 4;

__device__ __forceinline__ FloatVec<kMergeVec> load_partial(const float* source) {
  const float4 v = __ldcg(reinterpret_cast<const float4*>(source));
  FloatVec<kMergeVec> out;
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
  return out;
}

// Called by every thread of a CTA whose unit is a chunk of split request
// `request` (unit.partial_index >= 0), after its partial stores. Params is
// decode::DecodeParams (out, strides, lse, group_size, num_qo_heads,
// schedule). `scratch`: scratch_floats floats of shared memory no thread
// reads any more.
template <int kThreads, int kHeadDim, bool kSumStates, typename Params>
__device__ __forceinline__ void merge_split_request_if_last(const Params& params, int request,
                                                            int kv_head, float* scratch,
                                                            int scratch_floats) {
  static_assert(kHeadDim % kMergeVec == 0, "whole vectors per head row");
  const DecodeScheduleView& schedule = params.schedule;
  __shared__ int32_t merge_range[2];  // first slot, slot count (0: not the last chunk)
  const int tid = static_cast<int>(threadIdx.x);
  __syncthreads();  // every partial store of this CTA, and every read of `scratch`
  if (tid == 0) {
    const int32_t begin = schedule.merge_indptr[request];
    const int32_t count = schedule.merge_indptr[request + 1] - begin;
    int32_t* const counter =
        schedule.merge_counters + static_cast<int64_t>(request) * gridDim.y + kv_head;
    __threadfence();
    const bool last = atomicAdd(counter, 1) == count - 1;
    if (last) {
      __threadfence();
      *counter = 0;
    }
    merge_range[0] = begin;
    merge_range[1] = last ? count : 0;
  }
  __syncthreads();
  const int32_t begin = merge_range[0];
  const int32_t count = merge_range[1];
  if (count == 0) return;

  const int group = params.group_size;
  const int64_t num_qo_heads = params.num_qo_heads;
  const int head0 = kv_head * group;
  constexpr int kItemsPerHead = kHeadDim / kMergeVec;
  const int items = group * kItemsPerHead;
  // States whose lse (one per head of the group) fit the scratch at once.
  const int block_states = max(1, scratch_floats / group);
  for (int item0 = 0; item0 < items; item0 += kThreads) {  // uniform over the CTA
    const int item = item0 + tid;
    const bool live = item < items;
    const int head = live ? item / kItemsPerHead : 0;  // within the group
    const int dim = (item % kItemsPerHead) * kMergeVec;
    attention::MergeAccumulator<kMergeVec> merged;
    merged.init();
    for (int first = 0; first < count; first += block_states) {
      const int n = min(block_states, count - first);
      __syncthreads();  // the previous block's lse are read
      for (int i = tid; i < n * group; i += kThreads) {
        scratch[i] = __ldcg(schedule.partial_lse +
                            static_cast<int64_t>(begin + first + i / group) * num_qo_heads + head0 +
                            i % group);
      }
      __syncthreads();
      if (live) {
        attention::accumulate_states<kMergeVec, kMergeUnroll>(
            merged, n, [&](int64_t j) { return scratch[j * group + head]; },
            [&](int64_t j) {
              return load_partial(schedule.partial_out +
                                  ((begin + first + j) * num_qo_heads + head0 + head) * kHeadDim +
                                  dim);
            });
      }
    }
    if (live) {
      FloatVec<kMergeVec> v;
      float lse;
      merged.finish(v, lse, kSumStates);
      auto* const out = params.out + static_cast<int64_t>(request) * params.out_stride_batch +
                        (head0 + head) * params.out_stride_head + dim;
      using Out = cuda::std::remove_cvref_t<decltype(*out)>;
#pragma unroll
      for (int i = 0; i < kMergeVec; ++i) out[i] = from_float<Out>(v[i]);  // any alignment
      if (params.lse != nullptr && dim == 0) {
        params.lse[static_cast<int64_t>(request) * num_qo_heads + head0 + head] = lse;
      }
    }
  }
}

}  // namespace tessera::decode
