#include "api/prefill_sm90_launch.cuh"

namespace tessera::detail {

void launch_batch_prefill_sm90_paged(const BatchPrefillLaunch& launch, cudaStream_t stream) {
  launch_batch_prefill_sm90<prefill::PagedKv>(launch, stream);
}

}  // namespace tessera::detail
