#include "api/contiguous_kv.h"

#include <limits>
#include <string>

#include "tessera/core/error.h"

namespace tessera::detail {

ContiguousKV resolve_contiguous_kv(const TensorView& k, const TensorView& v, KVLayout layout,
                                   int64_t num_qo_heads) {
  const bool nhd = layout == KVLayout::kNHD;
  TESSERA_CHECK_ARG(nhd || layout == KVLayout::kHND, "layout", "kNHD or kHND",
                    std::to_string(static_cast<int>(layout)));
  expect_same_dtype(k, v);
  expect_same_shape(k, v);
  for (int d = 0; d < 2; ++d) {
    TESSERA_CHECK_ARG(k.size(d) <= 1 || k.stride(d) == v.stride(d), "v",
                      "the strides of k (stride " + std::to_string(k.stride(d)) + " at dim " +
                          std::to_string(d) + ")",
                      "stride " + std::to_string(v.stride(d)));
  }
  const int kv_len_dim = nhd ? 0 : 1;
  const int head_dim_index = nhd ? 1 : 0;
  const ContiguousKV out{k.size(kv_len_dim), k.size(head_dim_index), k.stride(kv_len_dim),
                         k.stride(head_dim_index)};
  TESSERA_CHECK_ARG(out.num_kv_heads >= 1 && num_qo_heads % out.num_kv_heads == 0, "k",
                    "num_kv_heads >= 1 dividing num_qo_heads " + std::to_string(num_qo_heads),
                    "num_kv_heads " + std::to_string(out.num_kv_heads));
  TESSERA_CHECK_ARG(out.kv_len <= std::numeric_limits<int32_t>::max(), "k", "kv_len < 2^31",
                    std::to_string(out.kv_len));
  return out;
}

void expect_rows_aligned16(const TensorView& t) {
  TESSERA_CHECK_ARG(t.numel() == 0 || t.rows_aligned_to(16), t.name(),
                    "16-byte aligned data and strides (the kernel moves 16-byte rows)",
                    "unaligned data or strides");
}

TensorView output_like_q(const DLTensor& out, const TensorView& q) {
  const TensorView ov(out, "out");
  ov.expect_ndim(q.ndim()).expect_cuda().expect_last_dim_contiguous();
  expect_same_dtype(q, ov);
  expect_same_shape(q, ov);
  expect_same_device(q, ov);
  expect_identical_or_disjoint(q, ov);
  return ov;
}

TensorView output_like_q(const DLTensor& out, const TensorView& q, int64_t head_dim_vo) {
  const int last = q.ndim() - 1;
  if (head_dim_vo == q.size(last)) return output_like_q(out, q);
  const TensorView ov(out, "out");
  ov.expect_ndim(q.ndim()).expect_cuda().expect_last_dim_contiguous();
  expect_same_dtype(q, ov);
  for (int d = 0; d < last; ++d) ov.expect_size(d, q.size(d), "q's");
  ov.expect_size(last, head_dim_vo, "head_dim_vo (v's head dim)");
  expect_same_device(q, ov);
  expect_identical_or_disjoint(q, ov);
  return ov;
}

}  // namespace tessera::detail
