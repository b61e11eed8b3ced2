// Sampling from probabilities under top-p / min-p filters (and none) for
// small batches on sm90: the rejection sampler of sample_kernel.cuh with
// each request row split across a thread-block cluster (cluster_pass.cuh).
//
// Grid: batch x cluster_size CTAs of kRowThreads threads, cluster dims
// (cluster_size, 1, 1) set at launch (2..16; the host picks it,
// row_split.h): cluster b samples output row b, CTA rank r reads slice r.
// Shared memory: ClusterStorage (CUB temporaries + two exchange slots, under
// 1 KiB), so 2 CTAs per SM as the one-CTA kernel (registers bound it).
//
// Passes: the summary reads the row once across the cluster; each
// rejection round is one draw (one CTA scans its slice) and one stats pass.
// At batch 1 a row gets 16 CTAs' loads in flight instead of one's.
//
// Top-k and joint top-k + top-p keep the one-CTA radix kernel. Output is
// bitwise reproducible run to run: partials combine in rank order; it may
// differ from the one-CTA kernel's by float rounding of the sums.
#pragma once

#include <cooperative_groups.h>

#include "tessera/sampling/cluster_pass.cuh"
#include "tessera/sampling/sample_kernel.cuh"
#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

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

}  // namespace tessera::sampling
