// One NVRTC compilation: source -> cubin for an architecture, with the
// lowered names of its kernels. Errors throw tessera::Error naming "variant"
// with NVRTC's log.
#pragma once

#include <string>
#include <vector>

namespace tessera::jit::detail {

struct NvrtcResult {
  std::vector<char> cubin;
  std::vector<std::string> lowered_names;  // per name expression
};

NvrtcResult nvrtc_compile(const std::string& source,
                          const std::vector<std::string>& name_expressions, const std::string& arch,
                          const std::vector<std::string>& include_dirs);

// "major.minor" of the NVRTC library in use.
std::string nvrtc_version();

}  // namespace tessera::jit::detail
