// The GEMMs on the CPU: the float64 references against hand-computed
// products, the host checks of segment_gemm's device arrays (validation
// mode), and every argument rejection of segment_gemm and bmm_fp8 (fake
// device pointers: validation throws before any CUDA call), C ABI included.
#include "tessera/api/gemm.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/segment_gemm_backend.h"
#include "api/segment_gemm_validation.h"
#include "reference/gemm_ref.h"
#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/c_api.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::expect_argument_error;
using testing::FakeTensor;
using testing::rejected_argument;

// ---- references -----------------------------------------------------------

// Two segments (rows {0}, {1, 2}) on W[1] and W[0]; row 3 is past the last
// segment. W[0] = [[1, 0], [0, 1]], W[1] = [[1, 2], [3, 4]] ([d_in, d_out]).
TEST(GemmReference, SegmentRowsUseTheirSegmentsWeight) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> weights = {1, 0, 0, 1, 1, 2, 3, 4};
  const std::vector<int64_t> indptr = {0, 1, 3};
  const std::vector<int64_t> indices = {1, 0};
  const std::vector<int64_t> rows = {0, 2, 3};
  const auto y = reference::segment_gemm_rows(x, weights, indptr, indices, {2, 2, false}, rows);
  EXPECT_EQ(y, (std::vector<double>{1 + 2 * 3, 2 + 2 * 4, 5, 6, 0, 0}));
}

TEST(GemmReference, ColumnMajorWeightsAreTransposed) {
  const std::vector<float> x = {1, 2};
  const std::vector<float> weights = {1, 2, 3, 4};  // stored [d_out, d_in]: W = [[1, 3], [2, 4]]
  const std::vector<int64_t> indptr = {0, 1};
  const std::vector<int64_t> rows = {0};
  const auto y = reference::segment_gemm_rows(x, weights, indptr, {}, {2, 2, true}, rows);
  EXPECT_EQ(y, (std::vector<double>{1 + 2 * 2, 3 + 2 * 4}));
}

TEST(GemmReference, ScaledBmmMultipliesBothScales) {
  const std::vector<float> a = {1, 2};        // [1, 1, 2]
  const std::vector<float> b = {3, 4, 5, 6};  // [1, 2, 2]
  const auto out = reference::scaled_bmm(a, b, 1, 1, 2, 2, 0.5, 4.0);
  EXPECT_EQ(out, (std::vector<double>{2 * (3 + 10), 2 * (4 + 12)}));
}

// ---- validation mode (host checks of the device arrays) --------------------

struct Segments {
  std::vector<int64_t> values = {0, 3, 3, 7};  // indptr of 3 segments over 7 rows
  bool indptr = true;
  std::vector<int64_t> weight_indices = {1, 0, 1};
  int64_t total_rows = 7;
  int64_t num_weights = 2;
  void validate() const {
    detail::validate_segment_arrays({values, indptr, weight_indices}, total_rows, num_weights);
  }
};

void expect_validation_error(const Segments& segments, std::string_view argument,
                             std::string_view culprit) {
  try {
    segments.validate();
    ADD_FAILURE() << "expected tessera::Error for argument '" << argument << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.argument(), argument) << error.what();
    EXPECT_NE(std::string_view(error.what()).find(culprit), std::string_view::npos) << error.what();
  }
}

TEST(SegmentGemmValidation, AcceptsConsistentIndptrWithAnEmptySegment) {
  EXPECT_NO_THROW(Segments{}.validate());
}

TEST(SegmentGemmValidation, AcceptsLengthsSummingToTheRows) {
  Segments s;
  s.values = {3, 0, 4};
  s.indptr = false;
  EXPECT_NO_THROW(s.validate());
}

TEST(SegmentGemmValidation, RejectsIndptrNotStartingAtZero) {
  Segments s;
  s.values = {1, 3, 3, 7};
  expect_validation_error(s, "seg_indptr", "seg_indptr[0] = 1");
}

TEST(SegmentGemmValidation, RejectsDecreasingIndptr) {
  Segments s;
  s.values = {0, 4, 3, 7};
  expect_validation_error(s, "seg_indptr", "seg_indptr[2] = 3");
}

TEST(SegmentGemmValidation, RejectsIndptrNotEndingAtTheRowsOfX) {
  Segments s;
  s.values = {0, 3, 3, 6};
  expect_validation_error(s, "seg_indptr", "seg_indptr[3] = 6");
}

TEST(SegmentGemmValidation, RejectsNegativeLength) {
  Segments s;
  s.values = {3, -1, 5};
  s.indptr = false;
  expect_validation_error(s, "seg_lens", "seg_lens[1] = -1");
}

TEST(SegmentGemmValidation, RejectsLengthsSummingToFewerRows) {
  Segments s;
  s.values = {3, 0, 3};
  s.indptr = false;
  expect_validation_error(s, "seg_lens", "a sum of 6");
}

TEST(SegmentGemmValidation, RejectsLengthsSummingToMoreRows) {
  Segments s;
  s.values = {3, 0, 5};
  s.indptr = false;
  expect_validation_error(s, "seg_lens", "seg_lens[2] = 5");
}

TEST(SegmentGemmValidation, RejectsWeightIndexPastTheWeights) {
  Segments s;
  s.weight_indices = {1, 2, 0};
  expect_validation_error(s, "weight_indices", "weight_indices[1] = 2");
}

TEST(SegmentGemmValidation, RejectsNegativeWeightIndex) {
  Segments s;
  s.weight_indices = {0, 0, -1};
  expect_validation_error(s, "weight_indices", "weight_indices[2] = -1");
}

// ---- segment_gemm back-end choice (host-known facts only) --------------------

using detail::SegmentGemmCall;
using detail::SegmentGemmKernel;

// A MoE-like call (128+ rows per segment, d_out 14336) on a Hopper GPU.
SegmentGemmCall moe_call(SegmentGemmBackend backend) {
  SegmentGemmCall c;
  c.backend = backend;
  c.device_runs_sm90a = true;
  c.total_rows = 4096;
  c.batch_size = 8;
  c.d_out = 14336;
  c.num_weights = 8;
  c.x_row_stride = 4096;
  c.weight_row_stride = 4096;
  c.weight_matrix_stride = 4096 * 14336;
  return c;
}

TEST(SegmentGemmBackendChoice, AutoTakesSm90OnHopperForLongSegments) {
  EXPECT_EQ(choose_segment_gemm_kernel(moe_call(SegmentGemmBackend::kAuto)),
            SegmentGemmKernel::kSm90);
}

TEST(SegmentGemmBackendChoice, AutoTakesSm80OffHopper) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kAuto);
  c.device_runs_sm90a = false;
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Large);
}

TEST(SegmentGemmBackendChoice, AutoTakesTheSmallSm80TileForLoraShapes) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kAuto);
  c.total_rows = 64;  // one row per segment (decode)
  c.batch_size = 64;
  c.num_weights = 64;
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Small);
  c = moe_call(SegmentGemmBackend::kAuto);
  c.d_out = 16;  // LoRA shrink
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Small);
}

TEST(SegmentGemmBackendChoice, LoraDecodeWithColumnMajorWeightsTakesTheGemvKernel) {
  for (const SegmentGemmBackend backend : {SegmentGemmBackend::kAuto, SegmentGemmBackend::kSm80}) {
    SegmentGemmCall c = moe_call(backend);
    c.total_rows = 256;  // one row per adapter
    c.batch_size = 256;
    c.num_weights = 256;
    c.d_out = 16;  // shrink to rank 16
    c.column_major = true;
    EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Gemv);
    c.d_out = 4096;  // expand
    EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Gemv);
    c.column_major = false;  // n-contiguous W: the small tile
    EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Small);
  }
}

TEST(SegmentGemmBackendChoice, GemvTakesAtMostFourRowsPerSegmentOnAverage) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kAuto);
  c.column_major = true;
  c.batch_size = 10;
  c.total_rows = 40;
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Gemv);
  c.total_rows = 41;
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Small);
}

TEST(SegmentGemmBackendChoice, Sm90IsKeptForLoraShapesWhenAsked) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kSm90);
  c.total_rows = 16;
  c.batch_size = 16;
  c.column_major = true;
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm90);
}

TEST(SegmentGemmBackendChoice, AutoAvoidsSm90ForBroadcastWeights) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kAuto);
  c.weight_matrix_stride = 0;  // one matrix expanded over num_weights
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm80Large);
}

TEST(SegmentGemmBackendChoice, Sm80IsTakenWhenAsked) {
  EXPECT_EQ(choose_segment_gemm_kernel(moe_call(SegmentGemmBackend::kSm80)),
            SegmentGemmKernel::kSm80Large);
}

TEST(SegmentGemmBackendChoice, Sm90RunsEveryShapeOnHopper) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kSm90);
  c.total_rows = 3;
  c.batch_size = 3;
  c.d_out = 8;
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm90);
}

TEST(SegmentGemmBackendChoice, Sm90OffHopperNamesBackend) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kSm90);
  c.device_runs_sm90a = false;
  expect_argument_error([&] { choose_segment_gemm_kernel(c); }, "backend");
}

TEST(SegmentGemmBackendChoice, Sm90WithBroadcastWeightsNamesWeights) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kSm90);
  c.weight_matrix_stride = 0;
  expect_argument_error([&] { choose_segment_gemm_kernel(c); }, "weights");
}

TEST(SegmentGemmBackendChoice, Sm90WithBroadcastRowsOfXNamesX) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kSm90);
  c.x_row_stride = 0;
  expect_argument_error([&] { choose_segment_gemm_kernel(c); }, "x");
}

TEST(SegmentGemmBackendChoice, Sm90ReadsNothingOfAnEmptyProblem) {
  SegmentGemmCall c = moe_call(SegmentGemmBackend::kSm90);
  c.total_rows = 0;
  c.weight_matrix_stride = 0;
  EXPECT_EQ(choose_segment_gemm_kernel(c), SegmentGemmKernel::kSm90);
}

// ---- segment_gemm arguments -------------------------------------------------

constexpr int64_t kDIn = 64;
constexpr int64_t kDOut = 32;
constexpr int64_t kBatch = 3;
constexpr int64_t kNumWeights = 2;

// Valid, disjoint fake tensors with zero rows (so a GPU machine runs nothing
// on the fake pointers); each test breaks one thing.
struct SegmentArgs {
  int64_t rows = 0;
  FakeTensor x{DType::kBFloat16, {rows, kDIn}};
  FakeTensor weights{DType::kBFloat16, {kNumWeights, kDIn, kDOut}};
  FakeTensor y{DType::kBFloat16, {rows, kDOut}};
  FakeTensor seg_indptr{DType::kInt64, {kBatch + 1}};
  FakeTensor seg_lens{DType::kInt64, {kBatch}};
  FakeTensor weight_indices{DType::kInt64, {kBatch}};
  int64_t batch_size = kBatch;
  bool column_major = false;
  bool use_indptr = true;
  bool use_indices = true;
  SegmentGemmBackend backend = SegmentGemmBackend::kAuto;

  SegmentArgs() {
    x.with_data(uintptr_t{1} << 20);
    weights.with_data(uintptr_t{2} << 20);
    y.with_data(uintptr_t{3} << 20);
    seg_indptr.with_data(uintptr_t{4} << 20);
    seg_lens.with_data(uintptr_t{5} << 20);
    weight_indices.with_data(uintptr_t{6} << 20);
  }
  void run() {
    segment_gemm(x, weights, y, batch_size, column_major, use_indptr ? nullptr : &seg_lens.dl(),
                 use_indptr ? &seg_indptr.dl() : nullptr,
                 use_indices ? &weight_indices.dl() : nullptr, nullptr, backend, Validate::kOff);
  }
};

// Past every argument check: accepted on a GPU (zero rows launch nothing),
// a CUDA error (no argument) without one.
void expect_arguments_pass(SegmentArgs& args) {
  const std::string rejected = rejected_argument([&] { args.run(); });
  EXPECT_TRUE(rejected == "<accepted>" || rejected.empty()) << "rejected '" << rejected << "'";
}

TEST(SegmentGemmArgs, ValidArgumentsPassEveryCheck) {
  SegmentArgs args;
  expect_arguments_pass(args);
}

TEST(SegmentGemmArgs, ColumnMajorWeightsAndSegLensPassEveryCheck) {
  SegmentArgs args;
  // Without weight_indices segment i uses W[i]: one matrix per segment.
  args.weights = FakeTensor(DType::kBFloat16, {kBatch, kDOut, kDIn});
  args.weights.with_data(uintptr_t{2} << 20);
  args.column_major = true;
  args.use_indptr = false;
  args.use_indices = false;
  expect_arguments_pass(args);
}

TEST(SegmentGemmArgs, RejectsFewerWeightsThanSegmentsWithoutWeightIndices) {
  SegmentArgs args;  // kNumWeights (2) matrices for kBatch (3) segments
  args.use_indices = false;
  expect_argument_error([&] { args.run(); }, "weights");
}

TEST(SegmentGemmArgs, RejectsFloat32X) {
  SegmentArgs args;
  args.x = FakeTensor(DType::kFloat32, {0, kDIn});
  expect_argument_error([&] { args.run(); }, "x");
}

TEST(SegmentGemmArgs, RejectsDInNotAMultipleOf8) {
  SegmentArgs args;
  args.x = FakeTensor(DType::kBFloat16, {0, 60});
  expect_argument_error([&] { args.run(); }, "x");
}

TEST(SegmentGemmArgs, RejectsWeightsWhoseDInDiffersFromX) {
  SegmentArgs args;
  args.weights = FakeTensor(DType::kBFloat16, {kNumWeights, kDIn + 8, kDOut});
  expect_argument_error([&] { args.run(); }, "weights");
}

TEST(SegmentGemmArgs, RejectsColumnMajorWeightsStoredRowMajor) {
  SegmentArgs args;
  args.column_major = true;  // weights are [num_weights, d_in, d_out]: d_in lands in dim 2
  expect_argument_error([&] { args.run(); }, "weights");
}

TEST(SegmentGemmArgs, RejectsDOutNotAMultipleOf8) {
  SegmentArgs args;
  args.weights = FakeTensor(DType::kBFloat16, {kNumWeights, kDIn, 36});
  args.y = FakeTensor(DType::kBFloat16, {0, 36});
  expect_argument_error([&] { args.run(); }, "weights");
}

TEST(SegmentGemmArgs, RejectsWeightsOfAnotherDtype) {
  SegmentArgs args;
  args.weights = FakeTensor(DType::kFloat16, {kNumWeights, kDIn, kDOut});
  expect_argument_error([&] { args.run(); }, "weights");
}

TEST(SegmentGemmArgs, RejectsMissingSegments) {
  SegmentArgs args;
  EXPECT_EQ(rejected_argument([&] {
              segment_gemm(args.x, args.weights, args.y, kBatch, false, nullptr, nullptr, nullptr,
                           nullptr);
            }),
            "seg_lens");
}

TEST(SegmentGemmArgs, RejectsSegIndptrOfBatchSizeEntries) {
  SegmentArgs args;
  args.seg_indptr = FakeTensor(DType::kInt64, {kBatch});
  expect_argument_error([&] { args.run(); }, "seg_indptr");
}

TEST(SegmentGemmArgs, RejectsSegLensOfAnotherBatchSize) {
  SegmentArgs args;
  args.use_indptr = false;
  args.seg_lens = FakeTensor(DType::kInt64, {kBatch + 1});
  expect_argument_error([&] { args.run(); }, "seg_lens");
}

TEST(SegmentGemmArgs, RejectsFloatSegLens) {
  SegmentArgs args;
  args.use_indptr = false;
  args.seg_lens = FakeTensor(DType::kFloat32, {kBatch});
  expect_argument_error([&] { args.run(); }, "seg_lens");
}

TEST(SegmentGemmArgs, RejectsSegIndptrOnTheHost) {
  SegmentArgs args;
  args.seg_indptr = FakeTensor(DType::kInt64, {kBatch + 1}, {kDLCPU, 0});
  expect_argument_error([&] { args.run(); }, "seg_indptr");
}

TEST(SegmentGemmArgs, RejectsWeightIndicesOfAnotherBatchSize) {
  SegmentArgs args;
  args.weight_indices = FakeTensor(DType::kInt32, {kBatch - 1});
  expect_argument_error([&] { args.run(); }, "weight_indices");
}

TEST(SegmentGemmArgs, RejectsNegativeBatchSize) {
  SegmentArgs args;
  args.batch_size = -1;
  expect_argument_error([&] { args.run(); }, "batch_size");
}

TEST(SegmentGemmArgs, RejectsYWithOtherRowsThanX) {
  SegmentArgs args;
  args.y = FakeTensor(DType::kBFloat16, {1, kDOut});
  expect_argument_error([&] { args.run(); }, "y");
}

TEST(SegmentGemmArgs, RejectsYOfAnotherDOut) {
  SegmentArgs args;
  args.y = FakeTensor(DType::kBFloat16, {0, kDOut + 8});
  expect_argument_error([&] { args.run(); }, "y");
}

TEST(SegmentGemmArgs, RejectsYOverlappingX) {
  SegmentArgs args;
  args.rows = 4;
  args.x = FakeTensor(DType::kBFloat16, {4, kDIn});
  args.x.with_data(uintptr_t{1} << 20);
  args.y = FakeTensor(DType::kBFloat16, {4, kDOut});
  args.y.with_data((uintptr_t{1} << 20) + 64);
  expect_argument_error([&] { args.run(); }, "y");
}

TEST(SegmentGemmArgs, RejectsXRowsNotAlignedTo16Bytes) {
  SegmentArgs args;
  args.x = FakeTensor(DType::kBFloat16, {2, kDIn});
  args.x.with_strides({kDIn + 4, 1}).with_data(uintptr_t{1} << 20);
  args.y = FakeTensor(DType::kBFloat16, {2, kDOut});
  args.y.with_data(uintptr_t{3} << 20);
  expect_argument_error([&] { args.run(); }, "x");
}

TEST(SegmentGemmArgs, RejectsWeightsWithoutAnyMatrixForSegments) {
  SegmentArgs args;
  args.weights = FakeTensor(DType::kBFloat16, {0, kDIn, kDOut});
  expect_argument_error([&] { args.run(); }, "weights");
}

TEST(SegmentGemmCApi, UnknownBackendCodeNamesBackend) {
  SegmentArgs args;
  EXPECT_EQ(tessera_segment_gemm(&args.x.dl(), &args.weights.dl(), &args.y.dl(), kBatch, 0, nullptr,
                                 &args.seg_indptr.dl(), nullptr, 7, nullptr, 1),
            1);
  EXPECT_NE(std::string_view(tessera_last_error()).find("'backend'"), std::string_view::npos)
      << tessera_last_error();
}

TEST(SegmentGemmCApi, NullXNamesX) {
  SegmentArgs args;
  EXPECT_EQ(tessera_segment_gemm(nullptr, &args.weights.dl(), &args.y.dl(), kBatch, 0, nullptr,
                                 &args.seg_indptr.dl(), nullptr, 0, nullptr, 1),
            1);
  EXPECT_NE(std::string_view(tessera_last_error()).find("'x'"), std::string_view::npos);
}

// ---- bmm_fp8 arguments ------------------------------------------------------

constexpr int64_t kB = 2;
constexpr int64_t kM = 0;  // zero rows: a GPU machine runs nothing on fake pointers
constexpr int64_t kN = 32;
constexpr int64_t kK = 64;

struct Fp8Args {
  FakeTensor a{DType::kFloat8E4M3, {kB, kM, kK}};
  // [b, k, n] column-major: strides (k * n, 1, k).
  FakeTensor b{DType::kFloat8E4M3, {kB, kK, kN}};
  FakeTensor a_scale{DType::kFloat32, {}};
  FakeTensor b_scale{DType::kFloat32, {1}};
  FakeTensor out{DType::kBFloat16, {kB, kM, kN}};
  FakeTensor workspace{DType::kUInt8, {1 << 20}};
  bool use_workspace = true;

  Fp8Args() {
    a.with_data(uintptr_t{1} << 20);
    b.with_strides({kK * kN, 1, kK}).with_data(uintptr_t{2} << 20);
    a_scale.with_data(uintptr_t{3} << 20);
    b_scale.with_data(uintptr_t{4} << 20);
    out.with_data(uintptr_t{5} << 20);
    workspace.with_data(uintptr_t{8} << 20);
  }
  void run() {
    bmm_fp8(a, b, a_scale, b_scale, out, use_workspace ? &workspace.dl() : nullptr, nullptr);
  }
};

TEST(BmmFp8Args, ValidArgumentsPassEveryCheck) {
  Fp8Args args;
  const std::string rejected = rejected_argument([&] { args.run(); });
  EXPECT_TRUE(rejected == "<accepted>" || rejected.empty()) << "rejected '" << rejected << "'";
}

TEST(BmmFp8Args, RejectsFloat16A) {
  Fp8Args args;
  args.a = FakeTensor(DType::kFloat16, {kB, kM, kK});
  expect_argument_error([&] { args.run(); }, "A");
}

TEST(BmmFp8Args, RejectsRowMajorB) {
  Fp8Args args;
  args.b = FakeTensor(DType::kFloat8E4M3, {kB, kK, kN});  // contiguous: n contiguous
  args.b.with_data(uintptr_t{2} << 20);
  expect_argument_error([&] { args.run(); }, "B");
}

TEST(BmmFp8Args, RejectsE5m2TimesE5m2) {
  Fp8Args args;
  args.a = FakeTensor(DType::kFloat8E5M2, {kB, kM, kK});
  args.b = FakeTensor(DType::kFloat8E5M2, {kB, kK, kN});
  args.b.with_strides({kK * kN, 1, kK}).with_data(uintptr_t{2} << 20);
  expect_argument_error([&] { args.run(); }, "B");
}

TEST(BmmFp8Args, RejectsKNotAMultipleOf16) {
  Fp8Args args;
  args.a = FakeTensor(DType::kFloat8E4M3, {kB, kM, 40});
  args.b = FakeTensor(DType::kFloat8E4M3, {kB, 40, kN});
  args.b.with_strides({40 * kN, 1, 40}).with_data(uintptr_t{2} << 20);
  expect_argument_error([&] { args.run(); }, "A");
}

TEST(BmmFp8Args, RejectsBWithAnotherBatch) {
  Fp8Args args;
  args.b = FakeTensor(DType::kFloat8E4M3, {kB + 1, kK, kN});
  args.b.with_strides({kK * kN, 1, kK}).with_data(uintptr_t{2} << 20);
  expect_argument_error([&] { args.run(); }, "B");
}

TEST(BmmFp8Args, RejectsOutOfAnotherShape) {
  Fp8Args args;
  args.out = FakeTensor(DType::kBFloat16, {kB, kM, kN + 16});
  expect_argument_error([&] { args.run(); }, "out");
}

TEST(BmmFp8Args, RejectsFloat32Out) {
  Fp8Args args;
  args.out = FakeTensor(DType::kFloat32, {kB, kM, kN});
  expect_argument_error([&] { args.run(); }, "out");
}

TEST(BmmFp8Args, RejectsAScaleOfTwoElements) {
  Fp8Args args;
  args.a_scale = FakeTensor(DType::kFloat32, {2});
  args.a_scale.with_data(uintptr_t{3} << 20);
  expect_argument_error([&] { args.run(); }, "A_scale");
}

TEST(BmmFp8Args, RejectsFloat16BScale) {
  Fp8Args args;
  args.b_scale = FakeTensor(DType::kFloat16, {1});
  args.b_scale.with_data(uintptr_t{4} << 20);
  expect_argument_error([&] { args.run(); }, "B_scale");
}

TEST(BmmFp8Args, RejectsWorkspaceNotAlignedTo256Bytes) {
  Fp8Args args;
  args.workspace.with_data((uintptr_t{8} << 20) + 128);
  expect_argument_error([&] { args.run(); }, "workspace");
}

TEST(BmmFp8CApi, NullBNamesB) {
  Fp8Args args;
  EXPECT_EQ(tessera_bmm_fp8(&args.a.dl(), nullptr, &args.a_scale.dl(), &args.b_scale.dl(),
                            &args.out.dl(), nullptr, nullptr),
            1);
  EXPECT_NE(std::string_view(tessera_last_error()).find("'B'"), std::string_view::npos);
}

}  // namespace
}  // namespace tessera
