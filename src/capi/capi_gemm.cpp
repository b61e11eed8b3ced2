// C ABI of the GEMMs (tessera/api/gemm.h): NULL checks and enum codes, then
// straight through.
#include <string>

#include "capi/capi_support.h"
#include "tessera/api/gemm.h"

using tessera::capi::guarded;
using tessera::capi::required;
using tessera::capi::stream_of;
using tessera::capi::validate_of;

namespace {

tessera::SegmentGemmBackend segment_gemm_backend_of(int backend) {
  switch (backend) {
    case 0:
      return tessera::SegmentGemmBackend::kAuto;
    case 1:
      return tessera::SegmentGemmBackend::kSm80;
    case 2:
      return tessera::SegmentGemmBackend::kSm90;
    default:
      tessera::throw_argument_error("backend", "0 (auto), 1 (sm80) or 2 (sm90)",
                                    std::to_string(backend));
  }
}

}  // namespace

extern "C" {

int tessera_bmm_fp8(const DLTensor* A, const DLTensor* B, const DLTensor* A_scale,
                    const DLTensor* B_scale, const DLTensor* out, const DLTensor* workspace,
                    void* stream) {
  return guarded([&] {
    tessera::bmm_fp8(required(A, "A"), required(B, "B"), required(A_scale, "A_scale"),
                     required(B_scale, "B_scale"), required(out, "out"), workspace,
                     stream_of(stream));
  });
}

int tessera_segment_gemm(const DLTensor* x, const DLTensor* weights, const DLTensor* y,
                         int64_t batch_size, int weight_column_major, const DLTensor* seg_lens,
                         const DLTensor* seg_indptr, const DLTensor* weight_indices, int backend,
                         void* stream, int validate) {
  return guarded([&] {
    tessera::segment_gemm(required(x, "x"), required(weights, "weights"), required(y, "y"),
                          batch_size, weight_column_major != 0, seg_lens, seg_indptr,
                          weight_indices, stream_of(stream), segment_gemm_backend_of(backend),
                          validate_of(validate));
  });
}

}  // extern "C"
