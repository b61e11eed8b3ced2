// The prefill back ends every prefill GPU test runs a case on: kFa2 and
// kFa3. Where the Hopper kernel does not serve a case (another GPU, head_dim
// 256, RoPE, fp8 K/V, ...) run() throws an Error naming "backend" before
// launching; run_on_backend then reports the run as not served and the test
// goes on (the kFa2 run still checks the case).
#pragma once

#include <string>

#include "tessera/api/prefill_backend.h"
#include "tessera/core/error.h"

namespace tessera::testing {

inline constexpr PrefillBackend kPrefillBackends[] = {PrefillBackend::kFa2,
                                                      PrefillBackend::kFa3};

inline const char* prefill_backend_name(PrefillBackend backend) {
  switch (backend) {
    case PrefillBackend::kAuto: return "backend auto";
    case PrefillBackend::kFa2: return "backend fa2";
    case PrefillBackend::kFa3: return "backend fa3";
  }
  return "backend ?";
}

// Calls run(); false when backend is kFa3 and the call was refused naming
// "backend" (any other error propagates).
template <typename Run>
bool run_on_backend(PrefillBackend backend, Run&& run) {
  try {
    run();
    return true;
  } catch (const Error& e) {
    if (backend == PrefillBackend::kFa3 &&
        std::string(e.what()).find("backend") != std::string::npos) {
      return false;
    }
    throw;
  }
}

}  // namespace tessera::testing
