// How the cluster sampling path (cluster_sample_kernel.cuh) splits request
// rows over a thread-block cluster, as plain functions so the host tests can
// check them.
//
// One cluster of `cluster_size` CTAs per row; CTA `rank` reads the
// contiguous slice [row_slice_begin(rank), row_slice_begin(rank + 1)). Slices
// start on multiples of one warp's load (32 * vec entries: whole 128-byte
// lines for float4 rows), so the last slice is the short one and may be
// empty for small vocabularies.
//
// The host picks the largest cluster whose clusters for every row are all
// resident at once (batch <= active clusters of that size: one wave, no
// tail) and whose slices still hold a warp's load each; 1 means the one-CTA
// kernel (large batches, pre-sm90 GPUs). At batch 1 a row gets 16 CTAs
// instead of 1: the one-CTA path reaches ~13 GB/s per row (H100, 512
// threads with one float4 each in flight), so a lone row waits on latency,
// not bandwidth.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define TESSERA_SPLIT_HD __host__ __device__
#else
#define TESSERA_SPLIT_HD
#endif

namespace tessera::sampling {

inline constexpr int kMaxClusterSize = 16;  // Hopper's non-portable limit (portable: 8)
inline constexpr int kClusterSizeChoices = 5;  // 1, 2, 4, 8, 16

TESSERA_SPLIT_HD constexpr int64_t slice_align_entries(int vec) {
  return int64_t{32} * vec;  // one warp's load
}

// Entries of each slice but the last: ceil(vocab / cluster) rounded up to
// the slice alignment.
TESSERA_SPLIT_HD constexpr int64_t row_slice_entries(int64_t vocab, int cluster_size, int vec) {
  const int64_t align = slice_align_entries(vec);
  const int64_t even = (vocab + cluster_size - 1) / cluster_size;
  return (even + align - 1) / align * align;
}

// Start of slice `rank` (rank == cluster_size: the row's end), clamped to
// the row.
TESSERA_SPLIT_HD constexpr int64_t row_slice_begin(int64_t vocab, int cluster_size, int vec,
                                                   int rank) {
  const int64_t begin = row_slice_entries(vocab, cluster_size, vec) * rank;
  return begin < vocab ? begin : vocab;
}

// What the device can hold of the cluster kernel: active_clusters[i] is how
// many clusters of 2^i CTAs can be resident together (cudaOccupancy-
// MaxActiveClusters), 0 where that size cannot launch. Index 0 (one CTA)
// is not used.
struct ClusterCapacity {
  int active_clusters[kClusterSizeChoices] = {};
};

// The CTAs per row for `batch` rows of `vocab` entries (vec entries per
// load): 1 (the one-CTA kernel) unless a cluster of 2..16 has every row's
// cluster resident at once and a warp's load in every slice.
constexpr int choose_cluster_size(int64_t batch, int64_t vocab, int vec,
                                  const ClusterCapacity& capacity) {
  for (int log2 = kClusterSizeChoices - 1; log2 >= 1; --log2) {
    const int size = 1 << log2;
    const bool fits = batch <= capacity.active_clusters[log2];
    const bool slices_filled = vocab >= size * slice_align_entries(vec);
    if (fits && slices_filled) return size;
  }
  return 1;
}

}  // namespace tessera::sampling
