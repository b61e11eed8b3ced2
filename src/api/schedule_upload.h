// The host-to-device copy at the end of every plan(): the schedule is built in
// pinned staging memory and copied into the caller's workspace with one
// non-blocking cudaMemcpyAsync. Two staging slots are used in turn, each with
// the event of its last copy: plan() waits only for the copy two plans back,
// so the host may run a step ahead of the GPU without overwriting bytes a
// copy is still reading. Not thread-safe (one per plan object).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace tessera::detail {

class ScheduleUpload {
 public:
  explicit ScheduleUpload(std::size_t slot_bytes) : slot_bytes_(slot_bytes) {}
  ScheduleUpload(const ScheduleUpload&) = delete;
  ScheduleUpload& operator=(const ScheduleUpload&) = delete;
  ~ScheduleUpload();  // waits for copies still reading the staging

  // The next slot (slot_bytes, pinned, allocated at first use), once its
  // previous copy has finished.
  unsigned char* acquire();
  // Copies the first `bytes` of the slot acquire() returned to `device` on
  // `stream` and moves to the other slot.
  void commit(void* device, std::size_t bytes, cudaStream_t stream);

 private:
  static constexpr int kSlots = 2;
  std::size_t slot_bytes_;
  void* staging_ = nullptr;
  cudaEvent_t copy_done_[kSlots] = {nullptr, nullptr};
  bool in_flight_[kSlots] = {false, false};
  int slot_ = 0;
};

}  // namespace tessera::detail
