// jit::warm_up: a fixed pool of threads taking specs from a shared counter.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "tessera/jit/jit.h"

namespace tessera::jit {

WarmUpResult warm_up(const std::vector<VariantSpec>& specs, const CompileOptions& options,
                     int threads, std::FILE* progress) {
  const auto start = std::chrono::steady_clock::now();
  WarmUpResult result;
  result.kernels.resize(specs.size());
  std::vector<std::exception_ptr> errors(specs.size());
  std::atomic<std::size_t> next{0};
  std::mutex progress_mutex;
  std::size_t done = 0, compiled = 0, from_disk = 0;
  const auto work = [&] {
    for (std::size_t i = next++; i < specs.size(); i = next++) {
      try {
        result.kernels[i] = compile(specs[i], options);
      } catch (...) {
        errors[i] = std::current_exception();
      }
      const std::lock_guard<std::mutex> lock(progress_mutex);
      ++done;
      if (!errors[i]) {
        if (result.kernels[i].from_disk) {
          ++from_disk;
        } else if (!result.kernels[i].from_memory) {
          ++compiled;
        }
      }
      if (progress != nullptr) {
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(progress, "tessera jit: %zu/%zu ready (%zu compiled, %zu from disk) %.1f s\n",
                     done, specs.size(), compiled, from_disk, seconds);
        std::fflush(progress);
      }
    }
  };
  unsigned count = threads > 0 ? static_cast<unsigned>(threads)
                               : std::max(1u, std::thread::hardware_concurrency());
  count = std::min<unsigned>(count, static_cast<unsigned>(std::max<std::size_t>(specs.size(), 1)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < count; ++t) pool.emplace_back(work);
  work();
  for (std::thread& thread : pool) thread.join();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const std::exception_ptr& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  return result;
}

}  // namespace tessera::jit
