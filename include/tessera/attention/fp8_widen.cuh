// fp8 K/V widened to q's 16-bit type in registers: 16 e4m3 / e5m2 values
// (one 16-byte chunk) become two 16-byte chunks of T. Exact: fp16 and bf16
// hold every e4m3 and e5m2 value; the scales stay in the variant (k) and
// the output (v). Used where fp8 tiles land in shared memory before the
// tensor cores read them (prefill_tiles_sm80.cuh, prefill_sm90/load.cuh).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/arch/sm80/mma.cuh"
#include "tessera/core/numeric.cuh"

namespace tessera::attention {

template <typename T, typename Fp8>
__device__ __forceinline__ void widen_fp8_chunk(const uint4& chunk, uint4& low, uint4& high) {
  const uint32_t words[4] = {chunk.x, chunk.y, chunk.z, chunk.w};
  uint32_t wide[8];  // 16 values as 8 packed 16-bit pairs
#pragma unroll
  for (int w = 0; w < 4; ++w) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const __half2 halves = fp8x2_to_half2<Fp8>(words[w], h);
      if constexpr (cuda::std::is_same_v<T, half_t>) {
        wide[2 * w + h] = *reinterpret_cast<const uint32_t*>(&halves);
      } else {
        wide[2 * w + h] = sm80::pack2<T>(__low2float(halves), __high2float(halves));
      }
    }
  }
  low = make_uint4(wide[0], wide[1], wide[2], wide[3]);
  high = make_uint4(wide[4], wide[5], wide[6], wide[7]);
}

}  // namespace tessera::attention
