#include "tessera/core/dtype.h"

namespace tessera {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat8E4M3: return "float8_e4m3fn";
    case DType::kFloat8E5M2:
      return "float8_e5m2";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
  }
  return "unknown";
}

std::size_t dtype_size_bytes(DType dtype) {
  switch (dtype) {
    case DType::kFloat8E4M3:
    case DType::kFloat8E5M2:
    case DType::kUInt8: return 1;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat64:
    case DType::kInt64: return 8;
  }
  return 0;
}

bool dtype_from_dlpack(DLDataType dl, DType* out) {
  if (dl.lanes != 1) return false;
  if (dl.code == kDLFloat && dl.bits == 16) *out = DType::kFloat16;
  else if (dl.code == kDLBfloat && dl.bits == 16) *out = DType::kBFloat16;
  else if (dl.code == kDLFloat8E4M3FnCode && dl.bits == 8) *out = DType::kFloat8E4M3;
  else if (dl.code == kDLFloat8E5M2Code && dl.bits == 8)
    *out = DType::kFloat8E5M2;
  else if (dl.code == kDLFloat && dl.bits == 32) *out = DType::kFloat32;
  else if (dl.code == kDLFloat && dl.bits == 64) *out = DType::kFloat64;
  else if (dl.code == kDLInt && dl.bits == 32) *out = DType::kInt32;
  else if (dl.code == kDLInt && dl.bits == 64) *out = DType::kInt64;
  else if (dl.code == kDLUInt && dl.bits == 8) *out = DType::kUInt8;
  else return false;
  return true;
}

DLDataType dtype_to_dlpack(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return {kDLFloat, 16, 1};
    case DType::kBFloat16: return {kDLBfloat, 16, 1};
    case DType::kFloat8E4M3: return {kDLFloat8E4M3FnCode, 8, 1};
    case DType::kFloat8E5M2:
      return {kDLFloat8E5M2Code, 8, 1};
    case DType::kFloat32: return {kDLFloat, 32, 1};
    case DType::kFloat64: return {kDLFloat, 64, 1};
    case DType::kInt32: return {kDLInt, 32, 1};
    case DType::kInt64: return {kDLInt, 64, 1};
    case DType::kUInt8: return {kDLUInt, 8, 1};
  }
  return {kDLOpaqueHandle, 0, 0};
}

std::string dlpack_dtype_name(DLDataType dl) {
  DType dtype;
  if (dtype_from_dlpack(dl, &dtype)) return dtype_name(dtype);
  return "DLPack dtype (code " + std::to_string(dl.code) + ", bits " + std::to_string(dl.bits) +
         ", lanes " + std::to_string(dl.lanes) + ")";
}

std::string dtype_list_name(std::initializer_list<DType> dtypes) {
  std::string names;
  std::size_t index = 0;
  for (DType dtype : dtypes) {
    if (index > 0) names += (index + 1 == dtypes.size()) ? " or " : ", ";
    names += dtype_name(dtype);
    ++index;
  }
  return names;
}

}  // namespace tessera
