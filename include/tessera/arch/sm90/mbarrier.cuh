// Shared-memory mbarriers (sm90) through libcu++'s cuda::ptx: the full /
// empty handshake of a producer-consumer ring. A barrier completes a phase
// when its expected arrivals (and, for TMA, transaction bytes) are in; the
// waiter names the phase by its parity. A fresh barrier is in phase 0, and
// waiting for parity 1 returns at once, so a ring's "empty" waits start at
// parity 1 (every slot free) and its "full" waits at parity 0.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/ptx>
#include <cuda/std/cstdint>

namespace tessera::sm90 {

__device__ __forceinline__ void barrier_init(uint64_t* barrier, uint32_t arrivals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cuda::ptx::mbarrier_init(barrier, arrivals);
#endif
}

// Makes initialised barriers visible to the async proxy (TMA complete_tx)
// and to the other threads (with the __syncthreads that follows).
__device__ __forceinline__ void barrier_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void barrier_arrive(uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  (void)cuda::ptx::mbarrier_arrive(barrier);
#endif
}

// One arrival that also expects `bytes` of TMA transactions this phase.
__device__ __forceinline__ void barrier_arrive_expect_bytes(uint64_t* barrier, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  (void)cuda::ptx::mbarrier_arrive_expect_tx(cuda::ptx::sem_release, cuda::ptx::scope_cta,
                                             cuda::ptx::space_shared, barrier, bytes);
#endif
}

// One arrival of this thread, made when every cp.async it issued before
// lands (cp.async.mbarrier.arrive.noinc: the arrival counts among those
// barrier_init expects), so a ring slot filled by many threads' cp.async
// completes without a wait in the producer.
__device__ __forceinline__ void barrier_arrive_when_copies_land(uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(
                   static_cast<uint32_t>(__cvta_generic_to_shared(barrier)))
               : "memory");
#endif
}

__device__ __forceinline__ void barrier_wait(uint64_t* barrier, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  while (!cuda::ptx::mbarrier_try_wait_parity(barrier, parity)) {
  }
#endif
}

// A ring position: slot index and the parity of its current use.
template <int kStages>
struct RingPosition {
  int slot = 0;
  uint32_t parity = 0;
  __device__ __forceinline__ void advance() {
    if (++slot == kStages) {
      slot = 0;
      parity ^= 1u;
    }
  }
};

}  // namespace tessera::sm90
