#include "api/index_tensor.h"

#include "tessera/core/cuda_check.h"

namespace tessera::detail {

TensorView index_view(const DLTensor& tensor, const char* name, const TensorView& reference) {
  TensorView view(tensor, name);
  view.expect_dtype({DType::kInt32}).expect_ndim(1).expect_cuda().expect_contiguous();
  expect_same_device(reference, view);
  return view;
}

std::vector<int32_t> copy_to_host(const TensorView& view, cudaStream_t stream) {
  std::vector<int32_t> host(static_cast<std::size_t>(view.numel()));
  if (!host.empty()) {
    TESSERA_CUDA_CHECK(cudaMemcpyAsync(host.data(), view.data(), host.size() * sizeof(int32_t),
                                       cudaMemcpyDeviceToHost, stream));
  }
  return host;
}

}  // namespace tessera::detail
