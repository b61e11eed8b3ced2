// Compile-time names of a kernel instance's types, for the AOT list
// (aot_kernels.h): the DType of an element type and the VariantKind of a
// built-in variant struct; and the way back, from a run-time VariantKind to
// its struct (visit_variant_kind), for the launches' dispatch.
#pragma once

#include <cuda/std/type_traits>
#include <string>

#include "tessera/attention/variant.cuh"
#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"
#include "tessera/core/error.h"
#include "tessera/core/numeric.cuh"

namespace tessera::detail {

template <typename T>
constexpr DType dtype_of() {
  if constexpr (cuda::std::is_same_v<T, half_t>)
    return DType::kFloat16;
  else if constexpr (cuda::std::is_same_v<T, bfloat16_t>)
    return DType::kBFloat16;
  else if constexpr (cuda::std::is_same_v<T, fp8_e4m3_t>)
    return DType::kFloat8E4M3;
  else {
    static_assert(cuda::std::is_same_v<T, fp8_e5m2_t>, "an attention element type");
    return DType::kFloat8E5M2;
  }
}

template <typename Variant>
constexpr attention::VariantKind variant_kind_of() {
  using attention::VariantKind;
  if constexpr (cuda::std::is_same_v<Variant, attention::PlainVariant>)
    return VariantKind::kPlain;
  else if constexpr (cuda::std::is_same_v<Variant, attention::SoftCapVariant>)
    return VariantKind::kSoftCap;
  else if constexpr (cuda::std::is_same_v<Variant, attention::SlidingWindowVariant>) {
    return VariantKind::kSlidingWindow;
  } else if constexpr (cuda::std::is_same_v<Variant, attention::SoftCapSlidingWindowVariant>) {
    return VariantKind::kSoftCapSlidingWindow;
  } else if constexpr (cuda::std::is_same_v<Variant, attention::AlibiVariant>) {
    return VariantKind::kAlibi;
  } else if constexpr (cuda::std::is_same_v<Variant, attention::AlibiSoftCapVariant>) {
    return VariantKind::kAlibiSoftCap;
  } else if constexpr (cuda::std::is_same_v<Variant, attention::AlibiSlidingWindowVariant>) {
    return VariantKind::kAlibiSlidingWindow;
  } else if constexpr (cuda::std::is_same_v<Variant, attention::AlibiSoftCapSlidingWindowVariant>) {
    return VariantKind::kAlibiSoftCapSlidingWindow;
  } else if constexpr (cuda::std::is_same_v<Variant, attention::RopeLlamaSoftCapVariant>) {
    return VariantKind::kRopeLlamaSoftCap;
  } else if constexpr (cuda::std::is_same_v<Variant, attention::RopeLlamaSlidingWindowVariant>) {
    return VariantKind::kRopeLlamaSlidingWindow;
  } else if constexpr (cuda::std::is_same_v<Variant,
                                            attention::RopeLlamaSoftCapSlidingWindowVariant>) {
    return VariantKind::kRopeLlamaSoftCapSlidingWindow;
  } else {
    static_assert(cuda::std::is_same_v<Variant, attention::RopeLlamaVariant>, "a built-in variant");
    return VariantKind::kRopeLlama;
  }
}

// Calls f.template operator()<Variant>() with the built-in struct of
// `kind`; kJit calls it with PlainVariant, whose instantiation supplies the
// parameter types of a JIT variant's kernel (same parameters).
template <typename F>
decltype(auto) visit_variant_kind(attention::VariantKind kind, F&& f) {
  using attention::VariantKind;
  switch (kind) {
    case VariantKind::kPlain:
    case VariantKind::kJit:
      return f.template operator()<attention::PlainVariant>();
    case VariantKind::kSoftCap:
      return f.template operator()<attention::SoftCapVariant>();
    case VariantKind::kSlidingWindow:
      return f.template operator()<attention::SlidingWindowVariant>();
    case VariantKind::kSoftCapSlidingWindow:
      return f.template operator()<attention::SoftCapSlidingWindowVariant>();
    case VariantKind::kAlibi:
      return f.template operator()<attention::AlibiVariant>();
    case VariantKind::kRopeLlama:
      return f.template operator()<attention::RopeLlamaVariant>();
    case VariantKind::kAlibiSoftCap:
      return f.template operator()<attention::AlibiSoftCapVariant>();
    case VariantKind::kAlibiSlidingWindow:
      return f.template operator()<attention::AlibiSlidingWindowVariant>();
    case VariantKind::kAlibiSoftCapSlidingWindow:
      return f.template operator()<attention::AlibiSoftCapSlidingWindowVariant>();
    case VariantKind::kRopeLlamaSoftCap:
      return f.template operator()<attention::RopeLlamaSoftCapVariant>();
    case VariantKind::kRopeLlamaSlidingWindow:
      return f.template operator()<attention::RopeLlamaSlidingWindowVariant>();
    case VariantKind::kRopeLlamaSoftCapSlidingWindow:
      return f.template operator()<attention::RopeLlamaSoftCapSlidingWindowVariant>();
  }
  throw Error("tessera: no kernel for variant kind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace tessera::detail
