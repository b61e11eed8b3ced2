#include "late_copy.h"

#include <cstdint>
#include <stdexcept>

#include "tessera/arch/sm90/grid_dependency.cuh"
#include "tessera/core/cuda_check.h"

namespace tessera::testing {

namespace {

constexpr int kMaxCopies = 4;
constexpr int kBlocks = 8;
constexpr int kThreads = 256;

struct LateCopies {
  uint32_t* destination[kMaxCopies];
  const uint32_t* source[kMaxCopies];
  std::size_t words[kMaxCopies];
  int count;
  uint64_t delay_ns;
};

__device__ uint64_t global_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void late_copy_kernel(const LateCopies copies) {
  tessera::sm90::allow_dependent_launch();
  const uint64_t start = global_ns();
  while (global_ns() - start < copies.delay_ns) {
  }
  for (int c = 0; c < copies.count; ++c) {
    for (std::size_t i = blockIdx.x * std::size_t{kThreads} + threadIdx.x; i < copies.words[c];
         i += std::size_t{kBlocks} * kThreads) {
      copies.destination[c][i] = copies.source[c][i];
    }
  }
}

}  // namespace

void launch_late_copies(const std::vector<LateCopy>& copies, int delay_us, cudaStream_t stream) {
  if (copies.size() > kMaxCopies) throw std::invalid_argument("launch_late_copies: too many copies");
  LateCopies args{};
  args.count = static_cast<int>(copies.size());
  args.delay_ns = static_cast<uint64_t>(delay_us) * 1000;
  for (std::size_t c = 0; c < copies.size(); ++c) {
    if (copies[c].bytes % 4 != 0 || reinterpret_cast<uintptr_t>(copies[c].destination) % 4 != 0 ||
        reinterpret_cast<uintptr_t>(copies[c].source) % 4 != 0) {
      throw std::invalid_argument("launch_late_copies: 4-byte multiples and alignment only");
    }
    args.destination[c] = static_cast<uint32_t*>(copies[c].destination);
    args.source[c] = static_cast<const uint32_t*>(copies[c].source);
    args.words[c] = copies[c].bytes / 4;
  }
  late_copy_kernel<<<kBlocks, kThreads, 0, stream>>>(args);
  TESSERA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tessera::testing
