// One NVRTC compilation: source -> cubin for an architecture, with the
// lowered names of its kernels. Errors throw tessera::Error naming "variant"
// with NVRTC's log, except a header that cannot be found: that is the
// installation's problem, not the variant's, and its message says which
// header and where it was looked for (include_path.h).
#pragma once

#include <string>
#include <vector>

namespace tessera::jit::detail {

struct IncludePath;

struct NvrtcResult {
  std::vector<char> cubin;
  std::vector<std::string> lowered_names;  // per name expression
};

NvrtcResult nvrtc_compile(const std::string& source,
                          const std::vector<std::string>& name_expressions, const std::string& arch,
                          const IncludePath& include_path);

// "major.minor" of the NVRTC library in use.
std::string nvrtc_version();

}  // namespace tessera::jit::detail
