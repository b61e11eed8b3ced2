// Shared plumbing of the C ABI (tessera/c_api.h): exceptions become return
// codes plus a thread-local message, and the C structs and ints become the
// C++ API's types, with argument errors for NULL or out-of-range values.
#pragma once

#include <cuda_runtime_api.h>
#include <dlpack/dlpack.h>

#include <cstdint>
#include <exception>
#include <span>
#include <utility>

#include "tessera/api/attention_options.h"
#include "tessera/api/decode.h"
#include "tessera/api/paged_kv_cache.h"
#include "tessera/api/prefill_backend.h"
#include "tessera/c_api.h"
#include "tessera/core/dtype.h"
#include "tessera/core/error.h"
#include "tessera/core/validation.h"

namespace tessera::capi {

void set_last_error(const char* message) noexcept;

// Runs f; 0 when it returns, 1 for an argument error, 2 for anything else.
template <typename F>
int guarded(F&& f) noexcept {
  try {
    std::forward<F>(f)();
    return 0;
  } catch (const Error& e) {
    set_last_error(e.what());
    return e.argument().empty() ? 2 : 1;
  } catch (const std::exception& e) {
    set_last_error(e.what());
    return 2;
  } catch (...) {
    set_last_error("tessera: unknown exception");
    return 2;
  }
}

// *tensor, or an argument error naming `name` when it is NULL.
const DLTensor& required(const DLTensor* tensor, const char* name);
// *handle-like pointers: an argument error naming `name` when NULL.
template <typename T>
T& required_handle(T* handle, const char* name) {
  if (handle == nullptr) throw_argument_error(name, "a handle from *_create", "NULL");
  return *handle;
}

// *pointer, where a function writes its result; an argument error naming
// `name` when NULL. Take it before computing the result, so a NULL pointer
// neither costs the work nor leaks a new object.
template <typename T>
T& required_output(T* pointer, const char* name) {
  if (pointer == nullptr) throw_argument_error(name, "an output pointer", "NULL");
  return *pointer;
}

inline cudaStream_t stream_of(void* stream) { return static_cast<cudaStream_t>(stream); }

// A host int32 array argument (plan()): NULL only when empty.
std::span<const int32_t> host_span(const int32_t* data, int64_t length, const char* name);

KVLayout layout_of(int layout, const char* name);
Validate validate_of(int validate);
DecodeBackend backend_of(int backend);
// Prefill's backend int (0 auto, 1 fa2, 2 fa3); an argument error naming `name`.
PrefillBackend prefill_backend_of(int backend, const char* name);
// The C ABI's dtype codes: 0 float16, 1 bfloat16, 2 float8_e4m3fn, 3 float8_e5m2.
DType dtype_of(int32_t code, const char* name);
PosEncodingMode pos_encoding_of(int32_t mode);
// NULL: the defaults.
AttentionOptions attention_options_of(const TesseraAttentionOptions* options);
// The C++ variant inside a TesseraJitVariant (capi_jit.cpp); NULL stays NULL.
const jit::LoadedVariant* loaded_variant_of(const TesseraJitVariant* variant);
PagedKVCacheArg paged_kv_of(const TesseraPagedKV* cache, const char* name);

// The tensors of a *_run_flat call (c_api.h: n data pointers, then n
// descriptors) as DLTensors whose shape and strides point into `words`;
// present[i] is false for an absent tensor (descriptor [-1]). A malformed
// descriptor is an argument error naming "tensors".
void parse_flat_tensors(const int64_t* words, int count, DLTensor* tensors, bool* present);

// A flat list's paged cache: kv_data (v_data absent) or k_data and v_data.
PagedKVCacheArg flat_paged_kv(const DLTensor& first, const DLTensor* v_data, int layout);

// The N tensors of one *_run_flat call; get(i, name): the tensor, or an
// argument error naming `name` when it is absent (as NULL for a DLTensor*).
template <int N>
struct FlatTensors {
  DLTensor tensors[N];
  bool present[N];
  explicit FlatTensors(const int64_t* words) { parse_flat_tensors(words, N, tensors, present); }
  const DLTensor& get(int i, const char* name) const {
    return required(present[i] ? &tensors[i] : nullptr, name);
  }
  const DLTensor* optional(int i) const { return present[i] ? &tensors[i] : nullptr; }
};

}  // namespace tessera::capi
