// segment_gemm on the GPU against the float64 reference: issue 23's grid
// (batch sizes 1 / 77 / 199; rows per segment 0 / 1 / 3 / 99 / 1000 and
// mixed; d_in, d_out 128 / 1024 / 4096, 14336 in and out; with and without
// weight_indices; row- and column-major weights; seg_indptr and seg_lens,
// int64 and int32) on both back ends (sm80: both tile shapes; sm90: skipped
// off Hopper), the smallest and tail-heavy dims, segment ends at the Hopper
// kernel's 64-row consumer and 128-row tile bounds, strided rows, rows past
// the last segment, CUDA-graph replay with changed device-side lengths, and
// the validation-mode errors. Outputs are poisoned
// with NaN first; every row is checked to be written, sampled rows (first,
// last and one inner row of every segment, at most kMaxCheckedRows) are
// compared with the reference (a float64 row of 4096 x 14336 costs 59M
// multiply-adds).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "reference/gemm_ref.h"
#include "support/argument_error.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/api/gemm.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;

constexpr std::size_t kMaxCheckedRows = 192;
// float64 multiply-adds the reference may spend on one problem (~2 s).
constexpr double kReferenceBudget = 2e9;
// The issue's lengths; "mixed" draws each segment's length from them.
const std::vector<int64_t> kMixedLengths = {0, 1, 3, 99, 1000};
constexpr int64_t kMixed = -1;

const char* short_name(DType dtype) {
  return dtype == DType::kBFloat16 ? "bf16" : "fp16";
}

struct SegmentCase {
  int64_t batch;
  int64_t rows;  // per segment, or kMixed
  int64_t d_in;
  int64_t d_out;
  bool column_major;
  int64_t num_weights;  // 0: no weight_indices (one matrix per segment)
  bool lengths_form;    // seg_lens instead of seg_indptr
  DType index_dtype;
  DType dtype;
};

const char* backend_name(SegmentGemmBackend backend) {
  switch (backend) {
    case SegmentGemmBackend::kSm80:
      return "sm80";
    case SegmentGemmBackend::kSm90:
      return "sm90";
    case SegmentGemmBackend::kAuto:
      break;
  }
  return "auto";
}

// The explicit back ends a test runs on this GPU: sm90 on compute capability
// 9.0 only (elsewhere it is an argument error, tested on its own).
#define TESSERA_SKIP_UNLESS_BACKEND_RUNS(backend)                             \
  do {                                                                        \
    if ((backend) == SegmentGemmBackend::kSm90 && !testing::device_is_sm90()) \
      GTEST_SKIP() << "backend sm90 needs a compute capability 9.0 GPU";      \
  } while (0)

constexpr SegmentGemmBackend kBackends[] = {SegmentGemmBackend::kSm80, SegmentGemmBackend::kSm90};

using GridParam = std::tuple<SegmentCase, SegmentGemmBackend>;

std::string case_name(const ::testing::TestParamInfo<GridParam>& info) {
  const SegmentCase& c = std::get<0>(info.param);
  return std::string(backend_name(std::get<1>(info.param))) + "_B" + std::to_string(c.batch) +
         "_rows" + (c.rows == kMixed ? std::string("mixed") : std::to_string(c.rows)) + "_" +
         std::to_string(c.d_in) + "x" + std::to_string(c.d_out) + "_" +
         (c.column_major ? "col" : "row") +
         (c.num_weights > 0 ? "_indices" + std::to_string(c.num_weights) : "") +
         (c.lengths_form ? "_lens" : "_indptr") + (c.index_dtype == DType::kInt32 ? "32" : "64") +
         "_" + short_name(c.dtype);
}

std::vector<int64_t> segment_lengths(Rng& rng, int64_t batch, int64_t rows) {
  std::vector<int64_t> lengths(static_cast<std::size_t>(batch), rows);
  if (rows == kMixed) {
    for (int64_t& length : lengths) {
      length = kMixedLengths[rng.integer(0, static_cast<int64_t>(kMixedLengths.size()) - 1)];
    }
  }
  return lengths;
}

std::vector<int64_t> indptr_of(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> indptr(lengths.size() + 1, 0);
  for (std::size_t i = 0; i < lengths.size(); ++i) indptr[i + 1] = indptr[i] + lengths[i];
  return indptr;
}

// First, last and one random inner row of every segment, then every row past
// the last segment's end up to total_rows (capped), at most `max_rows`.
std::vector<int64_t> rows_to_check(Rng& rng, const std::vector<int64_t>& indptr, int64_t total_rows,
                                   std::size_t max_rows) {
  std::set<int64_t> rows;
  for (std::size_t s = 0; s + 1 < indptr.size(); ++s) {
    if (indptr[s + 1] == indptr[s]) continue;
    rows.insert(indptr[s]);
    rows.insert(indptr[s + 1] - 1);
    rows.insert(rng.integer(indptr[s], indptr[s + 1] - 1));
  }
  for (int64_t r = indptr.back(); r < total_rows && rows.size() < max_rows + 8; ++r) {
    rows.insert(r);
  }
  std::vector<int64_t> picked(rows.begin(), rows.end());
  if (picked.size() > max_rows) {
    std::shuffle(picked.begin(), picked.end(), rng.engine());
    picked.resize(max_rows);
    std::sort(picked.begin(), picked.end());
  }
  return picked;
}

// Device buffers of one problem, filled from fresh random values.
struct Problem {
  int64_t total_rows;
  reference::SegmentGemmShape shape;
  std::vector<float> x;
  std::vector<float> weights;
  DeviceTensor x_dev;
  DeviceTensor w_dev;
  DeviceTensor y_dev;

  Problem(Rng& rng, DType dtype, int64_t rows, int64_t num_weights, int64_t d_in, int64_t d_out,
          bool column_major, int64_t x_row_stride = 0, int64_t y_row_stride = 0)
      : total_rows(rows),
        shape{d_in, d_out, column_major},
        x(testing::round_to(dtype, rng.normal_vector(static_cast<std::size_t>(rows * d_in)))),
        weights(testing::round_to(
            dtype, rng.normal_vector(static_cast<std::size_t>(num_weights * d_in * d_out), 0.f,
                                     1.f / std::sqrt(static_cast<float>(d_in))))),
        x_dev(dtype, {rows, d_in}, {x_row_stride > 0 ? x_row_stride : d_in, 1}),
        w_dev(dtype, column_major ? std::vector<int64_t>{num_weights, d_out, d_in}
                                  : std::vector<int64_t>{num_weights, d_in, d_out}),
        y_dev(dtype, {rows, d_out}, {y_row_stride > 0 ? y_row_stride : d_out, 1}) {
    x_dev.upload(x);
    w_dev.upload(weights);
    y_dev.poison();
  }

  // Every element of y finite (written), and the sampled rows close to the
  // reference; `indices` empty: segment i uses W[i].
  void check(Rng& rng, const std::vector<int64_t>& indptr, const std::vector<int64_t>& indices,
             DType dtype) const {
    const std::vector<float> y = y_dev.download();
    const auto unwritten = std::count_if(y.begin(), y.end(), [](float v) { return std::isnan(v); });
    EXPECT_EQ(unwritten, 0) << "NaN (poison) left in y";
    const auto budget_rows =
        static_cast<std::size_t>(kReferenceBudget / static_cast<double>(shape.d_in * shape.d_out));
    const std::vector<int64_t> rows = rows_to_check(
        rng, indptr, total_rows, std::clamp<std::size_t>(budget_rows, 16, kMaxCheckedRows));
    if (rows.empty()) return;  // no rows at all
    const std::vector<double> expected =
        reference::segment_gemm_rows(x, weights, indptr, indices, shape, rows);
    std::vector<float> got;
    got.reserve(expected.size());
    for (int64_t row : rows) {
      got.insert(got.end(), y.begin() + row * shape.d_out, y.begin() + (row + 1) * shape.d_out);
    }
    EXPECT_TRUE(testing::all_close(got, expected, testing::tolerance_for(dtype)));
  }
};

DeviceTensor index_tensor(DType dtype, const std::vector<int64_t>& values) {
  DeviceTensor tensor(dtype, {static_cast<int64_t>(values.size())});
  tensor.upload_ints(values);
  return tensor;
}

class SegmentGemmGrid : public ::testing::TestWithParam<GridParam> {};

TEST_P(SegmentGemmGrid, MatchesReference) {
  TESSERA_REQUIRE_GPU();
  const SegmentCase& c = std::get<0>(GetParam());
  const SegmentGemmBackend backend = std::get<1>(GetParam());
  TESSERA_SKIP_UNLESS_BACKEND_RUNS(backend);
  TESSERA_SEEDED_RNG(rng);
  const std::vector<int64_t> lengths = segment_lengths(rng, c.batch, c.rows);
  const std::vector<int64_t> indptr = indptr_of(lengths);
  const int64_t num_weights = c.num_weights > 0 ? c.num_weights : c.batch;
  std::vector<int64_t> indices;
  if (c.num_weights > 0) {
    for (int64_t s = 0; s < c.batch; ++s) indices.push_back(rng.integer(0, c.num_weights - 1));
  }
  Problem p(rng, c.dtype, indptr.back(), num_weights, c.d_in, c.d_out, c.column_major);
  DeviceTensor segments = index_tensor(c.index_dtype, c.lengths_form ? lengths : indptr);
  DeviceTensor index_dev = index_tensor(c.index_dtype, indices.empty() ? lengths : indices);
  DLTensor segments_dl = segments.dl();
  DLTensor indices_dl = index_dev.dl();
  segment_gemm(p.x_dev.dl(), p.w_dev.dl(), p.y_dev.dl(), c.batch, c.column_major,
               c.lengths_form ? &segments_dl : nullptr, c.lengths_form ? nullptr : &segments_dl,
               indices.empty() ? nullptr : &indices_dl, nullptr, backend, Validate::kOn);
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  p.check(rng, indptr, indices, c.dtype);
}

std::vector<SegmentCase> grid_cases() {
  const DType bf16 = DType::kBFloat16;
  const DType fp16 = DType::kFloat16;
  const DType i64 = DType::kInt64;
  const DType i32 = DType::kInt32;
  return {
      // batch 1: one long segment (large tiles), one row, one empty-free tiny case
      {1, 1000, 4096, 4096, false, 0, false, i64, fp16},
      {1, 1000, 1024, 1024, true, 0, true, i64, bf16},
      {1, 1, 128, 128, true, 0, false, i32, bf16},
      {1, 0, 128, 128, false, 0, false, i64, fp16},
      // batch 77
      {77, 1, 1024, 1024, true, 8, false, i64, bf16},
      {77, 3, 128, 4096, false, 5, true, i64, fp16},
      {77, 99, 1024, 128, true, 0, false, i32, fp16},
      {77, kMixed, 4096, 1024, false, 4, false, i64, bf16},
      {77, kMixed, 128, 128, true, 0, true, i32, bf16},
      // batch 199
      {199, kMixed, 1024, 1024, false, 16, false, i64, bf16},
      {199, kMixed, 128, 128, true, 0, true, i32, fp16},
      {199, 0, 128, 1024, false, 0, false, i64, bf16},
      {199, 3, 4096, 128, true, 0, true, i64, fp16},
      // MoE-like: 8 segments over 2 experts, up (d_out 14336) and down (d_in 14336)
      {8, kMixed, 4096, 14336, true, 2, false, i64, bf16},
      {8, kMixed, 14336, 4096, false, 3, true, i32, fp16},
      {3, 300, 1024, 14336, false, 0, false, i64, bf16},
      // the smallest dims and partial k / n tiles
      {5, 3, 8, 8, false, 0, false, i64, fp16},
      {5, 37, 24, 136, false, 0, true, i64, bf16},
      {5, 130, 136, 24, true, 0, false, i32, fp16},
      // k tails past a 64-wide slice, n tails past a 256-wide tile
      {4, 200, 200, 264, false, 0, false, i64, bf16},
      {4, 200, 1000, 520, true, 0, true, i64, fp16},
  };
}

INSTANTIATE_TEST_SUITE_P(Issue23, SegmentGemmGrid,
                         ::testing::Combine(::testing::ValuesIn(grid_cases()),
                                            ::testing::ValuesIn(kBackends)),
                         case_name);

// ---------------------------------------------------------------------------

class SegmentGemmBackends : public ::testing::TestWithParam<SegmentGemmBackend> {};

std::string backend_param_name(const ::testing::TestParamInfo<SegmentGemmBackend>& info) {
  return backend_name(info.param);
}

// Segments ending on either side of the Hopper kernel's bounds: 64 rows (a
// consumer warpgroup; the second one skips the tile's product) and 128 (a
// tile), so every store mask and the skip path meet their edge cases, in
// both weight layouts.
TEST_P(SegmentGemmBackends, SegmentEndsAtTileBounds) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SKIP_UNLESS_BACKEND_RUNS(GetParam());
  TESSERA_SEEDED_RNG(rng);
  const std::vector<int64_t> lengths = {64, 65, 63, 128, 129, 127, 1, 192, 256, 0, 257};
  const std::vector<int64_t> indptr = indptr_of(lengths);
  const auto batch = static_cast<int64_t>(lengths.size());
  for (const bool column_major : {false, true}) {
    SCOPED_TRACE(column_major ? "column-major" : "row-major");
    Problem p(rng, DType::kBFloat16, indptr.back(), batch, 320, 264, column_major);
    DeviceTensor segments = index_tensor(DType::kInt64, indptr);
    DLTensor segments_dl = segments.dl();
    segment_gemm(p.x_dev.dl(), p.w_dev.dl(), p.y_dev.dl(), batch, column_major, nullptr,
                 &segments_dl, nullptr, nullptr, GetParam(), Validate::kOn);
    TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
    p.check(rng, indptr, {}, DType::kBFloat16);
  }
}

// ---------------------------------------------------------------------------

TEST_P(SegmentGemmBackends, StridedRowsOfXAndY) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SKIP_UNLESS_BACKEND_RUNS(GetParam());
  TESSERA_SEEDED_RNG(rng);
  const std::vector<int64_t> lengths = {17, 0, 150, 2};
  const std::vector<int64_t> indptr = indptr_of(lengths);
  Problem p(rng, DType::kBFloat16, indptr.back(), 4, 256, 192, false, 256 + 24, 192 + 64);
  DeviceTensor segments = index_tensor(DType::kInt64, indptr);
  DLTensor segments_dl = segments.dl();
  segment_gemm(p.x_dev.dl(), p.w_dev.dl(), p.y_dev.dl(), 4, false, nullptr, &segments_dl, nullptr,
               nullptr, GetParam());
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  p.check(rng, indptr, {}, DType::kBFloat16);
  EXPECT_TRUE(testing::padding_untouched(p.y_dev));
}

TEST_P(SegmentGemmBackends, RowsPastTheLastSegmentAreZero) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SKIP_UNLESS_BACKEND_RUNS(GetParam());
  TESSERA_SEEDED_RNG(rng);
  const std::vector<int64_t> lengths = {5, 3};  // 8 of 300 rows (validation off)
  std::vector<int64_t> indptr = indptr_of(lengths);
  Problem p(rng, DType::kFloat16, 300, 2, 128, 256, true);
  DeviceTensor segments = index_tensor(DType::kInt32, lengths);
  DLTensor segments_dl = segments.dl();
  segment_gemm(p.x_dev.dl(), p.w_dev.dl(), p.y_dev.dl(), 2, true, &segments_dl, nullptr, nullptr,
               nullptr, GetParam(), Validate::kOff);
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  p.check(rng, indptr, {}, DType::kFloat16);  // the reference gives 0 past the segments
  const std::vector<float> y = p.y_dev.download();
  EXPECT_TRUE(std::all_of(y.begin() + 8 * 256, y.end(), [](float v) { return v == 0.f; }));
}

// One capture, replayed after the router (here a copy) changed the lengths
// on the device: the graph's grid was sized from host-known bounds only.
TEST_P(SegmentGemmBackends, GraphReplaysWithChangedDeviceLengths) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SKIP_UNLESS_BACKEND_RUNS(GetParam());
  TESSERA_SEEDED_RNG(rng);
  for (const bool lengths_form : {false, true}) {
    SCOPED_TRACE(lengths_form ? "seg_lens" : "seg_indptr");
    const std::vector<std::vector<int64_t>> rounds = {
        {40, 0, 88, 0}, {1, 126, 1, 0}, {0, 0, 0, 128}, {32, 32, 32, 32}};
    Problem p(rng, DType::kBFloat16, 128, 4, 512, 384, !lengths_form);
    DeviceTensor segments(DType::kInt64, {lengths_form ? 4 : 5});
    segments.upload_ints(lengths_form ? rounds[0] : indptr_of(rounds[0]));
    DLTensor segments_dl = segments.dl();
    CudaStream stream;
    cudaGraph_t graph = nullptr;
    TESSERA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
    segment_gemm(p.x_dev.dl(), p.w_dev.dl(), p.y_dev.dl(), 4, !lengths_form,
                 lengths_form ? &segments_dl : nullptr, lengths_form ? nullptr : &segments_dl,
                 nullptr, stream.get(), GetParam(), Validate::kOff);
    TESSERA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
    cudaGraphExec_t exec = nullptr;
    TESSERA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (const std::vector<int64_t>& lengths : rounds) {
      const std::vector<int64_t> indptr = indptr_of(lengths);
      segments.upload_ints(lengths_form ? lengths : indptr);
      p.y_dev.poison();
      TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
      stream.synchronize();
      p.check(rng, indptr, {}, DType::kBFloat16);
    }
    TESSERA_CUDA_CHECK(cudaGraphExecDestroy(exec));
    TESSERA_CUDA_CHECK(cudaGraphDestroy(graph));
  }
}

INSTANTIATE_TEST_SUITE_P(Issue23, SegmentGemmBackends, ::testing::ValuesIn(kBackends),
                         backend_param_name);

// Multi-LoRA decode shapes, which the portable back end (auto and sm80) runs
// on the GEMV kernel (column-major W, at most 4 rows per segment on
// average): shrink and expand at rank 16, d_in of one chunk, of a partial
// lane group (25 chunks) and of several passes of loads; segments of 0 to 9
// rows (9: three passes of 4 rows), weight_indices, and rows past the last
// segment (validation off) coming back zero.
TEST(SegmentGemm, LoraDecodeShapesOnTheGemvKernel) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  struct Dims {
    int64_t d_in;
    int64_t d_out;
  };
  const std::vector<int64_t> lengths = {1, 1, 0, 3, 4, 9, 1, 1, 1, 1, 2, 1};
  const std::vector<int64_t> indptr = indptr_of(lengths);
  const auto batch = static_cast<int64_t>(lengths.size());
  for (const Dims d : {Dims{4096, 16}, Dims{16, 4096}, Dims{8, 24}, Dims{200, 64}, Dims{64, 8}}) {
    SCOPED_TRACE("d_in " + std::to_string(d.d_in) + ", d_out " + std::to_string(d.d_out));
    for (const bool with_indices : {false, true}) {
      const int64_t num_weights = with_indices ? 3 : batch;
      std::vector<int64_t> indices;
      if (with_indices) {
        for (int64_t s = 0; s < batch; ++s) indices.push_back(rng.integer(0, num_weights - 1));
      }
      const int64_t tail = with_indices ? 5 : 0;  // rows past the last segment
      Problem p(rng, DType::kFloat16, indptr.back() + tail, num_weights, d.d_in, d.d_out, true);
      DeviceTensor segments = index_tensor(DType::kInt32, lengths);
      DeviceTensor index_dev = index_tensor(DType::kInt64, with_indices ? indices : lengths);
      DLTensor segments_dl = segments.dl();
      DLTensor indices_dl = index_dev.dl();
      segment_gemm(p.x_dev.dl(), p.w_dev.dl(), p.y_dev.dl(), batch, true, &segments_dl, nullptr,
                   with_indices ? &indices_dl : nullptr, nullptr, SegmentGemmBackend::kSm80,
                   Validate::kOff);
      TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
      p.check(rng, indptr, indices, DType::kFloat16);
      const std::vector<float> y = p.y_dev.download();
      EXPECT_TRUE(std::all_of(y.begin() + indptr.back() * d.d_out, y.end(),
                              [](float v) { return v == 0.f; }));
    }
  }
}

// auto on Hopper takes the sm90 kernel for MoE-like shapes: the result must
// match too (the back ends themselves are compared above).
TEST(SegmentGemm, AutoMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const std::vector<int64_t> lengths = {300, 0, 517, 90};
  const std::vector<int64_t> indptr = indptr_of(lengths);
  Problem p(rng, DType::kBFloat16, indptr.back(), 4, 512, 1024, true);
  DeviceTensor segments = index_tensor(DType::kInt64, lengths);
  DLTensor segments_dl = segments.dl();
  segment_gemm(p.x_dev.dl(), p.w_dev.dl(), p.y_dev.dl(), 4, true, &segments_dl, nullptr, nullptr,
               nullptr, SegmentGemmBackend::kAuto, Validate::kOn);
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  p.check(rng, indptr, {}, DType::kBFloat16);
}

TEST(SegmentGemm, Sm90OnAnotherGpuNamesBackend) {
  TESSERA_REQUIRE_GPU();
  if (testing::device_is_sm90()) GTEST_SKIP() << "a compute capability 9.0 GPU runs sm90";
  DeviceTensor x(DType::kFloat16, {10, 64});
  DeviceTensor weights(DType::kFloat16, {1, 64, 32});
  DeviceTensor y(DType::kFloat16, {10, 32});
  DeviceTensor indptr = index_tensor(DType::kInt64, {0, 10});
  DLTensor indptr_dl = indptr.dl();
  testing::expect_argument_error(
      [&] {
        segment_gemm(x.dl(), weights.dl(), y.dl(), 1, false, nullptr, &indptr_dl, nullptr, nullptr,
                     SegmentGemmBackend::kSm90, Validate::kOff);
      },
      "backend");
}

// ---------------------------------------------------------------------------
// Validation mode: device arrays copied to the host and checked.

struct SmallCall {
  DeviceTensor x{DType::kFloat16, {10, 64}};
  DeviceTensor weights{DType::kFloat16, {3, 64, 32}};  // one per segment
  DeviceTensor y{DType::kFloat16, {10, 32}};
  void run(DeviceTensor* seg_lens, DeviceTensor* seg_indptr, DeviceTensor* indices,
           cudaStream_t stream = nullptr) {
    DLTensor lens_dl = seg_lens != nullptr ? seg_lens->dl() : DLTensor{};
    DLTensor indptr_dl = seg_indptr != nullptr ? seg_indptr->dl() : DLTensor{};
    DLTensor indices_dl = indices != nullptr ? indices->dl() : DLTensor{};
    segment_gemm(x.dl(), weights.dl(), y.dl(), 3, false, seg_lens ? &lens_dl : nullptr,
                 seg_indptr ? &indptr_dl : nullptr, indices ? &indices_dl : nullptr, stream,
                 SegmentGemmBackend::kAuto, Validate::kOn);
  }
};

TEST(SegmentGemmValidationMode, RejectsSegLensNotSummingToTheRowsOfX) {
  TESSERA_REQUIRE_GPU();
  SmallCall call;
  DeviceTensor lens = index_tensor(DType::kInt64, {4, 0, 5});
  testing::expect_argument_error([&] { call.run(&lens, nullptr, nullptr); }, "seg_lens");
}

TEST(SegmentGemmValidationMode, RejectsWeightIndexOutOfRange) {
  TESSERA_REQUIRE_GPU();
  SmallCall call;
  DeviceTensor indptr = index_tensor(DType::kInt32, {0, 4, 4, 10});
  DeviceTensor indices = index_tensor(DType::kInt32, {0, 1, 3});
  testing::expect_argument_error([&] { call.run(nullptr, &indptr, &indices); }, "weight_indices");
}

TEST(SegmentGemmValidationMode, RejectsValidationWhileCapturing) {
  TESSERA_REQUIRE_GPU();
  SmallCall call;
  DeviceTensor indptr = index_tensor(DType::kInt64, {0, 4, 4, 10});
  CudaStream stream;
  TESSERA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  const std::string rejected =
      testing::rejected_argument([&] { call.run(nullptr, &indptr, nullptr, stream.get()); });
  cudaGraph_t graph = nullptr;
  TESSERA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
  if (graph != nullptr) TESSERA_CUDA_CHECK(cudaGraphDestroy(graph));
  EXPECT_EQ(rejected, "validate");
}

}  // namespace
}  // namespace tessera
