// The JIT side of the AOT list (aot_kernels.h): built-in variants whose
// kernel libtessera does not carry, compiled with NVRTC on first use and
// kept loaded for the life of the process (one per kernel kind, variant,
// dtypes, head_dim and architecture).
#pragma once

#include <cstdint>

#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"
#include "tessera/jit/jit.h"

namespace tessera::detail {

// The loaded kernel for this built-in variant on the current device's
// architecture. Thread-safe; the first call compiles (or reads the disk
// cache) and loads, with this thread's stream capture switched to relaxed
// mode for the load, so a first use inside cudaStreamBeginCapture works.
const jit::LoadedVariant& builtin_jit_variant(jit::KernelKind kernel,
                                              attention::VariantKind variant, DType q_dtype,
                                              DType kv_dtype, int64_t head_dim,
                                              bool custom_mask = false);

}  // namespace tessera::detail
