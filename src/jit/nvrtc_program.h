// One NVRTC compilation: source -> cubin for an architecture, with the
// lowered name of one kernel. Errors throw tessera::Error naming "variant"
// with NVRTC's log.
#pragma once

#include <string>
#include <vector>

namespace tessera::jit::detail {

struct NvrtcResult {
  std::vector<char> cubin;
  std::string lowered_name;
};

NvrtcResult nvrtc_compile(const std::string& source, const std::string& name_expression,
                          const std::string& arch, const std::vector<std::string>& include_dirs);

// "major.minor" of the NVRTC library in use.
std::string nvrtc_version();

}  // namespace tessera::jit::detail
