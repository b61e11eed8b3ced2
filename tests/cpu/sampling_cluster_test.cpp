// The host side of the cluster sampling path (row_split.h, shared with the
// device code): how a row splits into per-CTA slices, and which cluster size
// the host picks for a batch on a given device.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "tessera/sampling/row_split.h"

namespace tessera::sampling {
namespace {

// An H100-like device: 132 SMs, 2 CTAs of the kernel per SM, clusters
// packed within GPCs (so fewer 16-CTA clusters than 264 / 16).
constexpr ClusterCapacity kHopperLike{{0, 132, 66, 32, 14}};
// Before sm90 (or a device without clusters): nothing launches.
constexpr ClusterCapacity kNoClusters{};

TEST(SamplingClusterSplit, SlicesTileTheRowInOrder) {
  for (const int vec : {1, 4}) {
    for (const int64_t vocab : {1, 111, 127, 128, 2048, 32000, 128256, 1 << 20}) {
      for (const int size : {1, 2, 4, 8, 16}) {
        SCOPED_TRACE("vocab " + std::to_string(vocab) + " cluster " + std::to_string(size) +
                     " vec " + std::to_string(vec));
        EXPECT_EQ(row_slice_begin(vocab, size, vec, 0), 0);
        EXPECT_EQ(row_slice_begin(vocab, size, vec, size), vocab);
        for (int rank = 0; rank < size; ++rank) {
          const int64_t begin = row_slice_begin(vocab, size, vec, rank);
          const int64_t end = row_slice_begin(vocab, size, vec, rank + 1);
          EXPECT_LE(begin, end);
          // Every slice that starts inside the row starts on a warp's load
          // (float4 loads stay 16-byte aligned).
          if (begin < vocab) EXPECT_EQ(begin % (32 * vec), 0);
          // Slices are as even as the alignment allows.
          EXPECT_LE(end - begin, (vocab + size - 1) / size + 32 * vec - 1);
        }
      }
    }
  }
}

TEST(SamplingClusterSplit, SmallBatchesGetTheLargestClusterThatIsResident) {
  EXPECT_EQ(choose_cluster_size(1, 128256, 4, kHopperLike), 16);
  EXPECT_EQ(choose_cluster_size(7, 128256, 4, kHopperLike), 16);
  EXPECT_EQ(choose_cluster_size(14, 128256, 4, kHopperLike), 16);
  EXPECT_EQ(choose_cluster_size(15, 128256, 4, kHopperLike), 8);
  EXPECT_EQ(choose_cluster_size(32, 128256, 4, kHopperLike), 8);
  EXPECT_EQ(choose_cluster_size(33, 128256, 4, kHopperLike), 4);
  EXPECT_EQ(choose_cluster_size(128, 32000, 4, kHopperLike), 2);
}

TEST(SamplingClusterSplit, LargeBatchesKeepOneCtaPerRow) {
  EXPECT_EQ(choose_cluster_size(133, 128256, 4, kHopperLike), 1);
  EXPECT_EQ(choose_cluster_size(512, 128256, 4, kHopperLike), 1);
}

TEST(SamplingClusterSplit, DevicesWithoutClustersKeepOneCtaPerRow) {
  EXPECT_EQ(choose_cluster_size(1, 128256, 4, kNoClusters), 1);
  // Sizes a device cannot launch (0 active) are skipped, not chosen.
  constexpr ClusterCapacity portable_only{{0, 132, 66, 32, 0}};
  EXPECT_EQ(choose_cluster_size(1, 128256, 4, portable_only), 8);
}

TEST(SamplingClusterSplit, SmallVocabulariesGetFewerCtas) {
  // Every slice holds at least one warp's load (32 * vec entries).
  EXPECT_EQ(choose_cluster_size(1, 111, 1, kHopperLike), 2);
  EXPECT_EQ(choose_cluster_size(1, 63, 1, kHopperLike), 1);
  EXPECT_EQ(choose_cluster_size(1, 1024, 4, kHopperLike), 8);
  EXPECT_EQ(choose_cluster_size(1, 2048, 4, kHopperLike), 16);
  EXPECT_EQ(choose_cluster_size(1, 100, 4, kHopperLike), 1);
}

}  // namespace
}  // namespace tessera::sampling
