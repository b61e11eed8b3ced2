// Which kv positions a prefill row attends, for both prefill back ends:
// the custom packed mask, the causal / kv_end / variant mask test, and the
// per-row variants of a thread's rows.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

namespace tessera::prefill {

// Whether the custom mask lets the row starting at element `row_element`
// (token * kv_len; -1 for a padding row past the unit) see kv_pos. Call only
// for kv_pos < kv_len (the caller's kv_end test comes first).
__device__ __forceinline__ bool custom_mask_allows(const uint8_t* mask, int64_t row_element,
                                                   int kv_pos) {
  if (mask == nullptr) return true;
  if (row_element < 0) return false;
  const int64_t e = row_element + kv_pos;
  return (__ldg(mask + (e >> 3)) >> (e & 7)) & 1;
}

// Whether a row at q_pos sees kv_pos: inside the request's keys, not after
// the row under a causal mask, and inside the variant's own mask (window).
template <typename Variant>
__device__ __forceinline__ bool attends(const Variant& variant, bool causal, int kv_pos, int q_pos,
                                        int kv_end) {
  bool ok = kv_pos < kv_end && (!causal || kv_pos <= q_pos);
  if constexpr (Variant::kHasLogitsMask) ok = ok && variant.logits_mask(kv_pos);
  return ok;
}

// The variants of a thread's rows (a variant has no default constructor).
template <typename Variant, int kCount>
struct RowVariants {
  Variant v[kCount];
};
// (Spelled out for the two sizes: <cuda/std/utility>'s integer_sequence
// brings internal-linkage objects whose per-compile names would make NVRTC
// cubins differ between identical compiles.)
template <typename Variant, int kCount, typename Make>
__device__ __forceinline__ RowVariants<Variant, kCount> make_row_variants(Make make) {
  static_assert(kCount == 2 || kCount == 4, "2 or 4 rows per thread");
  if constexpr (kCount == 2) {
    return {{make(0), make(1)}};
  } else {
    return {{make(0), make(1), make(2), make(3)}};
  }
}

}  // namespace tessera::prefill
