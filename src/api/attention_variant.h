// AttentionOptions -> one of the built-in variants (variant_params.h), on the
// host. Shared by every attention entry point: validates the options once
// (errors name "options", or "alibi_slopes" for the slopes tensor) and
// resolves the run-time parameters the kernels read.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>

#include "tessera/api/attention_options.h"
#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"
#include "tessera/jit/jit.h"

namespace tessera::detail {

struct ResolvedVariant {
  attention::VariantKind kind;
  attention::VariantParams params;
};

// The variant `options` selects: every combination of a position encoding
// (none, ALiBi, RoPE-Llama) with a soft cap and / or a window. Throws
// tessera::Error naming "options" for slopes given without ALiBi, a
// position encoding with a jit_variant, and out-of-range values.
attention::VariantKind select_variant(const AttentionOptions& options);

// Whether the variant reads ALiBi slopes.
bool uses_alibi(attention::VariantKind kind);

// Validates `options` for a call with these shapes (slopes tensor: float32
// [num_qo_heads] contiguous on `device`; standard slopes need a power-of-two
// head count) and returns the variant with sm_scale resolved.
ResolvedVariant resolve_variant(const AttentionOptions& options, int64_t head_dim,
                                int64_t num_qo_heads, DLDevice device);

// sm_scale as the kernels use it: options.sm_scale, or 1 / sqrt(head_dim).
double resolved_sm_scale(const AttentionOptions& options, int64_t head_dim);

const char* variant_name(attention::VariantKind kind);

// For VariantKind::kJit: the loaded kernel of options.jit_variant, after
// checking its spec against the call (kernel kind, dtypes, head_dim; named
// "options"). Null when options.jit_variant is null.
// options.custom_mask as the prefill kernels read it: null when absent, else
// checked (uint8, 1-D, contiguous, on `device`, >= required_bytes elements,
// required_bytes < 2^31; errors name "custom_mask").
const uint8_t* resolve_custom_mask(const AttentionOptions& options, int64_t required_bytes,
                                   DLDevice device);
// Decode has no custom masks: throws naming "custom_mask" when one is given.
void expect_no_custom_mask(const AttentionOptions& options);

// Whether split-KV partials of this call merge by summing (a JIT variant
// without softmax: its partials carry lse 0) instead of by lse.
bool sums_partial_states(const AttentionOptions& options);

const void* jit_kernel_for(const AttentionOptions& options, jit::KernelKind kernel, DType q_dtype,
                           DType kv_dtype, int64_t head_dim);

}  // namespace tessera::detail
