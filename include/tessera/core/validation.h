// Validation mode: checks that need device data copied to the host (page
// indices against the cache's page count, batch indices against the batch)
// cost a synchronising copy, so they run only when asked: per call through an
// API flag, or for the whole process with the environment variable
// TESSERA_VALIDATE=1 (read once, at first use).
#pragma once

namespace tessera {

bool validation_enabled_by_env();

enum class Validate { kFromEnv, kOff, kOn };

inline bool validation_requested(Validate mode) {
  return mode == Validate::kOn || (mode == Validate::kFromEnv && validation_enabled_by_env());
}

}  // namespace tessera
