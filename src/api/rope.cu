// Host entry points for rotary position embedding: validate every argument,
// build the frequency table (or take the caller's cos/sin cache), pick the
// 16-byte or the scalar path, launch rope::rope_kernel.
#include "tessera/api/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"
#include "tessera/core/validation.h"
#include "tessera/pos_enc/rope.cuh"

namespace tessera {

namespace {

constexpr int kWideBytes = 16;
// Head sets per token (rope.cuh, HeadSlice): with 4, a warp of the NeoX bf16
// wide path (8 items per head row) reads 4 neighbouring heads of one token per
// instruction. Measured on H100 (bf16, 32/8 heads, D=128, staged path):
// 2794 GB/s vs 2691 with one set at 16k tokens, 669 vs 369 at 256 tokens.
constexpr int kHeadSets = 4;

// A validated [num_tokens, heads, head_dim] view (a 2-D [num_tokens,
// heads * head_dim] tensor is reshaped here).
struct HeadsLayout {
  void* data;
  int64_t num_heads;
  int64_t stride_token;
  int64_t stride_head;
};

HeadsLayout heads_layout(const TensorView& view, int64_t head_dim) {
  if (view.ndim() == 3) return {view.data(), view.size(1), view.stride(0), view.stride(1)};
  return {view.data(), view.size(1) / head_dim, view.stride(0), head_dim};
}

bool wide_aligned(const HeadsLayout& layout, int64_t num_tokens) {
  const auto address = reinterpret_cast<uintptr_t>(layout.data);
  constexpr int64_t kElementBytes = 2;
  return address % kWideBytes == 0 &&
         (num_tokens <= 1 || (layout.stride_token * kElementBytes) % kWideBytes == 0) &&
         (layout.num_heads <= 1 || (layout.stride_head * kElementBytes) % kWideBytes == 0);
}

void check_head_tensor(const TensorView& view) {
  view.expect_dtype({DType::kFloat16, DType::kBFloat16}).expect_cuda().expect_last_dim_contiguous();
}

// The pairs of views that must not partly overlap: each output with its own
// input. q_rope against k (and k_rope against q) is not checked: slices of
// one fused qkv buffer interleave in memory, and a byte-span test cannot tell
// them apart from real overlap.
void check_outputs_alias(const TensorView& q, const TensorView& q_out, const TensorView& k,
                         const TensorView& k_out) {
  expect_identical_or_disjoint(q, q_out);
  expect_identical_or_disjoint(k, k_out);
}

void check_rotary_dim(int64_t rotary_dim, int64_t head_dim, const char* argument) {
  TESSERA_CHECK_ARG(rotary_dim > 0 && rotary_dim % 2 == 0 && rotary_dim <= head_dim &&
                        rotary_dim <= rope::kMaxRotaryDim,
                    argument,
                    "an even rotary_dim in (0, min(head_dim " + std::to_string(head_dim) + ", " +
                        std::to_string(rope::kMaxRotaryDim) + ")]",
                    std::to_string(rotary_dim));
}

void check_options(const RopeOptions& options) {
  TESSERA_CHECK_ARG(std::isfinite(options.rope_scale) && options.rope_scale > 0, "rope_scale",
                    "a finite value > 0", std::to_string(options.rope_scale));
  TESSERA_CHECK_ARG(std::isfinite(options.rope_theta) && options.rope_theta > 0, "rope_theta",
                    "a finite value > 0", std::to_string(options.rope_theta));
  if (options.llama31) {
    const Llama31Scaling& l = *options.llama31;
    TESSERA_CHECK_ARG(std::isfinite(l.low_freq_factor) && std::isfinite(l.high_freq_factor) &&
                          l.high_freq_factor != l.low_freq_factor,
                      "llama31", "finite low_freq_factor != high_freq_factor",
                      std::to_string(l.low_freq_factor) + " and " +
                          std::to_string(l.high_freq_factor));
    TESSERA_CHECK_ARG(std::isfinite(l.old_context_len) && l.old_context_len > 0, "llama31",
                      "old_context_len > 0", std::to_string(l.old_context_len));
  }
}

// freq_j in double, rounded once to float32 (what the kernel multiplies by).
rope::FrequencyTable frequency_table(int64_t rotary_dim, const RopeOptions& options) {
  rope::FrequencyTable table{};
  for (int64_t j = 0; j < rotary_dim / 2; ++j) {
    const double exponent = 2.0 * static_cast<double>(j) / static_cast<double>(rotary_dim);
    const double base = 1.0 / std::pow(options.rope_theta, exponent);
    double freq = base / options.rope_scale;
    if (options.llama31) {
      const Llama31Scaling& l = *options.llama31;
      const double wavelen = 2.0 * std::numbers::pi / base;
      const double smooth = std::clamp(
          (l.old_context_len / wavelen - l.low_freq_factor) / (l.high_freq_factor - l.low_freq_factor),
          0.0, 1.0);
      freq = (1.0 - smooth) * base / options.rope_scale + smooth * base;
    }
    table.frequencies[j] = static_cast<float>(freq);
  }
  return table;
}

// Everything the launch needs apart from the position and angle sources.
struct RopeLaunch {
  DType dtype;
  int device_id;
  int64_t num_tokens;
  int64_t head_dim;
  int64_t rotary_dim;
  bool interleave;
  HeadsLayout q, q_out, k, k_out;
};

template <typename T>
rope::HeadRows<T> head_rows(const HeadsLayout& in, const HeadsLayout& out) {
  return {static_cast<const T*>(in.data), static_cast<T*>(out.data), in.stride_token,
          in.stride_head, out.stride_token, out.stride_head, static_cast<int32_t>(in.num_heads),
          in.data != out.data};
}

template <typename T, int kVec, typename Positions, typename Angles>
void launch_typed(const RopeLaunch& l, const Positions& positions, const Angles& angles,
                  cudaStream_t stream) {
  rope::RopeParams<T, Positions, Angles> params{};
  params.q = head_rows<T>(l.q, l.q_out);
  params.k = head_rows<T>(l.k, l.k_out);
  params.num_tokens = l.num_tokens;
  params.rotary_dim = static_cast<int32_t>(l.rotary_dim);
  const bool in_vector = kVec > 1 && l.interleave;
  params.rotary_items =
      static_cast<int32_t>(in_vector ? l.rotary_dim / kVec : l.rotary_dim / 2 / kVec);
  params.row_items = params.rotary_items + static_cast<int32_t>((l.head_dim - l.rotary_dim) / kVec);
  params.interleave = l.interleave;
  params.positions = positions;
  params.angles = angles;

  const int block_x = std::min(params.row_items, rope::kBlockThreads);
  const int head_sets = std::min(kHeadSets, rope::kBlockThreads / block_x);
  const int tokens_per_cta = rope::kBlockThreads / (block_x * head_sets);
  const dim3 block(block_x, head_sets, tokens_per_cta);
  const dim3 grid(static_cast<unsigned>((l.num_tokens + tokens_per_cta - 1) / tokens_per_cta));
  rope::rope_kernel<T, kVec, Positions, Angles><<<grid, block, 0, stream>>>(params);
  TESSERA_CHECK_LAUNCH();
}

template <typename Positions, typename Angles>
void launch(const RopeLaunch& l, const Positions& positions, const Angles& angles,
            cudaStream_t stream) {
  constexpr int kWideVec = kWideBytes / 2;
  const bool dims_fit = l.head_dim % kWideVec == 0 &&
                        (l.interleave ? l.rotary_dim % kWideVec == 0
                                      : (l.rotary_dim / 2) % kWideVec == 0);
  const bool wide = dims_fit && wide_aligned(l.q, l.num_tokens) &&
                    wide_aligned(l.q_out, l.num_tokens) && wide_aligned(l.k, l.num_tokens) &&
                    wide_aligned(l.k_out, l.num_tokens);
  DeviceGuard guard(l.device_id);
  if (l.dtype == DType::kFloat16) {
    if (wide) launch_typed<half_t, kWideVec>(l, positions, angles, stream);
    else launch_typed<half_t, 1>(l, positions, angles, stream);
  } else {
    if (wide) launch_typed<bfloat16_t, kWideVec>(l, positions, angles, stream);
    else launch_typed<bfloat16_t, 1>(l, positions, angles, stream);
  }
}

// Shared checks of q, k, q_rope, k_rope ([nnz, heads, head_dim]).
RopeLaunch validate_qk(const TensorView& q, const TensorView& k, const TensorView& q_rope,
                       const TensorView& k_rope, const RopeOptions& options) {
  for (const TensorView* view : {&q, &k, &q_rope, &k_rope}) {
    view->expect_ndim(3);
    check_head_tensor(*view);
  }
  expect_same_dtype(q, k);
  expect_same_dtype(q, q_rope);
  expect_same_dtype(q, k_rope);
  expect_same_device(q, k);
  expect_same_device(q, q_rope);
  expect_same_device(q, k_rope);
  const int64_t num_tokens = q.size(0);
  const int64_t head_dim = q.size(2);
  k.expect_size(0, num_tokens, "the token count of q");
  k.expect_size(2, head_dim, "head_dim of q");
  expect_same_shape(q, q_rope);
  expect_same_shape(k, k_rope);
  check_outputs_alias(q, q_rope, k, k_rope);
  const int64_t rotary_dim = options.rotary_dim == 0 ? head_dim : options.rotary_dim;
  check_rotary_dim(rotary_dim, head_dim, "rotary_dim");
  check_options(options);
  return {q.dtype(),
          q.device().device_id,
          num_tokens,
          head_dim,
          rotary_dim,
          options.interleave,
          heads_layout(q, head_dim),
          heads_layout(q_rope, head_dim),
          heads_layout(k, head_dim),
          heads_layout(k_rope, head_dim)};
}

void check_index_vector(const TensorView& view, const TensorView& like,
                        std::initializer_list<DType> dtypes) {
  view.expect_ndim(1).expect_dtype(dtypes).expect_cuda().expect_contiguous();
  expect_same_device(like, view);
}

// Validation-mode copy, ordered after the caller's earlier work on `stream`.
template <typename T>
std::vector<T> copy_to_host(const TensorView& view, cudaStream_t stream) {
  std::vector<T> host(static_cast<std::size_t>(view.numel()));
  if (!host.empty()) {
    DeviceGuard guard(view.device().device_id);
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(host.data(), view.data(), host.size() * sizeof(T),
                                       cudaMemcpyDeviceToHost, stream));
    TESSERA_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  return host;
}

// Positions must index rows of the cache; checked only in validation mode.
template <typename Index>
void check_positions_in_range(const TensorView& positions, int64_t max_position,
                              cudaStream_t stream) {
  for (const Index p : copy_to_host<Index>(positions, stream)) {
    TESSERA_CHECK_ARG(p >= 0 && p < max_position, positions.name(),
                      "positions in [0, " + std::to_string(max_position) + ")",
                      std::to_string(p));
  }
}

}  // namespace

void apply_rope(const DLTensor& q, const DLTensor& k, const DLTensor& q_rope,
                const DLTensor& k_rope, const DLTensor& indptr, const DLTensor& offsets,
                const RopeOptions& options, cudaStream_t stream, Validate validate) {
  const TensorView q_view(q, "q");
  const TensorView k_view(k, "k");
  const TensorView q_rope_view(q_rope, "q_rope");
  const TensorView k_rope_view(k_rope, "k_rope");
  const TensorView indptr_view(indptr, "indptr");
  const TensorView offsets_view(offsets, "offsets");
  const RopeLaunch l = validate_qk(q_view, k_view, q_rope_view, k_rope_view, options);
  check_index_vector(indptr_view, q_view, {DType::kInt32});
  check_index_vector(offsets_view, q_view, {DType::kInt32});
  const int64_t batch_size = offsets_view.size(0);
  indptr_view.expect_size(0, batch_size + 1, "batch_size + 1 (offsets has batch_size)");
  TESSERA_CHECK_ARG(batch_size >= 1 || l.num_tokens == 0, "indptr", "at least one request",
                    "batch_size 0 with " + std::to_string(l.num_tokens) + " tokens");
  TESSERA_CHECK_ARG(batch_size < (int64_t{1} << 31) && l.num_tokens < (int64_t{1} << 31), "indptr",
                    "batch_size and token count below 2^31 (int32 indptr)",
                    std::to_string(batch_size) + " requests, " + std::to_string(l.num_tokens) +
                        " tokens");
  if (validation_requested(validate)) {
    const std::vector<int32_t> host = copy_to_host<int32_t>(indptr_view, stream);
    TESSERA_CHECK_ARG(host.front() == 0, "indptr", "indptr[0] == 0", std::to_string(host.front()));
    for (std::size_t b = 1; b < host.size(); ++b) {
      TESSERA_CHECK_ARG(host[b] >= host[b - 1], "indptr", "non-decreasing values",
                        "indptr[" + std::to_string(b) + "] = " + std::to_string(host[b]) +
                            " < indptr[" + std::to_string(b - 1) + "] = " +
                            std::to_string(host[b - 1]));
    }
    TESSERA_CHECK_ARG(host.back() == l.num_tokens, "indptr",
                      "indptr[batch_size] == token count " + std::to_string(l.num_tokens),
                      std::to_string(host.back()));
  }
  if (l.num_tokens == 0) return;
  const rope::RaggedPositions positions{indptr_view.data_as<const int32_t>(),
                                        offsets_view.data_as<const int32_t>(),
                                        static_cast<int32_t>(batch_size)};
  launch(l, positions, frequency_table(l.rotary_dim, options), stream);
}

void apply_rope_pos_ids(const DLTensor& q, const DLTensor& k, const DLTensor& q_rope,
                        const DLTensor& k_rope, const DLTensor& pos_ids,
                        const RopeOptions& options, cudaStream_t stream) {
  const TensorView q_view(q, "q");
  const TensorView k_view(k, "k");
  const TensorView q_rope_view(q_rope, "q_rope");
  const TensorView k_rope_view(k_rope, "k_rope");
  const TensorView pos_view(pos_ids, "pos_ids");
  const RopeLaunch l = validate_qk(q_view, k_view, q_rope_view, k_rope_view, options);
  check_index_vector(pos_view, q_view, {DType::kInt32, DType::kInt64});
  pos_view.expect_size(0, l.num_tokens, "the token count of q");
  if (l.num_tokens == 0) return;
  const rope::TokenPositions positions{pos_view.data(), pos_view.dtype() == DType::kInt64};
  launch(l, positions, frequency_table(l.rotary_dim, options), stream);
}

void apply_rope_with_cos_sin_cache(const DLTensor& positions, const DLTensor& query,
                                   const DLTensor& key, const DLTensor& query_out,
                                   const DLTensor& key_out, int64_t head_size,
                                   const DLTensor& cos_sin_cache, bool is_neox,
                                   cudaStream_t stream, Validate validate) {
  const TensorView pos_view(positions, "positions");
  const TensorView q_view(query, "query");
  const TensorView k_view(key, "key");
  const TensorView q_out_view(query_out, "query_out");
  const TensorView k_out_view(key_out, "key_out");
  const TensorView cache_view(cos_sin_cache, "cos_sin_cache");
  TESSERA_CHECK_ARG(head_size > 0, "head_size", "a value > 0", std::to_string(head_size));
  for (const TensorView* view : {&q_view, &k_view, &q_out_view, &k_out_view}) {
    view->expect_ndim_between(2, 3);
    check_head_tensor(*view);
    if (view->ndim() == 3) {
      view->expect_size(2, head_size, "head_size");
    } else {
      TESSERA_CHECK_ARG(view->size(1) % head_size == 0, view->name(),
                        "a last dim that is a multiple of head_size " + std::to_string(head_size),
                        view->shape_string());
    }
  }
  expect_same_dtype(q_view, k_view);
  expect_same_dtype(q_view, q_out_view);
  expect_same_dtype(q_view, k_out_view);
  expect_same_device(q_view, k_view);
  expect_same_device(q_view, q_out_view);
  expect_same_device(q_view, k_out_view);
  const int64_t num_tokens = q_view.size(0);
  k_view.expect_size(0, num_tokens, "the token count of query");
  expect_same_shape(q_view, q_out_view);
  expect_same_shape(k_view, k_out_view);
  check_outputs_alias(q_view, q_out_view, k_view, k_out_view);
  check_index_vector(pos_view, q_view, {DType::kInt32, DType::kInt64});
  pos_view.expect_size(0, num_tokens, "the token count of query");
  cache_view.expect_ndim(2).expect_dtype({DType::kFloat32}).expect_cuda().expect_last_dim_contiguous();
  expect_same_device(q_view, cache_view);
  const int64_t rotary_dim = cache_view.size(1);
  check_rotary_dim(rotary_dim, head_size, "cos_sin_cache");
  const int64_t max_position = cache_view.size(0);
  TESSERA_CHECK_ARG(max_position >= 1 || num_tokens == 0, "cos_sin_cache",
                    "at least one position row", cache_view.shape_string());
  if (validation_requested(validate)) {
    if (pos_view.dtype() == DType::kInt64) check_positions_in_range<int64_t>(pos_view, max_position, stream);
    else check_positions_in_range<int32_t>(pos_view, max_position, stream);
  }
  if (num_tokens == 0) return;

  const RopeLaunch l{q_view.dtype(),
                     q_view.device().device_id,
                     num_tokens,
                     head_size,
                     rotary_dim,
                     !is_neox,
                     heads_layout(q_view, head_size),
                     heads_layout(q_out_view, head_size),
                     heads_layout(k_view, head_size),
                     heads_layout(k_out_view, head_size)};
  const rope::TokenPositions token_positions{pos_view.data(), pos_view.dtype() == DType::kInt64};
  const rope::CosSinCache angles{cache_view.data_as<const float>(), cache_view.stride(0),
                                 static_cast<int32_t>(rotary_dim / 2)};
  launch(l, token_positions, angles, stream);
}

}  // namespace tessera
