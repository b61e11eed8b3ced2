// C ABI of the RMSNorm family and the gated activations (tessera/api/norm.h,
// tessera/api/activation.h): NULL checks, then straight through.
#include "capi/capi_support.h"
#include "tessera/api/activation.h"
#include "tessera/api/norm.h"

using tessera::capi::guarded;
using tessera::capi::required;
using tessera::capi::stream_of;

extern "C" {

int tessera_rmsnorm(const DLTensor* input, const DLTensor* weight, const DLTensor* out,
                    double eps, void* stream) {
  return guarded([&] {
    tessera::rmsnorm(required(input, "input"), required(weight, "weight"), required(out, "out"),
                     eps, stream_of(stream));
  });
}

int tessera_fused_add_rmsnorm(const DLTensor* input, const DLTensor* residual,
                              const DLTensor* weight, double eps, void* stream) {
  return guarded([&] {
    tessera::fused_add_rmsnorm(required(input, "input"), required(residual, "residual"),
                               required(weight, "weight"), eps, stream_of(stream));
  });
}

int tessera_gemma_rmsnorm(const DLTensor* input, const DLTensor* weight, const DLTensor* out,
                          double eps, void* stream) {
  return guarded([&] {
    tessera::gemma_rmsnorm(required(input, "input"), required(weight, "weight"),
                           required(out, "out"), eps, stream_of(stream));
  });
}

int tessera_gemma_fused_add_rmsnorm(const DLTensor* input, const DLTensor* residual,
                                    const DLTensor* weight, double eps, void* stream) {
  return guarded([&] {
    tessera::gemma_fused_add_rmsnorm(required(input, "input"), required(residual, "residual"),
                                     required(weight, "weight"), eps, stream_of(stream));
  });
}

int tessera_silu_and_mul(const DLTensor* input, const DLTensor* out, void* stream) {
  return guarded([&] {
    tessera::silu_and_mul(required(input, "input"), required(out, "out"), stream_of(stream));
  });
}

int tessera_gelu_and_mul(const DLTensor* input, const DLTensor* out, void* stream) {
  return guarded([&] {
    tessera::gelu_and_mul(required(input, "input"), required(out, "out"), stream_of(stream));
  });
}

int tessera_gelu_tanh_and_mul(const DLTensor* input, const DLTensor* out, void* stream) {
  return guarded([&] {
    tessera::gelu_tanh_and_mul(required(input, "input"), required(out, "out"),
                               stream_of(stream));
  });
}

}  // extern "C"
