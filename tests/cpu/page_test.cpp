// Paged KV-cache maintenance without a GPU: the float64 references against
// hand-computed values, every argument rejection of append_paged_kv_cache and
// get_batch_indices_positions (fake device pointers: validation must throw
// before any CUDA call), and the host checks of the validation mode.
#include "tessera/api/page.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "../../src/api/page_validation.h"  // host-only checks, tested directly
#include "reference/page_ref.h"
#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::expect_argument_error;
using testing::FakeTensor;

// ---------------------------------------------------------------- references

TEST(PageReference, BatchIndicesPositionsHandComputed) {
  // Request 1 appends nothing; request 2 held 0 tokens before its append.
  const std::vector<int32_t> append_indptr = {0, 2, 2, 5};
  const std::vector<int32_t> seq_lens = {4, 1, 3};
  const auto out = reference::get_batch_indices_positions(append_indptr, seq_lens);
  EXPECT_EQ(out.batch_indices, (std::vector<int32_t>{0, 0, 2, 2, 2}));
  EXPECT_EQ(out.positions, (std::vector<int32_t>{2, 3, 0, 1, 2}));
}

TEST(PageReference, CacheOffsetsFollowTheLayout) {
  const reference::PagedCacheShape nhd{KVLayout::kNHD, 2, 3, 2, 4};
  const reference::PagedCacheShape hnd{KVLayout::kHND, 2, 3, 2, 4};
  // Page 1 starts at 1 * 3 * 2 * 4 = 24; slot 1 head 0 is entry 2 (NHD) or 1 (HND).
  EXPECT_EQ(nhd.offset(1, 1, 0), 32);
  EXPECT_EQ(hnd.offset(1, 1, 0), 28);
  EXPECT_EQ(nhd.offset(1, 2, 1), 44);
  EXPECT_EQ(hnd.offset(1, 2, 1), 44);
}

TEST(PageReference, AppendWritesEachTokenToItsPageAndSlot) {
  // One request with pages {2, 0} of size 2; tokens at positions 1 and 2:
  // position 1 -> page 2 slot 1, position 2 -> page 0 slot 0.
  const reference::PagedCacheShape shape{KVLayout::kNHD, 3, 2, 1, 2};
  std::vector<double> cache(shape.numel(), -1.0);
  const std::vector<double> append = {10, 11, 20, 21};
  const std::vector<int32_t> batch_indices = {0, 0};
  const std::vector<int32_t> positions = {1, 2};
  const std::vector<int32_t> kv_indices = {2, 0};
  const std::vector<int32_t> kv_indptr = {0, 2};
  reference::append_paged_kv(append, batch_indices, positions, kv_indices, kv_indptr, shape, cache);
  const std::vector<double> expected = {20, 21, -1, -1, -1, -1, -1, -1, -1, -1, 10, 11};
  EXPECT_EQ(cache, expected);
}

// ------------------------------------------- append_paged_kv_cache arguments

// A consistent set of fake arguments; each test breaks one thing.
struct AppendArgs {
  static constexpr int64_t kNnz = 4;
  static constexpr int64_t kHeads = 2;
  static constexpr int64_t kHeadDim = 64;
  static constexpr int64_t kPages = 8;
  static constexpr int64_t kPageSize = 16;
  static constexpr int64_t kBatch = 3;

  FakeTensor key{DType::kBFloat16, {kNnz, kHeads, kHeadDim}};
  FakeTensor value{DType::kBFloat16, {kNnz, kHeads, kHeadDim}};
  FakeTensor cache{DType::kBFloat16, {kPages, 2, kPageSize, kHeads, kHeadDim}};
  FakeTensor batch_indices{DType::kInt32, {kNnz}};
  FakeTensor positions{DType::kInt32, {kNnz}};
  FakeTensor kv_indices{DType::kInt32, {kPages}};
  FakeTensor kv_indptr{DType::kInt32, {kBatch + 1}};
  FakeTensor kv_last_page_len{DType::kInt32, {kBatch}};

  void run() { run_with(PagedKVCacheArg::combined(cache, KVLayout::kNHD)); }
  void run_with(const PagedKVCacheArg& paged_kv_cache) {
    append_paged_kv_cache(key, value, batch_indices, positions, paged_kv_cache, kv_indices,
                          kv_indptr, kv_last_page_len, nullptr, Validate::kOn);
  }
};

TEST(AppendPagedKVArgs, RejectsFloat32Key) {
  AppendArgs args;
  args.key = FakeTensor(DType::kFloat32, {4, 2, 64});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsRank2Key) {
  AppendArgs args;
  args.key = FakeTensor(DType::kBFloat16, {4, 128});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsKeyWithStridedHeadDim) {
  AppendArgs args;
  args.key.with_strides({256, 128, 2});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsHostKey) {
  AppendArgs args;
  args.key = FakeTensor(DType::kBFloat16, {4, 2, 64}, {kDLCPU, 0});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsValueOfAnotherDtype) {
  AppendArgs args;
  args.value = FakeTensor(DType::kFloat16, {4, 2, 64});
  expect_argument_error([&] { args.run(); }, "append_value");
}

TEST(AppendPagedKVArgs, RejectsValueOfAnotherShape) {
  AppendArgs args;
  args.value = FakeTensor(DType::kBFloat16, {3, 2, 64});
  expect_argument_error([&] { args.run(); }, "append_value");
}

TEST(AppendPagedKVArgs, RejectsFloat32Cache) {
  AppendArgs args;
  args.cache = FakeTensor(DType::kFloat32, {8, 2, 16, 2, 64});
  expect_argument_error([&] { args.run(); }, "paged_kv_cache");
}

TEST(AppendPagedKVArgs, RejectsCacheOnAnotherDevice) {
  AppendArgs args;
  args.cache = FakeTensor(DType::kBFloat16, {8, 2, 16, 2, 64}, {kDLCUDA, 1});
  expect_argument_error([&] { args.run(); }, "paged_kv_cache");
}

TEST(AppendPagedKVArgs, RejectsBFloat16KeyIntoFloat16Cache) {
  AppendArgs args;
  args.cache = FakeTensor(DType::kFloat16, {8, 2, 16, 2, 64});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsFp8KeyIntoBFloat16Cache) {
  AppendArgs args;
  args.key = FakeTensor(DType::kFloat8E4M3, {4, 2, 64});
  args.value = FakeTensor(DType::kFloat8E4M3, {4, 2, 64});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsHeadCountOtherThanTheCaches) {
  AppendArgs args;
  args.cache = FakeTensor(DType::kBFloat16, {8, 2, 16, 4, 64});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsHeadDimOtherThanTheCaches) {
  AppendArgs args;
  args.cache = FakeTensor(DType::kBFloat16, {8, 2, 16, 2, 128});
  expect_argument_error([&] { args.run(); }, "append_key");
}

TEST(AppendPagedKVArgs, HNDHeadCountIsReadFromDimTwo) {
  AppendArgs args;
  // HND [pages, 2, heads, page_size, head_dim] with 16 heads and page size 2:
  // append_key's 2 heads do not match.
  args.cache = FakeTensor(DType::kBFloat16, {8, 2, 16, 2, 64});
  expect_argument_error(
      [&] { args.run_with(PagedKVCacheArg::combined(args.cache, KVLayout::kHND)); }, "append_key");
}

TEST(AppendPagedKVArgs, RejectsCacheWithStridedHeadDim) {
  AppendArgs args;
  args.cache.with_strides({8192, 4096, 256, 128, 2});
  expect_argument_error([&] { args.run(); }, "paged_kv_cache");
}

TEST(AppendPagedKVArgs, RejectsSeparateCachesOfDifferentShapes) {
  AppendArgs args;
  FakeTensor k(DType::kBFloat16, {8, 16, 2, 64});
  FakeTensor v(DType::kBFloat16, {7, 16, 2, 64});
  expect_argument_error([&] { args.run_with(PagedKVCacheArg::separate(k, v, KVLayout::kNHD)); },
                        "paged_v_cache");
}

TEST(AppendPagedKVArgs, RejectsInt64BatchIndices) {
  AppendArgs args;
  args.batch_indices = FakeTensor(DType::kInt64, {4});
  expect_argument_error([&] { args.run(); }, "batch_indices");
}

TEST(AppendPagedKVArgs, RejectsBatchIndicesOfWrongLength) {
  AppendArgs args;
  args.batch_indices = FakeTensor(DType::kInt32, {5});
  expect_argument_error([&] { args.run(); }, "batch_indices");
}

TEST(AppendPagedKVArgs, RejectsPositionsOfWrongLength) {
  AppendArgs args;
  args.positions = FakeTensor(DType::kInt32, {3});
  expect_argument_error([&] { args.run(); }, "positions");
}

TEST(AppendPagedKVArgs, RejectsStridedPositions) {
  AppendArgs args;
  args.positions.with_strides({2});
  expect_argument_error([&] { args.run(); }, "positions");
}

TEST(AppendPagedKVArgs, RejectsRank2KvIndices) {
  AppendArgs args;
  args.kv_indices = FakeTensor(DType::kInt32, {2, 4});
  expect_argument_error([&] { args.run(); }, "kv_indices");
}

TEST(AppendPagedKVArgs, RejectsHostKvIndices) {
  AppendArgs args;
  args.kv_indices = FakeTensor(DType::kInt32, {8}, {kDLCPU, 0});
  expect_argument_error([&] { args.run(); }, "kv_indices");
}

TEST(AppendPagedKVArgs, RejectsKvIndicesOnAnotherDevice) {
  AppendArgs args;
  args.kv_indices = FakeTensor(DType::kInt32, {8}, {kDLCUDA, 1});
  expect_argument_error([&] { args.run(); }, "kv_indices");
}

TEST(AppendPagedKVArgs, RejectsKvIndptrNotOneLongerThanLastPageLen) {
  AppendArgs args;
  args.kv_indptr = FakeTensor(DType::kInt32, {3});
  expect_argument_error([&] { args.run(); }, "kv_indptr");
}

TEST(AppendPagedKVArgs, RejectsFloatLastPageLen) {
  AppendArgs args;
  args.kv_last_page_len = FakeTensor(DType::kFloat32, {3});
  expect_argument_error([&] { args.run(); }, "kv_last_page_len");
}

TEST(AppendPagedKVArgs, ZeroTokensReturnsWithoutTouchingTheDevice) {
  // Fake pointers: any CUDA call or launch would fail or crash here.
  AppendArgs args;
  args.key = FakeTensor(DType::kBFloat16, {0, 2, 64});
  args.value = FakeTensor(DType::kBFloat16, {0, 2, 64});
  args.batch_indices = FakeTensor(DType::kInt32, {0});
  args.positions = FakeTensor(DType::kInt32, {0});
  EXPECT_NO_THROW(args.run());
}

// -------------------------------------- get_batch_indices_positions arguments

struct BatchIndicesArgs {
  FakeTensor append_indptr{DType::kInt32, {4}};
  FakeTensor seq_lens{DType::kInt32, {3}};
  FakeTensor batch_indices{DType::kInt32, {10}};
  FakeTensor positions{DType::kInt32, {10}};
  void run() {
    get_batch_indices_positions(append_indptr, seq_lens, batch_indices, positions, nullptr);
  }
};

TEST(GetBatchIndicesPositionsArgs, RejectsInt64AppendIndptr) {
  BatchIndicesArgs args;
  args.append_indptr = FakeTensor(DType::kInt64, {4});
  expect_argument_error([&] { args.run(); }, "append_indptr");
}

TEST(GetBatchIndicesPositionsArgs, RejectsAppendIndptrNotOneLongerThanSeqLens) {
  BatchIndicesArgs args;
  args.seq_lens = FakeTensor(DType::kInt32, {4});
  expect_argument_error([&] { args.run(); }, "append_indptr");
}

TEST(GetBatchIndicesPositionsArgs, RejectsPositionsOfAnotherLength) {
  BatchIndicesArgs args;
  args.positions = FakeTensor(DType::kInt32, {9});
  expect_argument_error([&] { args.run(); }, "positions");
}

TEST(GetBatchIndicesPositionsArgs, RejectsHostSeqLens) {
  BatchIndicesArgs args;
  args.seq_lens = FakeTensor(DType::kInt32, {3}, {kDLCPU, 0});
  expect_argument_error([&] { args.run(); }, "seq_lens");
}

TEST(GetBatchIndicesPositionsArgs, RejectsBatchIndicesOnAnotherDevice) {
  BatchIndicesArgs args;
  args.batch_indices = FakeTensor(DType::kInt32, {10}, {kDLCUDA, 1});
  expect_argument_error([&] { args.run(); }, "batch_indices");
}

TEST(GetBatchIndicesPositionsArgs, RejectsTokensWithoutRequests) {
  BatchIndicesArgs args;
  args.append_indptr = FakeTensor(DType::kInt32, {1});
  args.seq_lens = FakeTensor(DType::kInt32, {0});
  expect_argument_error([&] { args.run(); }, "seq_lens");
}

TEST(GetBatchIndicesPositionsArgs, ZeroTokensReturnsWithoutTouchingTheDevice) {
  BatchIndicesArgs args;
  args.batch_indices = FakeTensor(DType::kInt32, {0});
  args.positions = FakeTensor(DType::kInt32, {0});
  EXPECT_NO_THROW(args.run());
}

// ------------------------------------------- validation mode (host checks)

// Two requests on pages of 4: request 0 holds 6 tokens on pages {3, 1},
// request 1 holds 3 tokens on page {0}; the last two tokens of each are new.
struct HostIndices {
  std::vector<int32_t> batch_indices = {0, 0, 1, 1};
  std::vector<int32_t> positions = {4, 5, 1, 2};
  std::vector<int32_t> kv_indices = {3, 1, 0};
  std::vector<int32_t> kv_indptr = {0, 2, 3};
  std::vector<int32_t> kv_last_page_len = {2, 3};
  static constexpr int64_t kNumPages = 4;
  static constexpr int64_t kPageSize = 4;

  void validate() const {
    detail::validate_append_indices(
        {batch_indices, positions, kv_indices, kv_indptr, kv_last_page_len}, kNumPages, kPageSize);
  }
};

void expect_validation_error(const HostIndices& indices, std::string_view argument,
                             std::string_view culprit) {
  try {
    indices.validate();
    ADD_FAILURE() << "expected tessera::Error for argument '" << argument << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.argument(), argument) << error.what();
    EXPECT_NE(std::string_view(error.what()).find(culprit), std::string_view::npos) << error.what();
  }
}

TEST(AppendPagedKVValidation, AcceptsConsistentIndices) {
  EXPECT_NO_THROW(HostIndices{}.validate());
}

TEST(AppendPagedKVValidation, AcceptsRequestWithNoPagesAndLastPageLenZero) {
  HostIndices indices;
  indices.kv_indptr = {0, 2, 3, 3};
  indices.kv_last_page_len = {2, 3, 0};
  EXPECT_NO_THROW(indices.validate());
}

TEST(AppendPagedKVValidation, IgnoresUnusedTailOfKvIndices) {
  HostIndices indices;
  indices.kv_indices = {3, 1, 0, -5, 99};
  EXPECT_NO_THROW(indices.validate());
}

TEST(AppendPagedKVValidation, RejectsKvIndptrNotStartingAtZero) {
  HostIndices indices;
  indices.kv_indptr = {1, 2, 3};
  expect_validation_error(indices, "kv_indptr", "kv_indptr[0] = 1");
}

TEST(AppendPagedKVValidation, RejectsDecreasingKvIndptr) {
  HostIndices indices;
  indices.kv_indptr = {0, 2, 1};
  expect_validation_error(indices, "kv_indptr", "kv_indptr[2] = 1");
}

TEST(AppendPagedKVValidation, RejectsKvIndptrPastKvIndices) {
  HostIndices indices;
  indices.kv_indptr = {0, 2, 4};
  expect_validation_error(indices, "kv_indptr", "kv_indptr[2] = 4");
}

TEST(AppendPagedKVValidation, RejectsPageIndexPastTheCache) {
  HostIndices indices;
  indices.kv_indices = {3, 4, 0};
  expect_validation_error(indices, "kv_indices", "kv_indices[1] = 4");
}

TEST(AppendPagedKVValidation, RejectsNegativePageIndex) {
  HostIndices indices;
  indices.kv_indices = {3, 1, -1};
  expect_validation_error(indices, "kv_indices", "kv_indices[2] = -1");
}

TEST(AppendPagedKVValidation, RejectsLastPageLenZeroForRequestWithPages) {
  HostIndices indices;
  indices.kv_last_page_len = {0, 3};
  expect_validation_error(indices, "kv_last_page_len", "kv_last_page_len[0] = 0");
}

TEST(AppendPagedKVValidation, RejectsLastPageLenAbovePageSize) {
  HostIndices indices;
  indices.kv_last_page_len = {2, 5};
  expect_validation_error(indices, "kv_last_page_len", "kv_last_page_len[1] = 5");
}

TEST(AppendPagedKVValidation, RejectsBatchIndexPastTheBatch) {
  HostIndices indices;
  indices.batch_indices = {0, 0, 1, 2};
  expect_validation_error(indices, "batch_indices", "batch_indices[3] = 2");
}

TEST(AppendPagedKVValidation, RejectsPositionPastTheSequence) {
  HostIndices indices;
  indices.positions = {4, 6, 1, 2};  // request 0 holds 6 tokens: positions 0..5
  expect_validation_error(indices, "positions", "positions[1] = 6");
}

TEST(AppendPagedKVValidation, RejectsNegativePosition) {
  HostIndices indices;
  indices.positions = {4, 5, -1, 2};
  expect_validation_error(indices, "positions", "positions[2] = -1");
}

TEST(AppendPagedKVValidation, RejectsAnyPositionInARequestWithNoPages) {
  HostIndices indices;
  indices.kv_indptr = {0, 3, 3};
  indices.kv_last_page_len = {3, 0};
  indices.positions = {4, 5, 0, 0};
  expect_validation_error(indices, "positions", "positions[2] = 0");
}

}  // namespace
}  // namespace tessera
