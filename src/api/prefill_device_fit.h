// What the FA2-style prefill kernel (attention/prefill_sm80.cuh) can run
// with on one GPU, from its shared memory: the largest query tile (128 rows
// where two CTAs of that tile fit an SM, else 64), CTAs per SM, and the
// dynamic shared memory a launch requests. Host-only.
#pragma once

#include <cstdint>

namespace tessera::detail {

struct PrefillDeviceFit {
  int64_t max_q_tile_rows = 64;  // 64 or 128
  int64_t ctas_per_sm = 1;       // 1 or 2 (the kernel's launch bounds allow 2)
  int64_t shared_bytes = 0;      // for max_q_tile_rows
  int64_t num_sms = 0;
};

// Dynamic shared memory of a launch whose tiles have at most q_rows rows.
// head_dim_vo 0: head_dim.
int64_t prefill_shared_bytes(int64_t q_rows, int64_t head_dim, int64_t head_dim_vo = 0);

// Throws naming `argument` when even 64-row tiles of head_dim do not fit
// the device's per-block shared memory (97 KB at head_dim 128 and 256 with
// 64-row Q tiles: every sm_80+ GPU). The attributes are read once per device.
PrefillDeviceFit prefill_device_fit(int64_t head_dim, int device_id, const char* argument,
                                    int64_t head_dim_vo = 0);

}  // namespace tessera::detail
