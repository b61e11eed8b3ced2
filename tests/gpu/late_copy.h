// A copy kernel that runs late on purpose, for the tests of programmatic
// dependent launch: it lets the next kernel in the stream launch at once
// (griddepcontrol.launch_dependents on sm90+), spins for `delay_us`, then
// copies. A dependent kernel that reads its inputs before its
// griddepcontrol.wait sees the old bytes of a copy's destination; one that
// writes its outputs before the wait changes a copy's source before it is read.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

namespace tessera::testing {

struct LateCopy {
  void* destination;
  const void* source;
  std::size_t bytes;  // a multiple of 4; both pointers 4-byte aligned
};

void launch_late_copies(const std::vector<LateCopy>& copies, int delay_us, cudaStream_t stream);

}  // namespace tessera::testing
