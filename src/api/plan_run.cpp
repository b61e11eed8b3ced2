#include "api/plan_run.h"

#include <algorithm>
#include <limits>
#include <string>

#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera::detail {

void expect_workspace_argument(const void* workspace, int device_id) {
  TESSERA_CHECK_ARG(device_id >= 0, "device_id", "a CUDA device index >= 0",
                    std::to_string(device_id));
  TESSERA_CHECK_ARG(workspace != nullptr, "workspace", "a device buffer", "null");
  TESSERA_CHECK_ARG(reinterpret_cast<uintptr_t>(workspace) % kWorkspaceAlignment == 0, "workspace",
                    "a 256-byte aligned address (as cudaMalloc returns)",
                    "address " + std::to_string(reinterpret_cast<uintptr_t>(workspace)));
}

int64_t device_sm_count(int device_id) {
  int count = 0;
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device_id));
  return count;
}

int device_compute_major(int device_id) {
  int major = 0;
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_id));
  return major;
}

void launch_as_programmatic_dependent(cudaLaunchConfig_t& config, cudaLaunchAttribute& attribute,
                                      int device_id) {
  if (device_compute_major(device_id) < 9) return;
  attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
}

bool stream_is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  TESSERA_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  return capture != cudaStreamCaptureStatusNone;
}

void expect_stream_not_capturing(cudaStream_t stream) {
  TESSERA_CHECK_ARG(!stream_is_capturing(stream), "stream",
                    "a stream that is not capturing (plan() runs outside CUDA graphs)",
                    "a capturing stream");
}

int64_t grid_units(bool capturing, int64_t bound, int64_t planned) {
  return capturing ? bound : std::max<int64_t>(1, planned);
}

unsigned unit_grid_ctas(int64_t units, int64_t heads, const char* kernel) {
  constexpr int64_t kMaxGridX = std::numeric_limits<int32_t>::max();
  const bool fits = units >= 1 && heads >= 1 && units <= kMaxGridX / heads;
  if (!fits) {
    throw Error(std::string("tessera: ") + kernel + ": grid of " + std::to_string(units) +
                " units x " + std::to_string(heads) + " heads is outside [1, 2^31 - 1] CTAs");
  }
  return static_cast<unsigned>(units * heads);
}

void expect_validation_outside_capture(bool capturing) {
  TESSERA_CHECK_ARG(!capturing, "validate", "Validate::kOff while the stream captures a CUDA graph",
                    "validation on (argument or TESSERA_VALIDATE=1) during capture");
}

}  // namespace tessera::detail
