// Exact top-k / top-p threshold of one row by radix selection over ordered
// float keys (radix_digits.h): a fixed number of passes, whatever the values.
//
// Each pass builds a shared-memory histogram of one key digit over the
// entries that share the digits chosen so far: per bucket, the count and the
// exact mass (integer mantissa sums). Scanning the buckets from the top gives,
// for each bucket b, the stats A_b of the entries above it; the largest entry
// of b has exactly A_b above it, so b's top is kept iff rule.keeps(A_b). The
// kept set is a prefix of the sorted row (keep_rule.cuh), so the threshold
// lies in the lowest non-empty bucket whose top is kept; the next pass splits
// that bucket. After the last digit it is one key: every entry with that key
// (ties) is kept. A pass stops the search early when its bucket is kept
// whole (one entry, or the rule keeps even the bucket's full stats above).
//
// Passes over the row: pass 0 and pass 1 read it; when pass 0's bucket holds
// at most kCandidateCapacity entries, pass 1 also copies their keys to shared
// memory and pass 2 reads those instead of the row. So 2 row reads for the
// usual rows (3 when the threshold's bucket is crowded), against up to 32 for
// bisection.
//
// Slices: a CTA may read only [begin, end) of the row, and a Histogram
// policy turns its histogram into the row's after each pass: CtaHistogram
// (the CTA read the whole row: nothing to do) or ClusterHistogram
// (cluster_radix.cuh: the slices of a thread-block cluster, summed through
// distributed shared memory). Every decision reads the row's histogram only,
// so all CTAs of a cluster choose the same buckets. The candidate set-aside
// is per CTA: the row's bucket count bounds each slice's.
//
// Shared memory: RadixStorage, 24 KiB of buckets + 16 KiB of candidates.
// Counts and integer masses are sums of integers: the histogram is the same
// whatever order the atomics land in, so results are bitwise reproducible.
// Every function contains __syncthreads: call from all threads of the CTA.
#pragma once

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "tessera/sampling/keep_rule.cuh"
#include "tessera/sampling/ordered_key.cuh"
#include "tessera/sampling/radix_digits.h"
#include "tessera/sampling/row_pass.cuh"
#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

inline constexpr int kCandidateCapacity = 4096;
inline constexpr int kBucketsPerThread = kRadixBuckets / kRowThreads;
static_assert(kBucketsPerThread * kRowThreads == kRadixBuckets,
              "each thread scans the same number of buckets");

// Count and exact mass (float64) of a set of entries.
struct RadixStats {
  double mass;
  int count;
};
__device__ __forceinline__ RadixStats operator+(const RadixStats& a, const RadixStats& b) {
  return {a.mass + b.mass, a.count + b.count};
}
struct RadixStatsSum {
  __device__ __forceinline__ RadixStats operator()(const RadixStats& a, const RadixStats& b) const {
    return a + b;
  }
};

struct RadixStorage {
  // Warp scans: the default raking scan would keep a 16-byte item per thread.
  using StatsScan = cub::BlockScan<RadixStats, kRowThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  using IntReduce = cub::BlockReduce<int, kRowThreads>;
  uint32_t counts[kRadixBuckets];
  uint32_t mantissa_high[kRadixBuckets];    // sums of mantissa bits 23..12 (with_mass only)
  uint32_t mantissa_low[kRadixBuckets];     // sums of bits 11..0
  uint32_t candidates[kCandidateCapacity];  // keys of the current bucket (pass 1 on)
  int num_candidates;
  int slice_has_nan;  // ClusterHistogram: this CTA's slice has a NaN (pass 0)
  union {
    typename StatsScan::TempStorage scan;
    typename IntReduce::TempStorage reduce;
  } temp;
  int chosen_digit;
  RadixStats chosen_above, chosen_bucket;
};

// A kernel runs the radix search, then row passes: they share the memory.
union RowStorage {
  RowPassStorage pass;
  RadixStorage radix;
};

struct RadixThreshold {
  uint32_t min_key;  // kept: entries > lowest with ordered_key_of_value >= min_key
  RadixStats kept;   // their count and mass (mass: only when summed)
  RadixStats total;  // every entry > lowest
  bool has_nan;
};

// Where one pass looks: keys sharing prefix's top prefix_bits bits.
struct RadixPrefix {
  uint32_t key = 0;
  int bits = 0;
};

__device__ __forceinline__ void clear_buckets(RadixStorage& s) {
  for (int i = threadIdx.x; i < kRadixBuckets; i += kRowThreads) {
    s.counts[i] = 0;
    s.mantissa_high[i] = 0;
    s.mantissa_low[i] = 0;
  }
}

__device__ __forceinline__ void count_key(RadixStorage& s, uint32_t key, RadixPrefix prefix,
                                          int pass, bool with_mass, bool collect) {
  if (!radix_prefix_matches(key, prefix.key, prefix.bits)) return;
  const uint32_t digit = radix_digit(key, pass);
  atomicAdd(&s.counts[digit], 1u);
  if (with_mass) {
    const uint32_t units = mantissa_units(key);
    atomicAdd(&s.mantissa_high[digit], units >> kMantissaLowBits);
    atomicAdd(&s.mantissa_low[digit], units & kMantissaLowMask);
  }
  if (collect) s.candidates[atomicAdd(&s.num_candidates, 1)] = key;
}

// Histogram of one digit over the row's entries > lowest in the prefix;
// `collect` copies their keys to s.candidates (the caller knows they fit).
// Returns whether any entry of the row is NaN.
template <int kVec, typename Row>
__device__ bool histogram_row(const Row& row, int begin, int end, float lowest, bool with_mass,
                              RadixPrefix prefix, int pass, bool collect, RadixStorage& s) {
  clear_buckets(s);
  if (threadIdx.x == 0) s.num_candidates = 0;
  __syncthreads();
  bool local_nan = false;
  for (int base = begin; base < end; base += kChunkEntries<kVec>) {
    float v[kVec];
    load_chunk<kVec>(row, chunk_start<kVec>(base), end, lowest, v);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      local_nan |= isnan(v[k]);
      if (v[k] > lowest) count_key(s, ordered_key_of_value(v[k]), prefix, pass, with_mass, collect);
    }
  }
  return __syncthreads_or(local_nan) != 0;
}

__device__ __forceinline__ void histogram_candidates(bool with_mass, RadixPrefix prefix, int pass,
                                                     RadixStorage& s) {
  clear_buckets(s);
  __syncthreads();
  const int n = s.num_candidates;
  for (int i = threadIdx.x; i < n; i += kRowThreads) {
    count_key(s, s.candidates[i], prefix, pass, with_mass, false);
  }
  __syncthreads();
}

// The Histogram policy of a CTA that reads the whole row. combine runs in
// all threads once the CTA's histogram is complete (after a __syncthreads)
// and returns whether the row has a NaN, given whether this CTA's part has.
struct CtaHistogram {
  __device__ __forceinline__ bool combine(RadixStorage&, bool has_nan) const { return has_nan; }
};

struct BucketChoice {
  int digit;          // -1: the histogram is empty
  RadixStats above;   // entries above the bucket
  RadixStats bucket;  // entries in it
  RadixStats total;   // entries in the histogram
};

// The lowest non-empty bucket whose top entry the rule keeps. `rule_for`
// maps the histogram's total to the rule (pass 0 learns the row's mass
// there, which top-p needs). Thread t scans buckets from the top, t-th group
// of kBucketsPerThread, so the block scan runs in descending key order.
__device__ __forceinline__ RadixStats bucket_stats(const RadixStorage& s, RadixPrefix prefix,
                                                   int pass, int digit) {
  const uint32_t low_key = prefix.key | (static_cast<uint32_t>(digit) << radix_shift(pass));
  const uint64_t units = bucket_units(s.mantissa_high[digit], s.mantissa_low[digit]);
  return {ldexp(static_cast<double>(units), bucket_mass_exponent(low_key)),
          static_cast<int>(s.counts[digit])};
}

template <typename RuleFor>
__device__ BucketChoice choose_bucket(RadixStorage& s, RadixPrefix prefix, int pass,
                                      RadixStats above_prefix, RuleFor rule_for) {
  // Bucket stats are read twice from shared memory rather than kept in
  // registers across the scan (that spilled at 64 registers a thread).
  RadixStats local{0.0, 0};
  const int first = kRadixBuckets - 1 - static_cast<int>(threadIdx.x) * kBucketsPerThread;
#pragma unroll
  for (int j = 0; j < kBucketsPerThread; ++j)
    local = local + bucket_stats(s, prefix, pass, first - j);
  RadixStats before, total;
  RadixStorage::StatsScan(s.temp.scan)
      .ExclusiveScan(local, before, RadixStats{0.0, 0}, RadixStatsSum{}, total);
  __syncthreads();  // temp is reused below
  const KeepRule rule = rule_for(total);

  int lowest_kept = INT32_MAX;
  RadixStats above = above_prefix + before;
#pragma unroll
  for (int j = 0; j < kBucketsPerThread; ++j) {
    const RadixStats own = bucket_stats(s, prefix, pass, first - j);
    if (own.count > 0 && rule.keeps(above)) lowest_kept = first - j;
    above = above + own;
  }
  const int chosen = RadixStorage::IntReduce(s.temp.reduce).Reduce(lowest_kept, IntMin{});
  if (threadIdx.x == 0) s.chosen_digit = chosen == INT32_MAX ? -1 : chosen;
  __syncthreads();
  const int digit = s.chosen_digit;
  above = above_prefix + before;
#pragma unroll
  for (int j = 0; j < kBucketsPerThread; ++j) {
    const RadixStats own = bucket_stats(s, prefix, pass, first - j);
    if (first - j == digit) s.chosen_above = above, s.chosen_bucket = own;
    above = above + own;
  }
  __syncthreads();
  BucketChoice choice{digit, s.chosen_above, s.chosen_bucket, total};
  __syncthreads();  // the next pass may overwrite chosen_*
  return choice;
}

// The threshold of `rule_for(row total)` over the row's entries > lowest
// (0 for probabilities, -inf for logits). with_mass sums masses (positive
// entries only: probabilities); without it only counts matter (top-k).
// This CTA reads [begin, end) of the row; `histogram` makes the row's
// histogram of it (see the top of the file).
template <int kVec, typename Row, typename MakeRule, typename Histogram>
__device__ RadixThreshold radix_threshold(const Row& row, int begin, int end, float lowest,
                                          bool with_mass, MakeRule make_rule, RadixStorage& s,
                                          Histogram& histogram) {
  RadixThreshold result{0xffffffffu, {0.0, 0}, {0.0, 0}, false};
  KeepRule rule;
  RadixPrefix prefix;
  RadixStats above{0.0, 0};
  bool collect = false, have_candidates = false;
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    if (have_candidates) {
      histogram_candidates(with_mass, prefix, pass, s);
      histogram.combine(s, false);
    } else {
      const bool nan =
          histogram_row<kVec>(row, begin, end, lowest, with_mass, prefix, pass, collect, s);
      const bool row_nan = histogram.combine(s, nan);
      if (pass == 0) result.has_nan = row_nan;
      have_candidates = collect;
    }
    const BucketChoice c = choose_bucket(s, prefix, pass, above, [&](RadixStats total) {
      if (pass == 0) rule = make_rule(total);
      return rule;
    });
    if (pass == 0) result.total = c.total;
    if (c.digit < 0) return result;  // nothing > lowest: nothing kept
    prefix.key |= static_cast<uint32_t>(c.digit) << radix_shift(pass);
    prefix.bits += radix_bits(pass);
    above = c.above;
    if (pass + 1 == kRadixPasses || c.bucket.count == 1 || rule.keeps(c.above + c.bucket)) {
      result.min_key = prefix.key;  // the bucket is kept whole: its lowest key bounds it
      result.kept = c.above + c.bucket;
      return result;
    }
    collect = pass == 0 && c.bucket.count <= kCandidateCapacity;
  }
  return result;  // not reached: the last pass returns
}

// The whole row in one CTA.
template <int kVec, typename Row, typename MakeRule>
__device__ RadixThreshold radix_threshold(const Row& row, int vocab, float lowest, bool with_mass,
                                          MakeRule make_rule, RadixStorage& s) {
  CtaHistogram histogram;
  return radix_threshold<kVec>(row, 0, vocab, lowest, with_mass, make_rule, s, histogram);
}

}  // namespace tessera::sampling
