// C ABI of prefill attention: single, batch ragged, batch paged and
// block-sparse (tessera/api/prefill.h). Each plan/run object is its C++ class
// in a struct, so the handle's address is the object's and *_destroy is a
// plain delete.
#include <span>

#include "capi/capi_support.h"
#include "tessera/api/prefill.h"

using tessera::capi::attention_options_of;
using tessera::capi::guarded;
using tessera::capi::host_span;
using tessera::capi::prefill_backend_of;
using tessera::capi::required;
using tessera::capi::required_handle;
using tessera::capi::required_output;
using tessera::capi::stream_of;

struct TesseraBatchPrefillRagged {
  tessera::BatchPrefillWithRaggedKVCache wrapper;
};

struct TesseraBatchPrefillPaged {
  tessera::BatchPrefillWithPagedKVCache wrapper;
};

struct TesseraBlockSparse {
  tessera::BlockSparseAttention wrapper;
};

namespace {

tessera::BlockSparseShape sparse_shape(int64_t num_qo_heads, int64_t num_kv_heads,
                                       int64_t head_dim, int64_t block_rows,
                                       int64_t block_cols) {
  return {num_qo_heads, num_kv_heads, head_dim, block_rows, block_cols};
}

}  // namespace

extern "C" {

int tessera_prefill_backend_support_sm90(int32_t pos_encoding_mode, int32_t soft_cap,
                                         int32_t sliding_window, int32_t custom_mask,
                                         int32_t q_dtype, int32_t kv_dtype, int64_t head_dim,
                                         int32_t* fa3_serves, int32_t* auto_takes_fa3) {
  return guarded([&] {
    int32_t& serves = required_output(fa3_serves, "fa3_serves");
    int32_t& takes = required_output(auto_takes_fa3, "auto_takes_fa3");
    const tessera::PrefillBackendSupport s = tessera::prefill_backend_support_sm90(
        tessera::capi::pos_encoding_of(pos_encoding_mode), soft_cap != 0, sliding_window != 0,
        custom_mask != 0, tessera::capi::dtype_of(q_dtype, "q_dtype"),
        tessera::capi::dtype_of(kv_dtype, "kv_dtype"), head_dim);
    serves = s.fa3_serves ? 1 : 0;
    takes = s.auto_takes_fa3 ? 1 : 0;
  });
}

// ------------------------------------------------------------------ single

int tessera_single_prefill_with_kv_cache(const DLTensor* q, const DLTensor* k, const DLTensor* v,
                                         const DLTensor* out, const DLTensor* lse, int layout,
                                         int causal, const TesseraAttentionOptions* options,
                                         void* stream) {
  return guarded([&] {
    tessera::single_prefill_with_kv_cache(
        required(q, "q"), required(k, "k"), required(v, "v"), required(out, "out"), lse,
        tessera::capi::layout_of(layout, "kv_layout"), causal != 0, attention_options_of(options),
        stream_of(stream));
  });
}

// ------------------------------------------------------------------ ragged

int tessera_batch_prefill_ragged_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                                int64_t head_dim, int64_t max_batch_size,
                                                int64_t max_total_qo_tokens, int device_id,
                                                size_t* bytes) {
  return guarded([&] {
    size_t& result = required_output(bytes, "bytes");
    result = tessera::BatchPrefillWithRaggedKVCache::workspace_size_bytes(
        {num_qo_heads, num_kv_heads, head_dim, 0}, {max_batch_size, max_total_qo_tokens},
        device_id);
  });
}

int tessera_batch_prefill_ragged_min_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                                    int64_t head_dim, int64_t max_batch_size,
                                                    int64_t max_total_qo_tokens, int device_id,
                                                    size_t* bytes) {
  return tessera_batch_prefill_ragged_min_workspace_size_with_head_dims(
      num_qo_heads, num_kv_heads, head_dim, /*head_dim_vo=*/0, max_batch_size,
      max_total_qo_tokens, device_id, bytes);
}

int tessera_batch_prefill_ragged_min_workspace_size_with_head_dims(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim_qk, int64_t head_dim_vo,
    int64_t max_batch_size, int64_t max_total_qo_tokens, int device_id, size_t* bytes) {
  return guarded([&] {
    size_t& result = required_output(bytes, "bytes");
    tessera::PrefillPlanShape shape{num_qo_heads, num_kv_heads, head_dim_qk, 0};
    shape.head_dim_vo = head_dim_vo;
    result = tessera::BatchPrefillWithRaggedKVCache::min_workspace_size_bytes(
        shape, {max_batch_size, max_total_qo_tokens}, device_id);
  });
}

int tessera_batch_prefill_ragged_create(int64_t num_qo_heads, int64_t num_kv_heads,
                                        int64_t head_dim, int64_t max_batch_size,
                                        int64_t max_total_qo_tokens, void* workspace,
                                        size_t workspace_bytes, int device_id,
                                        TesseraBatchPrefillRagged** handle) {
  return tessera_batch_prefill_ragged_create_with_backend(
      num_qo_heads, num_kv_heads, head_dim, max_batch_size, max_total_qo_tokens, workspace,
      workspace_bytes, device_id, /*backend=*/0, handle);
}

int tessera_batch_prefill_ragged_create_with_backend(int64_t num_qo_heads, int64_t num_kv_heads,
                                                     int64_t head_dim, int64_t max_batch_size,
                                                     int64_t max_total_qo_tokens,
                                                     void* workspace, size_t workspace_bytes,
                                                     int device_id, int backend,
                                                     TesseraBatchPrefillRagged** handle) {
  return tessera_batch_prefill_ragged_create_with_head_dims(
      num_qo_heads, num_kv_heads, head_dim, /*head_dim_vo=*/0, max_batch_size,
      max_total_qo_tokens, workspace, workspace_bytes, device_id, backend, handle);
}

int tessera_batch_prefill_ragged_create_with_head_dims(int64_t num_qo_heads, int64_t num_kv_heads,
                                                       int64_t head_dim_qk, int64_t head_dim_vo,
                                                       int64_t max_batch_size,
                                                       int64_t max_total_qo_tokens,
                                                       void* workspace, size_t workspace_bytes,
                                                       int device_id, int backend,
                                                       TesseraBatchPrefillRagged** handle) {
  return guarded([&] {
    auto& result = required_output(handle, "handle");
    tessera::PrefillPlanShape shape{num_qo_heads, num_kv_heads, head_dim_qk, 0,
                                    prefill_backend_of(backend, "backend")};
    shape.head_dim_vo = head_dim_vo;
    result = new TesseraBatchPrefillRagged{tessera::BatchPrefillWithRaggedKVCache(
        shape, {max_batch_size, max_total_qo_tokens}, workspace, workspace_bytes, device_id)};
  });
}

void tessera_batch_prefill_ragged_destroy(TesseraBatchPrefillRagged* handle) { delete handle; }

int tessera_batch_prefill_ragged_plan(TesseraBatchPrefillRagged* handle, const int32_t* qo_indptr,
                                      int64_t qo_indptr_len, const int32_t* kv_indptr,
                                      int64_t kv_indptr_len, int causal, void* stream) {
  return guarded([&] {
    required_handle(handle, "handle")
        .wrapper.plan(host_span(qo_indptr, qo_indptr_len, "qo_indptr"),
                      host_span(kv_indptr, kv_indptr_len, "kv_indptr"), causal != 0,
                      stream_of(stream));
  });
}

int tessera_batch_prefill_ragged_run(TesseraBatchPrefillRagged* handle, const DLTensor* q,
                                     const DLTensor* k, const DLTensor* v,
                                     const DLTensor* qo_indptr, const DLTensor* kv_indptr,
                                     const DLTensor* out, const DLTensor* lse,
                                     const TesseraAttentionOptions* options, void* stream,
                                     int validate) {
  return guarded([&] {
    required_handle(handle, "handle")
        .wrapper.run(required(q, "q"), required(k, "k"), required(v, "v"),
                     required(qo_indptr, "qo_indptr"), required(kv_indptr, "kv_indptr"),
                     required(out, "out"), lse, attention_options_of(options), stream_of(stream),
                     tessera::capi::validate_of(validate));
  });
}

int tessera_batch_prefill_ragged_run_flat(TesseraBatchPrefillRagged* handle,
                                          const int64_t* tensors,
                                          const TesseraAttentionOptions* options, void* stream,
                                          int validate) {
  return guarded([&] {
    auto& plan = required_handle(handle, "handle");
    const tessera::capi::FlatTensors<7> t(tensors);
    plan.wrapper.run(t.get(2, "q"), t.get(3, "k"), t.get(4, "v"), t.get(0, "qo_indptr"),
                     t.get(1, "kv_indptr"), t.get(5, "out"), t.optional(6),
                     attention_options_of(options), stream_of(stream),
                     tessera::capi::validate_of(validate));
  });
}

// ------------------------------------------------------------------- paged

int tessera_batch_prefill_paged_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                               int64_t head_dim, int64_t page_size,
                                               int64_t max_batch_size,
                                               int64_t max_total_qo_tokens, int device_id,
                                               size_t* bytes) {
  return guarded([&] {
    size_t& result = required_output(bytes, "bytes");
    result = tessera::BatchPrefillWithPagedKVCache::workspace_size_bytes(
        {num_qo_heads, num_kv_heads, head_dim, page_size}, {max_batch_size, max_total_qo_tokens},
        device_id);
  });
}

int tessera_batch_prefill_paged_min_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                                   int64_t head_dim, int64_t page_size,
                                                   int64_t max_batch_size,
                                                   int64_t max_total_qo_tokens, int device_id,
                                                   size_t* bytes) {
  return guarded([&] {
    size_t& result = required_output(bytes, "bytes");
    result = tessera::BatchPrefillWithPagedKVCache::min_workspace_size_bytes(
        {num_qo_heads, num_kv_heads, head_dim, page_size}, {max_batch_size, max_total_qo_tokens},
        device_id);
  });
}

int tessera_batch_prefill_paged_create(int64_t num_qo_heads, int64_t num_kv_heads,
                                       int64_t head_dim, int64_t page_size,
                                       int64_t max_batch_size, int64_t max_total_qo_tokens,
                                       void* workspace, size_t workspace_bytes, int device_id,
                                       TesseraBatchPrefillPaged** handle) {
  return tessera_batch_prefill_paged_create_with_backend(
      num_qo_heads, num_kv_heads, head_dim, page_size, max_batch_size, max_total_qo_tokens,
      workspace, workspace_bytes, device_id, /*backend=*/0, handle);
}

int tessera_batch_prefill_paged_create_with_backend(int64_t num_qo_heads, int64_t num_kv_heads,
                                                    int64_t head_dim, int64_t page_size,
                                                    int64_t max_batch_size,
                                                    int64_t max_total_qo_tokens,
                                                    void* workspace, size_t workspace_bytes,
                                                    int device_id, int backend,
                                                    TesseraBatchPrefillPaged** handle) {
  return guarded([&] {
    auto& result = required_output(handle, "handle");
    const tessera::PrefillPlanShape shape{num_qo_heads, num_kv_heads, head_dim, page_size,
                                          prefill_backend_of(backend, "backend")};
    result = new TesseraBatchPrefillPaged{tessera::BatchPrefillWithPagedKVCache(
        shape, {max_batch_size, max_total_qo_tokens}, workspace, workspace_bytes, device_id)};
  });
}

void tessera_batch_prefill_paged_destroy(TesseraBatchPrefillPaged* handle) { delete handle; }

int tessera_batch_prefill_paged_plan(TesseraBatchPrefillPaged* handle, const int32_t* qo_indptr,
                                     int64_t qo_indptr_len, const int32_t* kv_indptr,
                                     int64_t kv_indptr_len, const int32_t* kv_last_page_len,
                                     int64_t kv_last_page_len_len, int causal, void* stream) {
  return guarded([&] {
    required_handle(handle, "handle")
        .wrapper.plan(host_span(qo_indptr, qo_indptr_len, "qo_indptr"),
                      host_span(kv_indptr, kv_indptr_len, "kv_indptr"),
                      host_span(kv_last_page_len, kv_last_page_len_len, "kv_last_page_len"),
                      causal != 0, stream_of(stream));
  });
}

int tessera_batch_prefill_paged_run(TesseraBatchPrefillPaged* handle, const DLTensor* q,
                                    const TesseraPagedKV* paged_kv_cache,
                                    const DLTensor* kv_indices, const DLTensor* qo_indptr,
                                    const DLTensor* kv_indptr, const DLTensor* kv_last_page_len,
                                    const DLTensor* out, const DLTensor* lse,
                                    const TesseraAttentionOptions* options, void* stream,
                                    int validate) {
  return guarded([&] {
    required_handle(handle, "handle")
        .wrapper.run(required(q, "q"), tessera::capi::paged_kv_of(paged_kv_cache, "paged_kv_cache"),
                     required(kv_indices, "kv_indices"), required(qo_indptr, "qo_indptr"),
                     required(kv_indptr, "kv_indptr"),
                     required(kv_last_page_len, "kv_last_page_len"), required(out, "out"), lse,
                     attention_options_of(options), stream_of(stream),
                     tessera::capi::validate_of(validate));
  });
}

int tessera_batch_prefill_paged_run_flat(TesseraBatchPrefillPaged* handle,
                                         const int64_t* tensors, int layout,
                                         const TesseraAttentionOptions* options, void* stream,
                                         int validate) {
  return guarded([&] {
    auto& plan = required_handle(handle, "handle");
    const tessera::capi::FlatTensors<9> t(tensors);
    plan.wrapper.run(t.get(4, "q"),
                     tessera::capi::flat_paged_kv(t.get(5, "paged_kv_cache"), t.optional(6),
                                                  layout),
                     t.get(0, "kv_indices"), t.get(1, "qo_indptr"), t.get(2, "kv_indptr"),
                     t.get(3, "kv_last_page_len"), t.get(7, "out"), t.optional(8),
                     attention_options_of(options), stream_of(stream),
                     tessera::capi::validate_of(validate));
  });
}

// ------------------------------------------------------------ block sparse

int tessera_block_sparse_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                        int64_t head_dim, int64_t block_rows, int64_t block_cols,
                                        int64_t max_block_rows, int device_id, size_t* bytes) {
  return guarded([&] {
    size_t& result = required_output(bytes, "bytes");
    result = tessera::BlockSparseAttention::workspace_size_bytes(
        sparse_shape(num_qo_heads, num_kv_heads, head_dim, block_rows, block_cols),
        {max_block_rows}, device_id);
  });
}

int tessera_block_sparse_min_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                            int64_t head_dim, int64_t block_rows,
                                            int64_t block_cols, int64_t max_block_rows,
                                            int device_id, size_t* bytes) {
  return guarded([&] {
    size_t& result = required_output(bytes, "bytes");
    result = tessera::BlockSparseAttention::min_workspace_size_bytes(
        sparse_shape(num_qo_heads, num_kv_heads, head_dim, block_rows, block_cols),
        {max_block_rows}, device_id);
  });
}

int tessera_block_sparse_create(int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim,
                                int64_t block_rows, int64_t block_cols, int64_t max_block_rows,
                                void* workspace, size_t workspace_bytes, int device_id,
                                TesseraBlockSparse** handle) {
  return tessera_block_sparse_create_with_backend(num_qo_heads, num_kv_heads, head_dim,
                                                  block_rows, block_cols, max_block_rows,
                                                  workspace, workspace_bytes, device_id,
                                                  /*backend=*/0, handle);
}

int tessera_block_sparse_create_with_backend(int64_t num_qo_heads, int64_t num_kv_heads,
                                             int64_t head_dim, int64_t block_rows,
                                             int64_t block_cols, int64_t max_block_rows,
                                             void* workspace, size_t workspace_bytes,
                                             int device_id, int backend,
                                             TesseraBlockSparse** handle) {
  return guarded([&] {
    auto& result = required_output(handle, "handle");
    tessera::BlockSparseShape shape =
        sparse_shape(num_qo_heads, num_kv_heads, head_dim, block_rows, block_cols);
    shape.backend = prefill_backend_of(backend, "backend");
    result = new TesseraBlockSparse{tessera::BlockSparseAttention(
        shape, {max_block_rows}, workspace, workspace_bytes, device_id)};
  });
}

void tessera_block_sparse_destroy(TesseraBlockSparse* handle) { delete handle; }

int tessera_block_sparse_plan(TesseraBlockSparse* handle, const int32_t* indptr, int64_t indptr_len,
                              const int32_t* indices, int64_t indices_len, int causal,
                              void* stream) {
  return guarded([&] {
    required_handle(handle, "handle")
        .wrapper.plan(host_span(indptr, indptr_len, "indptr"),
                      host_span(indices, indices_len, "indices"), stream_of(stream), causal != 0);
  });
}

int tessera_block_sparse_run(TesseraBlockSparse* handle, const DLTensor* q, const DLTensor* k,
                             const DLTensor* v, const DLTensor* indptr, const DLTensor* indices,
                             const DLTensor* out, const DLTensor* lse,
                             const TesseraAttentionOptions* options, void* stream, int validate) {
  return guarded([&] {
    required_handle(handle, "handle")
        .wrapper.run(required(q, "q"), required(k, "k"), required(v, "v"),
                     required(indptr, "indptr"), required(indices, "indices"),
                     required(out, "out"), lse, attention_options_of(options), stream_of(stream),
                     tessera::capi::validate_of(validate));
  });
}

}  // extern "C"
