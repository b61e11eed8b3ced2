// append_paged_kv_cache and get_batch_indices_positions on the GPU against the
// float64 references. Appends move bits (or round once to fp8 exactly as the
// host does), so every comparison is exact (all_equal). The whole cache is
// filled with random values first, so pages and slots the append must not
// touch are checked to keep their previous contents; padding bytes of
// strided caches stay poisoned.
#include "tessera/api/page.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include "reference/page_ref.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::padding_untouched;
using testing::Rng;

// Pages in the cache that no request owns: they must keep their contents.
constexpr int32_t kSparePages = 3;

struct Request {
  int32_t existing;  // tokens in the cache before the append
  int32_t appended;
};

// Empty request, request appending nothing, appends starting mid-page and
// crossing page boundaries, a request filling its last page exactly.
const std::vector<Request> kMixedRequests = {{0, 7},   {13, 0}, {5, 20}, {16, 1},
                                             {31, 40}, {0, 0},  {2, 3},  {15, 17}};

// Page table after the append (FlashInfer semantics: kv_indptr and
// kv_last_page_len already count the appended tokens).
struct Batch {
  int32_t num_pages = 0;
  std::vector<int32_t> kv_indices;
  std::vector<int32_t> kv_indptr{0};
  std::vector<int32_t> kv_last_page_len;
  std::vector<int32_t> append_indptr{0};
  std::vector<int32_t> seq_lens;
  std::vector<int32_t> batch_indices;
  std::vector<int32_t> positions;
  int64_t nnz() const { return static_cast<int64_t>(batch_indices.size()); }
};

Batch make_batch(const std::vector<Request>& requests, int32_t page_size, Rng& rng) {
  Batch batch;
  for (const Request& r : requests) {
    const int32_t len = r.existing + r.appended;
    const int32_t pages = (len + page_size - 1) / page_size;
    batch.kv_indptr.push_back(batch.kv_indptr.back() + pages);
    batch.kv_last_page_len.push_back(pages == 0 ? 0 : len - (pages - 1) * page_size);
    batch.append_indptr.push_back(batch.append_indptr.back() + r.appended);
    batch.seq_lens.push_back(len);
  }
  batch.num_pages = batch.kv_indptr.back() + kSparePages;
  std::vector<int32_t> pages(batch.num_pages);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), rng.engine());
  batch.kv_indices.assign(pages.begin(), pages.begin() + batch.kv_indptr.back());
  // Entries past kv_indptr[batch] are never read: make them invalid to prove it.
  batch.kv_indices.push_back(-1);
  batch.kv_indices.push_back(batch.num_pages + 100);
  auto map = reference::get_batch_indices_positions(batch.append_indptr, batch.seq_lens);
  batch.batch_indices = std::move(map.batch_indices);
  batch.positions = std::move(map.positions);
  return batch;
}

DeviceTensor int_tensor(const std::vector<int32_t>& values) {
  DeviceTensor tensor(DType::kInt32, {static_cast<int64_t>(values.size())});
  tensor.poison();
  tensor.upload_ints(std::vector<int64_t>(values.begin(), values.end()));
  return tensor;
}

std::vector<float> to_floats(const std::vector<double>& values) {
  return std::vector<float>(values.begin(), values.end());
}

std::vector<double> random_values(Rng& rng, DType dtype, int64_t count, float scale) {
  const std::vector<float> rounded =
      testing::round_to(dtype, rng.normal_vector(static_cast<std::size_t>(count), 0.f, scale));
  return std::vector<double>(rounded.begin(), rounded.end());
}

struct CacheSpec {
  KVLayout layout = KVLayout::kNHD;
  bool combined = true;
  DType dtype = DType::kBFloat16;
  int64_t num_heads = 4;
  int64_t head_dim = 64;
  // Padding in elements after each head_dim row, after each page's K (or V)
  // block, and after each page: the cache is then a slice of a larger buffer.
  int64_t pad_row = 0;
  int64_t pad_block = 0;
  int64_t pad_page = 0;
};

// The cache under test: one [pages, 2, ...] tensor or separate K and V, in
// the spec's layout and padding. Host copies of K and V are contiguous in the
// layout's order, as reference::PagedCacheShape has them.
class TestCache {
 public:
  TestCache(const CacheSpec& spec, int64_t num_pages, int64_t page_size)
      : spec_(spec), shape_{spec.layout, num_pages, page_size, spec.num_heads, spec.head_dim} {
    const bool nhd = spec.layout == KVLayout::kNHD;
    const int64_t outer = nhd ? page_size : spec.num_heads;
    const int64_t inner = nhd ? spec.num_heads : page_size;
    const int64_t stride_inner = spec.head_dim + spec.pad_row;
    const int64_t stride_outer = inner * stride_inner;
    const int64_t block = outer * stride_outer + spec.pad_block;
    if (spec.combined) {
      tensors_.emplace_back(
          spec.dtype, std::vector<int64_t>{num_pages, 2, outer, inner, spec.head_dim},
          std::vector<int64_t>{2 * block + spec.pad_page, block, stride_outer, stride_inner, 1});
    } else {
      for (int kv = 0; kv < 2; ++kv) {
        tensors_.emplace_back(
            spec.dtype, std::vector<int64_t>{num_pages, outer, inner, spec.head_dim},
            std::vector<int64_t>{block + spec.pad_page, stride_outer, stride_inner, 1});
      }
    }
    for (DeviceTensor& tensor : tensors_) {
      tensor.poison();
      dl_.push_back(tensor.dl());
    }
  }

  const reference::PagedCacheShape& shape() const { return shape_; }

  PagedKVCacheArg arg() const {
    return spec_.combined ? PagedKVCacheArg::combined(dl_[0], spec_.layout)
                          : PagedKVCacheArg::separate(dl_[0], dl_[1], spec_.layout);
  }

  void upload(const std::vector<double>& k, const std::vector<double>& v) {
    if (!spec_.combined) {
      tensors_[0].upload(to_floats(k));
      tensors_[1].upload(to_floats(v));
      return;
    }
    const int64_t block = page_elements();
    std::vector<float> both(static_cast<std::size_t>(2 * shape_.numel()));
    for (int64_t p = 0; p < shape_.num_pages; ++p) {
      std::copy_n(k.begin() + p * block, block, both.begin() + (2 * p) * block);
      std::copy_n(v.begin() + p * block, block, both.begin() + (2 * p + 1) * block);
    }
    tensors_[0].upload(both);
  }

  std::pair<std::vector<float>, std::vector<float>> download() const {
    if (!spec_.combined) return {tensors_[0].download(), tensors_[1].download()};
    const std::vector<float> both = tensors_[0].download();
    const int64_t block = page_elements();
    std::vector<float> k(static_cast<std::size_t>(shape_.numel()));
    std::vector<float> v(k.size());
    for (int64_t p = 0; p < shape_.num_pages; ++p) {
      std::copy_n(both.begin() + (2 * p) * block, block, k.begin() + p * block);
      std::copy_n(both.begin() + (2 * p + 1) * block, block, v.begin() + p * block);
    }
    return {std::move(k), std::move(v)};
  }

  ::testing::AssertionResult padding_untouched() const {
    for (const DeviceTensor& tensor : tensors_) {
      auto result = tessera::padding_untouched(tensor);
      if (!result) return result;
    }
    return ::testing::AssertionSuccess();
  }

 private:
  int64_t page_elements() const { return shape_.page_size * shape_.num_heads * shape_.head_dim; }

  CacheSpec spec_;
  reference::PagedCacheShape shape_;
  std::vector<DeviceTensor> tensors_;
  std::vector<DLTensor> dl_;
};

struct AppendCase {
  CacheSpec cache;
  int32_t page_size = 16;
  DType append_dtype = DType::kBFloat16;
  // Padding in elements after each head row and after each token of the
  // append tensors (strided inputs).
  int64_t append_pad_head = 0;
  int64_t append_pad_token = 0;
  float scale = 1.f;  // of the random appended values (fp8 saturation tests)
  std::vector<Request> requests = kMixedRequests;
  Validate validate = Validate::kOff;
};

DeviceTensor append_tensor(const AppendCase& c, int64_t nnz) {
  const int64_t stride_head = c.cache.head_dim + c.append_pad_head;
  const int64_t stride_token = c.cache.num_heads * stride_head + c.append_pad_token;
  DeviceTensor tensor(c.append_dtype, {nnz, c.cache.num_heads, c.cache.head_dim},
                      {stride_token, stride_head, 1});
  tensor.poison();
  return tensor;
}

// Everything one append test needs: inputs on both sides and the call.
class AppendRun {
 public:
  AppendRun(const AppendCase& c, Rng& rng)
      : case_(c),
        batch_(make_batch(c.requests, c.page_size, rng)),
        cache_(c.cache, batch_.num_pages, c.page_size),
        key_(append_tensor(c, batch_.nnz())),
        value_(append_tensor(c, batch_.nnz())) {
    const int64_t cache_numel = cache_.shape().numel();
    k_before_ = random_values(rng, c.cache.dtype, cache_numel, 1.f);
    v_before_ = random_values(rng, c.cache.dtype, cache_numel, 1.f);
    cache_.upload(k_before_, v_before_);
    const int64_t append_numel = batch_.nnz() * c.cache.num_heads * c.cache.head_dim;
    key_host_ = random_values(rng, c.append_dtype, append_numel, c.scale);
    value_host_ = random_values(rng, c.append_dtype, append_numel, c.scale);
    key_.upload(to_floats(key_host_));
    value_.upload(to_floats(value_host_));
  }

  Batch& batch() { return batch_; }
  const TestCache& cache() const { return cache_; }

  void run() {
    DeviceTensor batch_indices = int_tensor(batch_.batch_indices);
    DeviceTensor positions = int_tensor(batch_.positions);
    DeviceTensor kv_indices = int_tensor(batch_.kv_indices);
    DeviceTensor kv_indptr = int_tensor(batch_.kv_indptr);
    DeviceTensor kv_last_page_len = int_tensor(batch_.kv_last_page_len);
    const DLTensor key = key_.dl();
    const DLTensor value = value_.dl();
    const DLTensor batch_indices_dl = batch_indices.dl();
    const DLTensor positions_dl = positions.dl();
    const DLTensor kv_indices_dl = kv_indices.dl();
    const DLTensor kv_indptr_dl = kv_indptr.dl();
    const DLTensor kv_last_page_len_dl = kv_last_page_len.dl();
    CudaStream stream;
    append_paged_kv_cache(key, value, batch_indices_dl, positions_dl, cache_.arg(), kv_indices_dl,
                          kv_indptr_dl, kv_last_page_len_dl, stream.get(), case_.validate);
    stream.synchronize();
  }

  // The cache as the reference leaves it, rounded to the cache dtype (the
  // one rounding an fp16/bf16 -> fp8 append does). Tokens whose page index
  // is outside [0, num_pages) are skipped, as the kernel skips them.
  std::pair<std::vector<float>, std::vector<float>> expected() const {
    std::vector<int32_t> batch_indices;
    std::vector<int32_t> positions;
    std::vector<double> key;
    std::vector<double> value;
    const int64_t row = case_.cache.num_heads * case_.cache.head_dim;
    for (int64_t i = 0; i < batch_.nnz(); ++i) {
      const int32_t b = batch_.batch_indices[i];
      const int32_t p = batch_.positions[i];
      const int32_t page = batch_.kv_indices[batch_.kv_indptr[b] + p / case_.page_size];
      if (page < 0 || page >= batch_.num_pages) continue;
      batch_indices.push_back(b);
      positions.push_back(p);
      key.insert(key.end(), key_host_.begin() + i * row, key_host_.begin() + (i + 1) * row);
      value.insert(value.end(), value_host_.begin() + i * row, value_host_.begin() + (i + 1) * row);
    }
    std::vector<double> k = k_before_;
    std::vector<double> v = v_before_;
    reference::append_paged_kv(key, batch_indices, positions, batch_.kv_indices, batch_.kv_indptr,
                               cache_.shape(), k);
    reference::append_paged_kv(value, batch_indices, positions, batch_.kv_indices, batch_.kv_indptr,
                               cache_.shape(), v);
    std::vector<float> k_out(k.size());
    std::vector<float> v_out(v.size());
    for (std::size_t j = 0; j < k.size(); ++j) {
      k_out[j] = testing::round_to(case_.cache.dtype, static_cast<float>(k[j]));
      v_out[j] = testing::round_to(case_.cache.dtype, static_cast<float>(v[j]));
    }
    return {std::move(k_out), std::move(v_out)};
  }

  std::pair<std::vector<float>, std::vector<float>> before() const {
    return {to_floats(k_before_), to_floats(v_before_)};
  }

 private:
  AppendCase case_;
  Batch batch_;
  TestCache cache_;
  DeviceTensor key_;
  DeviceTensor value_;
  std::vector<double> k_before_;
  std::vector<double> v_before_;
  std::vector<double> key_host_;
  std::vector<double> value_host_;
};

// Runs the append and checks the whole cache (targeted slots, untouched
// slots and pages) bit for bit, and the padding bytes.
void expect_append_matches_reference(const AppendCase& c) {
  TESSERA_SEEDED_RNG(rng);
  AppendRun run(c, rng);
  run.run();
  const auto [k, v] = run.cache().download();
  const auto [k_expected, v_expected] = run.expected();
  EXPECT_TRUE(testing::all_equal(k, k_expected)) << "K cache";
  EXPECT_TRUE(testing::all_equal(v, v_expected)) << "V cache";
  EXPECT_TRUE(run.cache().padding_untouched());
}

// ------------------------------------------------------------ layouts, K/V

TEST(AppendPagedKV, CombinedNHDMatchesReference) {
  TESSERA_REQUIRE_GPU();
  expect_append_matches_reference({});
}

TEST(AppendPagedKV, CombinedHNDMatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.cache.layout = KVLayout::kHND;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, SeparateNHDMatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.cache.combined = false;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, SeparateHNDMatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.cache.layout = KVLayout::kHND;
  c.cache.combined = false;
  expect_append_matches_reference(c);
}

// ------------------------------------------------------------- page sizes

TEST(AppendPagedKV, PageSizeOneMatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.page_size = 1;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, PageSizeOneHNDMatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.page_size = 1;
  c.cache.layout = KVLayout::kHND;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, PageSizeFiveMatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.page_size = 5;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, PageSizeFiveHNDSeparateMatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.page_size = 5;
  c.cache.layout = KVLayout::kHND;
  c.cache.combined = false;
  expect_append_matches_reference(c);
}

// ----------------------------------------------------------------- dtypes

TEST(AppendPagedKV, Float16MatchesReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.cache.dtype = DType::kFloat16;
  c.append_dtype = DType::kFloat16;
  c.cache.head_dim = 128;
  expect_append_matches_reference(c);
}

constexpr DType kFp8Formats[] = {DType::kFloat8E4M3, DType::kFloat8E5M2};

// A scale for N(0, scale^2) appends at which about 13-15% of the values pass
// the format's largest finite value (e4m3fn 448, e5m2 57344) and must
// saturate (the host rounding saturates the same way).
float saturating_scale(DType fp8) {
  return fp8 == DType::kFloat8E4M3 ? 300.f : 40000.f;
}

TEST(AppendPagedKV, BFloat16IntoFp8CacheSaturates) {
  TESSERA_REQUIRE_GPU();
  for (const DType fp8 : kFp8Formats) {
    SCOPED_TRACE(dtype_name(fp8));
    AppendCase c;
    c.cache.dtype = fp8;
    c.scale = saturating_scale(fp8);
    expect_append_matches_reference(c);
  }
}

TEST(AppendPagedKV, Float16IntoFp8HNDCacheMatchesHostRounding) {
  TESSERA_REQUIRE_GPU();
  for (const DType fp8 : kFp8Formats) {
    SCOPED_TRACE(dtype_name(fp8));
    AppendCase c;
    c.cache.dtype = fp8;
    c.cache.layout = KVLayout::kHND;
    c.cache.combined = false;
    c.cache.head_dim = 72;  // 8-element chunks stored as 8-byte fp8 vectors
    c.append_dtype = DType::kFloat16;
    // e5m2: about 3% of the fp16 inputs are infinite (past 65504) and 10%
    // between 57344 and 65504; both saturate to 57344, never infinity.
    c.scale = fp8 == DType::kFloat8E4M3 ? 100.f : 30000.f;
    expect_append_matches_reference(c);
  }
}

TEST(AppendPagedKV, Fp8IntoFp8CacheCopiesBits) {
  TESSERA_REQUIRE_GPU();
  for (const DType fp8 : kFp8Formats) {
    SCOPED_TRACE(dtype_name(fp8));
    AppendCase c;
    c.cache.dtype = fp8;
    c.append_dtype = fp8;
    c.scale = fp8 == DType::kFloat8E4M3 ? 50.f : 5000.f;
    expect_append_matches_reference(c);
  }
}

TEST(AppendPagedKV, Fp8OddHeadDimUsesScalarPath) {
  TESSERA_REQUIRE_GPU();
  for (const DType fp8 : kFp8Formats) {
    SCOPED_TRACE(dtype_name(fp8));
    AppendCase c;
    c.cache.dtype = fp8;
    c.append_dtype = fp8;
    c.cache.head_dim = 40;  // not a multiple of the 16-element fp8 vector
    expect_append_matches_reference(c);
  }
}

// fp16 / bf16 into an e5m2 cache on the scalar path (head_dim not a multiple
// of the 8-element vector), NHD and HND, with values across e5m2's range.
TEST(AppendPagedKV, HalfTypesIntoE5m2CacheOnTheScalarPathMatchHostRounding) {
  TESSERA_REQUIRE_GPU();
  for (const DType append : {DType::kFloat16, DType::kBFloat16}) {
    for (const KVLayout layout : {KVLayout::kNHD, KVLayout::kHND}) {
      SCOPED_TRACE(dtype_name(append));
      AppendCase c;
      c.cache.dtype = DType::kFloat8E5M2;
      c.cache.layout = layout;
      c.cache.head_dim = 36;
      c.append_dtype = append;
      c.scale = 1000.f;
      expect_append_matches_reference(c);
    }
  }
}

// ----------------------------------------------------- strides and padding

TEST(AppendPagedKV, StridedCacheKeepsPaddingUntouched) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  // 16-byte multiples: the vector path on a cache sliced out of a larger buffer.
  c.cache.pad_row = 8;
  c.cache.pad_block = 24;
  c.cache.pad_page = 40;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, StridedSeparateHNDCacheKeepsPaddingUntouched) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.cache.layout = KVLayout::kHND;
  c.cache.combined = false;
  c.page_size = 5;
  c.cache.pad_row = 16;
  c.cache.pad_block = 8;
  c.cache.pad_page = 8;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, UnalignedCacheStridesUseScalarPath) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  // Rows of 65 elements: no 16-byte alignment anywhere past the first row.
  c.cache.pad_row = 1;
  c.cache.pad_block = 3;
  c.cache.pad_page = 5;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, OddHeadDimUsesScalarPath) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.cache.head_dim = 36;  // 72 bytes: not a multiple of the 8-element vector
  c.cache.layout = KVLayout::kHND;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, StridedAppendInputsMatchReference) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.append_pad_head = 8;
  c.append_pad_token = 16;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, UnalignedAppendInputsUseScalarPath) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.append_pad_head = 3;
  c.append_pad_token = 1;
  expect_append_matches_reference(c);
}

// ------------------------------------------------------ batch shapes

TEST(AppendPagedKV, DecodeStepOneTokenPerRequest) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.requests.clear();
  for (int32_t r = 0; r < 16; ++r) c.requests.push_back({r * 7 % 40, 1});
  c.cache.num_heads = 8;
  c.cache.head_dim = 128;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, ZeroTokensLeavesCacheUntouched) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.requests = {{3, 0}, {0, 0}, {20, 0}};
  TESSERA_SEEDED_RNG(rng);
  AppendRun run(c, rng);
  ASSERT_EQ(run.batch().nnz(), 0);
  run.run();
  const auto [k, v] = run.cache().download();
  const auto [k_before, v_before] = run.before();
  EXPECT_TRUE(testing::all_equal(k, k_before));
  EXPECT_TRUE(testing::all_equal(v, v_before));
}

// ---------------------------------------------------------- bad page indices

TEST(AppendPagedKV, ValidationRejectsOutOfRangePageWithoutLaunching) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.validate = Validate::kOn;
  TESSERA_SEEDED_RNG(rng);
  AppendRun run(c, rng);
  Batch& batch = run.batch();
  batch.kv_indices[batch.kv_indptr[2]] = batch.num_pages;  // request 2's first page
  try {
    run.run();
    ADD_FAILURE() << "expected tessera::Error";
  } catch (const Error& error) {
    EXPECT_EQ(error.argument(), "kv_indices") << error.what();
  }
  const auto [k, v] = run.cache().download();
  const auto [k_before, v_before] = run.before();
  EXPECT_TRUE(testing::all_equal(k, k_before)) << "the kernel ran";
  EXPECT_TRUE(testing::all_equal(v, v_before)) << "the kernel ran";
}

TEST(AppendPagedKV, ValidationPassesGoodInput) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.validate = Validate::kOn;
  c.page_size = 5;
  expect_append_matches_reference(c);
}

TEST(AppendPagedKV, OutOfRangePageWithoutValidationIsSkipped) {
  TESSERA_REQUIRE_GPU();
  AppendCase c;
  c.cache.pad_page = 8;
  TESSERA_SEEDED_RNG(rng);
  AppendRun run(c, rng);
  Batch& batch = run.batch();
  batch.kv_indices[batch.kv_indptr[2]] = batch.num_pages + 7;
  batch.kv_indices[batch.kv_indptr[4] + 1] = -2;
  run.run();
  const auto [k, v] = run.cache().download();
  const auto [k_expected, v_expected] = run.expected();
  EXPECT_TRUE(testing::all_equal(k, k_expected));
  EXPECT_TRUE(testing::all_equal(v, v_expected));
  EXPECT_TRUE(run.cache().padding_untouched());
}

// ------------------------------------------------- get_batch_indices_positions

void expect_batch_indices_match_reference(const std::vector<int32_t>& appended, Rng& rng) {
  std::vector<int32_t> append_indptr{0};
  std::vector<int32_t> seq_lens;
  for (int32_t n : appended) {
    append_indptr.push_back(append_indptr.back() + n);
    seq_lens.push_back(n + static_cast<int32_t>(rng.integer(0, 100)));
  }
  const auto expected = reference::get_batch_indices_positions(append_indptr, seq_lens);
  const int64_t nnz = append_indptr.back();
  DeviceTensor indptr = int_tensor(append_indptr);
  DeviceTensor lens = int_tensor(seq_lens);
  DeviceTensor batch_indices(DType::kInt32, {nnz});
  DeviceTensor positions(DType::kInt32, {nnz});
  batch_indices.poison();
  positions.poison();
  const DLTensor indptr_dl = indptr.dl();
  const DLTensor lens_dl = lens.dl();
  const DLTensor batch_indices_dl = batch_indices.dl();
  const DLTensor positions_dl = positions.dl();
  CudaStream stream;
  get_batch_indices_positions(indptr_dl, lens_dl, batch_indices_dl, positions_dl, stream.get());
  stream.synchronize();
  const std::vector<int64_t> out_batch = batch_indices.download_ints();
  const std::vector<int64_t> out_positions = positions.download_ints();
  EXPECT_EQ(out_batch,
            std::vector<int64_t>(expected.batch_indices.begin(), expected.batch_indices.end()));
  EXPECT_EQ(out_positions,
            std::vector<int64_t>(expected.positions.begin(), expected.positions.end()));
}

TEST(GetBatchIndicesPositions, MixedLengthsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Empty requests (first, middle, last) and one long enough to span blocks.
  expect_batch_indices_match_reference({0, 7, 0, 0, 3000, 1, 33, 0}, rng);
}

TEST(GetBatchIndicesPositions, DecodeBatchOneTokenEach) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  expect_batch_indices_match_reference(std::vector<int32_t>(300, 1), rng);
}

TEST(GetBatchIndicesPositions, ManyRandomRequestsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  std::vector<int32_t> appended(1000);
  for (int32_t& n : appended) n = static_cast<int32_t>(rng.integer(0, 20));
  expect_batch_indices_match_reference(appended, rng);
}

TEST(GetBatchIndicesPositions, ZeroTokensReturns) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  expect_batch_indices_match_reference({0, 0, 0}, rng);
}

}  // namespace
}  // namespace tessera
