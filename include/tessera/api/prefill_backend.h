// Which prefill kernel family runs a call (FlashInfer's backend names):
// kFa2, the FA2-style mma.sync kernels (sm80+, every case); kFa3, the
// Hopper kernels (sm_90a: wgmma, TMA, warp specialisation); kAuto, the
// Hopper kernels on sm90 wherever they serve the case, FA2 elsewhere.
// docs/cpp_api.md lists the cases the Hopper kernels serve; asking for kFa3
// outside them is an error naming "backend".
#pragma once

namespace tessera {

enum class PrefillBackend { kAuto, kFa2, kFa3 };

}  // namespace tessera
