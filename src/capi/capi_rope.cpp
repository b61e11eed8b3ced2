// C ABI of rotary position embedding (tessera/api/rope.h).
#include "capi/capi_support.h"
#include "tessera/api/rope.h"

using tessera::capi::guarded;
using tessera::capi::required;
using tessera::capi::stream_of;

namespace {

// TesseraRopeOptions as given (the bindings pass real values, not zeros for
// defaults); NULL is an argument error rather than silent defaults, since a
// caller that forgot the struct would otherwise rotate with the wrong theta.
tessera::RopeOptions rope_options_of(const TesseraRopeOptions* o) {
  if (o == nullptr) tessera::throw_argument_error("options", "a TesseraRopeOptions", "NULL");
  tessera::RopeOptions options;
  options.rotary_dim = o->rotary_dim;
  options.interleave = o->interleave != 0;
  options.rope_scale = o->rope_scale;
  options.rope_theta = o->rope_theta;
  if (o->llama31 != 0) {
    options.llama31 =
        tessera::Llama31Scaling{o->low_freq_factor, o->high_freq_factor, o->old_context_len};
  }
  return options;
}

}  // namespace

extern "C" {

int tessera_apply_rope(const DLTensor* q, const DLTensor* k, const DLTensor* q_rope,
                       const DLTensor* k_rope, const DLTensor* indptr, const DLTensor* offsets,
                       const TesseraRopeOptions* options, void* stream, int validate) {
  return guarded([&] {
    tessera::apply_rope(required(q, "q"), required(k, "k"), required(q_rope, "q_rope"),
                        required(k_rope, "k_rope"), required(indptr, "indptr"),
                        required(offsets, "offsets"), rope_options_of(options),
                        stream_of(stream), tessera::capi::validate_of(validate));
  });
}

int tessera_apply_rope_pos_ids(const DLTensor* q, const DLTensor* k, const DLTensor* q_rope,
                               const DLTensor* k_rope, const DLTensor* pos_ids,
                               const TesseraRopeOptions* options, void* stream) {
  return guarded([&] {
    tessera::apply_rope_pos_ids(required(q, "q"), required(k, "k"), required(q_rope, "q_rope"),
                                required(k_rope, "k_rope"), required(pos_ids, "pos_ids"),
                                rope_options_of(options), stream_of(stream));
  });
}

int tessera_apply_rope_with_cos_sin_cache(const DLTensor* positions, const DLTensor* query,
                                          const DLTensor* key, const DLTensor* query_out,
                                          const DLTensor* key_out, int64_t head_size,
                                          const DLTensor* cos_sin_cache, int is_neox,
                                          void* stream, int validate) {
  return guarded([&] {
    tessera::apply_rope_with_cos_sin_cache(
        required(positions, "positions"), required(query, "query"), required(key, "key"),
        required(query_out, "query_out"), required(key_out, "key_out"), head_size,
        required(cos_sin_cache, "cos_sin_cache"), is_neox != 0, stream_of(stream),
        tessera::capi::validate_of(validate));
  });
}

}  // extern "C"
