// The radix threshold search (radix_select.cuh) over a row split across a
// thread-block cluster (sm90): each CTA builds the histogram of its slice
// (row_split.h), and ClusterHistogram::combine turns every CTA's histogram
// into the row's, in place, through distributed shared memory.
//
// Exchange, per pass (three cluster barriers):
//   1. barrier: every slice's histogram is complete;
//   2. CTA `rank` owns buckets [rank * share, (rank + 1) * share), share =
//      kRadixBuckets / cluster size: it reads those bins of every rank into
//      registers and sums them (below: how its threads split the work);
//      barrier: every CTA has read the bins it owns, so they may be
//      overwritten;
//   3. it writes the sums into those bins of every rank; barrier: every CTA
//      holds the row's histogram.
// Each CTA reads and writes 3 x kRadixBuckets words a pass, whatever the
// cluster size. Counts and mantissa sums are integers: the sums are exact,
// so every CTA holds the same histogram, bitwise, as the one-CTA kernel
// would build from the whole row. The NaN flags of the slices (pass 0) are
// or-ed in step 2.
//
// Call from all threads of every CTA of the cluster; the caller keeps every
// CTA resident until no CTA can still reach its RadixStorage (the sampler's
// final cluster barrier).
#pragma once

#include <cooperative_groups.h>

#include "tessera/sampling/radix_digits.h"
#include "tessera/sampling/radix_select.cuh"
#include "tessera/sampling/row_split.h"

namespace tessera::sampling {

// Buckets a thread owns at the smallest cluster (2 CTAs: 1024 buckets a
// rank); from 4 CTAs on, a rank owns at most kRowThreads buckets and a group
// of kRowThreads / share adjacent lanes shares each one, splitting the
// ranks (integer sums: exact in any order), then adds its lanes' sums by
// shuffles. Either way every thread reads, then writes, 12 words a pass (3
// counters x 4 ranks; x 2 buckets x 2 ranks at 2 CTAs), whatever the
// cluster size, so the exchange is not one thread's serial loop over 16
// ranks.
inline constexpr int kOwnedBucketsPerThread = kRadixBuckets / 2 / kRowThreads;
static_assert(kOwnedBucketsPerThread * 2 * kRowThreads == kRadixBuckets,
              "every owned bucket has one thread");
static_assert(kRadixBuckets % kMaxClusterSize == 0, "every rank owns the same number of buckets");
static_assert(kRowThreads * kMaxClusterSize / kRadixBuckets <= 32,
              "a bucket's lane group stays within a warp");

struct ClusterHistogram {
  __device__ bool combine(RadixStorage& s, bool slice_has_nan) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();  // no clusters: only the sm90 code of cluster_radix_sample_kernel calls it
    return slice_has_nan;
#else
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    const int size = static_cast<int>(cluster.num_blocks());
    const int share = kRadixBuckets / size;
    const int group = share < kRowThreads ? kRowThreads / share : 1;  // lanes a bucket
    const int buckets = share > kRowThreads ? share / kRowThreads : 1;  // buckets a thread
    const int lane_in_group = static_cast<int>(threadIdx.x) % group;
    const int first = static_cast<int>(cluster.block_rank()) * share +
                      static_cast<int>(threadIdx.x) / group;
    const int stride = kRowThreads / group;
    if (threadIdx.x == 0) s.slice_has_nan = slice_has_nan ? 1 : 0;
    cluster.sync();  // 1: every slice's histogram (and flag) is complete

    uint32_t counts[kOwnedBucketsPerThread] = {};
    uint32_t high[kOwnedBucketsPerThread] = {};
    uint32_t low[kOwnedBucketsPerThread] = {};
#pragma unroll
    for (int j = 0; j < kOwnedBucketsPerThread; ++j) {
      if (j >= buckets) break;
      const int bucket = first + j * stride;
#pragma unroll 4
      for (int r = lane_in_group; r < size; r += group) {
        const RadixStorage* theirs = cluster.map_shared_rank(&s, r);
        counts[j] += theirs->counts[bucket];
        high[j] += theirs->mantissa_high[bucket];
        low[j] += theirs->mantissa_low[bucket];
      }
      for (int lanes = 1; lanes < group; lanes <<= 1) {  // integers: exact in any order
        counts[j] += __shfl_xor_sync(0xffffffffu, counts[j], lanes);
        high[j] += __shfl_xor_sync(0xffffffffu, high[j], lanes);
        low[j] += __shfl_xor_sync(0xffffffffu, low[j], lanes);
      }
    }
    const bool flag = static_cast<int>(threadIdx.x) < size &&
                      cluster.map_shared_rank(&s, static_cast<int>(threadIdx.x))->slice_has_nan;
    const bool row_has_nan = __syncthreads_or(flag) != 0;
    cluster.sync();  // 2: every CTA has read the bins it owns

#pragma unroll
    for (int j = 0; j < kOwnedBucketsPerThread; ++j) {
      if (j >= buckets) break;
      const int bucket = first + j * stride;
#pragma unroll 4
      for (int r = lane_in_group; r < size; r += group) {
        RadixStorage* theirs = cluster.map_shared_rank(&s, r);
        theirs->counts[bucket] = counts[j];
        theirs->mantissa_high[bucket] = high[j];
        theirs->mantissa_low[bucket] = low[j];
      }
    }
    cluster.sync();  // 3: every CTA holds the row's histogram
    return row_has_nan;
#endif
  }
};

}  // namespace tessera::sampling
