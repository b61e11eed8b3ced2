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

bool stream_is_capturing(cudaStream_t stream);

// plan() copies from pageable state and may wait on events: throws naming
// "stream" when the stream is capturing a graph.
void expect_stream_not_capturing(cudaStream_t stream);

// Validation mode copies device arrays to the host and synchronises, which
// would invalidate a capture: throws naming "validate" when `capturing`.
void expect_validation_outside_capture(bool capturing);

}  // namespace tessera::detail
