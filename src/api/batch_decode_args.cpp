#include "api/batch_decode_args.h"

#include <algorithm>
#include <limits>
#include <string>

#include "tessera/core/error.h"

namespace tessera::detail {

namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxKvHeads = 65535;  // gridDim.y limit

}  // namespace

bool decode_head_dim_supported(int64_t head_dim) {
  return attention::supported_head_dim(head_dim);
}

void validate_decode_shape(const DecodePlanShape& shape) {
  TESSERA_CHECK_ARG(shape.num_qo_heads >= 1 && shape.num_qo_heads <= kInt32Max, "shape",
                    "num_qo_heads >= 1", "num_qo_heads " + std::to_string(shape.num_qo_heads));
  TESSERA_CHECK_ARG(shape.num_kv_heads >= 1 && shape.num_kv_heads <= kMaxKvHeads, "shape",
                    "num_kv_heads in [1, 65535] (the decode grid's y)", "num_kv_heads " + std::to_string(shape.num_kv_heads));
  TESSERA_CHECK_ARG(shape.num_qo_heads % shape.num_kv_heads == 0, "shape",
                    "num_qo_heads a multiple of num_kv_heads (" +
                        std::to_string(shape.num_kv_heads) + ")",
                    "num_qo_heads " + std::to_string(shape.num_qo_heads));
  TESSERA_CHECK_ARG(decode_head_dim_supported(shape.head_dim), "shape",
                    attention::kHeadDimsText, "head_dim " + std::to_string(shape.head_dim));
  TESSERA_CHECK_ARG(shape.page_size >= 1 && shape.page_size <= kInt32Max, "shape",
                    "page_size in [1, 2^31)", "page_size " + std::to_string(shape.page_size));
}

void validate_decode_bounds(const DecodePlanBounds& bounds) {
  TESSERA_CHECK_ARG(bounds.max_batch_size >= 1 && bounds.max_batch_size <= kInt32Max - 1,
                    "bounds", "max_batch_size in [1, 2^31 - 2]",
                    "max_batch_size " + std::to_string(bounds.max_batch_size));
  TESSERA_CHECK_ARG(bounds.max_work_units == 0 || (bounds.max_work_units >= bounds.max_batch_size &&
                                                   bounds.max_work_units <= kInt32Max),
                    "bounds",
                    "max_work_units 0 (derived from the GPU) or in [max_batch_size = " +
                        std::to_string(bounds.max_batch_size) + ", 2^31)",
                    "max_work_units " + std::to_string(bounds.max_work_units));
}

int64_t derived_max_work_units(int64_t max_batch_size, int64_t num_sms) {
  return std::min(kInt32Max, max_batch_size + num_sms * kDecodeCtasPerSm);
}

void plan_kv_lengths(std::span<const int32_t> kv_indptr, std::span<const int32_t> kv_last_page_len,
                     int64_t page_size, int64_t max_batch_size, std::vector<int64_t>& kv_lengths) {
  TESSERA_CHECK_ARG(!kv_indptr.empty(), "kv_indptr", "batch_size + 1 >= 1 values",
                    "an empty array");
  const std::size_t batch = kv_indptr.size() - 1;
  TESSERA_CHECK_ARG(static_cast<int64_t>(batch) <= max_batch_size, "kv_indptr",
                    "at most max_batch_size = " + std::to_string(max_batch_size) +
                        " requests (the bounds)",
                    std::to_string(batch) + " requests");
  TESSERA_CHECK_ARG(kv_last_page_len.size() == batch, "kv_last_page_len",
                    "length " + std::to_string(batch) + " (len(kv_indptr) - 1)",
                    "length " + std::to_string(kv_last_page_len.size()));
  TESSERA_CHECK_ARG(kv_indptr[0] == 0, "kv_indptr", "kv_indptr[0] = 0",
                    element_text("kv_indptr", 0, kv_indptr[0]));
  kv_lengths.resize(batch);
  for (std::size_t b = 0; b < batch; ++b) {
    const int64_t pages = static_cast<int64_t>(kv_indptr[b + 1]) - kv_indptr[b];
    TESSERA_CHECK_ARG(pages >= 0, "kv_indptr",
                      "non-decreasing values (kv_indptr[" + std::to_string(b) +
                          "] = " + std::to_string(kv_indptr[b]) + ")",
                      element_text("kv_indptr", b + 1, kv_indptr[b + 1]));
    const int32_t last = kv_last_page_len[b];
    const bool ok = pages > 0 ? (last >= 1 && last <= page_size) : (last >= 0 && last <= page_size);
    TESSERA_CHECK_ARG(ok, "kv_last_page_len",
                      pages > 0 ? "values in [1, page_size = " + std::to_string(page_size) +
                                      "] for a request with pages"
                                : "values in [0, page_size = " + std::to_string(page_size) +
                                      "] for a request with no pages",
                      element_text("kv_last_page_len", b, last));
    const int64_t len = pages == 0 ? 0 : (pages - 1) * page_size + last;
    TESSERA_CHECK_ARG(len <= kInt32Max, "kv_indptr", "KV lengths below 2^31 tokens",
                      std::to_string(len) + " tokens in request " + std::to_string(b));
    kv_lengths[b] = len;
  }
}

}  // namespace tessera::detail
