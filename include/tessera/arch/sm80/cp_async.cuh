// cp.async (sm80+): 16-byte copies from global to shared memory that hold no
// registers while in flight, so a kernel can keep many bytes in flight at
// high occupancy. A thread that reads back only what it copied itself needs
// no barrier: cp.async.wait_all makes its own copies visible to it.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

namespace tessera::sm80 {

// `shared_destination` and `global_source` must be 16-byte aligned. .cg
// bypasses L1: the data is used once, from shared memory.
__device__ __forceinline__ void cp_async_16(void* shared_destination, const void* global_source) {
  const auto shared_address =
      static_cast<uint32_t>(__cvta_generic_to_shared(shared_destination));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address),
               "l"(global_source)
               : "memory");
}

// 16-byte cp.async that copies when `valid` and otherwise writes 16 zero
// bytes without reading the source (the ignore-src predicate), so rows past
// the end of a tensor become zeros in the same instruction stream and their
// address may be anything (a row past the tensor's end).
__device__ __forceinline__ void cp_async_16_zfill(uint32_t shared_destination,
                                                  const void* global_source, bool valid) {
  asm volatile(
      "{\n .reg .pred ignore;\n setp.eq.u32 ignore, %2, 0;\n"
      " cp.async.cg.shared.global [%0], [%1], 16, ignore;\n}\n" ::"r"(shared_destination),
      "l"(global_source), "r"(static_cast<uint32_t>(valid))
      : "memory");
}

__device__ __forceinline__ void cp_async_16_zfill(void* shared_destination,
                                                  const void* global_source, bool valid) {
  cp_async_16_zfill(static_cast<uint32_t>(__cvta_generic_to_shared(shared_destination)),
                    global_source, valid);
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// Waits until at most `kPending` of this thread's committed groups are still
// in flight: the wait of a multi-stage pipeline (kPending = stages - 2).
template <int kPending>
__device__ __forceinline__ void cp_async_wait_group() {
  static_assert(kPending >= 0 && kPending < 8, "cp.async.wait_group takes 0..7");
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

}  // namespace tessera::sm80
