// Variant spec -> the translation unit NVRTC compiles, and the name
// expression of the kernel it instantiates. Plain string work, CPU-tested.
#pragma once

#include <string>

#include "tessera/jit/jit.h"

namespace tessera::jit::detail {

// The user's struct lives in this namespace (with tessera::attention in
// scope); its source is preceded by `#line 1 "variant"`, so NVRTC reports
// errors in it as variant(LINE) with the user's own line numbers.
inline constexpr const char* kUserNamespace = "tessera_jit_user";
inline constexpr const char* kVariantFileName = "variant";

struct GeneratedSource {
  std::string text;
  std::string name_expression;  // "&ns::kernel<...>" for nvrtcAddNameExpression
};

// Throws tessera::Error naming "variant" for an invalid spec (name not an
// identifier, empty source, dtype / head_dim the kernel has no template for).
GeneratedSource generate(const VariantSpec& spec);

bool is_identifier(const std::string& name);

}  // namespace tessera::jit::detail
