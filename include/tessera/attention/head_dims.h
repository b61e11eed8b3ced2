// The head dims the attention kernels have (decode and FA2 prefill; the
// Hopper prefill kernels have 64 / 128 / 256 only, aot_kernels.h), in one
// list for the planners, the API checks, the JIT and the tests. 80 / 96 /
// 112 (Phi-2 / Phi-3 / StableLM) are JIT-served where the AOT list
// (src/api/aot_kernels.h) leaves them out.
// Host and device code (constexpr only; compiles under NVRTC).
#pragma once

namespace tessera::attention {

inline constexpr int kHeadDims[] = {64, 80, 96, 112, 128, 256};
// For error messages: what a check of kHeadDims expected.
inline constexpr const char* kHeadDimsText = "head_dim 64, 80, 96, 112, 128 or 256";

constexpr bool supported_head_dim(long long head_dim) {
  for (const int d : kHeadDims) {
    if (d == head_dim) return true;
  }
  return false;
}

}  // namespace tessera::attention
