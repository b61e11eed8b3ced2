#include "support/host_convert.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstring>
#include <stdexcept>

namespace tessera::testing {

void float_to_storage(DType dtype, float value, void* out) {
  switch (dtype) {
    case DType::kFloat16: {
      const __half h = __float2half_rn(value);
      std::memcpy(out, &h, 2);
      return;
    }
    case DType::kBFloat16: {
      const __nv_bfloat16 b = __float2bfloat16_rn(value);
      std::memcpy(out, &b, 2);
      return;
    }
    case DType::kFloat8E4M3:
    case DType::kFloat8E5M2: {
      const __nv_fp8_storage_t f = __nv_cvt_float_to_fp8(
          value, __NV_SATFINITE, dtype == DType::kFloat8E4M3 ? __NV_E4M3 : __NV_E5M2);
      std::memcpy(out, &f, 1);
      return;
    }
    case DType::kFloat32: std::memcpy(out, &value, 4); return;
    default: throw std::invalid_argument("float_to_storage: not a float type");
  }
}

float storage_to_float(DType dtype, const void* in) {
  switch (dtype) {
    case DType::kFloat16: {
      __half h;
      std::memcpy(&h, in, 2);
      return __half2float(h);
    }
    case DType::kBFloat16: {
      __nv_bfloat16 b;
      std::memcpy(&b, in, 2);
      return __bfloat162float(b);
    }
    case DType::kFloat8E4M3:
    case DType::kFloat8E5M2: {
      __nv_fp8_storage_t f;
      std::memcpy(&f, in, 1);
      const __half_raw h =
          __nv_cvt_fp8_to_halfraw(f, dtype == DType::kFloat8E4M3 ? __NV_E4M3 : __NV_E5M2);
      return __half2float(__half(h));
    }
    case DType::kFloat32: {
      float f;
      std::memcpy(&f, in, 4);
      return f;
    }
    default: throw std::invalid_argument("storage_to_float: not a float type");
  }
}

float round_to(DType dtype, float value) {
  unsigned char bits[4];
  float_to_storage(dtype, value, bits);
  return storage_to_float(dtype, bits);
}

std::vector<float> round_to(DType dtype, std::vector<float> values) {
  for (float& v : values) v = round_to(dtype, v);
  return values;
}

}  // namespace tessera::testing
