// The element types Tessera kernels accept, and their mapping from DLPack.
// DLPack 0.6 (Debian's) has no fp8 codes; we use the codes that DLPack 1.1
// gives float8 e4m3fn and e5m2, so tensors exported by newer frameworks are
// accepted.
#pragma once

#include <dlpack/dlpack.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace tessera {

enum class DType : uint8_t {
  kFloat16,
  kBFloat16,
  kFloat8E4M3,  // e4m3fn: no infinities, max 448
  kFloat8E5M2,  // e5m2: IEEE-style (infinities, NaNs), max 57344; an fp16's high byte
  kFloat32,
  kFloat64,
  kInt32,
  kInt64,
  kUInt8,
};

// DLPack 1.1's kDLFloat8_e4m3fn and kDLFloat8_e5m2.
inline constexpr uint8_t kDLFloat8E4M3FnCode = 10;
inline constexpr uint8_t kDLFloat8E5M2Code = 12;

const char* dtype_name(DType dtype);
// float8 e4m3fn or e5m2: the KV-cache formats the attention kernels widen.
constexpr bool is_float8(DType dtype) {
  return dtype == DType::kFloat8E4M3 || dtype == DType::kFloat8E5M2;
}
std::size_t dtype_size_bytes(DType dtype);

// Returns false for types Tessera does not handle (complex, bool, lanes > 1).
bool dtype_from_dlpack(DLDataType dl, DType* out);
DLDataType dtype_to_dlpack(DType dtype);
std::string dlpack_dtype_name(DLDataType dl);

// "float16 or bfloat16", for error messages.
std::string dtype_list_name(std::initializer_list<DType> dtypes);

}  // namespace tessera
