// Index tensors (page indices, indptr arrays) as the API layer takes them:
// 1-D contiguous int32 on the device of the call's other tensors, and copied
// to the host only in validation mode.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstdint>
#include <vector>

#include "tessera/core/tensor_view.h"

namespace tessera::detail {

// A 1-D contiguous int32 tensor on the device of `reference`.
TensorView index_view(const DLTensor& tensor, const char* name, const TensorView& reference);

// Queues a copy of the whole tensor to the host on `stream`; the caller
// synchronises before reading the result.
std::vector<int32_t> copy_to_host(const TensorView& view, cudaStream_t stream);

}  // namespace tessera::detail
