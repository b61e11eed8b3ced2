// The prefill back-end choice (tessera/api/prefill_backend.h): what the
// Hopper kernels serve, and which family a call runs. Host-only.
#pragma once

#include <cstdint>
#include <string>

#include "tessera/api/prefill_backend.h"
#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"

namespace tessera::detail {

// The Hopper kernel's query tile (prefill_sm90::kBlockM), for host code.
inline constexpr int64_t kSm90QTileRows = 128;

// Whether "auto" takes the Hopper kernels at head_dim where they serve the
// call (not at 256: they trail FA2 at <= 1k tokens there).
bool auto_prefers_sm90(int64_t head_dim);

// Whether device_id runs sm_90a code (compute capability 9.0); cached.
bool device_runs_sm90a(int device_id);

// What a call needs of the Hopper kernels, as run() resolved it.
struct PrefillCase {
  int device_id = 0;
  DType dtype = DType::kBFloat16;
  DType kv_dtype = DType::kBFloat16;
  int64_t head_dim = 0;
  attention::VariantKind variant = attention::VariantKind::kPlain;
  bool custom_mask = false;
  bool jit_variant = false;
  bool jit_hopper_kernel = false;  // the JIT variant was compiled with a Hopper kernel
  int64_t rows_per_token = 1;  // the GQA group packed into the q tile rows
  int64_t q_tile_rows = 128;   // the plan's (batch prefill)
  double query_scale = 1.0;    // sm_scale * k_scale: the kernels fold a positive one
};

// Empty when the Hopper kernels serve the case, else why not.
std::string sm90_prefill_unsupported(const PrefillCase& c);

// Whether plan() should shape its schedule for the Hopper kernels (128-row
// q tiles, one CTA per SM): the back end is not kFa2 and the device and
// head_dim allow them.
bool plan_for_sm90(PrefillBackend backend, int device_id, int64_t head_dim);

// kFa2 or kFa3 for this call; kFa3 requested where it cannot run throws
// naming "backend" with the reason.
PrefillBackend resolve_prefill_backend(PrefillBackend requested, const PrefillCase& c);

}  // namespace tessera::detail
