// Layout and packing of JIT variants' extra parameters (jit.h): fields in
// spec order, each aligned to its size, in VariantParams::extra.
#include <cstring>
#include <string>
#include <unordered_set>

#include "jit/codegen.h"
#include "tessera/attention/variant_params.h"
#include "tessera/core/error.h"
#include "tessera/jit/jit.h"

namespace tessera::jit {

static_assert(attention::kVariantExtraBytes == 64, "jit.h spells the extra block's size");

namespace {

std::size_t size_of(ParamType type) {
  return type == ParamType::kFloat || type == ParamType::kInt32 ? 4 : 8;
}

const char* type_name(ParamType type) {
  switch (type) {
    case ParamType::kFloat: return "float";
    case ParamType::kInt32: return "int32";
    case ParamType::kFloatPointer: return "const float*";
    case ParamType::kInt32Pointer: return "const int32*";
  }
  return "?";
}

}  // namespace

ExtraLayout extra_layout(const VariantSpec& spec) {
  ExtraLayout layout;
  std::unordered_set<std::string> names;
  for (const ParamSpec& param : spec.params) {
    TESSERA_CHECK_ARG(detail::is_identifier(param.name) && names.insert(param.name).second,
                      "variant", "extra parameter names that are distinct C++ identifiers",
                      "'" + param.name + "'");
    const std::size_t size = size_of(param.type);
    layout.bytes = (layout.bytes + size - 1) / size * size;
    layout.offsets.push_back(layout.bytes);
    layout.bytes += size;
  }
  TESSERA_CHECK_ARG(layout.bytes <= static_cast<std::size_t>(attention::kVariantExtraBytes),
                    "variant",
                    "extra parameters of at most " +
                        std::to_string(attention::kVariantExtraBytes) + " bytes",
                    std::to_string(layout.bytes) + " bytes");
  return layout;
}

ExtraParams::ExtraParams(const VariantSpec& spec)
    : params_(spec.params), layout_(extra_layout(spec)), set_(spec.params.size(), false) {}

template <typename T>
ExtraParams& ExtraParams::put(const std::string& name, ParamType type, const T& value) {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].name != name) continue;
    TESSERA_CHECK_ARG(params_[i].type == type, name,
                      std::string("a value of type ") + type_name(params_[i].type),
                      std::string("a ") + type_name(type));
    std::memcpy(bytes_ + layout_.offsets[i], &value, sizeof(T));
    set_[i] = true;
    return *this;
  }
  throw Error(name, "an extra parameter of the variant", "no parameter of that name");
}

ExtraParams& ExtraParams::set(const std::string& name, float value) {
  return put(name, ParamType::kFloat, value);
}
ExtraParams& ExtraParams::set(const std::string& name, int32_t value) {
  return put(name, ParamType::kInt32, value);
}
ExtraParams& ExtraParams::set(const std::string& name, const float* device_pointer) {
  return put(name, ParamType::kFloatPointer, device_pointer);
}
ExtraParams& ExtraParams::set(const std::string& name, const int32_t* device_pointer) {
  return put(name, ParamType::kInt32Pointer, device_pointer);
}

void ExtraParams::copy_to(unsigned char (&destination)[64]) const {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    TESSERA_CHECK_ARG(set_[i], params_[i].name, "a value (ExtraParams::set)", "never set");
  }
  std::memcpy(destination, bytes_, sizeof(bytes_));
}

}  // namespace tessera::jit
