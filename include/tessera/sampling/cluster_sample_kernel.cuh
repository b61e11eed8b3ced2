// Sampling from probabilities for small batches on sm90: the samplers of
// sample_kernel.cuh with each request row split across a thread-block
// cluster.
//
// Grid: batch x cluster_size CTAs of kRowThreads threads, cluster dims
// (cluster_size, 1, 1) set at launch (2..16; the host picks it,
// row_split.h): cluster b samples output row b, CTA rank r reads slice r.
// 2 CTAs per SM as the one-CTA kernel (registers bound it). Two kernels, as
// the host chooses with uses_radix_select (in one kernel the two paths
// spilled registers, and the rejection path carried the radix storage):
//
// cluster_sample_kernel: top-p alone, min-p, no filter (and top-k over
// kRadixMaxVocab): the rejection sampler over ClusterRowPass
// (cluster_pass.cuh). The summary reads the row once across the cluster;
// each rejection round is one draw (one CTA scans its slice) and one stats
// pass. Shared memory: ClusterStorage (CUB temporaries + two exchange
// slots, ~2 KiB).
//
// cluster_radix_sample_kernel: top-k and joint top-k + top-p: the radix
// threshold search with the slices' histograms summed over the cluster
// (cluster_radix.cuh), then one stats pass above the threshold (each CTA's
// mass, for the draw's slice bounds) and the cluster's inverse-CDF draw:
// 2 or 3 reads of each slice for the search, 1 for the stats, and the
// holder's slice once for the draw. Shared memory: ClusterStorage and
// RadixStorage (~43 KiB).
//
// At batch 1 a row gets 16 CTAs' loads in flight instead of one's. Output is
// bitwise reproducible run to run: partial sums combine in rank order, the
// radix histograms in integers; it may differ from the one-CTA kernel's by
// float rounding of the sums.
#pragma once

#include <cooperative_groups.h>

#include "tessera/sampling/cluster_pass.cuh"
#include "tessera/sampling/cluster_radix.cuh"
#include "tessera/sampling/radix_select.cuh"
#include "tessera/sampling/sample_kernel.cuh"
#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

// Top-k / joint over a cluster: every CTA finds the same exact threshold
// from the row's histogram; the draw target is u times the cluster's float
// mass above it, the same sums that place each slice in the draw. The
// ClusterRowPass is built after the search: alive across it, its members
// spilled registers.
template <int kVec>
__device__ RowDraw sample_radix_cluster(const SampleParams& p, int out_row,
                                        const float* __restrict__ row, ClusterStorage& storage,
                                        RadixStorage& radix) {
  const cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  const int size = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const auto make_rule = [&](RadixStats row_total) {
    KeepRule rule;
    if (p.filters.top_k) add_top_k(rule, p.top_k.at(out_row), p.vocab);
    if (p.filters.top_p) add_top_p(rule, p.top_p.at(out_row), row_total.mass);
    return rule;
  };
  ClusterHistogram histogram;
  const int begin = static_cast<int>(row_slice_begin(p.vocab, size, kVec, rank));
  const int end = static_cast<int>(row_slice_begin(p.vocab, size, kVec, rank + 1));
  const RadixThreshold t =
      radix_threshold<kVec>(row, begin, end, 0.f, true, make_rule, radix, histogram);
  if ((p.check_nan && t.has_nan) || t.total.count == 0) return {0, false};
  const float pivot = key_to_float(t.min_key - 1u);  // see sample_radix
  ClusterRowPass<kVec> pass(row, p.vocab, storage);
  const ClusterStats above = pass.stats_above(pivot);
  return {pass.draw(pivot, above, p.uniforms[out_row] * above.mass), true};
}

template <int kVec>
__global__ void __launch_bounds__(kRowThreads, kRowCtasPerSm)
    cluster_sample_kernel(const SampleParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ ClusterStorage shared;
  const cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  const int out_row = static_cast<int>(blockIdx.x / cluster.num_blocks());
  const int64_t row_index = p.row_indices != nullptr ? p.row_indices[out_row] : out_row;
  const float* __restrict__ row = p.probs + row_index * p.probs_row_stride;

  ClusterRowPass<kVec> pass(row, p.vocab, shared);
  const RowDraw d = sample_by_rejection(p, out_row, row, pass);
  if (cluster.block_rank() == 0) write_sample(p, out_row, d.token, d.ok);
  pass.finish();
#elif defined(__CUDA_ARCH__)
  __trap();  // no clusters: the host launches this kernel from sm90 code only
#endif
}

template <int kVec>
__global__ void __launch_bounds__(kRowThreads, kRowCtasPerSm)
    cluster_radix_sample_kernel(const SampleParams p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  __shared__ ClusterStorage shared;
  __shared__ RadixStorage radix;
  const cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
  const int out_row = static_cast<int>(blockIdx.x / cluster.num_blocks());
  const int64_t row_index = p.row_indices != nullptr ? p.row_indices[out_row] : out_row;
  const float* __restrict__ row = p.probs + row_index * p.probs_row_stride;

  const RowDraw d = sample_radix_cluster<kVec>(p, out_row, row, shared, radix);
  if (cluster.block_rank() == 0) write_sample(p, out_row, d.token, d.ok);
  // No CTA may exit while another can still reach its shared memory.
  cluster.sync();
#elif defined(__CUDA_ARCH__)
  __trap();  // no clusters: the host launches this kernel from sm90 code only
#endif
}

}  // namespace tessera::sampling
