// The rejection sampler's passes (CtaRowPass's interface, row_pass.cuh) over
// a row split across a thread-block cluster (sm90): CTA `rank` of the
// cluster reads its slice of the row (row_split.h) with the one-CTA block
// passes, then the CTAs swap their partial results through distributed
// shared memory.
//
// Exchange: each CTA's thread 0 writes its partial to its own slot; a
// cluster barrier (release / acquire) publishes it; warp 0 of every CTA reads
// the slots of ranks 0..size-1 (lane r reads rank r through mapa) and
// combines them in rank order, so every CTA computes the same float sums,
// bitwise, with no second round trip. Slots alternate between two buffers:
// a CTA writes a buffer again only after the next exchange's barrier, which
// every CTA reaches after its reads of that buffer.
//
// Draw: every stats exchange also gives each CTA the mass of the slices
// before its own (`before`) and the `before` of the next slice with entries
// (`next`). Those bounds come from the same sums in every CTA, so the
// intervals [before, next) of the slices with entries tile [0, +inf): for a
// target, exactly one CTA holds it, scans its own slice alone (its part of
// the row, often still in L2 from the pass before), and a last exchange
// hands its token to the others.
//
// Every decision the sampler takes reads combined values only, so all CTAs
// of a cluster take the same branches and meet at every barrier. Every
// function contains __syncthreads and a cluster barrier: call from all
// threads of every CTA of the cluster.
#pragma once

#include <cooperative_groups.h>
#include <cuda/std/limits>

#include "tessera/sampling/row_pass.cuh"
#include "tessera/sampling/row_split.h"

namespace tessera::sampling {

// One CTA's share of a pass.
struct SlicePartial {
  float mass;  // entries > pivot in the slice
  int count;
  float max;   // summary pass: the slice's maximum
  int flag;    // summary: has a NaN (0 / 1); draw: the drawn token, -1 elsewhere
};

// What a CTA learns from a stats pass: the row's stats, and where its slice
// sits in the running sum.
struct ClusterStats {
  float mass;  // slice masses summed in rank order
  int count;
  float before;   // mass of the slices before this CTA's
  float next;     // `before` of the next slice with entries; +inf if none
  int own_count;  // entries > pivot in this CTA's slice
};

struct ClusterTotals {
  ClusterStats stats;
  float max;
  int flag;  // the partials' largest flag
};

struct ClusterStorage {
  RowPassStorage pass;
  SlicePartial slots[2];
  ClusterTotals totals;  // warp 0's combination, read back by every thread
};

template <int kVec>
class ClusterRowPass {
 public:
  using Stats = ClusterStats;

  __device__ ClusterRowPass(const float* __restrict__ row, int vocab, ClusterStorage& storage)
      : row_(row), storage_(storage) {
    namespace cg = cooperative_groups;
    const cg::cluster_group cluster = cg::this_cluster();
    size_ = static_cast<int>(cluster.num_blocks());
    rank_ = static_cast<int>(cluster.block_rank());
    begin_ = static_cast<int>(row_slice_begin(vocab, size_, kVec, rank_));
    end_ = static_cast<int>(row_slice_begin(vocab, size_, kVec, rank_ + 1));
  }

  __device__ PassSummary<Stats> summary() {
    const RowSummary s = row_summary<kVec>(row_, begin_, end_, 0.f, storage_.pass);
    const ClusterTotals t = exchange({s.above.mass, s.above.count, s.max, s.has_nan ? 1 : 0});
    return {t.stats, t.max, t.flag > 0};
  }

  __device__ Stats stats_above(float pivot) {
    const AboveStats s =
        tessera::sampling::stats_above<kVec>(row_, begin_, end_, pivot, storage_.pass);
    return exchange({s.mass, s.count, kNegInf, -1}).stats;
  }

  // The token where the running sum of the row's entries > pivot first
  // exceeds target; `above` is the stats pass of that pivot.
  __device__ int draw(float pivot, const Stats& above, float target) {
    const bool holds_target =
        above.own_count > 0 && above.before <= target && target < above.next;
    int token = -1;
    if (holds_target) {  // the same in all threads of this CTA
      token = sample_above<kVec>(row_, begin_, end_, pivot, target - above.before, storage_.pass);
    }
    const int drawn = exchange({0.f, 0, kNegInf, token}).flag;
    return drawn < 0 ? 0 : drawn;  // no holder: a NaN target
  }

  // The end of the cluster's work: no CTA may exit while another can still
  // read its slots.
  __device__ void finish() { cooperative_groups::this_cluster().sync(); }

 private:
  static constexpr float kInf = cuda::std::numeric_limits<float>::infinity();
  static constexpr float kNegInf = -kInf;

  __device__ ClusterTotals exchange(const SlicePartial& own) {
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    SlicePartial* slot = &storage_.slots[parity_];
    parity_ ^= 1;
    if (threadIdx.x == 0) *slot = own;
    cluster.sync();
    if (threadIdx.x < 32) {
      const int lane = static_cast<int>(threadIdx.x);
      SlicePartial theirs{0.f, 0, kNegInf, -1};
      if (lane < size_) theirs = *cluster.map_shared_rank(slot, lane);
      ClusterTotals t{{0.f, 0, 0.f, kInf, 0}, kNegInf, -1};
      for (int r = 0; r < size_; ++r) {  // rank order: the same sums in every CTA
        const float mass = __shfl_sync(0xffffffffu, theirs.mass, r);
        const int count = __shfl_sync(0xffffffffu, theirs.count, r);
        const float max = __shfl_sync(0xffffffffu, theirs.max, r);
        const int flag = __shfl_sync(0xffffffffu, theirs.flag, r);
        if (r == rank_) {
          t.stats.before = t.stats.mass;
          t.stats.own_count = count;
        } else if (r > rank_ && count > 0 && t.stats.next == kInf) {
          t.stats.next = t.stats.mass;
        }
        t.stats.mass += mass;
        t.stats.count += count;
        t.max = fmaxf(t.max, max);
        t.flag = flag > t.flag ? flag : t.flag;
      }
      if (lane == 0) storage_.totals = t;
    }
    __syncthreads();
    // Read before this CTA's next cluster barrier, after which warp 0 may
    // write the next totals.
    return storage_.totals;
  }

  const float* __restrict__ row_;
  ClusterStorage& storage_;
  int size_ = 1, rank_ = 0, begin_ = 0, end_ = 0;
  int parity_ = 0;
};

}  // namespace tessera::sampling
