// Warp and block reductions over float32 (sum), used by the norms.
#pragma once

namespace tessera {

inline constexpr int kWarpSize = 32;

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Sum over the whole block; every thread gets the result. Needs
// kMaxWarps floats of shared memory; blockDim.x a multiple of 32 and at most
// 32 warps. Contains __syncthreads: call from all threads.
template <int kMaxWarps = 32>
__device__ __forceinline__ float block_sum(float value, float* shared_partials) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  value = warp_sum(value);
  if (lane == 0) shared_partials[warp] = value;
  __syncthreads();
  float total = lane < num_warps ? shared_partials[lane] : 0.f;
  total = warp_sum(total);
  __syncthreads();  // shared_partials may be reused by the caller
  return total;
}

}  // namespace tessera
