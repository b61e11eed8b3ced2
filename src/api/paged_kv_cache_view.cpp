#include "api/paged_kv_cache_view.h"

#include <string>

#include "api/index_tensor.h"
#include "tessera/core/error.h"

namespace tessera::detail {

namespace {
constexpr const char* kCombinedName = "paged_kv_cache";
constexpr const char* kKeyName = "paged_k_cache";
constexpr const char* kValueName = "paged_v_cache";
}  // namespace

ResolvedPagedKV resolve_paged_kv_cache(const PagedKVCacheArg& cache) {
  const bool nhd = cache.layout() == KVLayout::kNHD;
  ResolvedPagedKV out{};
  if (cache.is_combined()) {
    const TensorView kv(cache.first(), kCombinedName);
    kv.expect_ndim(5).expect_cuda().expect_last_dim_contiguous();
    kv.expect_size(1, 2, "the K/V axis (2)");
    out.dtype = kv.dtype();
    out.device = kv.device();
    out.k_data = kv.data();
    out.v_data = static_cast<char*>(kv.data()) + kv.stride(1) * dtype_size_bytes(kv.dtype());
    out.num_pages = kv.size(0);
    out.page_size = nhd ? kv.size(2) : kv.size(3);
    out.num_heads = nhd ? kv.size(3) : kv.size(2);
    out.head_dim = kv.size(4);
    out.stride_page = kv.stride(0);
    out.stride_entry = nhd ? kv.stride(2) : kv.stride(3);
    out.stride_head = nhd ? kv.stride(3) : kv.stride(2);
    out.name = kCombinedName;
  } else {
    const TensorView k(cache.first(), kKeyName);
    const TensorView v(cache.v_data(), kValueName);
    k.expect_ndim(4).expect_cuda().expect_last_dim_contiguous();
    v.expect_ndim(4).expect_cuda().expect_last_dim_contiguous();
    expect_same_dtype(k, v);
    expect_same_shape(k, v);
    expect_same_device(k, v);
    for (int d = 0; d < 3; ++d) {
      TESSERA_CHECK_ARG(k.size(d) <= 1 || k.stride(d) == v.stride(d), kValueName,
                        "the strides of paged_k_cache (stride " + std::to_string(k.stride(d)) +
                            " at dim " + std::to_string(d) + ")",
                        "stride " + std::to_string(v.stride(d)));
    }
    out.dtype = k.dtype();
    out.device = k.device();
    out.k_data = k.data();
    out.v_data = v.data();
    out.num_pages = k.size(0);
    out.page_size = nhd ? k.size(1) : k.size(2);
    out.num_heads = nhd ? k.size(2) : k.size(1);
    out.head_dim = k.size(3);
    out.stride_page = k.stride(0);
    out.stride_entry = nhd ? k.stride(1) : k.stride(2);
    out.stride_head = nhd ? k.stride(2) : k.stride(1);
    out.name = kKeyName;
  }
  TESSERA_CHECK_ARG(out.page_size >= 1, out.name, "page_size >= 1",
                    "page_size " + std::to_string(out.page_size));
  TESSERA_CHECK_ARG(out.num_heads >= 1, out.name, "num_kv_heads >= 1",
                    "num_kv_heads " + std::to_string(out.num_heads));
  TESSERA_CHECK_ARG(out.head_dim >= 1, out.name, "head_dim >= 1",
                    "head_dim " + std::to_string(out.head_dim));
  return out;
}

void expect_cache_matches_plan(const ResolvedPagedKV& cache, int64_t num_kv_heads,
                               int64_t head_dim, int64_t page_size) {
  TESSERA_CHECK_ARG(cache.num_heads == num_kv_heads, cache.name,
                    "num_kv_heads " + std::to_string(num_kv_heads) + " (the plan shape)",
                    "num_kv_heads " + std::to_string(cache.num_heads));
  TESSERA_CHECK_ARG(cache.head_dim == head_dim, cache.name,
                    "head_dim " + std::to_string(head_dim) + " (the plan shape)",
                    "head_dim " + std::to_string(cache.head_dim));
  TESSERA_CHECK_ARG(cache.page_size == page_size, cache.name,
                    "page_size " + std::to_string(page_size) + " (the plan shape)",
                    "page_size " + std::to_string(cache.page_size));
}

bool rows_aligned16(const ResolvedPagedKV& cache) {
  const auto element_bytes = static_cast<int64_t>(dtype_size_bytes(cache.dtype));
  const auto aligned = [](int64_t bytes) { return bytes % 16 == 0; };
  return reinterpret_cast<uintptr_t>(cache.k_data) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(cache.v_data) % 16 == 0 &&
         aligned(cache.stride_page * element_bytes) &&
         aligned(cache.stride_entry * element_bytes) && aligned(cache.stride_head * element_bytes);
}

void expect_rows_aligned16(const ResolvedPagedKV& cache) {
  TESSERA_CHECK_ARG(rows_aligned16(cache), cache.name,
                    "16-byte aligned data and page/entry/head strides", "an unaligned KV cache");
}

PagedIndexViews resolve_paged_indices(const DLTensor& kv_indices, const DLTensor& kv_indptr,
                                      const DLTensor& kv_last_page_len, const TensorView& reference,
                                      int64_t batch, int64_t planned_pages) {
  PagedIndexViews v{index_view(kv_indices, "kv_indices", reference),
                    index_view(kv_indptr, "kv_indptr", reference),
                    index_view(kv_last_page_len, "kv_last_page_len", reference)};
  TESSERA_CHECK_ARG(v.indptr.size(0) >= batch + 1, "kv_indptr",
                    "at least batch_size + 1 = " + std::to_string(batch + 1) + " entries",
                    std::to_string(v.indptr.size(0)));
  TESSERA_CHECK_ARG(v.last_page_len.size(0) >= batch, "kv_last_page_len",
                    "at least batch_size = " + std::to_string(batch) + " entries",
                    std::to_string(v.last_page_len.size(0)));
  TESSERA_CHECK_ARG(v.indices.numel() >= planned_pages, "kv_indices",
                    "at least kv_indptr[batch] = " + std::to_string(planned_pages) +
                        " page indices (as plan() saw)",
                    std::to_string(v.indices.numel()) + " page indices");
  return v;
}

}  // namespace tessera::detail
