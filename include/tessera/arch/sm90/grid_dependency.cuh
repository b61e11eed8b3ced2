// Programmatic dependent launch (sm90+): a kernel launched with the
// programmatic-stream-serialization attribute may start while the kernel
// before it in the stream is still running, and waits in
// wait_for_prior_grid() until that kernel has finished and its writes are
// visible. The earlier kernel calls allow_dependent_launch() to let it be
// scheduled as soon as all of its own CTAs have started. The second kernel's
// launch latency and ramp-up then overlap the first one's tail (a split
// decode and its merge: several microseconds at batch 1).
// Before sm90 both are no-ops and the launch attribute is not set.
// Device header: compiles under nvcc and NVRTC.
#pragma once

namespace tessera::sm90 {

__device__ __forceinline__ void wait_for_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace tessera::sm90
