// Warpgroup roles (sm90): which warpgroup a thread is in, register
// reallocation between producer and consumer warpgroups (setmaxnreg,
// sm_90a; it takes effect only when the kernel has a register cap at entry,
// __launch_bounds__(threads, 1), and each role is one branch of an if), and
// named barriers among a subset of warps.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/arch/sm90/wgmma.cuh"

namespace tessera::sm90 {

inline constexpr int kWarpgroupThreads = 128;

__device__ __forceinline__ int warpgroup_index() {
  return static_cast<int>(threadIdx.x) / kWarpgroupThreads;
}

template <int kRegisters>
__device__ __forceinline__ void registers_increase() {
#if TESSERA_SM90A_ENABLED
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
#endif
}

template <int kRegisters>
__device__ __forceinline__ void registers_decrease() {
#if TESSERA_SM90A_ENABLED
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
#endif
}

// bar.sync / bar.arrive on hardware barrier `id` (1..15; 0 is
// __syncthreads) for `threads` threads (a multiple of 32).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Orders this thread's ordinary shared-memory writes before later reads by
// the async proxy (wgmma operands, TMA stores) once a barrier publishes them.
__device__ __forceinline__ void fence_shared_to_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

}  // namespace tessera::sm90
