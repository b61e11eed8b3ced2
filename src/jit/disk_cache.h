// The JIT's disk cache: one file per key, <dir>/<key>.cubin, holding a header
// (magic, the full key text, the kernels' lowered names, payload length,
// payload checksum) and the payload. Writes go to a unique temporary file in the same directory and
// are renamed over the entry (atomic on POSIX), so readers never see a partial entry and processes
// writing the same key at once leave one valid entry. A read that finds a wrong magic, key text,
// length or checksum reports a miss (the caller rebuilds and overwrites).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera::jit::detail {

// 64-bit FNV-1a; digest() hashes with two seeds into 32 hex digits.
uint64_t fnv1a64(const std::string& data, uint64_t seed = 0xcbf29ce484222325ull);
std::string digest(const std::string& data);

// TESSERA_CACHE_DIR, else $XDG_CACHE_HOME/tessera, else $HOME/.cache/tessera,
// else a directory under /tmp.
std::string default_cache_directory();

struct CacheEntry {
  std::string kernel_name;
  std::string mma_kernel_name;  // empty: none
  std::vector<char> cubin;
};

class DiskCache {
 public:
  explicit DiskCache(std::string directory) : directory_(std::move(directory)) {}
  const std::string& directory() const { return directory_; }
  std::string path_for(const std::string& key) const;

  // The entry, or nullopt when missing or not intact.
  std::optional<CacheEntry> load(const std::string& key, const std::string& key_text) const;
  // Best effort: a cache that cannot be written (read-only disk) is skipped
  // silently, since the kernel is already compiled.
  void store(const std::string& key, const std::string& key_text, const CacheEntry& entry) const;

 private:
  std::string directory_;
};

}  // namespace tessera::jit::detail
