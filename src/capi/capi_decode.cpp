// C ABI of decode attention and the attention-state merges (tessera/api/decode.h).
#include <span>

#include "capi/capi_support.h"

using tessera::capi::guarded;
using tessera::capi::host_span;
using tessera::capi::required;

struct TesseraBatchDecode {
  tessera::BatchDecodeWithPagedKVCache wrapper;
};

namespace {

tessera::DecodePlanShape decode_shape(int64_t num_qo_heads, int64_t num_kv_heads,
                                      int64_t head_dim, int64_t page_size) {
  return {num_qo_heads, num_kv_heads, head_dim, page_size};
}

}  // namespace

extern "C" {

int tessera_merge_state(const DLTensor* v_a, const DLTensor* s_a, const DLTensor* v_b,
                        const DLTensor* s_b, const DLTensor* v_merged, const DLTensor* s_merged,
                        void* stream) {
  return guarded([&] {
    tessera::merge_state(required(v_a, "v_a"), required(s_a, "s_a"), required(v_b, "v_b"),
                         required(s_b, "s_b"), required(v_merged, "v_merged"),
                         required(s_merged, "s_merged"), tessera::capi::stream_of(stream));
  });
}

int tessera_merge_state_in_place(const DLTensor* v, const DLTensor* s, const DLTensor* v_other,
                                 const DLTensor* s_other, const DLTensor* mask, void* stream) {
  return guarded([&] {
    tessera::merge_state_in_place(required(v, "v"), required(s, "s"), required(v_other, "v_other"),
                                  required(s_other, "s_other"), mask,
                                  tessera::capi::stream_of(stream));
  });
}

int tessera_merge_states(const DLTensor* v, const DLTensor* s, const DLTensor* v_merged,
                         const DLTensor* s_merged, void* stream) {
  return guarded([&] {
    tessera::merge_states(required(v, "v"), required(s, "s"), required(v_merged, "v_merged"),
                          required(s_merged, "s_merged"), tessera::capi::stream_of(stream));
  });
}

int tessera_single_decode_with_kv_cache(const DLTensor* q, const DLTensor* k, const DLTensor* v,
                                        const DLTensor* out, const DLTensor* lse, int layout,
                                        const TesseraAttentionOptions* options, int backend,
                                        void* stream) {
  return guarded([&] {
    tessera::single_decode_with_kv_cache(
        required(q, "q"), required(k, "k"), required(v, "v"), required(out, "out"), lse,
        tessera::capi::layout_of(layout, "kv_layout"),
        tessera::capi::attention_options_of(options), tessera::capi::stream_of(stream),
        tessera::capi::backend_of(backend));
  });
}

int tessera_batch_decode_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                        int64_t head_dim, int64_t page_size,
                                        int64_t max_batch_size, int64_t max_work_units,
                                        int device_id, size_t* bytes) {
  return guarded([&] {
    size_t& result = tessera::capi::required_output(bytes, "bytes");
    result = tessera::BatchDecodeWithPagedKVCache::workspace_size_bytes(
        decode_shape(num_qo_heads, num_kv_heads, head_dim, page_size),
        {max_batch_size, max_work_units}, device_id);
  });
}

int tessera_batch_decode_create(int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim,
                                int64_t page_size, int64_t max_batch_size,
                                int64_t max_work_units, void* workspace, size_t workspace_bytes,
                                int device_id, TesseraBatchDecode** handle) {
  return guarded([&] {
    TesseraBatchDecode*& result = tessera::capi::required_output(handle, "handle");
    result = new TesseraBatchDecode{tessera::BatchDecodeWithPagedKVCache(
        decode_shape(num_qo_heads, num_kv_heads, head_dim, page_size),
        {max_batch_size, max_work_units}, workspace, workspace_bytes, device_id)};
  });
}

void tessera_batch_decode_destroy(TesseraBatchDecode* handle) { delete handle; }

int tessera_batch_decode_plan(TesseraBatchDecode* handle, const int32_t* kv_indptr,
                              int64_t kv_indptr_len, const int32_t* kv_last_page_len,
                              int64_t kv_last_page_len_len, int64_t fixed_split_size,
                              int backend, void* stream) {
  return guarded([&] {
    tessera::DecodePlanOptions options;
    options.fixed_split_size = fixed_split_size;
    options.backend = tessera::capi::backend_of(backend);
    tessera::capi::required_handle(handle, "handle")
        .wrapper.plan(host_span(kv_indptr, kv_indptr_len, "kv_indptr"),
                      host_span(kv_last_page_len, kv_last_page_len_len, "kv_last_page_len"),
                      tessera::capi::stream_of(stream), options);
  });
}

int tessera_batch_decode_run(TesseraBatchDecode* handle, const DLTensor* q,
                             const TesseraPagedKV* paged_kv_cache, const DLTensor* kv_indices,
                             const DLTensor* kv_indptr, const DLTensor* kv_last_page_len,
                             const DLTensor* out, const DLTensor* lse,
                             const TesseraAttentionOptions* options, void* stream, int validate) {
  return guarded([&] {
    tessera::capi::required_handle(handle, "handle")
        .wrapper.run(required(q, "q"), tessera::capi::paged_kv_of(paged_kv_cache, "paged_kv_cache"),
                     required(kv_indices, "kv_indices"), required(kv_indptr, "kv_indptr"),
                     required(kv_last_page_len, "kv_last_page_len"), required(out, "out"), lse,
                     tessera::capi::attention_options_of(options),
                     tessera::capi::stream_of(stream), tessera::capi::validate_of(validate));
  });
}

int tessera_batch_decode_run_flat(TesseraBatchDecode* handle, const int64_t* tensors,
                                  int layout, const TesseraAttentionOptions* options,
                                  void* stream, int validate) {
  return guarded([&] {
    auto& plan = tessera::capi::required_handle(handle, "handle");
    const tessera::capi::FlatTensors<8> t(tensors);
    plan.wrapper.run(t.get(3, "q"), tessera::capi::flat_paged_kv(t.get(4, "paged_kv_cache"),
                                                                 t.optional(5), layout),
                     t.get(0, "kv_indices"), t.get(1, "kv_indptr"), t.get(2, "kv_last_page_len"),
                     t.get(6, "out"), t.optional(7), tessera::capi::attention_options_of(options),
                     tessera::capi::stream_of(stream), tessera::capi::validate_of(validate));
  });
}

}  // extern "C"
