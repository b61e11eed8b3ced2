#include "api/cublaslt.h"

#include "core/once_map.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"

namespace tessera::detail {

void check_cublas(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(std::string("tessera: ") + what + ": " + cublasLtGetStatusName(status) + " (" +
              cublasLtGetStatusString(status) + ")");
}

namespace {

// Never destroyed: a handle outlives every call, and cublasLtDestroy during
// static destruction could run after the CUDA runtime has shut down.
struct Handle {
  cublasLtHandle_t handle = nullptr;
};

}  // namespace

cublasLtHandle_t cublaslt_handle(int device_id) {
  static auto* handles = new OnceMap<int, Handle>();  // leaked on purpose (above)
  return handles
      ->get(device_id,
            [&] {
              DeviceGuard guard(device_id);
              auto created = std::make_unique<Handle>();
              check_cublas(cublasLtCreate(&created->handle), "cublasLtCreate");
              return created;
            })
      .handle;
}

void MatmulDescDeleter::operator()(cublasLtMatmulDescOpaque_t* desc) const noexcept {
  cublasLtMatmulDescDestroy(desc);
}
void MatrixLayoutDeleter::operator()(cublasLtMatrixLayoutOpaque_t* layout) const noexcept {
  cublasLtMatrixLayoutDestroy(layout);
}
void MatmulPreferenceDeleter::operator()(
    cublasLtMatmulPreferenceOpaque_t* preference) const noexcept {
  cublasLtMatmulPreferenceDestroy(preference);
}

MatmulDesc make_matmul_desc(cublasComputeType_t compute, cudaDataType_t scale) {
  cublasLtMatmulDesc_t desc = nullptr;
  check_cublas(cublasLtMatmulDescCreate(&desc, compute, scale), "cublasLtMatmulDescCreate");
  return MatmulDesc(desc);
}

MatrixLayout make_matrix_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld,
                                int batch_count, int64_t batch_stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  check_cublas(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld),
               "cublasLtMatrixLayoutCreate");
  MatrixLayout owned(layout);
  if (batch_count > 1) {
    check_cublas(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                  &batch_count, sizeof(batch_count)),
                 "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
    check_cublas(
        cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                         &batch_stride, sizeof(batch_stride)),
        "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
  }
  return owned;
}

MatmulPreference make_preference(std::size_t max_workspace_bytes) {
  cublasLtMatmulPreference_t preference = nullptr;
  check_cublas(cublasLtMatmulPreferenceCreate(&preference), "cublasLtMatmulPreferenceCreate");
  MatmulPreference owned(preference);
  const uint64_t bytes = max_workspace_bytes;
  check_cublas(cublasLtMatmulPreferenceSetAttribute(
                   preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof(bytes)),
               "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
  return owned;
}

}  // namespace tessera::detail
