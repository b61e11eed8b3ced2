// The built-in attention variants as a plain list, and the run-time
// parameters they read: shared by host code (the AttentionOptions -> variant
// mapping in src/api) and device code (variant.cuh). No device code here, so
// a host compiler can include it.
#pragma once

#include <cuda/std/cstdint>

namespace tessera::attention {

// An explicit list, not a cross product of flags: each entry is one struct in
// variant.cuh and one set of AOT instantiations. Everything else is JIT.
enum class VariantKind : int32_t {
  kPlain,                 // softmax(sm_scale q.k) v
  kSoftCap,               // logits = cap * tanh(sm_scale q.k / cap)
  kSlidingWindow,         // kv positions < q_pos - window_left masked
  kSoftCapSlidingWindow,  // both (Gemma 2)
  kAlibi,                 // logits += slope_h * (kv_pos - q_pos)
  kRopeLlama,             // q and k rotated (NeoX halves) at their positions
  kJit,                   // a JIT-compiled user variant (not a built-in struct)
  // The positional variants with a soft cap and / or a window (JIT-served,
  // none on the AOT list; kJit keeps its value for the C ABI's users).
  kAlibiSoftCap,
  kAlibiSlidingWindow,
  kAlibiSoftCapSlidingWindow,
  kRopeLlamaSoftCap,
  kRopeLlamaSlidingWindow,
  kRopeLlamaSoftCapSlidingWindow,
};

inline constexpr int kNumVariantKinds = 12;  // the built-in ones (kJit excluded)

// Bytes of JIT variants' extra parameters (scalars and device pointers, laid
// out by tessera::jit from the variant spec), carried by value in the kernel
// parameters like the rest of VariantParams.
inline constexpr int kVariantExtraBytes = 64;

// Everything any built-in variant reads, filled once on the host. Fields a
// variant does not use are ignored (and cost nothing in its kernel).
struct VariantParams {
  float sm_scale;            // > 0, resolved from options
  float k_scale;             // logits use k * k_scale (fp8 caches; 1 otherwise)
  float v_scale;             // out uses v * v_scale
  float logits_soft_cap;     // > 0 for the soft-cap variants
  int32_t window_left;       // >= 0 for the window variants
  int32_t num_qo_heads;      // ALiBi's standard slopes depend on it
  const float* alibi_slopes; // device [num_qo_heads], or null: 2^(-8 (h + 1) / H)
  float rope_rcp_scale;      // 1 / rope_scale
  float rope_log2_theta;     // log2(rope_theta)
  // A JIT variant's extra parameters (see jit::ExtraParams); unused by the
  // built-in variants.
  alignas(8) unsigned char extra[kVariantExtraBytes];
};

}  // namespace tessera::attention
