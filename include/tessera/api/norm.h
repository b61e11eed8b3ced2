// RMSNorm family (FlashInfer 0.2 semantics).
//   rmsnorm:            out = input / sqrt(mean(input^2) + eps) * weight
//   fused_add_rmsnorm:  residual += input; input = rmsnorm(residual) * weight
//                       (in place; the sum is kept in float32 and normalised
//                       from float32, not from its rounded 16-bit copy)
//   gemma_*:            the same with (1 + weight) in place of weight
// input/out/residual: [num_tokens, hidden] fp16 or bf16, rows may be strided,
// last dim contiguous; weight: [hidden], same dtype. eps > 0.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include "tessera/core/export.h"

namespace tessera {

TESSERA_API void rmsnorm(const DLTensor& input, const DLTensor& weight, const DLTensor& out,
                         double eps, cudaStream_t stream);
TESSERA_API void fused_add_rmsnorm(const DLTensor& input, const DLTensor& residual,
                                   const DLTensor& weight, double eps, cudaStream_t stream);
TESSERA_API void gemma_rmsnorm(const DLTensor& input, const DLTensor& weight, const DLTensor& out,
                               double eps, cudaStream_t stream);
TESSERA_API void gemma_fused_add_rmsnorm(const DLTensor& input, const DLTensor& residual,
                                         const DLTensor& weight, double eps, cudaStream_t stream);

}  // namespace tessera
