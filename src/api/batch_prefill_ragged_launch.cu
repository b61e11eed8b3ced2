// Instantiates the batch prefill launcher for ragged K/V (its own translation
// unit so the ragged and paged kernel sets compile in parallel).
#include "api/batch_prefill_launch.cuh"
#include "api/prefill_sm90_launch.cuh"

namespace tessera::detail {

void launch_batch_prefill_ragged(const BatchPrefillLaunch& launch, cudaStream_t stream) {
  if (launch.backend == PrefillBackend::kFa3) {
    return launch_batch_prefill_sm90_ragged(launch, stream);
  }
  launch_batch_prefill<prefill::RaggedKv, /*kFp8Kv=*/false>(launch, stream);
}

}  // namespace tessera::detail
