// bmm_fp8 (tessera/api/gemm.h) through cuBLASLt: validate, describe the
// batched problem in cuBLASLt's column-major terms, pick an algorithm (once
// per problem: the heuristic query costs more than a small GEMM), run.
//
// cuBLASLt's FP8 kernels take only the "TN" form: op(A) transposed, op(B)
// not. Our row-major out[m, n] is column-major out^T[n, m] = B^T A^T, so
// cuBLASLt's A is our B (column-major k x n, transposed to n x k), its B is
// our A (row-major m x k = column-major k x m, not transposed) and its D is
// out^T (column-major n x m, leading dimension out's row stride).
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <string>

#include "api/cublaslt.h"
#include "api/plan_run.h"
#include "core/once_map.h"
#include "tessera/api/gemm.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"
#include "tessera/core/tensor_view.h"

namespace tessera {

namespace {

using detail::check_cublas;

constexpr int64_t kFp8KMultiple = 16;  // cuBLASLt FP8: k and leading dims in 16 bytes
constexpr std::size_t kRowAlignBytes = 16;
constexpr std::size_t kWorkspaceAlignBytes = 256;
constexpr uint32_t kMaxAlignBytes = 256;      // cuBLASLt's largest alignment preference
constexpr int kMinFp8ComputeCapability = 89;  // Ada / Hopper FP8 tensor cores

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat8E4M3:
      return CUDA_R_8F_E4M3;
    case DType::kFloat8E5M2:
      return CUDA_R_8F_E5M2;
    case DType::kFloat16:
      return CUDA_R_16F;
    case DType::kBFloat16:
      return CUDA_R_16BF;
    default:
      break;
  }
  throw Error("tessera: internal: bmm_fp8 has no cuBLASLt type for " +
              std::string(dtype_name(dtype)));
}

// Largest power of two (<= 256) that divides the address: what cuBLASLt's
// heuristic may assume of a pointer.
uint32_t alignment_of(const void* pointer) {
  const auto address = reinterpret_cast<uintptr_t>(pointer);
  if (address == 0) return kMaxAlignBytes;
  return static_cast<uint32_t>(std::min<uintptr_t>(kMaxAlignBytes, address & (~address + 1)));
}

// One matrix operand as cuBLASLt sees it (column-major): rows, columns,
// leading dimension and batch stride, in elements.
struct LtMatrix {
  uint64_t rows;
  uint64_t cols;
  int64_t ld;
  int64_t batch_stride;
};

struct Fp8Problem {
  int64_t batch, m, n, k;
  LtMatrix weight;      // our B as cuBLASLt's A: k x n, transposed
  LtMatrix activation;  // our A as cuBLASLt's B: k x m
  LtMatrix result;      // out^T: n x m
  DType a_dtype, b_dtype, out_dtype;
  uint32_t align_a, align_b, align_out;
  std::size_t workspace_bytes;
  int device_id;
};

// Leading dimension of a matrix whose rows are `row_stride` apart: a
// single-row matrix's stride is arbitrary in DLPack, its ld the row length.
int64_t leading_dim(int64_t rows, int64_t row_stride, int64_t row_length) {
  return rows > 1 ? row_stride : row_length;
}

void expect_leading_dim(const TensorView& view, int64_t ld, int64_t minimum, int64_t multiple,
                        const char* what) {
  TESSERA_CHECK_ARG(ld >= minimum && ld % multiple == 0, view.name(),
                    std::string(what) + " of at least " + std::to_string(minimum) +
                        " elements and a multiple of " + std::to_string(multiple) + " (16 bytes)",
                    std::to_string(ld) + " (shape " + view.shape_string() + ")");
}

void expect_batch_stride(const TensorView& view, int64_t multiple) {
  const int64_t stride = view.stride(0);
  TESSERA_CHECK_ARG(view.size(0) <= 1 || (stride >= 0 && stride % multiple == 0), view.name(),
                    "a non-negative batch stride (dim 0) that is a multiple of 16 bytes",
                    std::to_string(stride));
}

void expect_scale(const TensorView& scale, const TensorView& a) {
  scale.expect_dtype({DType::kFloat32}).expect_cuda();
  expect_same_device(a, scale);
  TESSERA_CHECK_ARG(
      scale.numel() == 1, scale.name(), "one float32 element (a per-tensor scale)",
      std::to_string(scale.numel()) + " elements (shape " + scale.shape_string() + ")");
}

void expect_fp8_device(int device_id) {
  int major = 0;
  int minor = 0;
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device_id));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device_id));
  TESSERA_CHECK_ARG(major * 10 + minor >= kMinFp8ComputeCapability, "A",
                    "a tensor on a GPU of compute capability 8.9 or newer (FP8 tensor cores)",
                    "device " + std::to_string(device_id) + " of compute capability " +
                        std::to_string(major) + "." + std::to_string(minor));
}

// The algorithm for a problem, chosen by cuBLASLt's heuristic on first use
// and kept for the process (keyed by everything the choice depends on).
using ProblemKey = std::array<int64_t, 18>;

ProblemKey key_of(const Fp8Problem& p) {
  return {p.device_id,
          p.batch,
          p.m,
          p.n,
          p.k,
          p.weight.ld,
          p.weight.batch_stride,
          p.activation.ld,
          p.activation.batch_stride,
          p.result.ld,
          p.result.batch_stride,
          static_cast<int64_t>(p.a_dtype),
          static_cast<int64_t>(p.b_dtype),
          static_cast<int64_t>(p.out_dtype),
          p.align_a,
          p.align_b,
          p.align_out,
          static_cast<int64_t>(p.workspace_bytes)};
}

struct LtProblem {
  detail::MatmulDesc desc;
  detail::MatrixLayout weight;
  detail::MatrixLayout activation;
  detail::MatrixLayout result;
};

LtProblem describe(const Fp8Problem& p, const void* a_scale, const void* b_scale) {
  const int batch = static_cast<int>(p.batch);
  LtProblem lt{
      detail::make_matmul_desc(CUBLAS_COMPUTE_32F, CUDA_R_32F),
      detail::make_matrix_layout(cuda_type(p.b_dtype), p.weight.rows, p.weight.cols, p.weight.ld,
                                 batch, p.weight.batch_stride),
      detail::make_matrix_layout(cuda_type(p.a_dtype), p.activation.rows, p.activation.cols,
                                 p.activation.ld, batch, p.activation.batch_stride),
      detail::make_matrix_layout(cuda_type(p.out_dtype), p.result.rows, p.result.cols, p.result.ld,
                                 batch, p.result.batch_stride)};
  const cublasOperation_t transpose = CUBLAS_OP_T;
  const cublasOperation_t no_transpose = CUBLAS_OP_N;
  detail::set_attribute(lt.desc.get(), CUBLASLT_MATMUL_DESC_TRANSA, transpose);
  detail::set_attribute(lt.desc.get(), CUBLASLT_MATMUL_DESC_TRANSB, no_transpose);
  const int8_t fast_accumulation = 1;  // FlashInfer's setting
  detail::set_attribute(lt.desc.get(), CUBLASLT_MATMUL_DESC_FAST_ACCUM, fast_accumulation);
  // cuBLASLt's A is our B: its scale is B_scale (the product is the same).
  detail::set_attribute(lt.desc.get(), CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, b_scale);
  detail::set_attribute(lt.desc.get(), CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, a_scale);
  return lt;
}

const cublasLtMatmulAlgo_t& algorithm_for(const Fp8Problem& p, const LtProblem& lt,
                                          cublasLtHandle_t handle) {
  // Process-wide memo, thread-safe (OnceMap); leaked like the handles.
  static auto* algorithms = new detail::OnceMap<ProblemKey, cublasLtMatmulAlgo_t>();
  return algorithms->get(key_of(p), [&] {
    detail::MatmulPreference preference = detail::make_preference(p.workspace_bytes);
    const std::array<std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t>, 4> alignments = {
        {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.align_b},
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.align_a},
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, p.align_out},
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, p.align_out}}};
    for (const auto& [attribute, bytes] : alignments) {
      check_cublas(
          cublasLtMatmulPreferenceSetAttribute(preference.get(), attribute, &bytes, sizeof(bytes)),
          "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)");
    }
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    check_cublas(cublasLtMatmulAlgoGetHeuristic(
                     handle, lt.desc.get(), lt.weight.get(), lt.activation.get(), lt.result.get(),
                     lt.result.get(), preference.get(), 1, &result, &found),
                 "bmm_fp8: cublasLtMatmulAlgoGetHeuristic");
    if (found == 0) {
      throw Error("tessera: bmm_fp8: cuBLASLt has no FP8 kernel for b=" + std::to_string(p.batch) +
                  ", m=" + std::to_string(p.m) + ", n=" + std::to_string(p.n) +
                  ", k=" + std::to_string(p.k) + " (" + dtype_name(p.a_dtype) + " x " +
                  dtype_name(p.b_dtype) + " -> " + dtype_name(p.out_dtype) + ") on device " +
                  std::to_string(p.device_id));
    }
    return std::make_unique<cublasLtMatmulAlgo_t>(result.algo);
  });
}

}  // namespace

void bmm_fp8(const DLTensor& A, const DLTensor& B, const DLTensor& A_scale, const DLTensor& B_scale,
             const DLTensor& out, const DLTensor* workspace, cudaStream_t stream) {
  const TensorView a(A, "A");
  a.expect_ndim(3)
      .expect_dtype({DType::kFloat8E4M3, DType::kFloat8E5M2})
      .expect_cuda()
      .expect_last_dim_contiguous();
  const TensorView b(B, "B");
  b.expect_ndim(3).expect_dtype({DType::kFloat8E4M3, DType::kFloat8E5M2}).expect_cuda();
  expect_same_device(a, b);
  const int64_t batch = a.size(0);
  const int64_t m = a.size(1);
  const int64_t k = a.size(2);
  const int64_t n = b.size(2);
  b.expect_size(0, batch, "the batch size of A").expect_size(1, k, "k (dim 2) of A");
  TESSERA_CHECK_ARG(
      b.size(1) <= 1 || b.stride(1) == 1, "B",
      "column-major [b, k, n] (k contiguous: the transpose of a row-major "
      "[b, n, k])",
      "stride " + std::to_string(b.stride(1)) + " along k (shape " + b.shape_string() + ")");
  TESSERA_CHECK_ARG(!(a.dtype() == DType::kFloat8E5M2 && b.dtype() == DType::kFloat8E5M2), "B",
                    "float8_e4m3fn when A is float8_e5m2 (cuBLASLt has no e5m2 x e5m2 GEMM)",
                    "float8_e5m2");
  TESSERA_CHECK_ARG(k > 0 && k % kFp8KMultiple == 0, "A",
                    "k (dim 2) a positive multiple of 16 (cuBLASLt's FP8 kernels)",
                    std::to_string(k) + " (shape " + a.shape_string() + ")");
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  TESSERA_CHECK_ARG(batch <= kInt32Max && m <= kInt32Max && n <= kInt32Max && k <= kInt32Max, "A",
                    "every dimension of A and B below 2^31",
                    a.shape_string() + " x " + b.shape_string());

  const TensorView o(out, "out");
  o.expect_ndim(3)
      .expect_dtype({DType::kFloat16, DType::kBFloat16})
      .expect_cuda()
      .expect_last_dim_contiguous();
  expect_same_device(a, o);
  o.expect_size(0, batch, "the batch size of A")
      .expect_size(1, m, "m (dim 1) of A")
      .expect_size(2, n, "n (dim 2) of B");
  expect_identical_or_disjoint(a, o);
  expect_identical_or_disjoint(b, o);

  const TensorView a_scale(A_scale, "A_scale");
  expect_scale(a_scale, a);
  const TensorView b_scale(B_scale, "B_scale");
  expect_scale(b_scale, a);
  expect_identical_or_disjoint(a_scale, o);
  expect_identical_or_disjoint(b_scale, o);

  Fp8Problem p{};
  p.batch = batch;
  p.m = m;
  p.n = n;
  p.k = k;
  p.a_dtype = a.dtype();
  p.b_dtype = b.dtype();
  p.out_dtype = o.dtype();
  p.device_id = a.device().device_id;
  const int64_t lda = leading_dim(m, a.stride(1), k);
  const int64_t ldb = leading_dim(n, b.stride(2), k);
  const int64_t ldd = leading_dim(m, o.stride(1), n);
  expect_leading_dim(a, lda, k, kFp8KMultiple, "a row stride (dim 1)");
  expect_leading_dim(b, ldb, k, kFp8KMultiple, "a column stride (dim 2)");
  expect_leading_dim(o, ldd, n, kRowAlignBytes / 2, "a row stride (dim 1)");
  expect_batch_stride(a, kFp8KMultiple);
  expect_batch_stride(b, kFp8KMultiple);
  expect_batch_stride(o, kRowAlignBytes / 2);
  TESSERA_CHECK_ARG(batch <= 1 || m == 0 || o.stride(0) >= (m - 1) * ldd + n, "out",
                    "batches that do not overlap (batch stride >= (m - 1) * row stride + n)",
                    "batch stride " + std::to_string(o.stride(0)));
  for (const TensorView* view : {&a, &b, &o}) {
    TESSERA_CHECK_ARG(reinterpret_cast<uintptr_t>(view->data()) % kRowAlignBytes == 0, view->name(),
                      "a data pointer aligned to 16 bytes", "a misaligned one");
  }
  p.weight = {static_cast<uint64_t>(k), static_cast<uint64_t>(n), ldb, b.stride(0)};
  p.activation = {static_cast<uint64_t>(k), static_cast<uint64_t>(m), lda, a.stride(0)};
  p.result = {static_cast<uint64_t>(n), static_cast<uint64_t>(m), ldd, o.stride(0)};
  p.align_a = alignment_of(a.data());
  p.align_b = alignment_of(b.data());
  p.align_out = alignment_of(o.data());

  void* workspace_data = nullptr;
  if (workspace != nullptr) {
    const TensorView w(*workspace, "workspace");
    w.expect_ndim(1).expect_cuda().expect_contiguous();
    expect_same_device(a, w);
    TESSERA_CHECK_ARG(reinterpret_cast<uintptr_t>(w.data()) % kWorkspaceAlignBytes == 0,
                      "workspace", "a data pointer aligned to 256 bytes", "a misaligned one");
    for (const TensorView* view : {&a, &b, &o, &a_scale, &b_scale}) {
      expect_identical_or_disjoint(*view, w);
    }
    workspace_data = w.data();
    p.workspace_bytes = static_cast<std::size_t>(w.numel()) * dtype_size_bytes(w.dtype());
  }

  DeviceGuard guard(p.device_id);
  expect_fp8_device(p.device_id);
  if (batch == 0 || m == 0 || n == 0) return;

  cublasLtHandle_t handle = detail::cublaslt_handle(p.device_id);
  const LtProblem lt = describe(p, a_scale.data(), b_scale.data());
  const cublasLtMatmulAlgo_t& algorithm = algorithm_for(p, lt, handle);
  const float alpha = 1.f;
  const float beta = 0.f;
  check_cublas(
      cublasLtMatmul(handle, lt.desc.get(), &alpha, b.data(), lt.weight.get(), a.data(),
                     lt.activation.get(), &beta, o.data(), lt.result.get(), o.data(),
                     lt.result.get(), &algorithm, workspace_data, p.workspace_bytes, stream),
      "bmm_fp8: cublasLtMatmul");
}

}  // namespace tessera
