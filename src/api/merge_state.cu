// Host entry points of the attention-state merges (tessera/api/decode.h) and
// the decode merge launcher (api/decode_launch.h): argument validation, the
// choice between the 16-byte vector path and the scalar fallback, launch.
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

#include "api/attention_variant.h"
#include "api/decode_launch.h"
#include "api/plan_run.h"
#include "tessera/api/decode.h"
#include "tessera/attention/merge.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

using attention::kMergeBlockThreads;

constexpr std::size_t kVectorBytes = 16;
constexpr int64_t kMaxGridX = std::numeric_limits<int32_t>::max();

const std::initializer_list<DType> kValueTypes = {DType::kFloat16, DType::kBFloat16,
                                                  DType::kFloat32};

unsigned item_blocks(int64_t items, int lanes, const char* name) {
  const int64_t per_block = kMergeBlockThreads / lanes;
  const int64_t blocks = (items + per_block - 1) / per_block;
  TESSERA_CHECK_ARG(blocks <= kMaxGridX, name, "at most 2^31 - 1 thread blocks of items",
                    std::to_string(items) + " (row, head) items");
  return static_cast<unsigned>(blocks);
}

// A [rows, heads, head_dim] value tensor: the element types the merges take.
TensorView value_view(const DLTensor& tensor, const char* name) {
  TensorView view(tensor, name);
  view.expect_ndim(3).expect_cuda().expect_last_dim_contiguous().expect_dtype(kValueTypes);
  return view;
}

// Its float32 lse, [rows, heads] on the same device.
TensorView lse_view(const DLTensor& tensor, const char* name, const TensorView& values) {
  TensorView view(tensor, name);
  view.expect_ndim(2).expect_cuda().expect_dtype({DType::kFloat32});
  view.expect_size(0, values.size(0), "rows (dim 0 of the matching v)");
  view.expect_size(1, values.size(1), "heads (dim 1 of the matching v)");
  expect_same_device(values, view);
  return view;
}

template <typename T>
attention::StateTensor<T> state_tensor(const TensorView& v, const TensorView& s) {
  return {v.data_as<T>(), v.stride(0), v.stride(1), s.data_as<float>(), s.stride(0), s.stride(1)};
}

// Calls f.template operator()<T>() for the value dtype.
template <typename F>
void dispatch_value_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat16:
      f.template operator()<half_t>();
      break;
    case DType::kBFloat16:
      f.template operator()<bfloat16_t>();
      break;
    default:
      f.template operator()<float>();
      break;
  }
}

template <typename T>
constexpr int kWideVec = static_cast<int>(kVectorBytes / sizeof(T));

// Shared by merge_state and merge_state_in_place (out may be a).
void launch_pair(const TensorView& v_a, const TensorView& s_a, const TensorView& v_b,
                 const TensorView& s_b, const TensorView& v_out, const TensorView& s_out,
                 const uint8_t* mask, cudaStream_t stream) {
  const int64_t rows = v_a.size(0), heads = v_a.size(1), head_dim = v_a.size(2);
  if (rows * heads * head_dim == 0) return;
  dispatch_value_type(v_a.dtype(), [&]<typename T>() {
    constexpr int kWide = kWideVec<T>;
    const std::size_t wide_bytes = kWide * sizeof(T);
    const bool wide = head_dim % kWide == 0 && v_a.rows_aligned_to(wide_bytes) &&
                      v_b.rows_aligned_to(wide_bytes) && v_out.rows_aligned_to(wide_bytes);
    attention::MergePairParams<T> params{};
    params.a = state_tensor<T>(v_a, s_a);
    params.b = state_tensor<T>(v_b, s_b);
    params.out = state_tensor<T>(v_out, s_out);
    params.mask = mask;
    params.rows = rows;
    params.heads = heads;
    params.head_dim = head_dim;
    params.lanes_per_item = attention::merge_lanes_per_item(head_dim, wide ? kWide : 1);
    const unsigned blocks = item_blocks(rows * heads, params.lanes_per_item, "v_a");
    DeviceGuard guard(v_a.device().device_id);
    if (wide) {
      attention::merge_pair_kernel<T, kWide><<<blocks, kMergeBlockThreads, 0, stream>>>(params);
    } else {
      attention::merge_pair_kernel<T, 1><<<blocks, kMergeBlockThreads, 0, stream>>>(params);
    }
    TESSERA_CHECK_LAUNCH();
  });
}

}  // namespace

void merge_state(const DLTensor& v_a, const DLTensor& s_a, const DLTensor& v_b,
                 const DLTensor& s_b, const DLTensor& v_merged, const DLTensor& s_merged,
                 cudaStream_t stream) {
  const TensorView va = value_view(v_a, "v_a");
  const TensorView vb = value_view(v_b, "v_b");
  const TensorView vm = value_view(v_merged, "v_merged");
  for (const TensorView* v : {&vb, &vm}) {
    expect_same_dtype(va, *v);
    expect_same_shape(va, *v);
    expect_same_device(va, *v);
  }
  const TensorView sa = lse_view(s_a, "s_a", va);
  const TensorView sb = lse_view(s_b, "s_b", va);
  const TensorView sm = lse_view(s_merged, "s_merged", va);
  expect_identical_or_disjoint(va, vm);
  expect_identical_or_disjoint(vb, vm);
  expect_identical_or_disjoint(sa, sm);
  expect_identical_or_disjoint(sb, sm);
  launch_pair(va, sa, vb, sb, vm, sm, nullptr, stream);
}

void merge_state_in_place(const DLTensor& v, const DLTensor& s, const DLTensor& v_other,
                          const DLTensor& s_other, const DLTensor* mask, cudaStream_t stream) {
  const TensorView vv = value_view(v, "v");
  const TensorView vo = value_view(v_other, "v_other");
  expect_same_dtype(vv, vo);
  expect_same_shape(vv, vo);
  expect_same_device(vv, vo);
  const TensorView sv = lse_view(s, "s", vv);
  const TensorView so = lse_view(s_other, "s_other", vv);
  expect_identical_or_disjoint(vv, vo);
  expect_identical_or_disjoint(sv, so);
  const uint8_t* mask_data = nullptr;
  if (mask != nullptr) {
    const TensorView m(*mask, "mask");
    m.expect_dtype({DType::kUInt8}).expect_ndim(1).expect_cuda().expect_contiguous();
    m.expect_size(0, vv.size(0), "rows (dim 0 of v)");
    expect_same_device(vv, m);
    mask_data = m.data_as<const uint8_t>();
  }
  launch_pair(vv, sv, vo, so, vv, sv, mask_data, stream);
}

void merge_states(const DLTensor& v, const DLTensor& s, const DLTensor& v_merged,
                  const DLTensor& s_merged, cudaStream_t stream) {
  const TensorView vin(v, "v");
  vin.expect_ndim(4).expect_cuda().expect_last_dim_contiguous().expect_dtype(kValueTypes);
  const TensorView sin(s, "s");
  sin.expect_ndim(3).expect_cuda().expect_dtype({DType::kFloat32});
  sin.expect_size(0, vin.size(0), "rows (dim 0 of v)");
  sin.expect_size(1, vin.size(1), "num_states (dim 1 of v)");
  sin.expect_size(2, vin.size(2), "heads (dim 2 of v)");
  expect_same_device(vin, sin);
  const TensorView vout = value_view(v_merged, "v_merged");
  expect_same_dtype(vin, vout);
  expect_same_device(vin, vout);
  vout.expect_size(0, vin.size(0), "rows (dim 0 of v)");
  vout.expect_size(1, vin.size(2), "heads (dim 2 of v)");
  vout.expect_size(2, vin.size(3), "head_dim (dim 3 of v)");
  const TensorView sout = lse_view(s_merged, "s_merged", vout);
  // Different ranks: "identical" is impossible, so this demands no overlap.
  expect_identical_or_disjoint(vin, vout);
  expect_identical_or_disjoint(sin, sout);

  const int64_t rows = vin.size(0), num_states = vin.size(1), heads = vin.size(2),
                head_dim = vin.size(3);
  if (rows * heads * head_dim == 0) return;
  dispatch_value_type(vin.dtype(), [&]<typename T>() {
    constexpr int kWide = kWideVec<T>;
    const std::size_t wide_bytes = kWide * sizeof(T);
    const bool wide = head_dim % kWide == 0 && vin.rows_aligned_to(wide_bytes) &&
                      vout.rows_aligned_to(wide_bytes);
    attention::MergeStackParams<T> params{};
    params.v = vin.data_as<const T>();
    params.v_stride_row = vin.stride(0);
    params.v_stride_state = vin.stride(1);
    params.v_stride_head = vin.stride(2);
    params.lse = sin.data_as<const float>();
    params.lse_stride_row = sin.stride(0);
    params.lse_stride_state = sin.stride(1);
    params.lse_stride_head = sin.stride(2);
    params.out = state_tensor<T>(vout, sout);
    params.rows = rows;
    params.num_states = num_states;
    params.heads = heads;
    params.head_dim = head_dim;
    params.lanes_per_item = attention::merge_lanes_per_item(head_dim, wide ? kWide : 1);
    const unsigned blocks = item_blocks(rows * heads, params.lanes_per_item, "v");
    DeviceGuard guard(vin.device().device_id);
    if (wide) {
      attention::merge_stack_kernel<T, kWide><<<blocks, kMergeBlockThreads, 0, stream>>>(params);
    } else {
      attention::merge_stack_kernel<T, 1><<<blocks, kMergeBlockThreads, 0, stream>>>(params);
    }
    TESSERA_CHECK_LAUNCH();
  });
}

namespace detail {

// Partials are float32: 4 per 16-byte load; out (fp16/bf16) is stored 8 bytes
// at a time. Wide when head_dim % 4 == 0 and out's rows are 8-byte aligned
// (the partial rows are: 256-aligned region, head_dim * 4 bytes per row).
void launch_decode_merge(const DecodeLaunch& launch, int64_t grid_batch, cudaStream_t stream) {
  constexpr int kWide = static_cast<int>(kVectorBytes / sizeof(float));
  const auto dispatch = [&]<typename Out>() {
    const std::size_t out_vec_bytes = kWide * sizeof(Out);
    const auto aligned = [&](int64_t stride) {
      return (static_cast<std::size_t>(stride) * sizeof(Out)) % out_vec_bytes == 0;
    };
    const bool wide = launch.head_dim % kWide == 0 &&
                      reinterpret_cast<uintptr_t>(launch.out) % out_vec_bytes == 0 &&
                      aligned(launch.out_stride_batch) && aligned(launch.out_stride_head);
    attention::DecodeMergeParams<Out> params{};
    params.schedule = launch.schedule;
    params.out = static_cast<Out*>(launch.out);
    params.out_stride_batch = launch.out_stride_batch;
    params.out_stride_head = launch.out_stride_head;
    params.lse = launch.lse;
    params.num_qo_heads = launch.num_qo_heads;
    params.head_dim = launch.head_dim;
    params.sum_states = sums_partial_states(launch.options);
    if (launch.head_dim > attention::kDecodeMergeMaxHeadDim || launch.num_qo_heads > 65535) {
      throw Error("tessera: decode merge: head_dim " + std::to_string(launch.head_dim) +
                  " or num_qo_heads " + std::to_string(launch.num_qo_heads) + " out of range");
    }
    // grid_batch is the bound while capturing (graph replay); requests past
    // the plan's batch exit at once.
    cudaLaunchConfig_t config{};
    config.gridDim =
        dim3(static_cast<unsigned>(grid_batch), static_cast<unsigned>(launch.num_qo_heads));
    config.blockDim = dim3(attention::kDecodeMergeWarps * attention::kMergeWarpSize);
    config.stream = stream;
    // On sm90+ a programmatic dependent of the decode kernel just queued:
    // scheduled while the decode's last CTAs run, it waits in the kernel
    // (arch/sm90/grid_dependency.cuh) instead of paying a launch gap after it.
    cudaLaunchAttribute dependent{};
    launch_as_programmatic_dependent(config, dependent, launch.kv.device.device_id);
    if (wide) {
      TESSERA_CUDA_CHECK(
          cudaLaunchKernelEx(&config, attention::decode_merge_kernel<Out, kWide>, params));
    } else {
      TESSERA_CUDA_CHECK(cudaLaunchKernelEx(&config, attention::decode_merge_kernel<Out, 1>, params));
    }
  };
  if (launch.q_dtype == DType::kBFloat16) {
    dispatch.template operator()<bfloat16_t>();
  } else {
    dispatch.template operator()<half_t>();
  }
}

}  // namespace detail

}  // namespace tessera
