#include "api/prefill_sm90_launch.cuh"

namespace tessera::detail {

void launch_batch_prefill_sm90_ragged(const BatchPrefillLaunch& launch, cudaStream_t stream) {
  launch_batch_prefill_sm90<prefill::RaggedKv>(launch, stream);
}

}  // namespace tessera::detail
