// BatchDecodeWithPagedKVCache on the GPU against the float64 reference
// (tests/reference/attention_ref.h): page sizes 1, 3, 16, 64; KV lengths 0,
// 1, page - 1, page, page + 1 and long (32k, split over the SMs and merged);
// batches 1, 7, 128; GQA 1/4/8; NHD and HND; a strided (padded) cache; lse;
// a CUDA graph captured once and replayed after re-planning with other
// batches and lengths; bitwise determinism; run()'s argument errors.
// Inputs are rounded to their storage dtype on the host; outputs poisoned.
// Tolerances: out is one rounding of a float32 result to q's dtype
// (tolerance_for); lse float32 over up to 32k terms with ex2/lg2
// approximations: 1e-3 relative L2, 2e-3 absolute + 1e-3 relative.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "reference/attention_ref.h"
#include "support/argument_error.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "late_copy.h"
#include "tessera/api/decode.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;

constexpr testing::Tolerance kLseTolerance{1e-3, 2e-3, 1e-3};
constexpr int32_t kSparePages = 3;

struct CacheConfig {
  DType dtype = DType::kBFloat16;
  KVLayout layout = KVLayout::kNHD;
  int64_t page_size = 16;
  int64_t num_qo_heads = 32;
  int64_t num_kv_heads = 8;
  int64_t head_dim = 128;
  int64_t page_padding = 0;  // extra elements per page (a multiple of 8: 16-byte rows)
  bool fp8_kv = false;       // cache in float8 (q stays `dtype`), of fp8_format
  DType fp8_format = DType::kFloat8E4M3;  // with fp8_kv: e4m3fn or e5m2
  AttentionOptions options;  // variant and KV scales passed to run()
  DecodeBackend backend = DecodeBackend::kAuto;  // the plan's kernel choice
  reference::AttentionRefParams ref;  // the variant's reference fields
};

DType cache_dtype(const CacheConfig& c) {
  return c.fp8_kv ? c.fp8_format : c.dtype;
}

// A paged cache holding `capacity_pages` pages of random values (host copy in
// logical order), and the page table of one batch of lengths.
class PagedCache {
 public:
  PagedCache(const CacheConfig& c, int64_t capacity_pages, Rng& rng)
      : c_(c), pages_(capacity_pages), device_(make_device(c, capacity_pages)) {
    host_ = testing::round_to(cache_dtype(c), rng.normal_vector(static_cast<std::size_t>(
                                           capacity_pages * 2 * page_elements())));
    device_.poison();
    device_.upload(host_);
  }

  PagedKVCacheArg arg() { return PagedKVCacheArg::combined(dl_ = device_.dl(), c_.layout); }

  // Fills kv_indices / kv_indptr / kv_last_page_len for `lengths` with
  // shuffled pages.
  void assign(const std::vector<int32_t>& lengths, Rng& rng) {
    kv_indptr = {0};
    kv_last_page_len.clear();
    for (const int32_t len : lengths) {
      const auto pages = static_cast<int32_t>((len + c_.page_size - 1) / c_.page_size);
      kv_indptr.push_back(kv_indptr.back() + pages);
      kv_last_page_len.push_back(pages == 0 ? 0
                                            : len - (pages - 1) * static_cast<int32_t>(c_.page_size));
    }
    ASSERT_LE(kv_indptr.back(), pages_) << "test cache too small";
    std::vector<int32_t> order(static_cast<std::size_t>(pages_));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng.engine());
    kv_indices.assign(order.begin(), order.begin() + kv_indptr.back());
  }

  // K or V (kv 0 / 1) of request b as logical [len, num_kv_heads, head_dim].
  std::vector<float> gather(int64_t b, int kv, int64_t len) const {
    const int64_t hk = c_.num_kv_heads, d = c_.head_dim, ps = c_.page_size;
    std::vector<float> out(static_cast<std::size_t>(len * hk * d));
    for (int64_t t = 0; t < len; ++t) {
      const int64_t page = kv_indices[static_cast<std::size_t>(kv_indptr[b] + t / ps)];
      const int64_t slot = t % ps;
      for (int64_t h = 0; h < hk; ++h) {
        const int64_t entry = c_.layout == KVLayout::kNHD ? slot * hk + h : h * ps + slot;
        const float* src = &host_[static_cast<std::size_t>(
            ((page * 2 + kv) * page_elements()) + entry * d)];
        std::copy_n(src, d, &out[static_cast<std::size_t>((t * hk + h) * d)]);
      }
    }
    return out;
  }

  // The device copy as raw bytes (the dependent-launch test rewrites it
  // from another kernel). Without page padding the tensor is contiguous.
  void* device_data() const { return device_.data(); }
  std::size_t device_bytes() const {
    return static_cast<std::size_t>(device_.numel()) * dtype_size_bytes(cache_dtype(c_));
  }

  std::vector<int32_t> kv_indices, kv_indptr, kv_last_page_len;

 private:
  int64_t page_elements() const { return c_.page_size * c_.num_kv_heads * c_.head_dim; }
  static DeviceTensor make_device(const CacheConfig& c, int64_t pages) {
    const int64_t a = c.layout == KVLayout::kNHD ? c.page_size : c.num_kv_heads;
    const int64_t b = c.layout == KVLayout::kNHD ? c.num_kv_heads : c.page_size;
    const int64_t block = a * b * c.head_dim;
    return DeviceTensor(cache_dtype(c), {pages, 2, a, b, c.head_dim},
                        {2 * block + c.page_padding, block, b * c.head_dim, c.head_dim, 1});
  }

  CacheConfig c_;
  int64_t pages_;
  DeviceTensor device_;
  DLTensor dl_{};
  std::vector<float> host_;
};

DeviceTensor int_tensor(const std::vector<int32_t>& values, int64_t size = -1) {
  const int64_t n = size < 0 ? static_cast<int64_t>(values.size()) : size;
  DeviceTensor t(DType::kInt32, {n});
  std::vector<int64_t> padded(values.begin(), values.end());
  padded.resize(static_cast<std::size_t>(n), 0);
  t.upload_ints(padded);
  return t;
}

int64_t pages_for(const std::vector<int32_t>& lengths, int64_t page_size) {
  int64_t pages = 0;
  for (const int32_t len : lengths) pages += (len + page_size - 1) / page_size;
  return pages + kSparePages;
}

// lse checks at this file's tolerance (-inf exactly where expected).
::testing::AssertionResult lse_matches(const std::vector<float>& out,
                                       const std::vector<double>& ref) {
  return testing::lse_close(out, ref, kLseTolerance);
}

struct Expected {
  std::vector<double> out;
  std::vector<double> lse;
};

Expected reference_for(const CacheConfig& c, const PagedCache& cache,
                       const std::vector<int32_t>& lengths, const std::vector<float>& q) {
  Expected e;
  const int64_t q_row = c.num_qo_heads * c.head_dim;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    reference::AttentionRefParams p = c.ref;
    p.qo_len = 1;
    p.kv_len = lengths[b];
    p.num_qo_heads = c.num_qo_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_dim = c.head_dim;
    p.sm_scale = c.options.sm_scale;
    p.logits_soft_cap = c.options.logits_soft_cap;
    p.window_left = c.options.window_left;
    p.k_scale = c.options.k_scale;
    p.v_scale = c.options.v_scale;
    const std::span<const float> qb(q.data() + b * q_row, static_cast<std::size_t>(q_row));
    const auto r = reference::attention_reference(qb, cache.gather(static_cast<int64_t>(b), 0, lengths[b]),
                                                  cache.gather(static_cast<int64_t>(b), 1, lengths[b]), p);
    e.out.insert(e.out.end(), r.out.begin(), r.out.end());
    e.lse.insert(e.lse.end(), r.lse.begin(), r.lse.end());
  }
  return e;
}

DecodePlanShape shape_of(const CacheConfig& c) {
  return {c.num_qo_heads, c.num_kv_heads, c.head_dim, c.page_size};
}

// Plans and runs one batch; compares out and lse with the reference.
void check_batch(const CacheConfig& c, const std::vector<int32_t>& lengths, Rng& rng,
                 bool with_lse = true) {
  SCOPED_TRACE("page_size " + std::to_string(c.page_size) + ", batch " +
               std::to_string(lengths.size()) + ", heads " + std::to_string(c.num_qo_heads) + "/" +
               std::to_string(c.num_kv_heads) + ", head_dim " + std::to_string(c.head_dim) +
               (c.layout == KVLayout::kNHD ? ", NHD" : ", HND") + ", backend " +
               std::to_string(static_cast<int>(c.backend)));
  const auto batch = static_cast<int64_t>(lengths.size());
  PagedCache cache(c, pages_for(lengths, c.page_size), rng);
  cache.assign(lengths, rng);
  const std::vector<float> q =
      testing::round_to(c.dtype, rng.normal_vector(static_cast<std::size_t>(
                                     batch * c.num_qo_heads * c.head_dim)));
  DeviceTensor dq(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  dq.upload(q);
  DeviceTensor out(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  DeviceTensor lse(DType::kFloat32, {batch, c.num_qo_heads});
  out.poison();
  lse.poison();
  DeviceTensor indices = int_tensor(cache.kv_indices, std::max<int64_t>(1, cache.kv_indptr.back()));
  DeviceTensor indptr = int_tensor(cache.kv_indptr);
  DeviceTensor last = int_tensor(cache.kv_last_page_len, batch);

  const DecodePlanBounds bounds{batch, 0};
  const std::size_t bytes = BatchDecodeWithPagedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchDecodeWithPagedKVCache decode(shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  DecodePlanOptions plan_options;
  plan_options.backend = c.backend;
  decode.plan(cache.kv_indptr, cache.kv_last_page_len, stream.get(), plan_options);
  DLTensor lse_dl = lse.dl();
  decode.run(dq.dl(), cache.arg(), indices.dl(), indptr.dl(), last.dl(), out.dl(),
             with_lse ? &lse_dl : nullptr, c.options, stream.get(), Validate::kOn);
  stream.synchronize();

  const Expected e = reference_for(c, cache, lengths, q);
  EXPECT_TRUE(testing::all_close(out.download(), e.out, testing::tolerance_for(c.dtype)));
  if (with_lse) {
    EXPECT_TRUE(lse_matches(lse.download(), e.lse));
  } else {
    EXPECT_TRUE(testing::padding_untouched(lse));  // never written: all poison
    for (const float x : lse.download()) EXPECT_TRUE(std::isnan(x));
  }
}

std::vector<int32_t> edge_lengths(int32_t page_size) {
  return {0, 1, std::max(page_size - 1, 2), page_size, page_size + 1, 1000, 5000};
}

TEST(BatchDecode, PageSizesAndEdgeLengthsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int32_t page_size : {1, 3, 16, 64}) {
    CacheConfig c;
    c.page_size = page_size;
    c.num_qo_heads = 16;
    c.num_kv_heads = 4;
    check_batch(c, edge_lengths(page_size), rng);
  }
}

TEST(BatchDecode, LongRequestSplitOverTheSmsMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CacheConfig c;
  c.dtype = DType::kFloat16;
  c.num_qo_heads = 32;
  c.num_kv_heads = 4;  // GQA 8
  check_batch(c, {32768}, rng);
}

// fixed_split_size: a request's output is bitwise the same whether it is
// planned alone or beside others (the auto planner's chunk depends on the
// batch), and matches the reference.
TEST(BatchDecode, FixedSplitSizeIsBatchInvariant) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CacheConfig c;
  c.num_qo_heads = 32;
  c.num_kv_heads = 8;
  const std::vector<int32_t> lengths = {3000, 50, 7000, 1};
  const auto batch = static_cast<int64_t>(lengths.size());
  PagedCache cache(c, pages_for(lengths, c.page_size), rng);
  cache.assign(lengths, rng);
  const std::vector<float> q = testing::round_to(
      c.dtype, rng.normal_vector(static_cast<std::size_t>(batch * c.num_qo_heads * c.head_dim)));
  DeviceTensor dq(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  dq.upload(q);
  DeviceTensor indices = int_tensor(cache.kv_indices, cache.kv_indptr.back());
  DeviceTensor indptr = int_tensor(cache.kv_indptr);
  DeviceTensor last = int_tensor(cache.kv_last_page_len, batch);
  const DecodePlanBounds bounds{batch, 0};
  const std::size_t bytes = BatchDecodeWithPagedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchDecodeWithPagedKVCache decode(shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  const DecodePlanOptions fixed{512};

  DeviceTensor out_all(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  out_all.poison();
  decode.plan(cache.kv_indptr, cache.kv_last_page_len, stream.get(), fixed);
  decode.run(dq.dl(), cache.arg(), indices.dl(), indptr.dl(), last.dl(), out_all.dl(), nullptr,
             AttentionOptions{}, stream.get(), Validate::kOn);
  // Request 0 alone: the first two indptr entries and its q row.
  DeviceTensor out_one(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  out_one.poison();
  const std::vector<int32_t> indptr_one(cache.kv_indptr.begin(), cache.kv_indptr.begin() + 2);
  const std::vector<int32_t> last_one(cache.kv_last_page_len.begin(),
                                      cache.kv_last_page_len.begin() + 1);
  decode.plan(indptr_one, last_one, stream.get(), fixed);
  decode.run(dq.dl(), cache.arg(), indices.dl(), indptr.dl(), last.dl(), out_one.dl(), nullptr,
             AttentionOptions{}, stream.get(), Validate::kOff);
  stream.synchronize();

  const std::vector<float> all = out_all.download();
  const std::vector<float> one = out_one.download();
  const auto row = static_cast<std::size_t>(c.num_qo_heads * c.head_dim);
  EXPECT_TRUE(testing::all_equal(std::vector<float>(one.begin(), one.begin() + row),
                                 std::vector<float>(all.begin(), all.begin() + row)));
  const Expected e = reference_for(c, cache, lengths, q);
  EXPECT_TRUE(testing::all_close(all, e.out, testing::tolerance_for(c.dtype)));
}

// fp8 KV and every variant through the batch path, with a batch that the
// planner splits (partials merged by the second kernel) beside short and
// empty requests.
TEST(BatchDecode, Fp8AndVariantsThroughSplitBatchesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const std::vector<int32_t> lengths = {5000, 17, 0, 3000};
  {
    CacheConfig c;
    c.fp8_kv = true;
    c.options.k_scale = 0.5;
    c.options.v_scale = 2.0;
    check_batch(c, lengths, rng);
    c.dtype = DType::kFloat16;
    c.head_dim = 64;
    check_batch(c, lengths, rng);
  }
  {
    CacheConfig c;
    c.options.logits_soft_cap = 5.0;
    c.ref.logits_soft_cap = 5.0;
    check_batch(c, lengths, rng);
  }
  {
    CacheConfig c;
    c.options.window_left = 700;
    c.ref.window_left = 700;
    check_batch(c, lengths, rng);
    c.options.logits_soft_cap = 3.0;
    c.ref.logits_soft_cap = 3.0;
    check_batch(c, lengths, rng);
  }
  {
    CacheConfig c;
    c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
    c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
    check_batch(c, lengths, rng);
  }
  {
    CacheConfig c;
    c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
    c.ref.rope_llama = true;
    check_batch(c, lengths, rng);
  }
  // ALiBi / RoPE-Llama with a soft cap and / or a window (JIT-served).
  for (const PosEncodingMode mode : {PosEncodingMode::kAlibi, PosEncodingMode::kRopeLlama}) {
    for (const auto& [cap, window] : {std::pair{6.0, int64_t{-1}}, std::pair{0.0, int64_t{700}},
                                      std::pair{6.0, int64_t{700}}}) {
      CacheConfig c;
      c.options.pos_encoding_mode = mode;
      c.options.logits_soft_cap = cap;
      c.ref.logits_soft_cap = cap;
      c.options.window_left = window;
      c.ref.window_left = window;
      if (mode == PosEncodingMode::kAlibi) {
        c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
      } else {
        c.ref.rope_llama = true;
      }
      check_batch(c, lengths, rng);
    }
  }
  // The tensor-core kernel runs ALiBi with a cap or a window too.
  {
    CacheConfig c;
    c.backend = DecodeBackend::kTensorCores;
    c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
    c.options.logits_soft_cap = 6.0;
    c.ref.logits_soft_cap = 6.0;
    c.options.window_left = 700;
    c.ref.window_left = 700;
    c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
    check_batch(c, lengths, rng);
  }
}

// Both fp8 formats through the batch path (e4m3fn with bf16 q AOT-built, the
// rest JIT-served): scales, page sizes 1 / 16 with edge lengths and a split
// request, GQA 1 / 4 / 8, head_dim 64 / 128 / 256, HND with a padded cache,
// a soft cap with a window, ALiBi and RoPE on the fly; kAuto and kCudaCores
// agree (fp8 always runs on CUDA cores), kTensorCores is a named error.
TEST(BatchDecode, BothFp8FormatsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const std::vector<int32_t> lengths = {5000, 17, 0, 3000, 1};
  for (const DType format : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    SCOPED_TRACE(dtype_name(format));
    const auto fp8_config = [format] {
      CacheConfig c;
      c.fp8_kv = true;
      c.fp8_format = format;
      c.options.k_scale = 0.5;
      c.options.v_scale = 2.0;
      return c;
    };
    for (const int32_t page_size : {1, 16}) {
      CacheConfig c = fp8_config();
      c.page_size = page_size;
      c.num_qo_heads = 16;
      c.num_kv_heads = 4;
      check_batch(c, edge_lengths(page_size), rng);
    }
    for (const int64_t group : {1, 4, 8}) {
      CacheConfig c = fp8_config();
      c.dtype = group == 4 ? DType::kFloat16 : DType::kBFloat16;
      c.head_dim = group == 1 ? 256 : group == 4 ? 64 : 128;
      c.num_kv_heads = 2;
      c.num_qo_heads = 2 * group;
      check_batch(c, lengths, rng);
    }
    {
      CacheConfig c = fp8_config();
      c.layout = KVLayout::kHND;
      c.page_padding = 64;
      c.backend = DecodeBackend::kCudaCores;
      check_batch(c, lengths, rng);
    }
    {
      CacheConfig c = fp8_config();
      c.options.logits_soft_cap = 5.0;
      c.ref.logits_soft_cap = 5.0;
      c.options.window_left = 700;
      c.ref.window_left = 700;
      check_batch(c, lengths, rng);
    }
    {
      CacheConfig c = fp8_config();
      c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
      c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
      check_batch(c, lengths, rng);
    }
    {
      CacheConfig c = fp8_config();
      c.dtype = DType::kFloat16;
      c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
      c.ref.rope_llama = true;
      check_batch(c, lengths, rng);
    }
    {
      CacheConfig c = fp8_config();
      c.backend = DecodeBackend::kTensorCores;
      testing::expect_argument_error([&] { check_batch(c, {100}, rng); }, "backend");
    }
  }
}

// Head dims 80 / 96 / 112 (JIT-served) through the paged cache: both
// kernels, page sizes 1 / 16 with edge lengths, GQA 1 / 4 / 16, an HND cache
// with padded pages, and a soft cap + window.
TEST(BatchDecode, HeadDims80To112MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DecodeBackend backend : {DecodeBackend::kCudaCores, DecodeBackend::kTensorCores}) {
    for (const int64_t head_dim : {80, 96, 112}) {
      SCOPED_TRACE("head_dim " + std::to_string(head_dim));
      for (const int32_t page_size : {1, 16}) {
        CacheConfig c;
        c.backend = backend;
        c.head_dim = head_dim;
        c.page_size = page_size;
        c.num_qo_heads = 16;
        c.num_kv_heads = 4;
        check_batch(c, edge_lengths(page_size), rng);
      }
      for (const int64_t group : {1, 16}) {
        CacheConfig c;
        c.backend = backend;
        c.head_dim = head_dim;
        c.dtype = DType::kFloat16;
        c.num_kv_heads = 2;
        c.num_qo_heads = 2 * group;
        check_batch(c, {7, 300, 2500, 0, 16, 17, 9000}, rng);
      }
      CacheConfig c;
      c.backend = backend;
      c.head_dim = head_dim;
      c.layout = KVLayout::kHND;
      c.page_padding = 64;
      c.options.logits_soft_cap = 5.0;
      c.ref.logits_soft_cap = 5.0;
      c.options.window_left = 700;
      c.ref.window_left = 700;
      check_batch(c, {5, 4000, 33, 0, 1, 64}, rng);
    }
  }
}

// Both decode kernels (CUDA cores, decode.cuh; tensor cores, decode_mma.cuh)
// forced through the same matrix: page sizes with edge lengths, GQA groups
// 1..16 (16 fills every mma row), head dims 64/128, fp16/bf16, HND with a
// padded cache, every variant the tensor-core kernel runs, and a split 32k
// request.
TEST(BatchDecode, BothBackendsMatchReferenceAcrossTheMatrix) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DecodeBackend backend : {DecodeBackend::kCudaCores, DecodeBackend::kTensorCores}) {
    for (const int32_t page_size : {1, 3, 16, 64}) {
      CacheConfig c;
      c.backend = backend;
      c.page_size = page_size;
      c.num_qo_heads = 16;
      c.num_kv_heads = 4;
      check_batch(c, edge_lengths(page_size), rng);
    }
    for (const int64_t group : {1, 2, 3, 4, 8, 16}) {
      CacheConfig c;
      c.backend = backend;
      c.dtype = group % 2 == 0 ? DType::kFloat16 : DType::kBFloat16;
      c.head_dim = group == 8 ? 64 : 128;
      c.num_kv_heads = 2;
      c.num_qo_heads = 2 * group;
      check_batch(c, {7, 300, 2500, 0, 16, 17, 9000}, rng);
    }
    {
      CacheConfig c;
      c.backend = backend;
      c.layout = KVLayout::kHND;
      c.page_padding = 64;
      c.head_dim = 64;
      c.num_qo_heads = 16;
      c.num_kv_heads = 2;
      check_batch(c, {5, 4000, 33, 0, 1, 64}, rng);
    }
    const std::vector<int32_t> lengths = {5000, 17, 0, 3000};
    for (int variant = 0; variant < 4; ++variant) {
      CacheConfig c;
      c.backend = backend;
      if (variant == 0 || variant == 2) {
        c.options.logits_soft_cap = 5.0;
        c.ref.logits_soft_cap = 5.0;
      }
      if (variant == 1 || variant == 2) {
        c.options.window_left = 700;
        c.ref.window_left = 700;
      }
      if (variant == 3) {
        c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
        c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
      }
      check_batch(c, lengths, rng);
    }
    {
      CacheConfig c;
      c.backend = backend;
      c.num_qo_heads = 32;
      c.num_kv_heads = 4;
      check_batch(c, {32768}, rng);
    }
  }
}

// kTensorCores where the tensor-core kernel does not apply: a named error,
// never a silent fallback.
TEST(BatchDecode, TensorCoresOutsideTheirDomainAreRejectedNamingBackend) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  std::vector<CacheConfig> configs(4);
  configs[0].fp8_kv = true;
  configs[1].head_dim = 256;
  configs[2].options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
  configs[3].num_qo_heads = 64;
  configs[3].num_kv_heads = 2;  // group 32 > 16 mma rows
  for (CacheConfig& c : configs) {
    c.backend = DecodeBackend::kTensorCores;
    testing::expect_argument_error([&] { check_batch(c, {100}, rng); }, "backend");
  }
}

TEST(BatchDecode, GqaRatiosOneFourEightMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t group : {1, 4, 8}) {
    CacheConfig c;
    c.num_kv_heads = 2;
    c.num_qo_heads = 2 * group;
    check_batch(c, {7, 300, 2500, 0, 16, 17, 9000}, rng);
  }
}

TEST(BatchDecode, LargeBatchMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CacheConfig c;
  c.head_dim = 64;
  c.num_qo_heads = 8;
  c.num_kv_heads = 2;
  std::vector<int32_t> lengths(128);
  for (auto& len : lengths) len = static_cast<int32_t>(rng.integer(0, 700));
  check_batch(c, lengths, rng);
}

TEST(BatchDecode, HndLayoutMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CacheConfig c;
  c.layout = KVLayout::kHND;
  c.num_qo_heads = 16;
  c.num_kv_heads = 4;
  check_batch(c, {5, 4000, 33, 0, 12000, 1, 64}, rng);
}

TEST(BatchDecode, StridedCacheAndHeadDim256MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CacheConfig c;
  c.layout = KVLayout::kHND;
  c.head_dim = 256;
  c.num_qo_heads = 8;
  c.num_kv_heads = 2;
  c.page_padding = 64;  // the cache is a slice of a larger buffer
  check_batch(c, {100, 7000, 16, 3}, rng);
}

TEST(BatchDecode, WithoutLseWritesOnlyOut) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CacheConfig c;
  c.num_qo_heads = 8;
  c.num_kv_heads = 8;
  check_batch(c, {20000, 3}, rng, /*with_lse=*/false);
}

// The serving loop: one graph captured at the bounds, replayed after plan()
// re-schedules other batches and lengths into the same workspace (index
// arrays and q rewritten in place, outside the graph).
TEST(BatchDecode, GraphReplaysAfterReplanningWithOtherBatches) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kMaxBatch = 64;
  constexpr int64_t kCapacityPages = 6000;
  CacheConfig c;
  c.head_dim = 64;
  c.num_qo_heads = 8;
  c.num_kv_heads = 2;
  PagedCache cache(c, kCapacityPages, rng);
  const int64_t q_elements = kMaxBatch * c.num_qo_heads * c.head_dim;
  DeviceTensor dq(c.dtype, {kMaxBatch, c.num_qo_heads, c.head_dim});
  DeviceTensor out(c.dtype, {kMaxBatch, c.num_qo_heads, c.head_dim});
  DeviceTensor lse(DType::kFloat32, {kMaxBatch, c.num_qo_heads});
  DeviceTensor indices(DType::kInt32, {kCapacityPages});
  DeviceTensor indptr(DType::kInt32, {kMaxBatch + 1});
  DeviceTensor last(DType::kInt32, {kMaxBatch});

  const DecodePlanBounds bounds{kMaxBatch, 0};
  const std::size_t bytes = BatchDecodeWithPagedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchDecodeWithPagedKVCache decode(shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;

  // Writes a batch's arrays and q into the fixed buffers; returns q's values.
  const auto load_batch = [&](const std::vector<int32_t>& lengths) {
    cache.assign(lengths, rng);
    std::vector<float> q = testing::round_to(c.dtype, rng.normal_vector(q_elements));
    dq.upload(q);
    std::vector<int32_t> idx = cache.kv_indices;
    idx.resize(kCapacityPages, 0);
    TESSERA_CUDA_CHECK(cudaMemcpy(indices.data(), idx.data(), idx.size() * 4, cudaMemcpyHostToDevice));
    TESSERA_CUDA_CHECK(cudaMemcpy(indptr.data(), cache.kv_indptr.data(), cache.kv_indptr.size() * 4,
                                  cudaMemcpyHostToDevice));
    TESSERA_CUDA_CHECK(cudaMemcpy(last.data(), cache.kv_last_page_len.data(),
                                  cache.kv_last_page_len.size() * 4, cudaMemcpyHostToDevice));
    return q;
  };

  // Capture at the bounds (run() checks q against the plan it sees).
  std::vector<int32_t> capture_lengths(kMaxBatch, 50);
  load_batch(capture_lengths);
  decode.plan(cache.kv_indptr, cache.kv_last_page_len, stream.get());
  stream.synchronize();
  cudaGraph_t graph = nullptr;
  DLTensor lse_dl = lse.dl();
  TESSERA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
  decode.run(dq.dl(), cache.arg(), indices.dl(), indptr.dl(), last.dl(), out.dl(), &lse_dl,
             AttentionOptions{}, stream.get(), Validate::kOff);
  TESSERA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
  cudaGraphExec_t exec = nullptr;
  TESSERA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

  for (const int64_t batch : {int64_t{1}, int64_t{17}, kMaxBatch}) {
    SCOPED_TRACE("replay with batch " + std::to_string(batch));
    std::vector<int32_t> lengths(static_cast<std::size_t>(batch));
    const int64_t max_len = batch == 1 ? 30000 : (batch == 17 ? 4000 : 1200);
    for (auto& len : lengths) len = static_cast<int32_t>(rng.integer(0, max_len));
    if (batch == 1) lengths[0] = 30000;  // split over the SMs
    const std::vector<float> q = load_batch(lengths);
    out.poison();
    lse.poison();
    decode.plan(cache.kv_indptr, cache.kv_last_page_len, stream.get());
    TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
    stream.synchronize();

    const Expected e = reference_for(c, cache, lengths, q);
    const std::size_t rows = static_cast<std::size_t>(batch * c.num_qo_heads);
    const std::vector<float> got = out.download();
    const std::vector<float> got_lse = lse.download();
    EXPECT_TRUE(testing::all_close(std::span(got).first(rows * c.head_dim), e.out,
                                   testing::tolerance_for(c.dtype)));
    EXPECT_TRUE(lse_matches(std::vector<float>(got_lse.begin(), got_lse.begin() + rows), e.lse));
    // Rows past this plan's batch are not touched.
    for (std::size_t i = rows * c.head_dim; i < got.size(); ++i) {
      ASSERT_TRUE(std::isnan(got[i])) << "out element " << i << " written past the batch";
    }
    if (batch == 1) {
      // Again without a new plan: a replay leaves nothing behind that the
      // next one depends on.
      const std::vector<unsigned char> out_bytes = out.download_bytes();
      const std::vector<unsigned char> lse_bytes = lse.download_bytes();
      out.poison();
      lse.poison();
      TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
      stream.synchronize();
      EXPECT_EQ(out.download_bytes(), out_bytes);
      EXPECT_EQ(lse.download_bytes(), lse_bytes);
    }
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST(BatchDecode, TwoRunsAreBitwiseEqual) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CacheConfig c;
  c.num_qo_heads = 16;
  c.num_kv_heads = 2;
  const std::vector<int32_t> lengths = {20000, 3, 9000};
  const auto batch = static_cast<int64_t>(lengths.size());
  PagedCache cache(c, pages_for(lengths, c.page_size), rng);
  cache.assign(lengths, rng);
  DeviceTensor dq(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  dq.upload(testing::round_to(c.dtype, rng.normal_vector(batch * c.num_qo_heads * c.head_dim)));
  DeviceTensor indices = int_tensor(cache.kv_indices);
  DeviceTensor indptr = int_tensor(cache.kv_indptr);
  DeviceTensor last = int_tensor(cache.kv_last_page_len);
  const DecodePlanBounds bounds{batch, 0};
  const std::size_t bytes = BatchDecodeWithPagedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  // Garbage in the workspace: the kernels read only what plan() wrote (and
  // the partials they write themselves).
  TESSERA_CUDA_CHECK(cudaMemset(workspace.data(), 0x5a, bytes));
  BatchDecodeWithPagedKVCache decode(shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  decode.plan(cache.kv_indptr, cache.kv_last_page_len, stream.get());
  std::vector<unsigned char> first_out, first_lse;
  for (int run = 0; run < 2; ++run) {
    DeviceTensor out(c.dtype, {batch, c.num_qo_heads, c.head_dim});
    DeviceTensor lse(DType::kFloat32, {batch, c.num_qo_heads});
    out.poison();
    lse.poison();
    DLTensor lse_dl = lse.dl();
    decode.run(dq.dl(), cache.arg(), indices.dl(), indptr.dl(), last.dl(), out.dl(), &lse_dl,
               AttentionOptions{}, stream.get(), Validate::kOff);
    stream.synchronize();
    if (run == 0) {
      first_out = out.download_bytes();
      first_lse = lse.download_bytes();
    } else {
      EXPECT_EQ(out.download_bytes(), first_out);
      EXPECT_EQ(lse.download_bytes(), first_lse);
    }
  }
}

// Programmatic dependent launch (sm90): the decode kernels may start while
// the kernel before them runs, so everything but their schedule must wait for
// it. A late copy (late_copy.h) that writes q, the cache and the page table
// 200 us after letting the decode launch must be seen by the decode; a late
// copy that reads the previous run's out must see that run's values, not
// those of the next run, launched right behind it. 3 requests x 8 KV heads
// are far from a wave, so the planner splits the 5000-token one: the
// partials and the merge are in the chain too. Before sm90
// the launches serialise and the test checks plain stream order.
TEST(BatchDecode, DependentLaunchSeesTheKernelBeforeIt) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int kDelayUs = 200;
  const CacheConfig c;
  const std::vector<int32_t> lengths = {5000, 40, 1};
  const auto batch = static_cast<int64_t>(lengths.size());
  const int64_t pages = pages_for(lengths, c.page_size);
  PagedCache fresh(c, pages, rng);  // what the late copy writes (and the reference reads)
  PagedCache stale(c, pages, rng);  // what the decode's buffers hold before it
  fresh.assign(lengths, rng);
  stale.assign(lengths, rng);  // another page permutation, same lengths
  ASSERT_NE(fresh.kv_indices, stale.kv_indices);
  const int64_t q_elements = batch * c.num_qo_heads * c.head_dim;
  const std::vector<float> q = testing::round_to(c.dtype, rng.normal_vector(q_elements));
  const std::vector<float> q2 = testing::round_to(c.dtype, rng.normal_vector(q_elements));
  DeviceTensor dq(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  DeviceTensor dq_fresh(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  DeviceTensor dq2(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  dq.upload(testing::round_to(c.dtype, rng.normal_vector(q_elements)));
  dq_fresh.upload(q);
  dq2.upload(q2);
  DeviceTensor indices = int_tensor(stale.kv_indices);
  DeviceTensor indices_fresh = int_tensor(fresh.kv_indices);
  DeviceTensor indptr = int_tensor(fresh.kv_indptr);
  DeviceTensor last = int_tensor(fresh.kv_last_page_len);
  DeviceTensor out(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  DeviceTensor out_seen(c.dtype, {batch, c.num_qo_heads, c.head_dim});
  out.poison();
  out_seen.poison();
  const std::size_t q_bytes = static_cast<std::size_t>(q_elements) * dtype_size_bytes(c.dtype);

  const DecodePlanBounds bounds{batch, 0};
  const std::size_t bytes = BatchDecodeWithPagedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchDecodeWithPagedKVCache decode(shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  decode.plan(fresh.kv_indptr, fresh.kv_last_page_len, stream.get());
  stream.synchronize();
  testing::launch_late_copies({{dq.data(), dq_fresh.data(), q_bytes},
                               {stale.device_data(), fresh.device_data(), stale.device_bytes()},
                               {indices.data(), indices_fresh.data(), fresh.kv_indices.size() * 4}},
                              kDelayUs, stream.get());
  decode.run(dq.dl(), stale.arg(), indices.dl(), indptr.dl(), last.dl(), out.dl(), nullptr,
             AttentionOptions{}, stream.get(), Validate::kOff);
  testing::launch_late_copies({{out_seen.data(), out.data(), q_bytes}}, kDelayUs, stream.get());
  decode.run(dq2.dl(), stale.arg(), indices.dl(), indptr.dl(), last.dl(), out.dl(), nullptr,
             AttentionOptions{}, stream.get(), Validate::kOff);
  stream.synchronize();
  EXPECT_TRUE(testing::all_close(out_seen.download(), reference_for(c, fresh, lengths, q).out,
                                 testing::tolerance_for(c.dtype)))
      << "the first run read inputs before the late copy wrote them";
  EXPECT_TRUE(testing::all_close(out.download(), reference_for(c, fresh, lengths, q2).out,
                                 testing::tolerance_for(c.dtype)))
      << "the second run wrote out before the late copy read it";
}

// run()'s checks against the plan (needs a GPU: plan() copies the schedule).
TEST(BatchDecode, RunRejectsArgumentsThatDisagreeWithThePlan) {
  TESSERA_REQUIRE_GPU();
  const DecodePlanShape shape{16, 4, 128, 16};
  const DecodePlanBounds bounds{4, 0};
  const std::size_t bytes = BatchDecodeWithPagedKVCache::workspace_size_bytes(shape, bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchDecodeWithPagedKVCache decode(shape, bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  const std::vector<int32_t> host_indptr = {0, 2, 3};
  const std::vector<int32_t> host_last = {5, 16};
  decode.plan(host_indptr, host_last, stream.get());

  using testing::FakeTensor;
  FakeTensor q(DType::kBFloat16, {2, 16, 128});
  FakeTensor q_fp16(DType::kFloat16, {2, 16, 128});
  FakeTensor q_d64(DType::kBFloat16, {2, 16, 64});
  FakeTensor q_batch1(DType::kBFloat16, {1, 16, 128});  // fewer rows than planned
  FakeTensor q_batch5(DType::kBFloat16, {5, 16, 128});  // more than max_batch_size
  FakeTensor out(DType::kBFloat16, {2, 16, 128});
  out.with_data(uintptr_t{1} << 28);
  FakeTensor cache(DType::kBFloat16, {8, 2, 16, 4, 128});
  cache.with_data(uintptr_t{1} << 30);
  FakeTensor cache_page8(DType::kBFloat16, {8, 2, 8, 4, 128});
  cache_page8.with_data(uintptr_t{1} << 30);
  FakeTensor indices(DType::kInt32, {3});
  FakeTensor indptr(DType::kInt32, {3});
  FakeTensor last(DType::kInt32, {2});
  const auto run = [&](FakeTensor& q_arg, FakeTensor& cache_arg) {
    return [&] {
      decode.run(q_arg, PagedKVCacheArg::combined(cache_arg, KVLayout::kNHD), indices, indptr, last,
                 out, nullptr, AttentionOptions{}, stream.get(), Validate::kOff);
    };
  };
  testing::expect_argument_error(run(q_fp16, cache), "paged_kv_cache");  // dtype vs cache
  testing::expect_argument_error(run(q_d64, cache), "q");                // head_dim vs plan
  testing::expect_argument_error(run(q_batch1, cache), "q");             // batch vs plan
  testing::expect_argument_error(run(q_batch5, cache), "q");             // batch vs bounds
  testing::expect_argument_error(run(q, cache_page8), "paged_kv_cache"); // page_size vs plan

  // Validation mode reads the device page indices: one is past the cache.
  DeviceTensor dq(DType::kBFloat16, {2, 16, 128});
  dq.upload(std::vector<float>(2 * 16 * 128, 1.f));
  DeviceTensor dout(DType::kBFloat16, {2, 16, 128});
  DeviceTensor dcache(DType::kBFloat16, {4, 2, 16, 4, 128});
  DeviceTensor dindices = int_tensor({0, 1, 4});  // cache has pages [0, 4)
  DeviceTensor dindptr = int_tensor(host_indptr);
  DeviceTensor dlast = int_tensor(host_last);
  testing::expect_argument_error(
      [&] {
        DLTensor cache_dl = dcache.dl();
        decode.run(dq.dl(), PagedKVCacheArg::combined(cache_dl, KVLayout::kNHD), dindices.dl(),
                   dindptr.dl(), dlast.dl(), dout.dl(), nullptr, AttentionOptions{}, stream.get(),
                   Validate::kOn);
      },
      "kv_indices");
}

}  // namespace
}  // namespace tessera
