// Chain speculative sampling (Leviathan et al. / Chen et al.; FlashInfer's
// chain_speculative_sampling): verify a chain of n draft tokens against the
// target model's probabilities and emit the accepted prefix plus one token.
//
// Per request: draft token d_i (i < n) is accepted when u_i * q_i(d_i) <
// p_i(d_i) (q draft, p target; always when q_i(d_i) == 0 < p_i(d_i)). At the
// first rejection pos, the emitted token is drawn from max(p_pos - q_pos, 0)
// renormalised; if all n are accepted, the bonus token from p_n. That draw
// uses u_{pos + 1} (u_n for the bonus), a uniform no acceptance test read,
// so the emitted tokens follow the target distribution exactly.
// accepted_num[b] += the number of drafts that would pass their test on
// their own (the chain not stopping); emitted_num[b] += pos. Output row b:
// d_0 .. d_{pos-1}, the drawn token, then -1.
//
// Grid: one CTA of kRowThreads threads per request; CUB temporaries only.
#pragma once

#include "tessera/sampling/row_pass.cuh"
#include "tessera/sampling/speculative_params.cuh"

namespace tessera::sampling {

template <int kVec>
__global__ void __launch_bounds__(kRowThreads, kRowCtasPerSm)
    chain_speculative_kernel(const SpeculativeParams p) {
  __shared__ RowPassStorage storage;
  __shared__ int first_rejected;
  const int b = blockIdx.x;
  const int n = p.num_draft;
  const float* __restrict__ uniforms = p.uniforms + static_cast<int64_t>(b) * (n + 1);
  const int32_t* __restrict__ drafts = p.draft_token_ids + static_cast<int64_t>(b) * n;
  const auto draft_row = [&](int i) {
    return p.draft_probs + (static_cast<int64_t>(b) * n + i) * p.vocab;
  };
  const auto target_row = [&](int i) {
    return p.target_probs + (static_cast<int64_t>(b) * (n + 1) + i) * p.vocab;
  };

  // The tests are n scalar reads: thread 0 runs them (n is a handful).
  if (threadIdx.x == 0) {
    int pos = n, accepted = 0;
    for (int i = 0; i < n; ++i) {
      const int32_t token = drafts[i];
      // An id outside the vocabulary is rejected (it has no probability).
      const bool in_vocab = token >= 0 && token < p.vocab;
      const float q = in_vocab ? draft_row(i)[token] : 0.f;
      const float t = in_vocab ? target_row(i)[token] : 0.f;
      const bool accept = in_vocab && uniforms[i] * q < t;
      accepted += accept ? 1 : 0;
      if (!accept && pos == n) pos = i;
    }
    first_rejected = pos;
    p.accepted_num[b] += accepted;
    p.emitted_num[b] += pos;
  }
  __syncthreads();
  const int pos = first_rejected;
  const float u = uniforms[pos < n ? pos + 1 : n];

  int token;
  if (pos == n) {
    const float* __restrict__ row = target_row(n);
    const AboveStats all = stats_above<kVec>(row, p.vocab, 0.f, storage);
    token = sample_above<kVec>(row, p.vocab, 0.f, u * all.mass, storage);
  } else {
    const ResidualRow row{target_row(pos), draft_row(pos)};
    const AboveStats all = stats_above<kVec>(row, p.vocab, 0.f, storage);
    token = sample_above<kVec>(row, p.vocab, 0.f, u * all.mass, storage);
  }
  int32_t* __restrict__ out = p.output_token_ids + static_cast<int64_t>(b) * (n + 1);
  for (int i = threadIdx.x; i <= n; i += kRowThreads) {
    out[i] = i < pos ? drafts[i] : (i == pos ? token : -1);
  }
}

}  // namespace tessera::sampling
