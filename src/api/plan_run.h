// Host plumbing shared by the plan/run wrappers (batch decode, batch prefill,
// block-sparse): the constructor's workspace arguments, the device's SM
// count, and the CUDA-graph rules (plan() outside a capture, no validation
// mode inside one), each with the same named errors everywhere.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "plan/workspace_regions.h"

namespace tessera::detail {

// The workspace base must start on a region boundary (workspace_regions.h).
inline constexpr std::size_t kWorkspaceAlignment = plan::kRegionAlignment;

// Throws naming "device_id" (< 0) or "workspace" (null, not 256-aligned).
void expect_workspace_argument(const void* workspace, int device_id);

int64_t device_sm_count(int device_id);

// Compute capability major version (9 on Hopper).
int device_compute_major(int device_id);

// On sm90+, makes `config` launch its kernel as a programmatic dependent of
// the kernel before it in the stream (arch/sm90/grid_dependency.cuh: the
// kernel waits before it touches that kernel's data); before sm90 leaves it
// a plain launch. `attribute` is the storage `config` points at: it must
// live until the launch call.
void launch_as_programmatic_dependent(cudaLaunchConfig_t& config, cudaLaunchAttribute& attribute,
                                      int device_id);

bool stream_is_capturing(cudaStream_t stream);

// plan() copies from pageable state and may wait on events: throws naming
// "stream" when the stream is capturing a graph.
void expect_stream_not_capturing(cudaStream_t stream);

// The units (decode work units, prefill CTA slots, merge tiles or requests)
// a kernel's grid covers: the bound while capturing (a graph replays any
// later plan within it), else the plan's own count (at least 1; a grid of
// CTAs that would all exit is launch overhead and, for a unit-major grid,
// idle CTAs issued before the next kernel's).
int64_t grid_units(bool capturing, int64_t bound, int64_t planned);

// CTAs of a unit-major grid (include/tessera/attention/unit_grid.cuh):
// units x heads. Throws naming `kernel` outside [1, 2^31 - 1].
unsigned unit_grid_ctas(int64_t units, int64_t heads, const char* kernel);

// Validation mode copies device arrays to the host and synchronises, which
// would invalidate a capture: throws naming "validate" when `capturing`.
void expect_validation_outside_capture(bool capturing);

}  // namespace tessera::detail
