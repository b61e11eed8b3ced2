// Which kernel runs a segment_gemm call: the host-known facts (requested
// back end, the device, sizes and strides; never the device-side segment
// lengths, so a captured graph replays for any of them) in, a kernel out.
// Plain C++, no CUDA: unit-tested on the CPU.
#pragma once

#include <cstdint>

#include "tessera/api/gemm.h"

namespace tessera::detail {

enum class SegmentGemmKernel {
  kSm80Large,  // mma.sync, 128 x 128 tiles
  kSm80Small,  // mma.sync, 64 x 64 tiles: short segments, narrow outputs
  kSm80Gemv,   // CUDA cores, a lane group per column: a few rows per segment, k-contiguous W
  kSm90,       // TMA + wgmma, 128 x 256 tiles (sm_90a)
};

struct SegmentGemmCall {
  SegmentGemmBackend backend = SegmentGemmBackend::kAuto;
  bool device_runs_sm90a = false;  // compute capability 9.0
  int device_id = 0;               // for messages
  int64_t total_rows = 0;
  int64_t batch_size = 0;
  int64_t d_out = 0;
  bool column_major = false;  // W[w] stored [d_out, d_in]
  int64_t num_weights = 0;
  // Element strides the TMA maps describe: rows of x, rows of one W, and
  // between W matrices (unused when num_weights is 1).
  int64_t x_row_stride = 0;
  int64_t weight_row_stride = 0;
  int64_t weight_matrix_stride = 0;
};

// kAuto: the Hopper kernel on a compute capability 9.0 GPU when its tiles
// fit the problem (the cases where the sm80 kernel takes its large tile)
// and TMA can describe the strides; else the sm80 kernel, its small tile
// for short segments (rows / batch_size <= 64 on average) or d_out <= 64,
// and for segments of at most 4 rows on average with column-major W
// (multi-LoRA decode) the GEMV kernel (segment_gemv.cuh).
// kSm80: the portable kernels, chosen as for kAuto off Hopper. kSm90: the Hopper kernel; throws
// naming "backend" on another GPU, and naming "x" or "weights" for strides TMA cannot describe
// (zero: broadcast rows or matrices).
SegmentGemmKernel choose_segment_gemm_kernel(const SegmentGemmCall& call);

}  // namespace tessera::detail
