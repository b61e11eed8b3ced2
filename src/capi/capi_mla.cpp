// C ABI of MLA attention (tessera/api/mla.h).
#include <span>

#include "capi/capi_support.h"
#include "tessera/api/mla.h"

using tessera::capi::guarded;
using tessera::capi::host_span;
using tessera::capi::required;

struct TesseraBatchMla {
  tessera::BatchMlaPagedAttention wrapper;
};

namespace {

tessera::MlaPlanShape mla_shape(int64_t num_heads, int64_t head_dim_ckv, int64_t head_dim_kpe,
                                int64_t page_size) {
  tessera::MlaPlanShape shape;
  shape.num_heads = num_heads;
  shape.head_dim_ckv = head_dim_ckv;
  shape.head_dim_kpe = head_dim_kpe;
  shape.page_size = page_size;
  return shape;
}

}  // namespace

extern "C" {

int tessera_batch_mla_workspace_size(int64_t num_heads, int64_t head_dim_ckv, int64_t head_dim_kpe,
                                     int64_t page_size, int64_t max_batch_size,
                                     int64_t max_total_qo_tokens, int minimum, int device_id,
                                     size_t* bytes) {
  return guarded([&] {
    size_t& result = tessera::capi::required_output(bytes, "bytes");
    const tessera::MlaPlanShape shape = mla_shape(num_heads, head_dim_ckv, head_dim_kpe, page_size);
    const tessera::MlaPlanBounds bounds{max_batch_size, max_total_qo_tokens};
    result =
        minimum != 0
            ? tessera::BatchMlaPagedAttention::min_workspace_size_bytes(shape, bounds, device_id)
            : tessera::BatchMlaPagedAttention::workspace_size_bytes(shape, bounds, device_id);
  });
}

int tessera_batch_mla_create(int64_t num_heads, int64_t head_dim_ckv, int64_t head_dim_kpe,
                             int64_t page_size, int64_t max_batch_size, int64_t max_total_qo_tokens,
                             void* workspace, size_t workspace_bytes, int device_id, int backend,
                             TesseraBatchMla** handle) {
  return guarded([&] {
    TesseraBatchMla*& result = tessera::capi::required_output(handle, "handle");
    tessera::MlaPlanShape shape = mla_shape(num_heads, head_dim_ckv, head_dim_kpe, page_size);
    shape.backend = tessera::capi::prefill_backend_of(backend, "backend");
    result = new TesseraBatchMla{tessera::BatchMlaPagedAttention(
        shape, {max_batch_size, max_total_qo_tokens}, workspace, workspace_bytes, device_id)};
  });
}

void tessera_batch_mla_destroy(TesseraBatchMla* handle) {
  delete handle;
}

int tessera_batch_mla_plan(TesseraBatchMla* handle, const int32_t* qo_indptr, int64_t qo_indptr_len,
                           const int32_t* kv_indptr, int64_t kv_indptr_len, const int32_t* kv_len,
                           int64_t kv_len_len, int causal, void* stream) {
  return guarded([&] {
    tessera::capi::required_handle(handle, "handle")
        .wrapper.plan(host_span(qo_indptr, qo_indptr_len, "qo_indptr"),
                      host_span(kv_indptr, kv_indptr_len, "kv_indptr"),
                      host_span(kv_len, kv_len_len, "kv_len"), causal != 0,
                      tessera::capi::stream_of(stream));
  });
}

int tessera_batch_mla_run(TesseraBatchMla* handle, const DLTensor* q_nope, const DLTensor* q_pe,
                          const DLTensor* ckv_cache, const DLTensor* kpe_cache,
                          const DLTensor* kv_indices, const DLTensor* qo_indptr,
                          const DLTensor* kv_indptr, const DLTensor* kv_len, const DLTensor* out,
                          const DLTensor* lse, double sm_scale, void* stream, int validate) {
  return guarded([&] {
    tessera::MlaRunOptions options;
    options.sm_scale = sm_scale;
    tessera::capi::required_handle(handle, "handle")
        .wrapper.run(required(q_nope, "q_nope"), required(q_pe, "q_pe"),
                     required(ckv_cache, "ckv_cache"), required(kpe_cache, "kpe_cache"),
                     required(kv_indices, "kv_indices"), required(qo_indptr, "qo_indptr"),
                     required(kv_indptr, "kv_indptr"), required(kv_len, "kv_len"),
                     required(out, "out"), lse, options, tessera::capi::stream_of(stream),
                     tessera::capi::validate_of(validate));
  });
}

}  // extern "C"
