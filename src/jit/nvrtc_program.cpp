#include "jit/nvrtc_program.h"

#include <nvrtc.h>

#include <string>
#include <vector>

#include "jit/include_path.h"
#include "tessera/core/error.h"

namespace tessera::jit::detail {

namespace {

// Owns an nvrtcProgram.
class Program {
 public:
  Program(const std::string& source, const char* name) {
    check(nvrtcCreateProgram(&program_, source.c_str(), name, 0, nullptr, nullptr),
          "nvrtcCreateProgram");
  }
  ~Program() {
    if (program_ != nullptr) nvrtcDestroyProgram(&program_);
  }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;
  nvrtcProgram get() const { return program_; }

  static void check(nvrtcResult result, const char* what) {
    if (result != NVRTC_SUCCESS) {
      throw Error(std::string("tessera: jit: ") + what + " failed: " + nvrtcGetErrorString(result));
    }
  }

  std::string log() const {
    std::size_t size = 0;
    if (nvrtcGetProgramLogSize(program_, &size) != NVRTC_SUCCESS || size <= 1) return {};
    std::string text(size, '\0');
    nvrtcGetProgramLog(program_, text.data());
    text.resize(size - 1);  // the log ends with a NUL
    return text;
  }

 private:
  nvrtcProgram program_ = nullptr;
};

}  // namespace

NvrtcResult nvrtc_compile(const std::string& source,
                          const std::vector<std::string>& name_expressions, const std::string& arch,
                          const IncludePath& include_path) {
  Program program(source, "tessera_jit.cu");
  for (const std::string& expression : name_expressions) {
    Program::check(nvrtcAddNameExpression(program.get(), expression.c_str()),
                   "nvrtcAddNameExpression");
  }
  // The AOT build's device flags (CMakeLists.txt) where NVRTC has them
  // (it has no --expt-relaxed-constexpr; the device headers do not need it).
  // A fixed random seed: NVRTC otherwise names internal-linkage objects (e.g.
  // libcu++'s cuda::ptx tag constants) per compile, and identical sources
  // would give different cubins.
  std::vector<std::string> options = {"-arch=" + arch,           "-std=c++20",
                                      "-frandom-seed=tessera",   "-default-device",
                                      "-DNDEBUG",                "-lineinfo"};
  for (const std::string& dir : include_path.dirs) options.push_back("-I" + dir);
  std::vector<const char*> raw;
  raw.reserve(options.size());
  for (const std::string& o : options) raw.push_back(o.c_str());
  const nvrtcResult compiled =
      nvrtcCompileProgram(program.get(), static_cast<int>(raw.size()), raw.data());
  if (compiled != NVRTC_SUCCESS) {
    const std::string log = program.log();
    if (std::string missing = missing_header_message(log, include_path); !missing.empty()) {
      throw Error(missing);
    }
    throw Error("variant", "a variant that compiles (" + arch + ")",
                "NVRTC errors (lines in 'variant' are the variant source's own):\n" + log);
  }
  NvrtcResult result;
  for (const std::string& expression : name_expressions) {
    const char* lowered = nullptr;
    Program::check(nvrtcGetLoweredName(program.get(), expression.c_str(), &lowered),
                   "nvrtcGetLoweredName");
    result.lowered_names.emplace_back(lowered);
  }
  std::size_t size = 0;
  Program::check(nvrtcGetCUBINSize(program.get(), &size), "nvrtcGetCUBINSize");
  result.cubin.resize(size);
  Program::check(nvrtcGetCUBIN(program.get(), result.cubin.data()), "nvrtcGetCUBIN");
  return result;
}

std::string nvrtc_version() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "unknown";
  return std::to_string(major) + "." + std::to_string(minor);
}

}  // namespace tessera::jit::detail
