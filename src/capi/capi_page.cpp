// C ABI of paged KV-cache maintenance (tessera/api/page.h).
#include "capi/capi_support.h"
#include "tessera/api/page.h"

using tessera::capi::guarded;
using tessera::capi::required;
using tessera::capi::stream_of;

extern "C" {

int tessera_get_batch_indices_positions(const DLTensor* append_indptr, const DLTensor* seq_lens,
                                        const DLTensor* batch_indices, const DLTensor* positions,
                                        void* stream) {
  return guarded([&] {
    tessera::get_batch_indices_positions(
        required(append_indptr, "append_indptr"), required(seq_lens, "seq_lens"),
        required(batch_indices, "batch_indices"), required(positions, "positions"),
        stream_of(stream));
  });
}

int tessera_append_paged_kv_cache(const DLTensor* append_key, const DLTensor* append_value,
                                  const DLTensor* batch_indices, const DLTensor* positions,
                                  const TesseraPagedKV* paged_kv_cache,
                                  const DLTensor* kv_indices, const DLTensor* kv_indptr,
                                  const DLTensor* kv_last_page_len, void* stream, int validate) {
  return guarded([&] {
    tessera::append_paged_kv_cache(
        required(append_key, "append_key"), required(append_value, "append_value"),
        required(batch_indices, "batch_indices"), required(positions, "positions"),
        tessera::capi::paged_kv_of(paged_kv_cache, "paged_kv_cache"),
        required(kv_indices, "kv_indices"), required(kv_indptr, "kv_indptr"),
        required(kv_last_page_len, "kv_last_page_len"), stream_of(stream),
        tessera::capi::validate_of(validate));
  });
}

}  // extern "C"
