#include "api/schedule_upload.h"

#include "tessera/core/cuda_check.h"

namespace tessera::detail {

ScheduleUpload::~ScheduleUpload() {
  // Errors are ignored: nothing to report from a destructor.
  for (int slot = 0; slot < kSlots; ++slot) {
    if (in_flight_[slot]) cudaEventSynchronize(copy_done_[slot]);
    if (copy_done_[slot] != nullptr) cudaEventDestroy(copy_done_[slot]);
  }
  if (staging_ != nullptr) cudaFreeHost(staging_);
}

unsigned char* ScheduleUpload::acquire() {
  if (staging_ == nullptr) {
    TESSERA_CUDA_CHECK(cudaHostAlloc(&staging_, kSlots * slot_bytes_, cudaHostAllocDefault));
  }
  if (in_flight_[slot_]) {
    TESSERA_CUDA_CHECK(cudaEventSynchronize(copy_done_[slot_]));
    in_flight_[slot_] = false;
  }
  return static_cast<unsigned char*>(staging_) + static_cast<std::size_t>(slot_) * slot_bytes_;
}

void ScheduleUpload::commit(void* device, std::size_t bytes, cudaStream_t stream) {
  if (copy_done_[slot_] == nullptr) {
    // No timing: the cheapest event to record and wait on.
    TESSERA_CUDA_CHECK(cudaEventCreateWithFlags(&copy_done_[slot_], cudaEventDisableTiming));
  }
  const unsigned char* source =
      static_cast<unsigned char*>(staging_) + static_cast<std::size_t>(slot_) * slot_bytes_;
  TESSERA_CUDA_CHECK(cudaMemcpyAsync(device, source, bytes, cudaMemcpyHostToDevice, stream));
  TESSERA_CUDA_CHECK(cudaEventRecord(copy_done_[slot_], stream));
  in_flight_[slot_] = true;
  slot_ = (slot_ + 1) % kSlots;
}

}  // namespace tessera::detail
