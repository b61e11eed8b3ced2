// cuBLASLt plumbing for the API layer: one handle per device (created on
// first use, shared by every thread: a cuBLASLt handle holds no stream and
// is safe to use concurrently), RAII owners of the descriptors, and status
// checks that become tessera::Error naming the call.
#pragma once

#include <cublasLt.h>

#include <memory>
#include <string>

namespace tessera::detail {

// Throws tessera::Error "tessera: <what>: <cuBLASLt status name>" unless
// status is CUBLAS_STATUS_SUCCESS.
void check_cublas(cublasStatus_t status, const char* what);

// The process's cuBLASLt handle for `device_id`.
cublasLtHandle_t cublaslt_handle(int device_id);

struct MatmulDescDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* desc) const noexcept;
};
struct MatrixLayoutDeleter {
  void operator()(cublasLtMatrixLayoutOpaque_t* layout) const noexcept;
};
struct MatmulPreferenceDeleter {
  void operator()(cublasLtMatmulPreferenceOpaque_t* preference) const noexcept;
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, MatmulDescDeleter>;
using MatrixLayout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, MatrixLayoutDeleter>;
using MatmulPreference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, MatmulPreferenceDeleter>;

MatmulDesc make_matmul_desc(cublasComputeType_t compute, cudaDataType_t scale);
// A column-major rows x cols matrix with leading dimension ld; batch_count >
// 1 adds strided batches batch_stride elements apart.
MatrixLayout make_matrix_layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld,
                                int batch_count, int64_t batch_stride);
MatmulPreference make_preference(std::size_t max_workspace_bytes);

template <typename T>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute,
                   const T& value) {
  check_cublas(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(T)),
               "cublasLtMatmulDescSetAttribute");
}

}  // namespace tessera::detail
