// BlockSparseAttention: block-sparse (BSR) attention as paged prefill. A block
// row of R queries is a request; a block column of C keys is a page of the K/V
// tensors viewed as [N / C, C, Hk, D]; the BSR row pointers and column ids are
// the pages' indptr and indices. The per-request arrays the paged kernel also
// reads (qo_indptr = i * R, last page length C) lead the workspace and are
// copied at plan() time; the paged wrapper takes the rest (so it may be given
// less than its full split-KV room, as the paged wrapper itself may).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "api/schedule_upload.h"
#include "plan/workspace_regions.h"
#include "tessera/api/prefill.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

constexpr int64_t kInt32Max = 2147483647;

using plan::align_region;

void validate_shape(const BlockSparseShape& shape, const BlockSparseBounds& bounds) {
  TESSERA_CHECK_ARG(shape.block_rows >= 1 && shape.block_cols >= 1 &&
                        shape.block_cols <= kInt32Max,
                    "shape", "block_rows (R) >= 1 and block_cols (C) in [1, 2^31)",
                    "R " + std::to_string(shape.block_rows) + ", C " +
                        std::to_string(shape.block_cols));
  TESSERA_CHECK_ARG(bounds.max_block_rows >= 1 &&
                        bounds.max_block_rows * shape.block_rows < kInt32Max,
                    "bounds", "max_block_rows >= 1 with max_block_rows x R < 2^31",
                    "max_block_rows " + std::to_string(bounds.max_block_rows));
}

PrefillPlanShape paged_shape(const BlockSparseShape& s) {
  return {s.num_qo_heads, s.num_kv_heads, s.head_dim, s.block_cols, s.backend};
}

PrefillPlanBounds paged_bounds(const BlockSparseShape& s, const BlockSparseBounds& b) {
  return {b.max_block_rows, b.max_block_rows * s.block_rows};
}

struct ArrayLayout {
  std::size_t qo_offset;     // int32 [max_block_rows + 1]
  std::size_t last_offset;   // int32 [max_block_rows]
  std::size_t paged_offset;  // the paged wrapper's workspace, to the end
};

ArrayLayout array_layout(int64_t max_block_rows) {
  ArrayLayout l{};
  l.qo_offset = 0;
  l.last_offset = align_region(static_cast<std::size_t>(max_block_rows + 1) * 4);
  l.paged_offset = l.last_offset + align_region(static_cast<std::size_t>(max_block_rows) * 4);
  return l;
}

DLTensor int32_vector(void* data, DLDevice device, int64_t* shape) {
  DLTensor t{};
  t.data = data;
  t.device = device;
  t.ndim = 1;
  t.dtype = DLDataType{kDLInt, 32, 1};
  t.shape = shape;
  t.strides = nullptr;
  return t;
}

}  // namespace

struct BlockSparseAttention::State {
  BlockSparseShape shape;
  BlockSparseBounds bounds;
  ArrayLayout layout;
  unsigned char* workspace;
  BatchPrefillWithPagedKVCache paged;
  detail::ScheduleUpload upload;
  int64_t planned_block_rows = 0;
  bool planned = false;
  State(const BlockSparseShape& s, const BlockSparseBounds& b, const ArrayLayout& l, void* w,
        std::size_t workspace_bytes, int device_id)
      : shape(s),
        bounds(b),
        layout(l),
        workspace(static_cast<unsigned char*>(w)),
        paged(paged_shape(s), paged_bounds(s, b), static_cast<unsigned char*>(w) + l.paged_offset,
              workspace_bytes - l.paged_offset, device_id),
        upload(l.paged_offset) {}
};

std::size_t BlockSparseAttention::workspace_size_bytes(const BlockSparseShape& shape,
                                                       const BlockSparseBounds& bounds,
                                                       int device_id) {
  validate_shape(shape, bounds);
  return array_layout(bounds.max_block_rows).paged_offset +
         BatchPrefillWithPagedKVCache::workspace_size_bytes(paged_shape(shape),
                                                            paged_bounds(shape, bounds), device_id);
}

std::size_t BlockSparseAttention::min_workspace_size_bytes(const BlockSparseShape& shape,
                                                           const BlockSparseBounds& bounds,
                                                           int device_id) {
  validate_shape(shape, bounds);
  return array_layout(bounds.max_block_rows).paged_offset +
         BatchPrefillWithPagedKVCache::min_workspace_size_bytes(
             paged_shape(shape), paged_bounds(shape, bounds), device_id);
}

BlockSparseAttention::BlockSparseAttention(const BlockSparseShape& shape,
                                           const BlockSparseBounds& bounds, void* workspace,
                                           std::size_t workspace_bytes, int device_id) {
  validate_shape(shape, bounds);
  const std::size_t needed = min_workspace_size_bytes(shape, bounds, device_id);
  TESSERA_CHECK_ARG(
      workspace_bytes >= needed, "workspace",
      "at least " + std::to_string(needed) + " bytes (min_workspace_size_bytes(shape, bounds))",
      std::to_string(workspace_bytes) + " bytes");
  state_ = std::make_unique<State>(shape, bounds, array_layout(bounds.max_block_rows), workspace,
                                   workspace_bytes, device_id);
}

BlockSparseAttention::~BlockSparseAttention() = default;

void BlockSparseAttention::plan(std::span<const int32_t> indptr, std::span<const int32_t> indices,
                                cudaStream_t stream, bool causal) {
  State& s = *state_;
  TESSERA_CHECK_ARG(!indptr.empty(), "indptr", "block rows + 1 >= 1 values", "an empty array");
  const auto rows = static_cast<int64_t>(indptr.size()) - 1;
  TESSERA_CHECK_ARG(rows <= s.bounds.max_block_rows, "indptr",
                    "at most max_block_rows = " + std::to_string(s.bounds.max_block_rows) +
                        " block rows",
                    std::to_string(rows) + " block rows");
  TESSERA_CHECK_ARG(static_cast<int64_t>(indices.size()) >= indptr.back(), "indices",
                    "at least indptr[last] = " + std::to_string(indptr.back()) + " block ids",
                    std::to_string(indices.size()) + " block ids");
  std::vector<int32_t> qo_indptr(static_cast<std::size_t>(rows) + 1);
  std::vector<int32_t> last(static_cast<std::size_t>(rows));
  for (int64_t i = 0; i <= rows; ++i) {
    qo_indptr[static_cast<std::size_t>(i)] = static_cast<int32_t>(i * s.shape.block_rows);
  }
  for (int64_t i = 0; i < rows; ++i) {
    // indptr's own checks (start 0, non-decreasing) are the paged plan's.
    last[static_cast<std::size_t>(i)] =
        indptr[static_cast<std::size_t>(i) + 1] > indptr[static_cast<std::size_t>(i)]
            ? static_cast<int32_t>(s.shape.block_cols)
            : 0;
  }
  s.planned = false;
  s.paged.plan(qo_indptr, indptr, last, causal, stream);
  unsigned char* staging = s.upload.acquire();
  std::memcpy(staging, qo_indptr.data(), qo_indptr.size() * 4);
  std::memcpy(staging + (s.layout.last_offset - s.layout.qo_offset), last.data(), last.size() * 4);
  s.upload.commit(s.workspace + s.layout.qo_offset,
                  (s.layout.last_offset - s.layout.qo_offset) + last.size() * 4, stream);
  s.planned_block_rows = rows;
  s.planned = true;
}

void BlockSparseAttention::run(const DLTensor& q, const DLTensor& k, const DLTensor& v,
                               const DLTensor& indptr, const DLTensor& indices,
                               const DLTensor& out, const DLTensor* lse,
                               const AttentionOptions& options, cudaStream_t stream,
                               Validate validate) {
  State& s = *state_;
  TESSERA_CHECK_ARG(s.planned, "plan", "plan() called before run()", "run() without a plan");
  const TensorView qv(q, "q");
  qv.expect_ndim(3).expect_cuda();
  const int64_t c = s.shape.block_cols;
  // K and V as pages of C rows: [N / C, C, Hk, D].
  int64_t k_shape[4], v_shape[4], k_strides[4], v_strides[4];
  DLTensor pages[2];
  const DLTensor* sources[2] = {&k, &v};
  int64_t* shapes[2] = {k_shape, v_shape};
  int64_t* strides[2] = {k_strides, v_strides};
  for (int i = 0; i < 2; ++i) {
    const TensorView t(*sources[i], i == 0 ? "k" : "v");
    t.expect_ndim(3).expect_cuda().expect_last_dim_contiguous();
    expect_same_dtype(qv, t);
    expect_same_device(qv, t);
    t.expect_size(1, s.shape.num_kv_heads, "num_kv_heads of the shape");
    t.expect_size(2, s.shape.head_dim, "head_dim of the shape");
    TESSERA_CHECK_ARG(t.size(0) % c == 0 && t.size(0) > 0, t.name(),
                      "N rows, a positive multiple of block_cols C = " + std::to_string(c),
                      std::to_string(t.size(0)) + " rows");
    shapes[i][0] = t.size(0) / c;
    shapes[i][1] = c;
    shapes[i][2] = t.size(1);
    shapes[i][3] = t.size(2);
    strides[i][0] = t.stride(0) * c;
    strides[i][1] = t.stride(0);
    strides[i][2] = t.stride(1);
    strides[i][3] = t.stride(2);
    pages[i] = *sources[i];
    pages[i].ndim = 4;
    pages[i].shape = shapes[i];
    pages[i].strides = strides[i];
  }
  int64_t qo_shape[1] = {s.planned_block_rows + 1};
  int64_t last_shape[1] = {std::max<int64_t>(s.planned_block_rows, 1)};
  const DLTensor qo_indptr = int32_vector(s.workspace + s.layout.qo_offset, q.device, qo_shape);
  const DLTensor last = int32_vector(s.workspace + s.layout.last_offset, q.device, last_shape);
  s.paged.run(q, PagedKVCacheArg::separate(pages[0], pages[1], KVLayout::kNHD), indices, qo_indptr,
              indptr, last, out, lse, options, stream, validate);
}

}  // namespace tessera
