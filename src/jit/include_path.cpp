#include "jit/include_path.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "jit/nvrtc_program.h"

// Compiled in by CMakeLists.txt: this source tree's include directory, the
// directory the library was built in, the relative path from an installed
// libtessera to its headers, and the build machine's CUDA include
// directories (colon-separated).
#ifndef TESSERA_JIT_SOURCE_INCLUDE_DIR
#error "TESSERA_JIT_SOURCE_INCLUDE_DIR must be defined by the build"
#endif

namespace tessera::jit::detail {

namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_paths(std::string_view list) {
  std::vector<std::string> out;
  std::stringstream stream{std::string(list)};
  std::string item;
  while (std::getline(stream, item, ':')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

bool path_exists(const fs::path& path) {
  std::error_code error;
  return fs::exists(path, error);
}

bool same_directory(const fs::path& a, const fs::path& b) {
  std::error_code error;
  return fs::equivalent(a, b, error);
}

// The directory of the libtessera this code was loaded from.
fs::path library_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&include_path), &info) == 0 ||
      info.dli_fname == nullptr) {
    return {};
  }
  std::error_code error;
  const fs::path library = fs::canonical(info.dli_fname, error);
  return error ? fs::path() : library.parent_path();
}

// The CUDA version of a toolkit include directory (CUDART_VERSION of its
// cuda_runtime_api.h, 13020 for 13.2), or 0 where it does not say (a
// libcu++-only directory).
int cuda_version_of(const fs::path& dir) {
  constexpr std::string_view kDefine = "#define CUDART_VERSION";
  std::ifstream header(dir / "cuda_runtime_api.h");
  std::string line;
  while (std::getline(header, line)) {
    if (line.rfind(kDefine, 0) == 0) return std::atoi(line.c_str() + kDefine.size());
  }
  return 0;
}

int nvrtc_major() {
  const std::string version = nvrtc_version();
  return version == "unknown" ? 0 : std::stoi(version);
}

class Builder {
 public:
  void add(const fs::path& dir) {
    for (const std::string& known : path_.dirs) {
      if (same_directory(known, dir)) return;
    }
    path_.dirs.push_back(dir.string());
    if (path_.cuda_headers_version == 0) path_.cuda_headers_version = cuda_version_of(dir);
  }

  // A CUDA include directory and its cccl/ (CUDA 13's home of libcu++).
  void add_cuda(const fs::path& dir, const char* origin) {
    if (!path_exists(dir)) return;
    const int version = cuda_version_of(dir);
    const int major = version / 1000;
    if (version != 0 && nvrtc_major_ != 0 && major != nvrtc_major_) {
      path_.skipped.push_back(dir.string() + " (" + origin + ": CUDA " + std::to_string(major) +
                              " headers, NVRTC is " + std::to_string(nvrtc_major_) + ")");
      return;
    }
    add(dir);
    if (path_exists(dir / "cccl" / "cuda" / "std")) add(dir / "cccl");
  }

  IncludePath take() { return std::move(path_); }

 private:
  IncludePath path_;
  int nvrtc_major_ = nvrtc_major();
};

IncludePath discover() {
  const bool use_builtin = env("TESSERA_JIT_IGNORE_BUILTIN_PATHS") != "1";
  Builder path;
  for (const std::string& dir : split_paths(env("TESSERA_JIT_INCLUDE_PATH"))) path.add(dir);

  const fs::path source_include = TESSERA_JIT_SOURCE_INCLUDE_DIR;
  const fs::path library_dir = library_directory();
  const bool in_build_tree = use_builtin && same_directory(library_dir, TESSERA_JIT_BUILD_DIR);
  if (in_build_tree) path.add(source_include);
  if (!library_dir.empty()) {
    const fs::path beside = (library_dir / TESSERA_JIT_LIBRARY_TO_INCLUDE).lexically_normal();
    if (path_exists(beside / "tessera" / "version.h")) path.add(beside);
  }
  if (use_builtin && path_exists(source_include)) path.add(source_include);

  for (const char* variable : {"CUDA_HOME", "CUDA_PATH"}) {
    if (const std::string root = env(variable); !root.empty()) {
      path.add_cuda(fs::path(root) / "include", variable);
    }
  }
  if (use_builtin) {
    for (const std::string& dir : split_paths(TESSERA_JIT_CUDA_INCLUDE_DIRS)) {
      path.add_cuda(dir, "the toolkit libtessera was built with");
    }
  }
  for (const std::string& dir : split_paths(env("TESSERA_JIT_CUDA_INCLUDE_PATH"))) {
    path.add_cuda(dir, "TESSERA_JIT_CUDA_INCLUDE_PATH");
  }
  return path.take();
}

}  // namespace

const IncludePath& include_path() {
  static const IncludePath path = discover();
  return path;
}

std::string missing_header_message(const std::string& nvrtc_log, const IncludePath& path) {
  // NVRTC: `<file>(<line>): catastrophic error: cannot open source file "<header>"`.
  // Plain string search: std::regex recurses per character and a long log
  // could exhaust the stack.
  constexpr std::string_view kMarker = ": catastrophic error: cannot open source file \"";
  const std::size_t marker = nvrtc_log.find(kMarker);
  if (marker == std::string::npos) return {};
  const std::size_t header_begin = marker + kMarker.size();
  const std::size_t header_end = nvrtc_log.find('"', header_begin);
  const std::size_t newline = nvrtc_log.rfind('\n', marker);
  const std::size_t line_begin = newline == std::string::npos ? 0 : newline + 1;
  const std::string header = nvrtc_log.substr(header_begin, header_end - header_begin);
  const std::string includer = nvrtc_log.substr(line_begin, marker - line_begin);
  std::string message = "tessera: jit: header <" + header + "> (included from " + includer +
                        ") was not found; searched, in order: ";
  if (path.dirs.empty()) message += "(no directory)";
  for (std::size_t i = 0; i < path.dirs.size(); ++i) {
    message += (i > 0 ? ", " : "") + path.dirs[i];
  }
  for (const std::string& skipped : path.skipped) message += "; skipped " + skipped;
  message +=
      ". Tessera's headers come from $TESSERA_JIT_INCLUDE_PATH or the include directory "
      "beside libtessera; the CUDA headers (cuda_fp16.h, libcu++ <cuda/std/...>) from "
      "$CUDA_HOME/include, $CUDA_PATH/include, the toolkit libtessera was built with "
      "(" TESSERA_JIT_CUDA_INCLUDE_DIRS
      ") or $TESSERA_JIT_CUDA_INCLUDE_PATH (the Python "
      "package adds the pip wheels nvidia-cuda-runtime and nvidia-cuda-cccl there). See "
      "docs/jit.md.";
  return message;
}

}  // namespace tessera::jit::detail
