// Bulk copies (sm90+): one thread moves a whole contiguous row (any multiple
// of 16 bytes) from global to shared memory with one instruction, and a
// shared-memory mbarrier counts the bytes that have landed. A kernel whose
// tiles are made of scattered rows (a paged KV cache) then spends one
// instruction per row instead of one cp.async and its addressing per 16
// bytes. Thin wrappers over libcu++ cuda::ptx; on older architectures they
// trap (callers choose them only where __CUDA_ARCH__ >= 900).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/ptx>
#include <cuda/std/cstdint>

namespace tessera::sm90 {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
inline constexpr bool kHasBulkCopy = true;
#else
inline constexpr bool kHasBulkCopy = false;
#endif

// One thread initialises; then every thread must pass a __syncthreads
// before the barrier is used.
__device__ __forceinline__ void barrier_init(uint64_t* barrier, uint32_t arrivals) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cuda::ptx::mbarrier_init(barrier, arrivals);
  // Makes the initialisation visible to the async proxy (the copies'
  // completions) as well as to the other threads.
  cuda::ptx::fence_mbarrier_init(cuda::ptx::sem_release, cuda::ptx::scope_cluster);
#else
  __trap();
#endif
}

// Counts this thread's arrival and announces `bytes` more to land in the
// current phase (completions may come before or after: the count may dip
// below zero until the announcement).
__device__ __forceinline__ void arrive_expect_bytes(uint64_t* barrier, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cuda::ptx::mbarrier_arrive_expect_tx(cuda::ptx::sem_release, cuda::ptx::scope_cta,
                                       cuda::ptx::space_shared, barrier, bytes);
#else
  __trap();
#endif
}

// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global
// `source` to shared `destination`, completing on `barrier`.
__device__ __forceinline__ void bulk_copy_to_shared(void* destination, const void* source,
                                                    uint32_t bytes, uint64_t* barrier) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cuda::ptx::cp_async_bulk(cuda::ptx::space_shared, cuda::ptx::space_global, destination, source,
                           bytes, barrier);
#else
  __trap();
#endif
}

// Blocks until the barrier's phase of parity `parity` has completed; the
// bytes it counted are then visible to this thread.
__device__ __forceinline__ void wait_phase(uint64_t* barrier, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  while (!cuda::ptx::mbarrier_try_wait_parity(barrier, parity)) {
  }
#else
  __trap();
#endif
}

}  // namespace tessera::sm90
