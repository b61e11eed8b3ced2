// Block-wide passes over one request's row, the vocabulary of the sorting-free
// sampling kernels: one CTA of kRowThreads threads reads the row (or the
// slice [begin, end) of it that a cluster's CTA owns, cluster_pass.cuh) in
// chunks of kRowThreads * kVec entries (kVec = 4: one float4 per thread and
// chunk) and combines with CUB's BlockReduce / BlockScan, whose fixed
// combination order makes every pass bitwise reproducible run to run.
//   row_summary:  max, has-NaN, and (mass, count) of entries > pivot
//   stats_above:  (mass, count) of entries > pivot
//   sample_above: the entry where the running sum over entries > pivot first
//                 exceeds a target (inverse CDF of the row restricted to them)
// The reductions load kChunksInFlight chunks before using the first (a
// thread's entries are still summed in index order).
// Every function contains __syncthreads: call from all threads of the CTA.
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

// Sum and count of the entries strictly above a pivot.
struct AboveStats {
  float mass;
  int count;
};

struct AboveStatsSum {
  __device__ __forceinline__ AboveStats operator()(const AboveStats& a,
                                                   const AboveStats& b) const {
    return {a.mass + b.mass, a.count + b.count};
  }
};
struct FloatMax {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct IntMin {
  __device__ __forceinline__ int operator()(int a, int b) const { return a < b ? a : b; }
};
struct IntMax {
  __device__ __forceinline__ int operator()(int a, int b) const { return a > b ? a : b; }
};

struct RowPassStorage {
  using StatsReduce = cub::BlockReduce<AboveStats, kRowThreads>;
  using FloatReduce = cub::BlockReduce<float, kRowThreads>;
  using IntReduce = cub::BlockReduce<int, kRowThreads>;
  using FloatScan = cub::BlockScan<float, kRowThreads>;
  union {
    typename StatsReduce::TempStorage stats;
    typename FloatReduce::TempStorage float_reduce;
    typename IntReduce::TempStorage int_reduce;
    typename FloatScan::TempStorage scan;
  } temp;
  // Thread 0's reduction result, read back by every thread.
  AboveStats stats_result;
  float float_result;
  int int_result;
};

struct RowSummary {
  AboveStats above;  // entries > the summary's pivot
  float max;         // -inf for a row of NaNs
  bool has_nan;
};

// kVec consecutive entries from index i (kVec == 4: one aligned float4; the
// host takes that path only when vocab % 4 == 0 and rows are 16-byte aligned).
// A row is a `const float*`, or any type with a load_chunk overload (the
// speculative sampler's max(target - draft, 0) row).
template <int kVec>
__device__ __forceinline__ void load_chunk(const float* __restrict__ row, int i, int vocab,
                                           float fill, float (&v)[kVec]) {
  static_assert(kVec == 1 || kVec == 4, "chunks are one float or one float4");
  if constexpr (kVec == 4) {
    if (i < vocab) {
      const float4 f = __ldg(reinterpret_cast<const float4*>(row + i));
      v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    } else {
      v[0] = v[1] = v[2] = v[3] = fill;
    }
  } else {
    v[0] = i < vocab ? __ldg(row + i) : fill;
  }
}

// The entries max(target - draft, 0) of two rows, built as they are read.
struct ResidualRow {
  const float* __restrict__ target;
  const float* __restrict__ draft;
};

template <int kVec>
__device__ __forceinline__ void load_chunk(const ResidualRow& row, int i, int vocab, float fill,
                                           float (&v)[kVec]) {
  float d[kVec];
  load_chunk<kVec>(row.target, i, vocab, fill, v);
  load_chunk<kVec>(row.draft, i, vocab, 0.f, d);
#pragma unroll
  for (int k = 0; k < kVec; ++k) v[k] = fmaxf(v[k] - d[k], 0.f);
}

template <int kVec>
__device__ __forceinline__ int chunk_start(int base) {
  return base + static_cast<int>(threadIdx.x) * kVec;
}
template <int kVec>
inline constexpr int kChunkEntries = kRowThreads * kVec;

// Loads a thread keeps in flight in the reduction passes: one float4 per
// thread leaves a CTA at ~8 KiB in flight, ~13 GB/s at H100's latency.
inline constexpr int kChunksInFlight = 4;

// Calls visit(start, v) for each chunk of [begin, end) this thread holds,
// in index order, kChunksInFlight chunks loaded ahead. `begin` is a multiple
// of kVec (row_split.h); entries past `end` read as `fill`.
template <int kVec, typename Row, typename Visit>
__device__ __forceinline__ void for_each_chunk(const Row& row, int begin, int end, float fill,
                                               Visit&& visit) {
  constexpr int kStep = kChunkEntries<kVec> * kChunksInFlight;
  for (int base = begin; base < end; base += kStep) {
    float v[kChunksInFlight][kVec];
#pragma unroll
    for (int j = 0; j < kChunksInFlight; ++j) {
      load_chunk<kVec>(row, chunk_start<kVec>(base + j * kChunkEntries<kVec>), end, fill, v[j]);
    }
#pragma unroll
    for (int j = 0; j < kChunksInFlight; ++j) {
      visit(chunk_start<kVec>(base + j * kChunkEntries<kVec>), v[j]);
    }
  }
}

__device__ __forceinline__ AboveStats block_stats(AboveStats local, RowPassStorage& storage) {
  const AboveStats total =
      RowPassStorage::StatsReduce(storage.temp.stats).Reduce(local, AboveStatsSum{});
  if (threadIdx.x == 0) storage.stats_result = total;
  __syncthreads();
  const AboveStats result = storage.stats_result;
  __syncthreads();
  return result;
}

template <typename Op>
__device__ __forceinline__ int block_int(int local, Op op, RowPassStorage& storage) {
  const int total = RowPassStorage::IntReduce(storage.temp.int_reduce).Reduce(local, op);
  if (threadIdx.x == 0) storage.int_result = total;
  __syncthreads();
  const int result = storage.int_result;
  __syncthreads();
  return result;
}

__device__ __forceinline__ float block_max(float local, RowPassStorage& storage) {
  const float total =
      RowPassStorage::FloatReduce(storage.temp.float_reduce).Reduce(local, FloatMax{});
  if (threadIdx.x == 0) storage.float_result = total;
  __syncthreads();
  const float result = storage.float_result;
  __syncthreads();
  return result;
}

template <int kVec, typename Row>
__device__ AboveStats stats_above(const Row& row, int begin, int end, float pivot,
                                  RowPassStorage& storage) {
  AboveStats local{0.f, 0};
  for_each_chunk<kVec>(row, begin, end, pivot, [&](int, const float (&v)[kVec]) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      if (v[k] > pivot) local.mass += v[k], ++local.count;
    }
  });
  return block_stats(local, storage);
}

template <int kVec, typename Row>
__device__ AboveStats stats_above(const Row& row, int vocab, float pivot,
                                  RowPassStorage& storage) {
  return stats_above<kVec>(row, 0, vocab, pivot, storage);
}

template <int kVec, typename Row>
__device__ RowSummary row_summary(const Row& row, int begin, int end, float pivot,
                                  RowPassStorage& storage) {
  AboveStats local{0.f, 0};
  float local_max = -__int_as_float(0x7f800000);
  bool local_nan = false;
  for_each_chunk<kVec>(row, begin, end, pivot, [&](int, const float (&v)[kVec]) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      local_nan |= isnan(v[k]);
      local_max = fmaxf(local_max, v[k]);  // fmaxf ignores a NaN operand
      if (v[k] > pivot) local.mass += v[k], ++local.count;
    }
  });
  RowSummary summary;
  summary.has_nan = __syncthreads_or(local_nan) != 0;
  summary.max = block_max(local_max, storage);
  summary.above = block_stats(local, storage);
  return summary;
}

template <int kVec, typename Row>
__device__ RowSummary row_summary(const Row& row, int vocab, float pivot,
                                  RowPassStorage& storage) {
  return row_summary<kVec>(row, 0, vocab, pivot, storage);
}

// The first index where the running sum of entries > pivot exceeds target;
// when float rounding leaves target unreached (target ~ the total), the last
// entry > pivot; 0 when none is. The result always holds an entry > pivot
// if one exists, so a sample never leaves the set it was drawn from.
template <int kVec, typename Row>
__device__ int sample_above(const Row& row, int begin, int end, float pivot, float target,
                            RowPassStorage& storage) {
  float carry = 0.f;  // sum of the chunks before this one (the same in every thread)
  int last_above = -1;
  for (int base = begin; base < end; base += kChunkEntries<kVec>) {
    const int start = chunk_start<kVec>(base);
    float v[kVec];
    load_chunk<kVec>(row, start, end, pivot, v);
    float local = 0.f;
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      v[k] = v[k] > pivot ? v[k] : 0.f;
      local += v[k];
      if (v[k] > 0.f) last_above = start + k;
    }
    float prefix = 0.f, chunk_total = 0.f;
    RowPassStorage::FloatScan(storage.temp.scan).ExclusiveSum(local, prefix, chunk_total);
    __syncthreads();
    if (carry + chunk_total > target) {  // uniform: the target lies in this chunk
      int found = INT32_MAX;
      float running = carry + prefix;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        running += v[k];
        if (v[k] > 0.f && running > target && found == INT32_MAX) found = start + k;
      }
      found = block_int(found, IntMin{}, storage);
      // The scan and a thread's own running sum round differently: if no
      // entry crossed, take the chunk's last entry > pivot.
      if (found == INT32_MAX) found = block_int(last_above, IntMax{}, storage);
      return found < 0 ? 0 : found;
    }
    carry += chunk_total;
  }
  const int last = block_int(last_above, IntMax{}, storage);
  return last < 0 ? 0 : last;
}

template <int kVec, typename Row>
__device__ int sample_above(const Row& row, int vocab, float pivot, float target,
                            RowPassStorage& storage) {
  return sample_above<kVec>(row, 0, vocab, pivot, target, storage);
}

// The three passes the rejection sampler needs (sample_kernel.cuh), over a
// whole row read by one CTA; ClusterRowPass (cluster_pass.cuh) is the same
// interface over a row split across a cluster.
template <typename Stats>
struct PivotStats {
  float pivot;  // the entries in question are those > pivot
  Stats above;  // their mass and count
};

template <typename Stats>
struct PassSummary {
  Stats above;  // entries > 0
  float max;    // -inf for a row of NaNs
  bool has_nan;
};

template <int kVec>
struct CtaRowPass {
  using Stats = AboveStats;
  const float* __restrict__ row;
  int vocab;
  RowPassStorage& storage;

  __device__ PassSummary<Stats> summary() {
    const RowSummary s = row_summary<kVec>(row, vocab, 0.f, storage);
    return {s.above, s.max, s.has_nan};
  }
  __device__ Stats stats_above(float pivot) {
    return tessera::sampling::stats_above<kVec>(row, vocab, pivot, storage);
  }
  // The token where the running sum of entries > pivot first exceeds target.
  __device__ int draw(float pivot, const Stats&, float target) {
    return sample_above<kVec>(row, vocab, pivot, target, storage);
  }
};

}  // namespace tessera::sampling
