// The JIT variant examples shipped in examples/jit, as VariantSpecs: the
// struct's name comes from the file's "// variant: Name" line. Found through
// TESSERA_EXAMPLES_DIR, else the source tree the tests were built from, else
// examples/jit under the current directory (prebuilt tests on another
// machine run from the repository root).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "tessera/jit/jit.h"

namespace tessera::testing {

inline std::filesystem::path jit_examples_dir() {
  if (const char* env = std::getenv("TESSERA_EXAMPLES_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  const std::filesystem::path built = TESSERA_EXAMPLES_DIR;
  if (std::filesystem::is_directory(built)) return built;
  return "examples/jit";
}

inline jit::VariantSpec jit_example(const std::string& file, jit::KernelKind kernel) {
  std::ifstream in(jit_examples_dir() / file);
  if (!in) throw std::runtime_error("JIT example not found: " + file);
  std::stringstream text;
  text << in.rdbuf();
  jit::VariantSpec spec;
  spec.source = text.str();
  const std::string marker = "// variant: ";
  const auto at = spec.source.find(marker);
  if (at == std::string::npos) throw std::runtime_error("no '// variant:' line in " + file);
  const auto end = spec.source.find('\n', at);
  spec.name = spec.source.substr(at + marker.size(), end - at - marker.size());
  spec.kernel = kernel;
  return spec;
}

}  // namespace tessera::testing
