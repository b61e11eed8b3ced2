#include "tessera/core/validation.h"

#include <cstdlib>
#include <cstring>

namespace tessera {

bool validation_enabled_by_env() {
  static const bool enabled = [] {
    const char* value = std::getenv("TESSERA_VALIDATE");
    return value != nullptr && std::strcmp(value, "") != 0 && std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

}  // namespace tessera
