// Host entry points for paged KV-cache maintenance: argument validation,
// kernel choice (16-byte vector path or scalar fallback), launch.
#include "tessera/api/page.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "api/page_validation.h"
#include "api/index_tensor.h"
#include "api/paged_kv_cache_view.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"
#include "tessera/page/append_paged_kv.cuh"
#include "tessera/page/batch_indices.cuh"

namespace tessera {

namespace {

using detail::copy_to_host;
using detail::index_view;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// Everything the launch needs, resolved and validated on the host.
struct AppendLaunch {
  bool vectorized;
  int64_t nnz;
  int64_t num_items_wide;    // (token, head, chunk) items on the wide path
  int64_t num_items_scalar;  // items on the scalar path
};

bool is_half_type(DType dtype) { return dtype == DType::kFloat16 || dtype == DType::kBFloat16; }

// The wide path needs head_dim a multiple of the vector and every address a
// thread touches aligned to its vector: data pointers and row strides of the
// append tensors (input vector bytes) and of the cache (cache vector bytes).
bool cache_aligned_to(const detail::ResolvedPagedKV& cache, std::size_t bytes) {
  const std::size_t element = dtype_size_bytes(cache.dtype);
  const auto aligned_stride = [&](int64_t size, int64_t stride) {
    return size <= 1 || (static_cast<std::size_t>(stride) * element) % bytes == 0;
  };
  return reinterpret_cast<uintptr_t>(cache.k_data) % bytes == 0 &&
         reinterpret_cast<uintptr_t>(cache.v_data) % bytes == 0 &&
         aligned_stride(cache.num_pages, cache.stride_page) &&
         aligned_stride(cache.page_size, cache.stride_entry) &&
         aligned_stride(cache.num_heads, cache.stride_head);
}

template <typename In, typename Out>
void launch_append(const TensorView& key, const TensorView& value,
                   const detail::ResolvedPagedKV& cache, const TensorView& batch_indices,
                   const TensorView& positions, const TensorView& kv_indices,
                   const TensorView& kv_indptr, const AppendLaunch& launch, cudaStream_t stream) {
  constexpr int kWide = page::kAppendWideVecSize<In, Out>;
  page::AppendPagedKVParams<In, Out> params{};
  params.append_key = key.data_as<const In>();
  params.append_value = value.data_as<const In>();
  params.key_stride_token = key.stride(0);
  params.key_stride_head = key.stride(1);
  params.value_stride_token = value.stride(0);
  params.value_stride_head = value.stride(1);
  params.cache.k_data = static_cast<Out*>(cache.k_data);
  params.cache.v_data = static_cast<Out*>(cache.v_data);
  params.cache.stride_page = cache.stride_page;
  params.cache.stride_entry = cache.stride_entry;
  params.cache.stride_head = cache.stride_head;
  params.cache.page_size = static_cast<int32_t>(cache.page_size);
  params.cache.num_heads = static_cast<int32_t>(cache.num_heads);
  params.cache.head_dim = static_cast<int32_t>(cache.head_dim);
  params.batch_indices = batch_indices.data_as<const int32_t>();
  params.positions = positions.data_as<const int32_t>();
  params.kv_indices = kv_indices.data_as<const int32_t>();
  params.kv_indptr = kv_indptr.data_as<const int32_t>();
  params.num_kv_indices = kv_indices.numel();
  // Page indices are int32, so a cache with more pages than that behaves the same.
  params.num_pages = static_cast<int32_t>(std::min(cache.num_pages, kInt32Max));
  params.batch_size = static_cast<int32_t>(kv_indptr.numel() - 1);
  params.nnz = static_cast<int32_t>(launch.nnz);

  const int vec = launch.vectorized ? kWide : 1;
  params.chunks_per_row = static_cast<int32_t>(cache.head_dim / vec);
  const int64_t items = launch.vectorized ? launch.num_items_wide : launch.num_items_scalar;
  const auto blocks =
      static_cast<unsigned>((items + page::kAppendBlockThreads - 1) / page::kAppendBlockThreads);
  if (launch.vectorized) {
    page::append_paged_kv_kernel<In, Out, kWide>
        <<<blocks, page::kAppendBlockThreads, 0, stream>>>(params);
  } else {
    page::append_paged_kv_kernel<In, Out, 1>
        <<<blocks, page::kAppendBlockThreads, 0, stream>>>(params);
  }
  TESSERA_CHECK_LAUNCH();
}

}  // namespace

void get_batch_indices_positions(const DLTensor& append_indptr, const DLTensor& seq_lens,
                                 const DLTensor& batch_indices, const DLTensor& positions,
                                 cudaStream_t stream) {
  TensorView indptr(append_indptr, "append_indptr");
  indptr.expect_dtype({DType::kInt32}).expect_ndim(1).expect_cuda().expect_contiguous();
  const TensorView lens = index_view(seq_lens, "seq_lens", indptr);
  const TensorView out_batch = index_view(batch_indices, "batch_indices", indptr);
  const TensorView out_positions = index_view(positions, "positions", indptr);
  const int64_t batch = lens.numel();
  indptr.expect_size(0, batch + 1, "batch_size + 1 (seq_lens has batch_size)");
  const int64_t nnz = out_batch.numel();
  out_positions.expect_size(0, nnz, "nnz (the length of batch_indices)");
  TESSERA_CHECK_ARG(nnz <= kInt32Max, "batch_indices", "at most 2^31 - 1 tokens",
                    std::to_string(nnz) + " tokens");
  TESSERA_CHECK_ARG(batch <= kInt32Max - 1, "seq_lens", "at most 2^31 - 2 requests",
                    std::to_string(batch) + " requests");
  TESSERA_CHECK_ARG(nnz == 0 || batch > 0, "seq_lens", "at least one request when nnz > 0",
                    "no requests for " + std::to_string(nnz) + " tokens");
  if (nnz == 0) return;

  DeviceGuard guard(indptr.device().device_id);
  const auto blocks = static_cast<unsigned>((nnz + page::kBatchIndicesBlockThreads - 1) /
                                            page::kBatchIndicesBlockThreads);
  page::batch_indices_positions_kernel<<<blocks, page::kBatchIndicesBlockThreads, 0, stream>>>(
      indptr.data_as<const int32_t>(), lens.data_as<const int32_t>(), out_batch.data_as<int32_t>(),
      out_positions.data_as<int32_t>(), static_cast<int32_t>(batch), static_cast<int32_t>(nnz));
  TESSERA_CHECK_LAUNCH();
}

void append_paged_kv_cache(const DLTensor& append_key, const DLTensor& append_value,
                           const DLTensor& batch_indices, const DLTensor& positions,
                           const PagedKVCacheArg& paged_kv_cache, const DLTensor& kv_indices,
                           const DLTensor& kv_indptr, const DLTensor& kv_last_page_len,
                           cudaStream_t stream, Validate validate) {
  const std::initializer_list<DType> kStorageTypes = {DType::kFloat16, DType::kBFloat16,
                                                      DType::kFloat8E4M3, DType::kFloat8E5M2};
  const TensorView key(append_key, "append_key");
  key.expect_ndim(3).expect_cuda().expect_last_dim_contiguous().expect_dtype(kStorageTypes);
  const TensorView value(append_value, "append_value");
  value.expect_ndim(3).expect_cuda().expect_last_dim_contiguous();
  expect_same_dtype(key, value);
  expect_same_shape(key, value);
  expect_same_device(key, value);

  const detail::ResolvedPagedKV cache = detail::resolve_paged_kv_cache(paged_kv_cache);
  const TensorView cache_view(paged_kv_cache.first(), cache.name);
  cache_view.expect_dtype(kStorageTypes);
  expect_same_device(key, cache_view);
  const bool dtype_ok =
      key.dtype() == cache.dtype || (is_float8(cache.dtype) && is_half_type(key.dtype()));
  TESSERA_CHECK_ARG(dtype_ok, "append_key",
                    std::string("dtype ") + dtype_name(cache.dtype) +
                        " (the cache's), or float16/bfloat16 into a float8_e4m3fn or "
                        "float8_e5m2 cache",
                    dtype_name(key.dtype()));
  key.expect_size(1, cache.num_heads, "num_kv_heads of the cache");
  key.expect_size(2, cache.head_dim, "head_dim of the cache");

  const TensorView batch_view = index_view(batch_indices, "batch_indices", key);
  const TensorView positions_view = index_view(positions, "positions", key);
  const TensorView kv_indices_view = index_view(kv_indices, "kv_indices", key);
  const TensorView kv_indptr_view = index_view(kv_indptr, "kv_indptr", key);
  const TensorView last_page_view = index_view(kv_last_page_len, "kv_last_page_len", key);
  const int64_t nnz = key.size(0);
  const int64_t batch = last_page_view.numel();
  batch_view.expect_size(0, nnz, "nnz (tokens in append_key)");
  positions_view.expect_size(0, nnz, "nnz (tokens in append_key)");
  kv_indptr_view.expect_size(0, batch + 1, "batch_size + 1 (kv_last_page_len has batch_size)");

  // int32 index math in the kernel: the (token, head, element) count and the
  // cache's per-page sizes must fit.
  const int64_t items_scalar = nnz * cache.num_heads * cache.head_dim;
  TESSERA_CHECK_ARG(items_scalar <= kInt32Max, "append_key", "at most 2^31 - 1 elements per tensor",
                    std::to_string(items_scalar));
  TESSERA_CHECK_ARG(cache.page_size <= kInt32Max, cache.name, "page_size below 2^31",
                    std::to_string(cache.page_size));
  TESSERA_CHECK_ARG(batch <= kInt32Max - 1, "kv_last_page_len", "at most 2^31 - 2 requests",
                    std::to_string(batch) + " requests");
  if (nnz == 0) return;

  DeviceGuard guard(key.device().device_id);
  if (validation_requested(validate)) {
    const std::vector<int32_t> host_batch = copy_to_host(batch_view, stream);
    const std::vector<int32_t> host_positions = copy_to_host(positions_view, stream);
    const std::vector<int32_t> host_kv_indices = copy_to_host(kv_indices_view, stream);
    const std::vector<int32_t> host_kv_indptr = copy_to_host(kv_indptr_view, stream);
    const std::vector<int32_t> host_last_page = copy_to_host(last_page_view, stream);
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
    detail::validate_append_indices(
        {host_batch, host_positions, host_kv_indices, host_kv_indptr, host_last_page},
        cache.num_pages, cache.page_size);
  }

  AppendLaunch launch{};
  launch.nnz = nnz;
  launch.num_items_scalar = items_scalar;
  const std::size_t in_bytes = dtype_size_bytes(key.dtype());
  const std::size_t out_bytes = dtype_size_bytes(cache.dtype);
  const auto wide = static_cast<int64_t>(page::kAppendVectorBytes / std::max(in_bytes, out_bytes));
  launch.num_items_wide = items_scalar / wide;
  launch.vectorized = cache.head_dim % wide == 0 &&
                      key.rows_aligned_to(static_cast<std::size_t>(wide) * in_bytes) &&
                      value.rows_aligned_to(static_cast<std::size_t>(wide) * in_bytes) &&
                      cache_aligned_to(cache, static_cast<std::size_t>(wide) * out_bytes);

  const auto dispatch = [&]<typename In, typename Out>() {
    launch_append<In, Out>(key, value, cache, batch_view, positions_view, kv_indices_view,
                           kv_indptr_view, launch, stream);
  };
  // The AOT set: same-dtype copies, and fp16/bf16 into an fp8 cache.
  if (cache.dtype == key.dtype()) {
    switch (cache.dtype) {
      case DType::kFloat16:
        dispatch.template operator()<half_t, half_t>();
        break;
      case DType::kBFloat16:
        dispatch.template operator()<bfloat16_t, bfloat16_t>();
        break;
      default:  // a byte copy: one kernel serves both fp8 formats
        dispatch.template operator()<fp8_e4m3_t, fp8_e4m3_t>();
        break;
    }
  } else if (cache.dtype == DType::kFloat8E4M3) {
    if (key.dtype() == DType::kFloat16) {
      dispatch.template operator()<half_t, fp8_e4m3_t>();
    } else {
      dispatch.template operator()<bfloat16_t, fp8_e4m3_t>();
    }
  } else if (key.dtype() == DType::kFloat16) {
    dispatch.template operator()<half_t, fp8_e5m2_t>();
  } else {
    dispatch.template operator()<bfloat16_t, fp8_e5m2_t>();
  }
}

}  // namespace tessera
