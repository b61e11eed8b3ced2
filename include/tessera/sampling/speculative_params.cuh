// Parameters of the chain speculative sampling kernel (speculative_kernel.cuh).
#pragma once

#include <cstdint>

#include "tessera/sampling/sampling_params.cuh"

namespace tessera::sampling {

struct SpeculativeParams {
  const float* draft_probs;        // [batch, num_draft, vocab], contiguous
  const int32_t* draft_token_ids;  // [batch, num_draft]
  const float* uniforms;           // [batch, num_draft + 1]
  const float* target_probs;       // [batch, num_draft + 1, vocab], contiguous
  int32_t* output_token_ids;       // [batch, num_draft + 1]
  int32_t* accepted_num;           // [batch], added to
  int32_t* emitted_num;            // [batch], added to
  int num_draft;
  int vocab;
};

}  // namespace tessera::sampling
