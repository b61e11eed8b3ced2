// Options shared by the attention entry points (decode now, prefill later):
// the built-in variants and the KV scales of fp8 caches.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>

#include "tessera/api/prefill_backend.h"

namespace tessera {

namespace jit {
class LoadedVariant;  // tessera/jit/jit.h
}  // namespace jit

// FlashInfer's pos_encoding_mode: kRopeLlama rotates q and k (NeoX style) on
// the fly with positions = the token index in the request (q at kv_len - 1).
enum class PosEncodingMode { kNone, kRopeLlama, kAlibi };

struct AttentionOptions {
  double sm_scale = 0.0;          // 0 means 1 / sqrt(head_dim)
  double logits_soft_cap = 0.0;   // > 0: logits = cap * tanh(logits / cap)
  int64_t window_left = -1;       // >= 0: attend to kv positions >= q_pos - window_left
  PosEncodingMode pos_encoding_mode = PosEncodingMode::kNone;
  double rope_scale = 1.0;        // kRopeLlama
  double rope_theta = 1e4;        // kRopeLlama
  // kAlibi: float32 [num_qo_heads] on the device; null means the standard
  // slopes 2^(-8 (h + 1) / H) for H a power of two (FlashInfer's rule).
  const DLTensor* alibi_slopes = nullptr;
  // fp8 KV caches store k / k_scale and v / v_scale.
  double k_scale = 1.0;
  double v_scale = 1.0;
  // A JIT-compiled variant (tessera/jit/jit.h) to run instead of the
  // built-in ones; its spec's kernel kind, dtypes and head_dim must match
  // the call (else rejected naming "options"). The fields above still fill
  // VariantParams for it to read; pos_encoding_mode must stay kNone.
  const jit::LoadedVariant* jit_variant = nullptr;
  // Prefill only (decode rejects it): a custom boolean mask, FlashInfer's
  // packed_custom_mask. uint8, 1-D, contiguous, on the device: for request b
  // (single prefill: the one request) element e = i * kv_len_b + j says
  // whether query i attends to key j, as bit e % 8 of byte mask_begin_b +
  // e / 8 (little-endian bit order), mask_begin_b = sum over earlier
  // requests of ceil(qo_len * kv_len / 8) (flashinfer's segment_packbits
  // layout). ANDed with causal, windows and the variant's own mask. A CUDA
  // graph keeps the pointer of the capture: the buffer must hold any later
  // plan's bits.
  const DLTensor* custom_mask = nullptr;
  // single_prefill_with_kv_cache's kernel family (the batch wrappers take
  // theirs in PrefillPlanShape); decode ignores it.
  PrefillBackend backend = PrefillBackend::kAuto;
};

}  // namespace tessera
