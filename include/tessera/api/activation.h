// Gated activations: input [..., 2 * d] holds (x, gate-input y) halves;
// out [..., d] = act(x) * y, computed in float32.
//   silu_and_mul:      act = x * sigmoid(x)
//   gelu_and_mul:      act = exact GELU (erf)
//   gelu_tanh_and_mul: act = tanh-approximated GELU
// fp16 or bf16; leading dims may be strided as one row stride, last dim
// contiguous.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include "tessera/core/export.h"

namespace tessera {

TESSERA_API void silu_and_mul(const DLTensor& input, const DLTensor& out, cudaStream_t stream);
TESSERA_API void gelu_and_mul(const DLTensor& input, const DLTensor& out, cudaStream_t stream);
TESSERA_API void gelu_tanh_and_mul(const DLTensor& input, const DLTensor& out, cudaStream_t stream);

}  // namespace tessera
