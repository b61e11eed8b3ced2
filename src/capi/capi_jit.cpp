// C ABI of the JIT (tessera/jit/jit.h): variant specs from C structs,
// compilation (no GPU needed), loading and extra parameters by name.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "capi/capi_support.h"
#include "tessera/jit/jit.h"

using tessera::capi::dtype_of;
using tessera::capi::guarded;

struct TesseraJitVariant {
  std::unique_ptr<tessera::jit::LoadedVariant> variant;
};

namespace {

tessera::jit::KernelKind kernel_of(int32_t code) {
  switch (code) {
    case 0: return tessera::jit::KernelKind::kBatchDecode;
    case 1: return tessera::jit::KernelKind::kSinglePrefill;
    case 2: return tessera::jit::KernelKind::kBatchPrefillRagged;
    case 3: return tessera::jit::KernelKind::kBatchPrefillPaged;
    default:
      tessera::throw_argument_error(
          "kernel", "0 (batch decode), 1 (single prefill), 2 (ragged prefill) or 3 (paged prefill)",
          std::to_string(code));
  }
}

tessera::jit::VariantSpec spec_of(const TesseraJitSpec* c) {
  if (c == nullptr) tessera::throw_argument_error("spec", "a TesseraJitSpec", "NULL");
  if (c->name == nullptr || c->source == nullptr) {
    tessera::throw_argument_error("spec", "name and source strings", "NULL");
  }
  if (c->num_params < 0 || (c->num_params > 0 && c->params == nullptr)) {
    tessera::throw_argument_error("params", "num_params entries", "NULL or a negative count");
  }
  tessera::jit::VariantSpec spec;
  spec.name = c->name;
  spec.source = c->source;
  spec.kernel = kernel_of(c->kernel);
  spec.q_dtype = dtype_of(c->q_dtype, "q_dtype");
  spec.kv_dtype = dtype_of(c->kv_dtype, "kv_dtype");
  spec.head_dim = c->head_dim;
  spec.use_softmax = c->without_softmax == 0;
  spec.custom_mask = c->custom_mask != 0;
  for (int32_t i = 0; i < c->num_params; ++i) {
    const TesseraJitParam& p = c->params[i];
    if (p.name == nullptr) tessera::throw_argument_error("params", "named parameters", "NULL");
    tessera::jit::ParamSpec param;
    param.name = p.name;
    switch (p.type) {
      case 0: param.type = tessera::jit::ParamType::kFloat; break;
      case 1: param.type = tessera::jit::ParamType::kInt32; break;
      case 2: param.type = tessera::jit::ParamType::kFloatPointer; break;
      case 3: param.type = tessera::jit::ParamType::kInt32Pointer; break;
      default:
        tessera::throw_argument_error(p.name, "type 0 (float), 1 (int32), 2 (float*) or 3 (int32*)",
                                      std::to_string(p.type));
    }
    spec.params.push_back(std::move(param));
  }
  return spec;
}

tessera::jit::LoadedVariant& loaded(TesseraJitVariant* handle) {
  return *tessera::capi::required_handle(handle, "handle").variant;
}

}  // namespace

namespace tessera::capi {

const jit::LoadedVariant* loaded_variant_of(const TesseraJitVariant* variant) {
  return variant == nullptr ? nullptr : variant->variant.get();
}

}  // namespace tessera::capi

extern "C" {

int tessera_jit_compile(const TesseraJitSpec* spec, const char* arch, int use_disk_cache,
                        char* key, size_t key_capacity, int* from_disk, int* from_memory,
                        size_t* cubin_bytes) {
  return guarded([&] {
    tessera::jit::CompileOptions options;
    if (arch != nullptr && arch[0] != '\0') options.arch = arch;
    options.use_disk_cache = use_disk_cache != 0;
    const tessera::jit::CompiledKernel kernel = tessera::jit::compile(spec_of(spec), options);
    if (key != nullptr && key_capacity > 0) {
      const std::size_t n = std::min(key_capacity - 1, kernel.key.size());
      std::memcpy(key, kernel.key.data(), n);
      key[n] = '\0';
    }
    if (from_disk != nullptr) *from_disk = kernel.from_disk ? 1 : 0;
    if (from_memory != nullptr) *from_memory = kernel.from_memory ? 1 : 0;
    if (cubin_bytes != nullptr) *cubin_bytes = kernel.cubin.size();
  });
}

int tessera_jit_variant_create(const TesseraJitSpec* spec, const char* arch,
                               TesseraJitVariant** handle) {
  return guarded([&] {
    TesseraJitVariant*& result = tessera::capi::required_output(handle, "handle");
    tessera::jit::CompileOptions options{arch != nullptr ? arch : ""};
    result = new TesseraJitVariant{
        std::make_unique<tessera::jit::LoadedVariant>(spec_of(spec), options)};
  });
}

void tessera_jit_variant_destroy(TesseraJitVariant* handle) { delete handle; }

int tessera_jit_variant_set_float(TesseraJitVariant* handle, const char* name, float value) {
  return guarded([&] { loaded(handle).extra_params().set(name != nullptr ? name : "", value); });
}

int tessera_jit_variant_set_int32(TesseraJitVariant* handle, const char* name, int32_t value) {
  return guarded([&] { loaded(handle).extra_params().set(name != nullptr ? name : "", value); });
}

int tessera_jit_variant_set_pointer(TesseraJitVariant* handle, const char* name,
                                    const void* device_pointer) {
  return guarded([&] {
    tessera::jit::LoadedVariant& variant = loaded(handle);
    const std::string key = name != nullptr ? name : "";
    // The parameter's declared type picks the overload (float* or int32*).
    for (const tessera::jit::ParamSpec& p : variant.spec().params) {
      if (p.name != key) continue;
      if (p.type == tessera::jit::ParamType::kInt32Pointer) {
        variant.extra_params().set(key, static_cast<const int32_t*>(device_pointer));
      } else {
        variant.extra_params().set(key, static_cast<const float*>(device_pointer));
      }
      return;
    }
    variant.extra_params().set(key, static_cast<const float*>(device_pointer));  // names it
  });
}

}  // extern "C"
