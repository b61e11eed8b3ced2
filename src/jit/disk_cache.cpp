#include "jit/disk_cache.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

namespace tessera::jit::detail {

namespace {

constexpr char kMagic[8] = {'T', 'S', 'R', 'J', 'I', 'T', '0', '2'};
constexpr uint64_t kMaxEntryBytes = uint64_t{1} << 30;  // a corrupt length is not trusted

void put_u64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

bool get_u64(const std::string& in, std::size_t& at, uint64_t& value) {
  if (at + 8 > in.size()) return false;
  value = 0;
  for (int i = 0; i < 8; ++i) {
    value |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  }
  at += 8;
  return true;
}

bool get_string(const std::string& in, std::size_t& at, std::string& value) {
  uint64_t size = 0;
  if (!get_u64(in, at, size) || size > kMaxEntryBytes || at + size > in.size()) return false;
  value.assign(in, at, size);
  at += size;
  return true;
}

void put_string(std::string& out, const std::string& value) {
  put_u64(out, value.size());
  out += value;
}

}  // namespace

uint64_t fnv1a64(const std::string& data, uint64_t seed) {
  uint64_t hash = seed;
  for (const char c : data) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string digest(const std::string& data) {
  char text[33];
  std::snprintf(text, sizeof(text), "%016llx%016llx",
                static_cast<unsigned long long>(fnv1a64(data)),
                static_cast<unsigned long long>(fnv1a64(data, 0x84222325cbf29ce4ull)));
  return text;
}

std::string default_cache_directory() {
  if (const char* dir = std::getenv("TESSERA_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return std::string(xdg) + "/tessera";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.cache/tessera";
  }
  return "/tmp/tessera-cache-" + std::to_string(getuid());
}

std::string DiskCache::path_for(const std::string& key) const {
  return directory_ + "/" + key + ".cubin";
}

std::optional<CacheEntry> DiskCache::load(const std::string& key,
                                          const std::string& key_text) const {
  std::ifstream file(path_for(key), std::ios::binary);
  if (!file) return std::nullopt;
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return std::nullopt;
  }
  std::size_t at = sizeof(kMagic);
  std::string stored_key, kernel_name, mma_kernel_name, payload;
  uint64_t checksum = 0;
  if (!get_string(bytes, at, stored_key) || stored_key != key_text ||
      !get_string(bytes, at, kernel_name) || !get_string(bytes, at, mma_kernel_name) ||
      !get_string(bytes, at, payload) || !get_u64(bytes, at, checksum) || at != bytes.size() ||
      checksum != fnv1a64(payload)) {
    return std::nullopt;
  }
  CacheEntry entry;
  entry.kernel_name = std::move(kernel_name);
  entry.mma_kernel_name = std::move(mma_kernel_name);
  entry.cubin.assign(payload.begin(), payload.end());
  return entry;
}

void DiskCache::store(const std::string& key, const std::string& key_text,
                      const CacheEntry& entry) const {
  std::error_code error;
  std::filesystem::create_directories(directory_, error);
  if (error) return;
  std::string bytes(kMagic, sizeof(kMagic));
  put_string(bytes, key_text);
  put_string(bytes, entry.kernel_name);
  put_string(bytes, entry.mma_kernel_name);
  const std::string payload(entry.cubin.begin(), entry.cubin.end());
  put_string(bytes, payload);
  put_u64(bytes, fnv1a64(payload));
  // A name no other writer uses: pid, a per-process counter, a random word.
  static std::atomic<uint64_t> counter{0};
  const std::string temporary = path_for(key) + ".tmp." + std::to_string(getpid()) + "." +
                                std::to_string(counter++) + "." +
                                std::to_string(std::random_device{}());
  {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    if (!file) return;
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    file.flush();
    if (!file) {
      file.close();
      std::filesystem::remove(temporary, error);
      return;
    }
  }
  std::filesystem::rename(temporary, path_for(key), error);
  if (error) std::filesystem::remove(temporary, error);
}

}  // namespace tessera::jit::detail
