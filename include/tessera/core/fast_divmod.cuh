// Division by a run-time constant (a page size, a GQA group) without the
// integer divide's ~20-instruction sequence: made once on the host, used in
// kernels. Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

namespace tessera {

// n / divisor and n % divisor for 0 <= n < 2^31 by multiply-shift
// (Granlund-Montgomery round-up method); made once on the host.
struct FastDivmod {
  uint32_t divisor;
  uint32_t multiplier;
  uint32_t shift;

  static __host__ __device__ FastDivmod make(int32_t d) {
    FastDivmod f{static_cast<uint32_t>(d), 0u, 0u};
    while ((1u << f.shift) < f.divisor) ++f.shift;  // ceil(log2 d)
    const uint64_t two_l = uint64_t{1} << f.shift;
    f.multiplier =
        static_cast<uint32_t>(((uint64_t{1} << 32) * (two_l - f.divisor)) / f.divisor + 1);
    return f;
  }
#ifdef __CUDACC__
  __device__ __forceinline__ int div(int n) const {
    const uint32_t u = static_cast<uint32_t>(n);
    return static_cast<int>((__umulhi(u, multiplier) + u) >> shift);
  }
#endif
};


}  // namespace tessera
