// Element types on the device and their conversions to and from float32.
// Device header: compiles under nvcc and NVRTC (no host-only includes).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace tessera {

using half_t = __half;
using bfloat16_t = __nv_bfloat16;
using fp8_e4m3_t = __nv_fp8_e4m3;

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

// Round to nearest even; fp8 saturates to +-448 instead of producing NaN.
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

}  // namespace tessera
