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

// q/k and v/o head dims that differ: q/k 192 with v/o 128 (DeepSeek-style
// prefill: 128 "nope" + 64 RoPE dims of q and k, 128 of v). FA2 prefill only
// (the Hopper kernels and decode do not have it; DeepSeek decodes with MLA),
// JIT-served. Equal dims: any of kHeadDims.
inline constexpr int kSplitHeadDimQk = 192;
inline constexpr int kSplitHeadDimVo = 128;
inline constexpr const char* kPrefillHeadDimsText =
    "head_dim 64, 80, 96, 112, 128 or 256 (head_dim_vo the same), or head_dim_qk 192 with "
    "head_dim_vo 128";

constexpr bool supported_prefill_head_dims(long long head_dim_qk, long long head_dim_vo) {
  return (head_dim_qk == head_dim_vo && supported_head_dim(head_dim_qk)) ||
         (head_dim_qk == kSplitHeadDimQk && head_dim_vo == kSplitHeadDimVo);
}

}  // namespace tessera::attention
