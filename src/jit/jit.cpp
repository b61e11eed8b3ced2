// tessera::jit::compile: memory cache -> disk cache -> codegen + NVRTC, then
// both caches filled (see include/tessera/jit/jit.h).
#include "tessera/jit/jit.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "jit/codegen.h"
#include "jit/disk_cache.h"
#include "jit/include_path.h"
#include "jit/nvrtc_program.h"
#include "tessera/core/error.h"
#include "tessera/version.h"

namespace tessera::jit {

namespace {

std::atomic<int64_t> g_compilations{0};
std::mutex g_memory_mutex;
std::unordered_map<std::string, CompiledKernel>& memory_cache() {
  static std::unordered_map<std::string, CompiledKernel> cache;
  return cache;
}

// A digest of Tessera's device headers as NVRTC will read them, so a cache
// entry built from other headers (a development tree, another install) is
// never loaded. Computed once per process.
const std::string& headers_digest() {
  static const std::string value = [] {
    std::vector<std::filesystem::path> files;
    for (const std::string& dir : detail::include_path().dirs) {
      const std::filesystem::path root = std::filesystem::path(dir) / "tessera";
      std::error_code error;
      if (!std::filesystem::is_directory(root, error)) continue;
      for (auto it = std::filesystem::recursive_directory_iterator(root, error);
           !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
        if (it->is_regular_file()) files.push_back(it->path());
      }
      break;  // the first tree found is the one NVRTC uses
    }
    std::sort(files.begin(), files.end());
    std::string all;
    for (const auto& path : files) {
      std::ifstream file(path, std::ios::binary);
      all += path.filename().string();
      all.append(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    }
    return detail::digest(all);
  }();
  return value;
}

std::string key_text(const VariantSpec& spec, const CompileOptions& options) {
  std::string text = "tessera ";
  text += kVersionString;
  text += "\nheaders " + headers_digest();
  text += "\nnvrtc " + detail::nvrtc_version();
  text += "\ncuda headers " + std::to_string(detail::include_path().cuda_headers_version);
  text += "\narch " + options.arch;
  text += "\nkernel ";
  text += kernel_kind_name(spec.kernel);
  text += "\nq ";
  text += dtype_name(spec.q_dtype);
  text += "\nkv ";
  text += dtype_name(spec.kv_dtype);
  text += "\nhead_dim " + std::to_string(spec.head_dim);
  text += "\nname " + spec.name;
  text += spec.use_softmax ? "\nsoftmax" : "\nno softmax";
  text += spec.custom_mask ? "\ncustom mask" : "";
  for (const ParamSpec& param : spec.params) {
    text += "\nparam " + std::to_string(static_cast<int>(param.type)) + " " + param.name;
  }
  text += "\nsource\n" + spec.source;
  return text;
}

}  // namespace

std::string generate_source(const VariantSpec& spec) { return detail::generate(spec).text; }

std::string cache_key(const VariantSpec& spec, const CompileOptions& options) {
  return detail::digest(key_text(spec, options));
}

std::string cache_directory() { return detail::default_cache_directory(); }

int64_t compilations() { return g_compilations.load(); }

void clear_memory_cache() {
  const std::lock_guard<std::mutex> lock(g_memory_mutex);
  memory_cache().clear();
}

CompiledKernel compile(const VariantSpec& spec, const CompileOptions& options) {
  const detail::GeneratedSource generated = detail::generate(spec, options.arch);  // validates
  TESSERA_CHECK_ARG(options.arch.rfind("sm_", 0) == 0 || options.arch.rfind("compute_", 0) == 0,
                    "arch", "an NVRTC architecture such as sm_90a", options.arch);
  const std::string text = key_text(spec, options);
  const std::string key = detail::digest(text);
  {
    const std::lock_guard<std::mutex> lock(g_memory_mutex);
    const auto found = memory_cache().find(key);
    if (found != memory_cache().end()) {
      CompiledKernel hit = found->second;
      hit.from_memory = true;
      return hit;
    }
  }
  const detail::DiskCache disk(cache_directory());
  CompiledKernel kernel;
  kernel.key = key;
  if (options.use_disk_cache) {
    if (auto entry = disk.load(key, text)) {
      kernel.kernel_name = std::move(entry->kernel_name);
      kernel.mma_kernel_name = std::move(entry->mma_kernel_name);
      kernel.cubin = std::move(entry->cubin);
      kernel.from_disk = true;
    }
  }
  if (!kernel.from_disk) {
    ++g_compilations;
    std::vector<std::string> expressions = {generated.name_expression};
    if (!generated.mma_name_expression.empty()) {
      expressions.push_back(generated.mma_name_expression);
    }
    detail::NvrtcResult result =
        detail::nvrtc_compile(generated.text, expressions, options.arch, detail::include_path());
    kernel.kernel_name = std::move(result.lowered_names[0]);
    if (result.lowered_names.size() > 1 &&
        detail::instantiates_user_variant(result.lowered_names[1])) {
      kernel.mma_kernel_name = std::move(result.lowered_names[1]);
    }
    kernel.cubin = std::move(result.cubin);
    if (options.use_disk_cache) {
      disk.store(key, text, {kernel.kernel_name, kernel.mma_kernel_name, kernel.cubin});
    }
  }
  const std::lock_guard<std::mutex> lock(g_memory_mutex);
  memory_cache().emplace(key, kernel);
  return kernel;
}

}  // namespace tessera::jit
