#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <string>

#include "api/prefill_device_fit.h"
#include "tessera/attention/prefill_sm80.cuh"
#include "tessera/core/cuda_check.h"
#include "tessera/core/error.h"

namespace tessera::detail {

namespace {

// The kernel's layout: 2 K + 2 V tiles of kv_tile_rows rows, the paged row
// table (two when V's head dim is not K's), then the Q tile; rows of
// row_pitch_chunks 16-byte chunks (head_dim 80 / 96 / 112 pad to an odd
// count); Q and K rows of head_dim, V rows of head_dim_vo.
constexpr int64_t shared_bytes_for(int64_t q_rows, int64_t head_dim, int64_t head_dim_vo) {
  const int64_t kv_rows =
      prefill::kv_tile_rows(static_cast<int>(head_dim), static_cast<int>(head_dim_vo));
  const auto row_elems = [](int64_t dim) {
    return int64_t{prefill::row_pitch_chunks(static_cast<int>(dim / prefill::kChunkElems))} *
           prefill::kChunkElems;
  };
  const int64_t tables = head_dim == head_dim_vo ? 1 : 2;
  return (2 * kv_rows * (row_elems(head_dim) + row_elems(head_dim_vo)) +
          q_rows * row_elems(head_dim)) *
             2 +
         tables * prefill::kRowTableBytes;
}
constexpr int64_t shared_bytes_for(int64_t q_rows, int64_t head_dim) {
  return shared_bytes_for(q_rows, head_dim, head_dim);
}
static_assert(shared_bytes_for(prefill::kMaxQTile, 64) ==
                      prefill::PrefillTraits<half_t, 64>::kSharedBytes &&
                  shared_bytes_for(prefill::kMaxQTile, 80) ==
                      prefill::PrefillTraits<half_t, 80>::kSharedBytes &&
                  shared_bytes_for(prefill::kMaxQTile, 96) ==
                      prefill::PrefillTraits<half_t, 96>::kSharedBytes &&
                  shared_bytes_for(prefill::kMaxQTile, 112) ==
                      prefill::PrefillTraits<half_t, 112>::kSharedBytes &&
                  shared_bytes_for(prefill::kMaxQTile, 128) ==
                      prefill::PrefillTraits<half_t, 128>::kSharedBytes &&
                  shared_bytes_for(prefill::kSmallQTile, 256) ==
                      prefill::PrefillTraits<half_t, 256>::kSharedBytes &&
                  shared_bytes_for(prefill::kSmallQTile, 192, 128) ==
                      prefill::PrefillTraits<half_t, 192, 128>::kSharedBytes,
              "the host's shared-memory formula follows PrefillTraits");

struct DeviceSharedMemory {
  int64_t per_block = 0;  // opt-in maximum of one block
  int64_t per_sm = 0;
  int64_t reserved_per_block = 0;
  int64_t num_sms = 0;
};

constexpr int kMaxDevices = 64;

DeviceSharedMemory device_shared_memory(int device_id) {
  static std::mutex mutex;
  static std::array<DeviceSharedMemory, kMaxDevices> cache{};
  const bool cacheable = device_id >= 0 && device_id < kMaxDevices;
  if (cacheable) {
    const std::lock_guard<std::mutex> lock(mutex);
    if (cache[static_cast<std::size_t>(device_id)].per_sm > 0) {
      return cache[static_cast<std::size_t>(device_id)];
    }
  }
  int per_block = 0, per_sm = 0, reserved = 0, sms = 0;
  TESSERA_CUDA_CHECK(
      cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_id));
  TESSERA_CUDA_CHECK(
      cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device_id));
  TESSERA_CUDA_CHECK(
      cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device_id));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_id));
  const DeviceSharedMemory m{per_block, per_sm, reserved, sms};
  if (cacheable) {
    const std::lock_guard<std::mutex> lock(mutex);
    cache[static_cast<std::size_t>(device_id)] = m;
  }
  return m;
}

}  // namespace

int64_t prefill_shared_bytes(int64_t q_rows, int64_t head_dim, int64_t head_dim_vo) {
  return shared_bytes_for(q_rows, head_dim, head_dim_vo == 0 ? head_dim : head_dim_vo);
}

PrefillDeviceFit prefill_device_fit(int64_t head_dim, int device_id, const char* argument,
                                    int64_t head_dim_vo) {
  if (head_dim_vo == 0) head_dim_vo = head_dim;
  const DeviceSharedMemory m = device_shared_memory(device_id);
  PrefillDeviceFit fit;
  fit.num_sms = m.num_sms;
  // 32 rows per warp exist for head_dim <= 128 (PrefillTraits::kMaxMBlocks);
  // they pay only if two such CTAs still share an SM.
  const int64_t large_cta =
      shared_bytes_for(prefill::kMaxQTile, head_dim, head_dim_vo) + m.reserved_per_block;
  const bool large_fits = head_dim <= 128 && prefill::kMinCtasPerSm * large_cta <= m.per_sm;
  fit.max_q_tile_rows = large_fits ? prefill::kMaxQTile : prefill::kSmallQTile;
  fit.shared_bytes = shared_bytes_for(fit.max_q_tile_rows, head_dim, head_dim_vo);
  TESSERA_CHECK_ARG(fit.shared_bytes <= m.per_block, argument,
                    "a head_dim whose prefill tiles fit this GPU's " + std::to_string(m.per_block) +
                        " bytes of shared memory per block",
                    "head_dim " + std::to_string(head_dim) + " (needs " +
                        std::to_string(fit.shared_bytes) + " bytes)");
  const int64_t per_cta = fit.shared_bytes + m.reserved_per_block;
  fit.ctas_per_sm =
      std::max<int64_t>(1, std::min<int64_t>(prefill::kMinCtasPerSm, m.per_sm / per_cta));
  return fit;
}

}  // namespace tessera::detail
