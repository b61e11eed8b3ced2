// C ABI of the sampling family (tessera/api/sampling.h): NULL checks, then
// straight through.
#include "capi/capi_support.h"
#include "tessera/api/sampling.h"

using tessera::capi::guarded;
using tessera::capi::required;
using tessera::capi::stream_of;

namespace {

tessera::SamplingOutputs outputs(const DLTensor* samples, const DLTensor* success,
                                 int32_t deterministic, int32_t check_nan) {
  return {required(samples, "samples"), success, deterministic != 0, check_nan != 0};
}

}  // namespace

extern "C" {

int tessera_sampling_from_probs(const DLTensor* probs, const DLTensor* uniform_samples,
                                const DLTensor* samples, const DLTensor* success,
                                int32_t deterministic, int32_t check_nan, void* stream) {
  return guarded([&] {
    tessera::sampling_from_probs(required(probs, "probs"),
                                 required(uniform_samples, "uniform_samples"),
                                 outputs(samples, success, deterministic, check_nan),
                                 stream_of(stream));
  });
}

int tessera_top_p_sampling_from_probs(const DLTensor* probs, const DLTensor* uniform_samples,
                                      const DLTensor* top_p_arr, double top_p,
                                      const DLTensor* samples, const DLTensor* success,
                                      int32_t deterministic, int32_t check_nan, void* stream) {
  return guarded([&] {
    tessera::top_p_sampling_from_probs(
        required(probs, "probs"), required(uniform_samples, "uniform_samples"), top_p_arr, top_p,
        outputs(samples, success, deterministic, check_nan), stream_of(stream));
  });
}

int tessera_top_k_sampling_from_probs(const DLTensor* probs, const DLTensor* uniform_samples,
                                      const DLTensor* top_k_arr, int64_t top_k,
                                      const DLTensor* samples, const DLTensor* success,
                                      int32_t deterministic, int32_t check_nan, void* stream) {
  return guarded([&] {
    tessera::top_k_sampling_from_probs(
        required(probs, "probs"), required(uniform_samples, "uniform_samples"), top_k_arr, top_k,
        outputs(samples, success, deterministic, check_nan), stream_of(stream));
  });
}

int tessera_min_p_sampling_from_probs(const DLTensor* probs, const DLTensor* uniform_samples,
                                      const DLTensor* min_p_arr, double min_p,
                                      const DLTensor* samples, const DLTensor* success,
                                      int32_t deterministic, int32_t check_nan, void* stream) {
  return guarded([&] {
    tessera::min_p_sampling_from_probs(
        required(probs, "probs"), required(uniform_samples, "uniform_samples"), min_p_arr, min_p,
        outputs(samples, success, deterministic, check_nan), stream_of(stream));
  });
}

int tessera_top_k_top_p_sampling_from_probs(const DLTensor* probs,
                                            const DLTensor* uniform_samples,
                                            const DLTensor* top_k_arr, int64_t top_k,
                                            const DLTensor* top_p_arr, double top_p,
                                            const DLTensor* samples, const DLTensor* success,
                                            int32_t deterministic, int32_t check_nan,
                                            void* stream) {
  return guarded([&] {
    tessera::top_k_top_p_sampling_from_probs(
        required(probs, "probs"), required(uniform_samples, "uniform_samples"), top_k_arr, top_k,
        top_p_arr, top_p, outputs(samples, success, deterministic, check_nan), stream_of(stream));
  });
}

int tessera_top_p_renorm_probs(const DLTensor* probs, const DLTensor* top_p_arr, double top_p,
                               const DLTensor* renorm_probs, void* stream) {
  return guarded([&] {
    tessera::top_p_renorm_probs(required(probs, "probs"), top_p_arr, top_p,
                                required(renorm_probs, "renorm_probs"), stream_of(stream));
  });
}

int tessera_top_k_renorm_probs(const DLTensor* probs, const DLTensor* top_k_arr, int64_t top_k,
                               const DLTensor* renorm_probs, void* stream) {
  return guarded([&] {
    tessera::top_k_renorm_probs(required(probs, "probs"), top_k_arr, top_k,
                                required(renorm_probs, "renorm_probs"), stream_of(stream));
  });
}

int tessera_top_k_mask_logits(const DLTensor* logits, const DLTensor* top_k_arr, int64_t top_k,
                              const DLTensor* masked_logits, void* stream) {
  return guarded([&] {
    tessera::top_k_mask_logits(required(logits, "logits"), top_k_arr, top_k,
                               required(masked_logits, "masked_logits"), stream_of(stream));
  });
}

int tessera_chain_speculative_sampling(const DLTensor* draft_probs,
                                       const DLTensor* draft_token_ids,
                                       const DLTensor* uniform_samples,
                                       const DLTensor* target_probs,
                                       const DLTensor* output_token_ids,
                                       const DLTensor* output_accepted_token_num,
                                       const DLTensor* output_emitted_token_num,
                                       int32_t deterministic, void* stream) {
  return guarded([&] {
    const tessera::SpeculativeOutputs out{
        required(output_token_ids, "output_token_ids"),
        required(output_accepted_token_num, "output_accepted_token_num"),
        required(output_emitted_token_num, "output_emitted_token_num")};
    tessera::chain_speculative_sampling(
        required(draft_probs, "draft_probs"), required(draft_token_ids, "draft_token_ids"),
        required(uniform_samples, "uniform_samples"), required(target_probs, "target_probs"), out,
        deterministic != 0, stream_of(stream));
  });
}

}  // extern "C"
