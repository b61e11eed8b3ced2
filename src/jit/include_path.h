// Where the JIT's NVRTC finds headers, and what it says when one is missing.
//
// Searched in this order (first match per header wins), computed once per
// process at the first compile:
//   1. $TESSERA_JIT_INCLUDE_PATH (colon-separated), as given.
//   2. Tessera's device headers: the source tree when libtessera is loaded
//      from the build directory it was built in; otherwise the include
//      directory beside the loaded library (found with dladdr): an install
//      prefix's <prefix>/lib -> <prefix>/include, a wheel's tessera/lib ->
//      tessera/include. Then the source tree, if it still exists.
//   3. The CUDA headers (cuda_fp16.h ..., libcu++ <cuda/std/...>, each
//      directory with its cccl/ subdirectory where it has one):
//      $CUDA_HOME/include, $CUDA_PATH/include, the toolkit libtessera was
//      built with, then $TESSERA_JIT_CUDA_INCLUDE_PATH (colon-separated; the
//      Python package appends the pip CUDA wheels' include directories).
//      Directories that do not exist are left out, and so are toolkits of
//      another CUDA major version than the NVRTC in use (their headers do
//      not match its built-ins).
// TESSERA_JIT_IGNORE_BUILTIN_PATHS=1 drops the paths compiled into the
// library (the source tree and the build machine's toolkit), so tests can
// check that an installed copy finds everything on its own.
#pragma once

#include <string>
#include <vector>

namespace tessera::jit::detail {

struct IncludePath {
  std::vector<std::string> dirs;     // passed to NVRTC as -I, in order
  std::vector<std::string> skipped;  // "<dir> (<why>)", for error messages
  // CUDART_VERSION of the first CUDA headers searched (0: none found), for
  // the cache key: other headers may give another cubin.
  int cuda_headers_version = 0;
};

const IncludePath& include_path();

// When NVRTC's log says a header could not be opened: a message naming the
// header, the file that included it and every directory searched. Empty
// when the log reports some other error.
std::string missing_header_message(const std::string& nvrtc_log, const IncludePath& path);

}  // namespace tessera::jit::detail
