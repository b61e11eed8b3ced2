// Host entry point of chain speculative sampling (tessera/api/sampling.h):
// validate, choose the float4 or scalar row path, one CTA per request.
#include <cstdint>
#include <limits>

#include "tessera/api/sampling.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"
#include "tessera/sampling/speculative_kernel.cuh"

namespace tessera {

namespace {

constexpr int kVecEntries = 4;

TensorView checked(const DLTensor& tensor, const char* name, int ndim, DType dtype) {
  TensorView view(tensor, name);
  view.expect_ndim(ndim).expect_dtype({dtype}).expect_cuda().expect_contiguous();
  return view;
}

}  // namespace

void chain_speculative_sampling(const DLTensor& draft_probs_dl, const DLTensor& draft_ids_dl,
                                const DLTensor& uniforms_dl, const DLTensor& target_probs_dl,
                                const SpeculativeOutputs& out, bool /*deterministic: always*/,
                                cudaStream_t stream) {
  const TensorView draft = checked(draft_probs_dl, "draft_probs", 3, DType::kFloat32);
  const int64_t batch = draft.size(0);
  const int64_t num_draft = draft.size(1);
  const int64_t vocab = draft.size(2);
  TESSERA_CHECK_ARG(vocab >= 1 && vocab <= std::numeric_limits<int32_t>::max() &&
                        num_draft >= 1 && num_draft < std::numeric_limits<int32_t>::max() &&
                        batch <= std::numeric_limits<int32_t>::max(),
                    "draft_probs", "[batch, num_speculate_tokens >= 1, vocab >= 1]",
                    draft.shape_string());
  const TensorView target = checked(target_probs_dl, "target_probs", 3, DType::kFloat32);
  target.expect_size(0, batch, "the batch size of draft_probs");
  target.expect_size(1, num_draft + 1, "num_speculate_tokens + 1");
  target.expect_size(2, vocab, "the vocabulary of draft_probs");
  const TensorView ids = checked(draft_ids_dl, "draft_token_ids", 2, DType::kInt32);
  ids.expect_size(0, batch, "the batch size of draft_probs");
  ids.expect_size(1, num_draft, "num_speculate_tokens");
  const TensorView uniforms = checked(uniforms_dl, "uniform_samples", 2, DType::kFloat32);
  uniforms.expect_size(0, batch, "the batch size of draft_probs");
  uniforms.expect_size(1, num_draft + 1, "num_speculate_tokens + 1");
  const TensorView tokens =
      checked(out.output_token_ids, "output_token_ids", 2, DType::kInt32);
  tokens.expect_size(0, batch, "the batch size of draft_probs");
  tokens.expect_size(1, num_draft + 1, "num_speculate_tokens + 1");
  const TensorView accepted =
      checked(out.output_accepted_token_num, "output_accepted_token_num", 1, DType::kInt32);
  accepted.expect_size(0, batch, "the batch size of draft_probs");
  const TensorView emitted =
      checked(out.output_emitted_token_num, "output_emitted_token_num", 1, DType::kInt32);
  emitted.expect_size(0, batch, "the batch size of draft_probs");
  for (const TensorView* view : {&target, &ids, &uniforms, &tokens, &accepted, &emitted}) {
    expect_same_device(draft, *view);
  }
  TESSERA_CHECK_ARG(!same_storage(accepted, emitted) || batch == 0, "output_emitted_token_num",
                    "memory disjoint from output_accepted_token_num",
                    "the memory of output_accepted_token_num");
  if (batch == 0) return;

  sampling::SpeculativeParams params{};
  params.draft_probs = draft.data_as<const float>();
  params.draft_token_ids = ids.data_as<const int32_t>();
  params.uniforms = uniforms.data_as<const float>();
  params.target_probs = target.data_as<const float>();
  params.output_token_ids = tokens.data_as<int32_t>();
  params.accepted_num = accepted.data_as<int32_t>();
  params.emitted_num = emitted.data_as<int32_t>();
  params.num_draft = static_cast<int>(num_draft);
  params.vocab = static_cast<int>(vocab);

  DeviceGuard guard(draft.device().device_id);
  const dim3 grid(static_cast<unsigned>(batch));
  const bool vector_rows = vocab % kVecEntries == 0 &&
                           draft.rows_aligned_to(kVecEntries * sizeof(float)) &&
                           target.rows_aligned_to(kVecEntries * sizeof(float));
  if (vector_rows) {
    sampling::chain_speculative_kernel<kVecEntries>
        <<<grid, sampling::kRowThreads, 0, stream>>>(params);
  } else {
    sampling::chain_speculative_kernel<1><<<grid, sampling::kRowThreads, 0, stream>>>(params);
  }
  TESSERA_CHECK_LAUNCH();
}

}  // namespace tessera
