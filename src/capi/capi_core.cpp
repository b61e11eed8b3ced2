#include <cstdint>
#include <string>

#include "capi/capi_support.h"
#include "tessera/version.h"

namespace tessera::capi {

namespace {
thread_local std::string last_error;
}  // namespace

void set_last_error(const char* message) noexcept {
  try {
    last_error = message;
  } catch (...) {
    // Out of memory while copying a message: keep the previous one.
  }
}

const DLTensor& required(const DLTensor* tensor, const char* name) {
  if (tensor == nullptr) throw_argument_error(name, "a tensor", "NULL");
  return *tensor;
}

std::span<const int32_t> host_span(const int32_t* data, int64_t length, const char* name) {
  if (length < 0 || (data == nullptr && length > 0)) {
    throw_argument_error(name, "a host int32 array", "NULL or a negative length");
  }
  return {data, static_cast<std::size_t>(length)};
}

KVLayout layout_of(int layout, const char* name) {
  if (layout == 0) return KVLayout::kNHD;
  if (layout == 1) return KVLayout::kHND;
  throw_argument_error(name, "0 (NHD) or 1 (HND)", std::to_string(layout));
}

Validate validate_of(int validate) {
  switch (validate) {
    case 0: return Validate::kFromEnv;
    case 1: return Validate::kOff;
    case 2: return Validate::kOn;
    default:
      throw_argument_error("validate", "0 (from TESSERA_VALIDATE), 1 (off) or 2 (on)",
                           std::to_string(validate));
  }
}

DecodeBackend backend_of(int backend) {
  switch (backend) {
    case 0: return DecodeBackend::kAuto;
    case 1: return DecodeBackend::kCudaCores;
    case 2: return DecodeBackend::kTensorCores;
    default:
      throw_argument_error("backend", "0 (auto), 1 (CUDA cores) or 2 (tensor cores)",
                           std::to_string(backend));
  }
}

PrefillBackend prefill_backend_of(int backend, const char* name) {
  switch (backend) {
    case 0: return PrefillBackend::kAuto;
    case 1: return PrefillBackend::kFa2;
    case 2: return PrefillBackend::kFa3;
    default: throw_argument_error(name, "0 (auto), 1 (fa2) or 2 (fa3)", std::to_string(backend));
  }
}

DType dtype_of(int32_t code, const char* name) {
  switch (code) {
    case 0: return DType::kFloat16;
    case 1: return DType::kBFloat16;
    case 2: return DType::kFloat8E4M3;
    case 3: return DType::kFloat8E5M2;
    default:
      throw_argument_error(name, "0 (float16), 1 (bfloat16), 2 (float8_e4m3fn) or 3 (float8_e5m2)",
                           std::to_string(code));
  }
}

PosEncodingMode pos_encoding_of(int32_t mode) {
  switch (mode) {
    case 0: return PosEncodingMode::kNone;
    case 1: return PosEncodingMode::kRopeLlama;
    case 2: return PosEncodingMode::kAlibi;
    default:
      throw_argument_error("pos_encoding_mode", "0 (NONE), 1 (ROPE_LLAMA) or 2 (ALIBI)",
                           std::to_string(mode));
  }
}

AttentionOptions attention_options_of(const TesseraAttentionOptions* o) {
  AttentionOptions options;
  if (o == nullptr) return options;
  options.sm_scale = o->sm_scale;
  options.logits_soft_cap = o->logits_soft_cap;
  options.window_left = o->window_left < 0 ? -1 : o->window_left;
  options.pos_encoding_mode = pos_encoding_of(o->pos_encoding_mode);
  if (o->rope_scale != 0.0) options.rope_scale = o->rope_scale;
  if (o->rope_theta != 0.0) options.rope_theta = o->rope_theta;
  options.alibi_slopes = o->alibi_slopes;
  if (o->k_scale != 0.0) options.k_scale = o->k_scale;
  if (o->v_scale != 0.0) options.v_scale = o->v_scale;
  options.jit_variant = loaded_variant_of(o->jit_variant);
  options.custom_mask = o->custom_mask;
  options.backend = prefill_backend_of(o->prefill_backend, "prefill_backend");
  return options;
}

PagedKVCacheArg paged_kv_of(const TesseraPagedKV* cache, const char* name) {
  if (cache == nullptr || cache->first == nullptr) {
    throw_argument_error(name, "a paged KV cache (kv_data, or k_data and v_data)", "NULL");
  }
  const KVLayout layout = layout_of(cache->layout, "kv_layout");
  return cache->v_data == nullptr ? PagedKVCacheArg::combined(*cache->first, layout)
                                  : PagedKVCacheArg::separate(*cache->first, *cache->v_data,
                                                              layout);
}

PagedKVCacheArg flat_paged_kv(const DLTensor& first, const DLTensor* v_data, int layout) {
  const KVLayout kv_layout = layout_of(layout, "kv_layout");
  return v_data == nullptr ? PagedKVCacheArg::combined(first, kv_layout)
                           : PagedKVCacheArg::separate(first, *v_data, kv_layout);
}

void parse_flat_tensors(const int64_t* words, int count, DLTensor* tensors, bool* present) {
  if (words == nullptr) throw_argument_error("tensors", "a flat tensor list", "NULL");
  // Descriptors follow the data pointers; each is [ndim, dtype, device,
  // shape[ndim], strides[ndim]] or [-1] (c_api.h).
  constexpr int64_t kMaxDims = 16;
  const int64_t* descriptor = words + count;
  for (int i = 0; i < count; ++i) {
    const int64_t ndim = descriptor[0];
    present[i] = ndim >= 0;
    DLTensor& t = tensors[i];
    t = DLTensor{};
    if (ndim < 0) {
      if (ndim != -1 || words[i] != 0) {
        throw_argument_error("tensors", "ndim -1 and data 0 for an absent tensor",
                             "ndim " + std::to_string(ndim) + " in descriptor " +
                                 std::to_string(i));
      }
      descriptor += 1;
      continue;
    }
    if (ndim > kMaxDims) {
      throw_argument_error("tensors", "at most 16 dimensions",
                           "ndim " + std::to_string(ndim) + " in descriptor " + std::to_string(i));
    }
    const auto dtype = static_cast<uint64_t>(descriptor[1]);
    const int64_t device = descriptor[2];
    t.data = reinterpret_cast<void*>(static_cast<uintptr_t>(words[i]));
    t.dtype = DLDataType{static_cast<uint8_t>(dtype & 0xff),
                         static_cast<uint8_t>(dtype >> 8 & 0xff),
                         static_cast<uint16_t>(dtype >> 16 & 0xffff)};
    if (device >= 0) {
      t.device = DLDevice{kDLCUDA, static_cast<int32_t>(device)};
    } else {
      t.device = DLDevice{device == -2 ? kDLCUDAHost : kDLCPU, 0};
    }
    t.ndim = static_cast<int32_t>(ndim);
    // DLTensor's shape is int64_t*: the caller's array outlives the call.
    t.shape = const_cast<int64_t*>(descriptor + 3);
    t.strides = const_cast<int64_t*>(descriptor + 3 + ndim);
    descriptor += 3 + 2 * ndim;
  }
}

}  // namespace tessera::capi

extern "C" {

const char* tessera_last_error(void) { return tessera::capi::last_error.c_str(); }

int tessera_version(void) {
  return TESSERA_VERSION_MAJOR * 10000 + TESSERA_VERSION_MINOR * 100 + TESSERA_VERSION_PATCH;
}

}  // extern "C"
