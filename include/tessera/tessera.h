// Tessera: kernels for LLM inference serving. One include for the C++ API.
#pragma once

#include "tessera/api/activation.h"
#include "tessera/api/attention_options.h"
#include "tessera/api/cascade.h"
#include "tessera/api/decode.h"
#include "tessera/api/gemm.h"
#include "tessera/api/norm.h"
#include "tessera/api/page.h"
#include "tessera/api/paged_kv_cache.h"
#include "tessera/api/prefill.h"
#include "tessera/api/rope.h"
#include "tessera/api/sampling.h"
#include "tessera/core/dtype.h"
#include "tessera/core/error.h"
#include "tessera/core/validation.h"
#include "tessera/version.h"
