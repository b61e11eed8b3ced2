// GEMMs of a serving step (FlashInfer 0.2's flashinfer.gemm semantics):
//
// bmm_fp8: out[b] = (A[b] * A_scale) @ (B[b] * B_scale) with fp8 inputs, a
//   float32 accumulator and a 16-bit output, through cuBLASLt.
// segment_gemm: y[seg_i] = x[seg_i] @ W[w_i] for contiguous row segments
//   seg_i of x, each with its own weight matrix (multi-LoRA, MoE experts),
//   run as one grouped kernel that reads the segment bounds on the device.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstdint>

#include "tessera/core/export.h"
#include "tessera/core/validation.h"

namespace tessera {

// A: [b, m, k] float8_e4m3fn or float8_e5m2, k contiguous (any row and batch
// strides that are multiples of 16 bytes). B: [b, k, n] fp8, column-major:
// k contiguous (the transpose of a row-major [b, n, k], as FlashInfer takes
// it). A_scale, B_scale: float32 device tensors of one element (per-tensor
// dequantisation scales, read on the device, so a CUDA graph can replay with
// new scales). out: [b, m, n] float16 or bfloat16, n contiguous, disjoint from
// the inputs. k must be a positive multiple of 16 (cuBLASLt's FP8 kernels);
// A and B may not both be e5m2 (cuBLASLt has no such kernel). Needs a GPU of
// compute capability 8.9 or newer. cuBLASLt runs with fast (non-split)
// accumulation, as FlashInfer configures it. workspace: null, or a
// contiguous device buffer (256-byte aligned; 32 MiB is what cuBLASLt's
// fastest Hopper kernels ask for) that cuBLASLt may use; the call then
// allocates nothing, so it can be captured in a CUDA graph. Zero-sized b, m
// or n return without a launch.
TESSERA_API void bmm_fp8(const DLTensor& A, const DLTensor& B, const DLTensor& A_scale,
                         const DLTensor& B_scale, const DLTensor& out, const DLTensor* workspace,
                         cudaStream_t stream);

// Which grouped-GEMM kernel family runs segment_gemm (FlashInfer's backend
// names). kSm80: Tessera's mma.sync grouped kernel (sm80 and newer). kSm90:
// the Hopper (TMA + wgmma) grouped kernel; on a GPU other than compute
// capability 9.0 it throws naming "backend", and it needs positive row and
// matrix strides (no broadcast views: else it names "x" or "weights").
// kAuto takes kSm90 on compute capability 9.0 for segments of more than 64
// rows on average and d_out above 64 (MoE), else kSm80.
enum class SegmentGemmBackend { kAuto, kSm80, kSm90 };

// Segments: batch_size segments of consecutive rows of x, given either by
// seg_indptr [batch_size + 1] (segment i is rows seg_indptr[i] to
// seg_indptr[i + 1]; seg_indptr[0] = 0, non-decreasing, last = rows of x)
// or, when seg_indptr is null, by seg_lens [batch_size] (lengths, summing to
// the rows of x). Both int64 (FlashInfer's dtype) or int32, 1-D, contiguous,
// on x's device; they are read by the kernel, never on the host, so the call
// can be captured in a CUDA graph and replayed with new lengths (the MoE
// case: the router writes them on the GPU). weight_indices: null (segment i
// uses W[i]) or int64 / int32 [batch_size] of indices into weights.
//
// x: [total_rows, d_in] float16 or bfloat16, d_in contiguous. weights:
// [num_weights, d_in, d_out] (weight_column_major false) or [num_weights,
// d_out, d_in] (true), x's dtype, last dim contiguous. y: [total_rows,
// d_out], x's dtype, d_out contiguous, disjoint from x and weights. d_in a
// positive multiple of 8, d_out a multiple of 8; data pointers and row /
// matrix strides multiples of 16 bytes. Segments of any length, 0 included.
// Rows of y past the last segment (when the lengths sum to less than
// total_rows) are written with zeros, as FlashInfer's zero-initialised y.
// Float32 accumulation, one rounding to the output dtype.
//
// Device arrays are checked in validation mode only (TESSERA_VALIDATE=1 or
// Validate::kOn; not while the stream captures a graph): lengths
// non-negative summing to total_rows, seg_indptr starting at 0,
// non-decreasing and ending at total_rows, weight indices in [0,
// num_weights). Without it, segments are clamped to the rows of x (no access
// outside x or y), but an out-of-range weight index reads outside weights.
TESSERA_API void segment_gemm(const DLTensor& x, const DLTensor& weights, const DLTensor& y,
                              int64_t batch_size, bool weight_column_major,
                              const DLTensor* seg_lens, const DLTensor* seg_indptr,
                              const DLTensor* weight_indices, cudaStream_t stream,
                              SegmentGemmBackend backend = SegmentGemmBackend::kAuto,
                              Validate validate = Validate::kFromEnv);

}  // namespace tessera
