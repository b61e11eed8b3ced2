// Warpgroup matrix multiply (wgmma, sm_90a): D[64 x N] (+)= A[64 x 16] *
// B[16 x N] issued by one warpgroup (4 consecutive warps from a warp index
// divisible by 4), float32 accumulators in registers, B (and A in the SS
// form) read from shared memory through 64-bit matrix descriptors.
//
// Accumulator layout (the mma.sync C fragment repeated over N / 8): thread
// lane = 4 g + t of warp w holds, for n-block j, d[4 j + 0..1] at (row 16 w +
// g, cols 8 j + 2 t + 0..1) and d[4 j + 2..3] at row 16 w + g + 8. The RS
// form's A fragment of a warp is the mma.sync m16n8k16 A fragment of its 16
// rows (sm80/mma.cuh), so S accumulators repack into P without shuffles.
//
// Shared-memory operands here are 128-byte swizzled panels: 64 16-bit
// values per 128-byte row, 16-byte chunk c of row r stored at chunk
// c ^ (r % 8), 8-row atoms of 1024 bytes (what a TMA load with
// CU_TENSOR_MAP_SWIZZLE_128B and a 64-element inner box writes); panels
// must start 1024-byte aligned.
// Device header: compiles under nvcc and NVRTC; the instructions exist only
// in sm_90a code (__CUDA_ARCH_FEAT_SM90_ALL), elsewhere the functions trap.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/core/numeric.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define TESSERA_SM90A_ENABLED 1
#else
#define TESSERA_SM90A_ENABLED 0
#endif

namespace tessera::sm90 {

// Descriptor fields (PTX ISA "matrix descriptor"): start address, leading
// and stride byte offsets in 16-byte units (bits 0-13, 16-29, 32-45), base
// offset 0 (atoms 1024-aligned), swizzle mode in bits 62-63 (1 = 128 B).
__device__ __forceinline__ uint64_t make_descriptor_sw128(uint32_t shared_byte_address,
                                                          uint32_t leading_bytes,
                                                          uint32_t stride_bytes) {
  return static_cast<uint64_t>((shared_byte_address & 0x3FFFFu) >> 4) |
         (static_cast<uint64_t>((leading_bytes >> 4) & 0x3FFFu) << 16) |
         (static_cast<uint64_t>((stride_bytes >> 4) & 0x3FFFu) << 32) | (uint64_t{1} << 62);
}

// K-major operand (rows of the M or N side, K contiguous): 8-row atoms 1024
// bytes apart; the leading offset is unused with 128-byte swizzle. A k-step
// of 16 values advances the start address by 32 bytes inside the panel.
__device__ __forceinline__ uint64_t k_major_descriptor(uint32_t shared_byte_address) {
  return make_descriptor_sw128(shared_byte_address, 16, 1024);
}

// MN-major operand (rows along K, the N side contiguous in 64-value panels
// `panel_bytes` apart): 8 K-rows per 1024-byte atom (stride offset), the
// next 64 N values one panel further (leading offset).
__device__ __forceinline__ uint64_t mn_major_descriptor(uint32_t shared_byte_address,
                                                        uint32_t panel_bytes) {
  return make_descriptor_sw128(shared_byte_address, panel_bytes, 1024);
}

// `desc` with its start address `bytes` further: a 32-bit add on the low
// word (the start address field cannot carry out of its 14 bits for a
// shared-memory address), one instruction where a fresh descriptor takes
// four.
__device__ __forceinline__ uint64_t descriptor_advanced(uint64_t desc, uint32_t bytes) {
  const uint32_t low = static_cast<uint32_t>(desc) + (bytes >> 4);
  return (desc & 0xFFFFFFFF00000000ull) | low;
}

// Orders this thread's register and shared-memory accesses before the
// wgmma that follow (required before the first wgmma touching registers
// written by ordinary instructions).
__device__ __forceinline__ void wgmma_fence() {
#if TESSERA_SM90A_ENABLED
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#if TESSERA_SM90A_ENABLED
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits until at most kPending committed groups are still running.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
#if TESSERA_SM90A_ENABLED
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}

// Keeps the compiler from moving accesses of accumulator registers across
// the asynchronous wgmma that read and write them (issue .. wait).
template <int kCount>
__device__ __forceinline__ void fence_registers(float (&d)[kCount]) {
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int kCount>
__device__ __forceinline__ void fence_registers(uint32_t (&r)[kCount]) {
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+r"(r[i])::"memory");
}
template <int kRows, int kCount>
__device__ __forceinline__ void fence_registers(uint32_t (&r)[kRows][kCount]) {
#pragma unroll
  for (int i = 0; i < kRows; ++i) fence_registers(r[i]);
}

// clang-format off
#define TESSERA_WGMMA_D32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define TESSERA_WGMMA_D64 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define TESSERA_WGMMA_D128 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"
#define TESSERA_WGMMA_ACC8(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
  "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define TESSERA_WGMMA_ACC32(d) TESSERA_WGMMA_ACC8(d, 0), TESSERA_WGMMA_ACC8(d, 8), \
  TESSERA_WGMMA_ACC8(d, 16), TESSERA_WGMMA_ACC8(d, 24)
#define TESSERA_WGMMA_ACC64(d) TESSERA_WGMMA_ACC32(d), TESSERA_WGMMA_ACC8(d, 32), \
  TESSERA_WGMMA_ACC8(d, 40), TESSERA_WGMMA_ACC8(d, 48), TESSERA_WGMMA_ACC8(d, 56)
#define TESSERA_WGMMA_ACC128(d) TESSERA_WGMMA_ACC64(d), TESSERA_WGMMA_ACC8(d, 64), \
  TESSERA_WGMMA_ACC8(d, 72), TESSERA_WGMMA_ACC8(d, 80), TESSERA_WGMMA_ACC8(d, 88), \
  TESSERA_WGMMA_ACC8(d, 96), TESSERA_WGMMA_ACC8(d, 104), TESSERA_WGMMA_ACC8(d, 112), \
  TESSERA_WGMMA_ACC8(d, 120)
// The instruction text: shape, A and B types (f16 or bf16), then operands.
#define TESSERA_WGMMA_SS(n, type, dlist, a, b, scale, trans_b)                                 \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" scale ", 0;\n"                                         \
  "wgmma.mma_async.sync.aligned.m64n" n "k16.f32." type "." type " " dlist ", %" a ", %" b   \
  ", p, 1, 1, 0, %" trans_b ";\n}\n"
#define TESSERA_WGMMA_RS(n, type, dlist, a0, a1, a2, a3, b, scale, trans_b)                    \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %" scale ", 0;\n"                                         \
  "wgmma.mma_async.sync.aligned.m64n" n "k16.f32." type "." type " " dlist ", {%" a0 ", %" a1 \
  ", %" a2 ", %" a3 "}, %" b ", p, 1, 1, %" trans_b ";\n}\n"
// clang-format on

// D (+)= A B, A and B from shared memory (A K-major; B K-major when
// kTransposeB is false, MN-major when true). accumulate false: D = A B.
template <typename T, int kN, bool kTransposeB = false>
__device__ __forceinline__ void wgmma_ss(float (&d)[kN / 2], uint64_t a, uint64_t b,
                                         bool accumulate) {
  static_assert(kN == 64 || kN == 128 || kN == 256, "wgmma_ss: N 64, 128 or 256");
  [[maybe_unused]] const uint32_t scale = accumulate ? 1u : 0u;
#if TESSERA_SM90A_ENABLED
  constexpr bool kBf16 = cuda::std::is_same_v<T, bfloat16_t>;
  if constexpr (kN == 64 && kBf16) {
    asm volatile(TESSERA_WGMMA_SS("64", "bf16", TESSERA_WGMMA_D32, "32", "33", "34", "35")
                 : TESSERA_WGMMA_ACC32(d)
                 : "l"(a), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kN == 64) {
    asm volatile(TESSERA_WGMMA_SS("64", "f16", TESSERA_WGMMA_D32, "32", "33", "34", "35")
                 : TESSERA_WGMMA_ACC32(d)
                 : "l"(a), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kN == 256 && kBf16) {
    asm volatile(TESSERA_WGMMA_SS("256", "bf16", TESSERA_WGMMA_D128, "128", "129", "130", "131")
                 : TESSERA_WGMMA_ACC128(d)
                 : "l"(a), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kN == 256) {
    asm volatile(TESSERA_WGMMA_SS("256", "f16", TESSERA_WGMMA_D128, "128", "129", "130", "131")
                 : TESSERA_WGMMA_ACC128(d)
                 : "l"(a), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kBf16) {
    asm volatile(TESSERA_WGMMA_SS("128", "bf16", TESSERA_WGMMA_D64, "64", "65", "66", "67")
                 : TESSERA_WGMMA_ACC64(d)
                 : "l"(a), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else {
    asm volatile(TESSERA_WGMMA_SS("128", "f16", TESSERA_WGMMA_D64, "64", "65", "66", "67")
                 : TESSERA_WGMMA_ACC64(d)
                 : "l"(a), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  }
#else
  __trap();
#endif
}

// D (+)= A B with A from registers (the warp's mma.sync-layout fragment of
// its 16 rows x 16 k) and B from shared memory.
template <typename T, int kN, bool kTransposeB = false>
__device__ __forceinline__ void wgmma_rs(float (&d)[kN / 2], const uint32_t (&a)[4], uint64_t b,
                                         bool accumulate) {
  static_assert(kN == 64 || kN == 128 || kN == 256, "wgmma_rs: N 64, 128 or 256");
  [[maybe_unused]] const uint32_t scale = accumulate ? 1u : 0u;
#if TESSERA_SM90A_ENABLED
  constexpr bool kBf16 = cuda::std::is_same_v<T, bfloat16_t>;
  if constexpr (kN == 64 && kBf16) {
    asm volatile(
        TESSERA_WGMMA_RS("64", "bf16", TESSERA_WGMMA_D32, "32", "33", "34", "35", "36", "37", "38")
        : TESSERA_WGMMA_ACC32(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kN == 64) {
    asm volatile(
        TESSERA_WGMMA_RS("64", "f16", TESSERA_WGMMA_D32, "32", "33", "34", "35", "36", "37", "38")
        : TESSERA_WGMMA_ACC32(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kN == 256 && kBf16) {
    asm volatile(TESSERA_WGMMA_RS("256", "bf16", TESSERA_WGMMA_D128, "128", "129", "130", "131",
                                  "132", "133", "134")
                 : TESSERA_WGMMA_ACC128(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale),
                   "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kN == 256) {
    asm volatile(TESSERA_WGMMA_RS("256", "f16", TESSERA_WGMMA_D128, "128", "129", "130", "131",
                                  "132", "133", "134")
                 : TESSERA_WGMMA_ACC128(d)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale),
                   "n"(kTransposeB ? 1 : 0));
  } else if constexpr (kBf16) {
    asm volatile(
        TESSERA_WGMMA_RS("128", "bf16", TESSERA_WGMMA_D64, "64", "65", "66", "67", "68", "69", "70")
        : TESSERA_WGMMA_ACC64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  } else {
    asm volatile(
        TESSERA_WGMMA_RS("128", "f16", TESSERA_WGMMA_D64, "64", "65", "66", "67", "68", "69", "70")
        : TESSERA_WGMMA_ACC64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(scale), "n"(kTransposeB ? 1 : 0));
  }
#else
  __trap();
#endif
}

#undef TESSERA_WGMMA_D32
#undef TESSERA_WGMMA_D64
#undef TESSERA_WGMMA_D128
#undef TESSERA_WGMMA_ACC128
#undef TESSERA_WGMMA_ACC8
#undef TESSERA_WGMMA_ACC32
#undef TESSERA_WGMMA_ACC64
#undef TESSERA_WGMMA_SS
#undef TESSERA_WGMMA_RS

}  // namespace tessera::sm90
