// Element types on the device and their conversions to and from float32.
// Device header: compiles under nvcc and NVRTC (no host-only includes).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

namespace tessera {

using half_t = __half;
using bfloat16_t = __nv_bfloat16;
using fp8_e4m3_t = __nv_fp8_e4m3;
using fp8_e5m2_t = __nv_fp8_e5m2;

template <typename T>
__device__ __forceinline__ float to_float(T value);
template <>
__device__ __forceinline__ float to_float<float>(float value) { return value; }
template <>
__device__ __forceinline__ float to_float<half_t>(half_t value) { return __half2float(value); }
template <>
__device__ __forceinline__ float to_float<bfloat16_t>(bfloat16_t value) {
  return __bfloat162float(value);
}
template <>
__device__ __forceinline__ float to_float<fp8_e4m3_t>(fp8_e4m3_t value) {
  return static_cast<float>(value);
}
// An e5m2 byte is the high byte of the fp16 of the same value (same exponent
// bias, two of fp16's ten mantissa bits), so widening is a shift: exact,
// infinities and NaNs included, and no fp8 convert instruction.
template <>
__device__ __forceinline__ float to_float<fp8_e5m2_t>(fp8_e5m2_t value) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(value.__x << 8)));
}

// Round to nearest even; fp8 saturates to its largest finite value instead
// of producing NaN (e4m3fn: +-448) or infinity (e5m2: +-57344).
template <typename T>
__device__ __forceinline__ T from_float(float value);
template <>
__device__ __forceinline__ float from_float<float>(float value) { return value; }
template <>
__device__ __forceinline__ half_t from_float<half_t>(float value) { return __float2half_rn(value); }
template <>
__device__ __forceinline__ bfloat16_t from_float<bfloat16_t>(float value) {
  return __float2bfloat16_rn(value);
}
template <>
__device__ __forceinline__ fp8_e4m3_t from_float<fp8_e4m3_t>(float value) {
  fp8_e4m3_t out;
  out.__x = __nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E4M3);
  return out;
}
template <>
__device__ __forceinline__ fp8_e5m2_t from_float<fp8_e5m2_t>(float value) {
  fp8_e5m2_t out;
  out.__x = __nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E5M2);
  return out;
}

// fp8 values 2 * pair and 2 * pair + 1 of `word` (value 0 in the low byte)
// as an fp16 pair; exact for both formats (fp16 holds every e4m3 and e5m2
// value). e5m2 is a byte permute (see to_float); e4m3 needs the convert.
template <typename Fp8>
__device__ __forceinline__ __half2 fp8x2_to_half2(uint32_t word, int pair) {
  if constexpr (cuda::std::is_same_v<Fp8, fp8_e5m2_t>) {
    // Bytes of the pair into the high bytes of two 16-bit lanes, zeros below;
    // read as a __half2 in place (built from two __half_raw halves, the
    // compiler split and re-joined the word: one more PRMT per pair).
    const uint32_t bits = __byte_perm(word, 0u, pair == 0 ? 0x1404u : 0x3424u);
    return *reinterpret_cast<const __half2*>(&bits);
  } else {
    static_assert(cuda::std::is_same_v<Fp8, fp8_e4m3_t>, "an fp8 element type");
    const auto bits = static_cast<__nv_fp8x2_storage_t>(word >> (16 * pair));
    return __half2(__nv_cvt_fp8x2_to_halfraw2(bits, __NV_E4M3));
  }
}

}  // namespace tessera
