// The prefill back ends every prefill GPU test runs a case on: kFa2 and
// kFa3. Where the Hopper kernel does not serve a case (another GPU, head_dim
// 256, RoPE, fp8 K/V, ...) run() throws an Error naming "backend" before
// launching; run_on_backend then prints that and reports the run as not
// served, and the test goes on (the kFa2 run still checks the case).
// TESSERA_TEST_PREFILL_BACKENDS (a comma-separated list of "fa2", "fa3")
// narrows the set for quick reruns of one back end; unset, every test runs
// both.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tessera/api/prefill_backend.h"
#include "tessera/core/error.h"

namespace tessera::testing {

inline constexpr PrefillBackend kPrefillBackends[] = {PrefillBackend::kFa2,
                                                      PrefillBackend::kFa3};

inline std::vector<PrefillBackend> prefill_backends() {
  const char* only = std::getenv("TESSERA_TEST_PREFILL_BACKENDS");
  std::vector<PrefillBackend> chosen;
  for (const PrefillBackend backend : kPrefillBackends) {
    const std::string name = backend == PrefillBackend::kFa2 ? "fa2" : "fa3";
    if (only == nullptr || (std::string(",") + only + ",").find("," + name + ",") !=
                               std::string::npos) {
      chosen.push_back(backend);
    }
  }
  return chosen;
}

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
      // Visible in the log, so a run narrowed to fa3 shows what it skipped.
      std::printf("  [fa3 does not serve this case: %s]\n", e.what());
      return false;
    }
    throw;
  }
}

}  // namespace tessera::testing
