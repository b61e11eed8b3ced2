// BatchPrefillWithRaggedKVCache / BatchPrefillWithPagedKVCache on the GPU
// against the float64 reference, request by request: mixed lengths (zeros
// included), page sizes 1 / 5 / 16, NHD / HND, GQA 1 / 4 / 8, head dims 64 /
// 128 (and q/k 192 with v/o 128, ragged), variants, split KV (short queries
// on long KV, merged), and a CUDA graph captured once and replayed for plans
// with other lengths. Inputs are
// rounded to their dtype first; outputs poisoned before each run. Tolerances
// as for single prefill (single_prefill_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "reference/attention_ref.h"
#include "support/argument_error.h"
#include "support/prefill_backends.h"
#include "support/compare.h"
#include "support/custom_mask.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/api/prefill.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;

constexpr testing::Tolerance kLseTolerance{1e-3, 2e-3, 1e-3};

struct BatchCase {
  std::vector<int32_t> qo_lens;
  std::vector<int32_t> kv_lens;
  int64_t num_qo_heads = 8;
  int64_t num_kv_heads = 2;
  int64_t head_dim = 128;
  int64_t head_dim_vo = 0;  // v's and out's; 0: head_dim (192 / 128: DeepSeek-style, ragged only)
  bool causal = true;
  DType dtype = DType::kBFloat16;
  bool paged = false;
  int64_t page_size = 16;
  KVLayout layout = KVLayout::kNHD;
  AttentionOptions options;
  reference::AttentionRefParams ref;  // variant fields; shapes filled in
  std::vector<std::vector<bool>> masks;  // empty: no custom mask; else one per request
  bool fp8_kv = false;                   // paged cache in float8 (options.k_scale / v_scale apply)
  DType fp8_format = DType::kFloat8E4M3;  // with fp8_kv: e4m3fn or e5m2
  float kv_std = 1.f;  // K/V values ~ N(0, kv_std^2) before rounding (fp8 range tests)
  // Paged cache with padding after each head, entry, K/V half and page
  // (poisoned), so the strides share only a small divisor.
  bool padded_cache = false;
  // Ragged: K/V buffers this many rows longer than the batch's keys, the
  // extra rows NaN (a caller's oversized buffer); no output may see them.
  int64_t nan_tail_rows = 0;
  int64_t expect_q_tile = 0;  // nonzero: the FA2 plan must choose this q tile (64 / 128 rows)
  // run_case runs every case on kFa2 and on kFa3 where the Hopper kernel
  // serves it (support/prefill_backends.h).
  PrefillBackend backend = PrefillBackend::kFa2;
};

DType kv_dtype(const BatchCase& c) {
  return c.fp8_kv ? c.fp8_format : c.dtype;
}

int64_t v_head_dim(const BatchCase& c) {
  return c.head_dim_vo > 0 ? c.head_dim_vo : c.head_dim;
}

std::vector<int32_t> prefix_sum(const std::vector<int32_t>& lengths) {
  std::vector<int32_t> indptr(lengths.size() + 1, 0);
  std::partial_sum(lengths.begin(), lengths.end(), indptr.begin() + 1);
  return indptr;
}

DeviceTensor int_tensor(const std::vector<int32_t>& values) {
  DeviceTensor t(DType::kInt32, {std::max<int64_t>(1, static_cast<int64_t>(values.size()))});
  std::vector<int64_t> wide(values.begin(), values.end());
  wide.resize(static_cast<std::size_t>(t.numel()), 0);
  t.upload_ints(wide);
  return t;
}

// Host inputs of a batch: q [total_qo, Hq, D] and per-request K [kv_len, Hk,
// D], V [kv_len, Hk, Dv] (NHD order), rounded to the dtype.
struct BatchInputs {
  std::vector<float> q;
  std::vector<std::vector<float>> k, v;
};

BatchInputs make_inputs(const BatchCase& c, Rng& rng) {
  BatchInputs in;
  const int64_t total_qo = std::accumulate(c.qo_lens.begin(), c.qo_lens.end(), int64_t{0});
  in.q = testing::round_to(c.dtype, rng.normal_vector(static_cast<std::size_t>(
                                        total_qo * c.num_qo_heads * c.head_dim)));
  for (const int32_t kv_len : c.kv_lens) {
    const auto n = static_cast<std::size_t>(kv_len * c.num_kv_heads * c.head_dim);
    const auto n_v = static_cast<std::size_t>(kv_len * c.num_kv_heads * v_head_dim(c));
    in.k.push_back(testing::round_to(kv_dtype(c), rng.normal_vector(n, 0.f, c.kv_std)));
    in.v.push_back(testing::round_to(kv_dtype(c), rng.normal_vector(n_v, 0.f, c.kv_std)));
  }
  return in;
}

struct Expected {
  std::vector<double> out, lse;
};

Expected reference_for(const BatchCase& c, const BatchInputs& in) {
  Expected e;
  const int64_t row = c.num_qo_heads * c.head_dim;
  int64_t q_offset = 0;
  for (std::size_t b = 0; b < c.qo_lens.size(); ++b) {
    reference::AttentionRefParams p = c.ref;
    p.qo_len = c.qo_lens[b];
    p.kv_len = c.kv_lens[b];
    p.num_qo_heads = c.num_qo_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_dim = c.head_dim;
    p.head_dim_vo = v_head_dim(c);
    p.causal = c.causal;
    p.sm_scale = c.options.sm_scale;
    p.logits_soft_cap = c.options.logits_soft_cap;
    p.window_left = c.options.window_left;
    p.k_scale = c.options.k_scale;
    p.v_scale = c.options.v_scale;
    if (!c.masks.empty()) p.custom_mask = c.masks[b];
    const std::span<const float> qb(in.q.data() + q_offset * row,
                                    static_cast<std::size_t>(p.qo_len * row));
    const auto r = reference::attention_reference(qb, in.k[b], in.v[b], p);
    e.out.insert(e.out.end(), r.out.begin(), r.out.end());
    e.lse.insert(e.lse.end(), r.lse.begin(), r.lse.end());
    q_offset += p.qo_len;
  }
  return e;
}

// A paged cache holding the batch's K/V on shuffled pages; unused slots of
// last pages and spare pages hold large values a wrong read would show.
struct PagedKV {
  std::vector<int32_t> kv_indptr, kv_indices, kv_last_page_len;
  DeviceTensor cache;
  PagedKV(const BatchCase& c, const BatchInputs& in, Rng& rng)
      : cache(kv_dtype(c), cache_shape(c), cache_strides(c)) {
    if (c.padded_cache) cache.poison();
    std::vector<int32_t> pages_per_request;
    for (const int32_t len : c.kv_lens) {
      pages_per_request.push_back(static_cast<int32_t>((len + c.page_size - 1) / c.page_size));
      kv_last_page_len.push_back(len == 0 ? 0 : static_cast<int32_t>(len - (pages_per_request.back() - 1) * c.page_size));
    }
    kv_indptr = prefix_sum(pages_per_request);
    const int64_t num_pages = cache.shape()[0];
    std::vector<int32_t> perm(static_cast<std::size_t>(num_pages));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(static_cast<uint32_t>(rng.integer(0, 1 << 30))));
    kv_indices.assign(perm.begin(), perm.begin() + kv_indptr.back());
    std::vector<float> host(static_cast<std::size_t>(cache.numel()), 1000.f);
    const int64_t hk = c.num_kv_heads, d = c.head_dim, page = c.page_size;
    for (std::size_t b = 0; b < c.kv_lens.size(); ++b) {
      for (int64_t pos = 0; pos < c.kv_lens[b]; ++pos) {
        const int64_t page_id = kv_indices[static_cast<std::size_t>(kv_indptr[b] + pos / page)];
        const int64_t slot = pos % page;
        for (int64_t h = 0; h < hk; ++h) {
          for (int64_t kv = 0; kv < 2; ++kv) {
            const std::vector<float>& src = kv == 0 ? in.k[b] : in.v[b];
            const int64_t inner = c.layout == KVLayout::kNHD ? (slot * hk + h) * d : (h * page + slot) * d;
            const int64_t base = (page_id * 2 + kv) * page * hk * d + inner;
            for (int64_t e = 0; e < d; ++e) {
              host[static_cast<std::size_t>(base + e)] = src[static_cast<std::size_t>((pos * hk + h) * d + e)];
            }
          }
        }
      }
    }
    cache.upload(host);
  }
  static std::vector<int64_t> cache_shape(const BatchCase& c) {
    int64_t pages = 2;  // spares
    for (const int32_t len : c.kv_lens) pages += (len + c.page_size - 1) / c.page_size;
    return c.layout == KVLayout::kNHD
               ? std::vector<int64_t>{pages, 2, c.page_size, c.num_kv_heads, c.head_dim}
               : std::vector<int64_t>{pages, 2, c.num_kv_heads, c.page_size, c.head_dim};
  }
  // Padded: 16 elements (16-byte aligned for fp8 and 16-bit types) after
  // every axis but the last, so no stride divides another.
  static std::vector<int64_t> cache_strides(const BatchCase& c) {
    const std::vector<int64_t> shape = cache_shape(c);
    if (!c.padded_cache) return testing::contiguous_strides(shape);
    constexpr int64_t kPad = 16;
    std::vector<int64_t> strides(shape.size(), 1);
    for (int d = static_cast<int>(shape.size()) - 2; d >= 0; --d) {
      strides[d] = strides[d + 1] * shape[d + 1] + kPad;
    }
    return strides;
  }
};

PrefillPlanShape shape_of(const BatchCase& c) {
  PrefillPlanShape shape{c.num_qo_heads, c.num_kv_heads, c.head_dim, c.paged ? c.page_size : 0,
                         c.backend};
  shape.head_dim_vo = c.head_dim_vo;
  return shape;
}

void check_results(const BatchCase& c, const BatchInputs& in, const DeviceTensor& out,
                   const DeviceTensor& lse) {
  const Expected e = reference_for(c, in);
  EXPECT_TRUE(testing::all_close(out.download(), e.out, testing::tolerance_for(c.dtype)));
  EXPECT_TRUE(testing::lse_close(lse.download(), e.lse, kLseTolerance));
}

std::string describe(const BatchCase& c) {
  std::string s = c.paged ? "paged, page " + std::to_string(c.page_size) : std::string("ragged");
  s += c.layout == KVLayout::kNHD ? ", NHD" : ", HND";
  s += ", heads " + std::to_string(c.num_qo_heads) + "/" + std::to_string(c.num_kv_heads);
  s += ", D " + std::to_string(c.head_dim);
  if (c.head_dim_vo > 0) s += "/" + std::to_string(c.head_dim_vo);
  s += c.causal ? ", causal" : ", non-causal";
  s += ", batch " + std::to_string(c.qo_lens.size());
  s += std::string(", q ") + dtype_name(c.dtype) + ", KV " + dtype_name(kv_dtype(c));
  s += std::string(", ") + testing::prefill_backend_name(c.backend);
  return s;
}

void run_case_on_backend(const BatchCase& c, Rng& rng) {
  SCOPED_TRACE(describe(c));
  const BatchInputs in = make_inputs(c, rng);
  const std::vector<int32_t> qo_indptr = prefix_sum(c.qo_lens);
  const int64_t total_qo = qo_indptr.back();
  const auto batch = static_cast<int64_t>(c.qo_lens.size());
  DeviceTensor q(c.dtype, {std::max<int64_t>(total_qo, 1), c.num_qo_heads, c.head_dim});
  std::vector<float> q_padded = in.q;
  q_padded.resize(static_cast<std::size_t>(q.numel()), 0.f);
  q.upload(q_padded);
  DeviceTensor out(c.dtype, {q.shape()[0], c.num_qo_heads, v_head_dim(c)});
  DeviceTensor lse(DType::kFloat32, {q.shape()[0], c.num_qo_heads});
  out.poison();
  lse.poison();
  DeviceTensor qo_dev = int_tensor(qo_indptr);
  DLTensor lse_dl = lse.dl();
  const PrefillPlanBounds bounds{batch, std::max<int64_t>(total_qo, 1)};
  CudaStream stream;
  DeviceTensor mask = testing::upload_masks(c.masks);
  DLTensor mask_dl = mask.dl();
  AttentionOptions options = c.options;
  if (!c.masks.empty()) options.custom_mask = &mask_dl;

  if (!c.paged) {
    const std::vector<int32_t> kv_indptr = prefix_sum(c.kv_lens);
    std::vector<float> k_all, v_all;
    for (std::size_t b = 0; b < in.k.size(); ++b) {
      k_all.insert(k_all.end(), in.k[b].begin(), in.k[b].end());
      v_all.insert(v_all.end(), in.v[b].begin(), in.v[b].end());
    }
    // k_all / v_all hold the batch's keys; rows past them are the tail.
    const int64_t total_kv = std::max<int64_t>(kv_indptr.back(), 1) + c.nan_tail_rows;
    const float tail = c.nan_tail_rows > 0 ? std::nanf("") : 0.f;
    k_all.resize(static_cast<std::size_t>(total_kv * c.num_kv_heads * c.head_dim), tail);
    v_all.resize(static_cast<std::size_t>(total_kv * c.num_kv_heads * v_head_dim(c)), tail);
    DeviceTensor k(c.dtype, {total_kv, c.num_kv_heads, c.head_dim});
    DeviceTensor v(c.dtype, {total_kv, c.num_kv_heads, v_head_dim(c)});
    k.upload(k_all);
    v.upload(v_all);
    DeviceTensor kv_dev = int_tensor(kv_indptr);
    const std::size_t bytes =
        BatchPrefillWithRaggedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
    DeviceBuffer workspace(bytes);
    BatchPrefillWithRaggedKVCache prefill(shape_of(c), bounds, workspace.data(), bytes, 0);
    prefill.plan(qo_indptr, kv_indptr, c.causal, stream.get());
    if (c.expect_q_tile != 0 && c.backend == PrefillBackend::kFa2) {
      EXPECT_EQ(prefill.planned_q_tile_rows(), c.expect_q_tile);
    }
    if (!testing::run_on_backend(c.backend, [&] {
          prefill.run(q.dl(), k.dl(), v.dl(), qo_dev.dl(), kv_dev.dl(), out.dl(), &lse_dl,
                      options, stream.get(), Validate::kOn);
        })) {
      return;
    }
    stream.synchronize();
  } else {
    ASSERT_EQ(v_head_dim(c), c.head_dim) << "paged caches hold one head dim";
    PagedKV paged(c, in, rng);
    DeviceTensor indices = int_tensor(paged.kv_indices);
    DeviceTensor indptr = int_tensor(paged.kv_indptr);
    DeviceTensor last = int_tensor(paged.kv_last_page_len);
    const std::size_t bytes =
        BatchPrefillWithPagedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
    DeviceBuffer workspace(bytes);
    BatchPrefillWithPagedKVCache prefill(shape_of(c), bounds, workspace.data(), bytes, 0);
    prefill.plan(qo_indptr, paged.kv_indptr, paged.kv_last_page_len, c.causal, stream.get());
    if (c.expect_q_tile != 0 && c.backend == PrefillBackend::kFa2) {
      EXPECT_EQ(prefill.planned_q_tile_rows(), c.expect_q_tile);
    }
    if (!testing::run_on_backend(c.backend, [&] {
          prefill.run(q.dl(), PagedKVCacheArg::combined(paged.cache.dl(), c.layout),
                      indices.dl(), qo_dev.dl(), indptr.dl(), last.dl(), out.dl(), &lse_dl,
                      options, stream.get(), Validate::kOn);
        })) {
      return;
    }
    stream.synchronize();
  }
  check_results(c, in, out, lse);
}

void run_case(const BatchCase& c, Rng& rng) {
  for (const PrefillBackend backend : testing::prefill_backends()) {
    BatchCase on = c;
    on.backend = backend;
    run_case_on_backend(on, rng);
  }
}

BatchCase mixed_causal() {
  BatchCase c;
  // The last two: causal with qo_len > kv_len (the first qo_len - kv_len
  // queries see no key: out 0, lse -inf).
  c.qo_lens = {1, 7, 128, 1000, 0, 33, 300, 9};
  c.kv_lens = {1, 127, 128, 4097, 5, 1000, 70, 0};
  return c;
}

BatchCase mixed_non_causal() {
  BatchCase c;
  c.causal = false;
  c.qo_lens = {50, 7, 0, 130, 1};
  c.kv_lens = {10, 0, 3, 129, 4097};  // qo_len > kv_len allowed; kv_len 0 gives 0 / -inf
  return c;
}

TEST(BatchPrefill, RaggedMixedLengthsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_case(mixed_causal(), rng);
  run_case(mixed_non_causal(), rng);
}

// K/V buffers longer than the batch's keys, the rest NaN: the last tile of
// the last request must not read them into any output (the Hopper kernel's
// 128-row TMA boxes load them; it zeroes such rows of V before P V).
TEST(BatchPrefill, RaggedNanRowsAfterTheKeysStayOutOfTheOutput) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (BatchCase c : {mixed_causal(), mixed_non_causal()}) {
    c.nan_tail_rows = 300;
    run_case(c, rng);
  }
}

// mixed_causal() paged with page sizes 1 / 5 / 16, NHD and HND.
void run_causal_page_sizes_and_layouts(bool padded_cache, Rng& rng) {
  for (const int64_t page_size : {1, 5, 16}) {
    for (const KVLayout layout : {KVLayout::kNHD, KVLayout::kHND}) {
      BatchCase c = mixed_causal();
      c.paged = true;
      c.padded_cache = padded_cache;
      c.page_size = page_size;
      c.layout = layout;
      run_case(c, rng);
    }
  }
}

// Many units, a third without a key to see (causal rows before the first
// key, empty KV) between units that have tiles. With several units per CTA
// (a persistent plan) the Hopper gather must land a unit's copies even when
// the next unit issues none; today's plans run one unit per CTA.
TEST(BatchPrefill, PagedUnitsWithoutKeysAmongManyMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t page_size : {1, 16}) {
    BatchCase c;
    c.paged = true;
    c.page_size = page_size;
    c.num_qo_heads = 1;
    c.num_kv_heads = 1;
    for (int i = 0; i < 240; ++i) {
      c.qo_lens.push_back(i % 3 == 0 ? 300 : i % 3 == 1 ? 64 : 40);
      c.kv_lens.push_back(i % 3 == 0 ? 20 : i % 3 == 1 ? 300 : 0);
    }
    run_case(c, rng);
  }
}

TEST(BatchPrefill, PagedPageSizesAndLayoutsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_causal_page_sizes_and_layouts(false, rng);
  for (const int64_t page_size : {1, 5, 16}) {
    BatchCase n = mixed_non_causal();
    n.paged = true;
    n.page_size = page_size;
    run_case(n, rng);
  }
}

// Paged rows are addressed in units of the strides' common divisor (16
// elements here, not a row): page sizes 1 / 5 / 16, both layouts, head dims
// 64 / 128, GQA, and an fp8 cache.
TEST(BatchPrefill, PaddedStridedPagedCachesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_causal_page_sizes_and_layouts(true, rng);
  BatchCase c = mixed_non_causal();
  c.paged = true;
  c.padded_cache = true;
  c.head_dim = 64;
  c.num_qo_heads = 8;
  c.num_kv_heads = 1;
  run_case(c, rng);
  c = mixed_causal();
  c.paged = true;
  c.padded_cache = true;
  c.fp8_kv = true;
  c.layout = KVLayout::kHND;
  run_case(c, rng);
}

TEST(BatchPrefill, GqaRatiosHeadDimsAndFp16MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const int64_t heads[][2] = {{4, 4}, {8, 2}, {8, 1}};
  for (const auto& h : heads) {
    for (const int64_t head_dim : {64, 128}) {
      BatchCase c;
      c.qo_lens = {77, 200, 5};
      c.kv_lens = {300, 200, 64};
      c.num_qo_heads = h[0];
      c.num_kv_heads = h[1];
      c.head_dim = head_dim;
      c.dtype = DType::kFloat16;
      c.paged = head_dim == 64;
      c.page_size = 3;
      run_case(c, rng);
    }
  }
}

// Head dims 80 / 96 / 112 (JIT-served FA2, odd-pitch tiles with per-copy
// rows): ragged and paged (page 1, 3 and 16; HND at 16), GQA 1 / 4 with
// packed heads, causal and not, fp16 and bf16, a request long enough to
// split KV, a request with qo > kv, and 128-row tiles (expect_q_tile 0: the
// plan chooses).
TEST(BatchPrefill, HeadDims80To112MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t head_dim : {80, 96, 112}) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim));
    for (const int32_t page_size : {0, 1, 3, 16}) {
      BatchCase c;
      c.qo_lens = {77, 200, 5, 1, 130};
      c.kv_lens = {300, 200, 64, 1, 100};
      c.head_dim = head_dim;
      c.paged = page_size > 0;
      c.page_size = c.paged ? page_size : 16;
      c.layout = page_size == 16 ? KVLayout::kHND : KVLayout::kNHD;
      c.num_qo_heads = page_size == 3 ? 4 : 8;
      c.num_kv_heads = page_size == 3 ? 4 : 2;
      c.dtype = page_size == 1 ? DType::kFloat16 : DType::kBFloat16;
      c.causal = page_size != 3;
      run_case(c, rng);
    }
    BatchCase split;  // one long request on a small batch: split KV + merge
    split.qo_lens = {40, 3};
    split.kv_lens = {9000, 17};
    split.head_dim = head_dim;
    split.paged = true;
    run_case(split, rng);
  }
}

// 128-row query tiles (32 rows per warp): batches whose 128-row tiles fill
// a wave of the GPU (132 SMs x 2 on an H200; the shapes pass that for up to
// 140 SMs). Ragged / paged (page 16, page 1 HND), causal and not, head_dim 64,
// and the variants that differ per row (window, ALiBi with GQA-packed heads,
// custom mask, RoPE on a 128-row Q tile).
TEST(BatchPrefill, LargeQTilesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  BatchCase base;
  base.num_qo_heads = 32;
  base.num_kv_heads = 8;
  base.expect_q_tile = 128;
  base.qo_lens = {700, 400};
  base.kv_lens = {800, 400};
  {
    BatchCase c = base;
    c.causal = false;
    c.qo_lens = {1500, 600};
    c.kv_lens = {64, 300};
    run_case(c, rng);
  }
  run_case(base, rng);
  {
    BatchCase c = base;
    c.paged = true;
    run_case(c, rng);
    c.page_size = 1;
    c.layout = KVLayout::kHND;
    run_case(c, rng);
  }
  {
    BatchCase c = base;
    c.head_dim = 64;
    c.dtype = DType::kFloat16;
    run_case(c, rng);
  }
  BatchCase paged = base;
  paged.paged = true;
  {
    BatchCase c = paged;
    c.options.window_left = 100;
    run_case(c, rng);
  }
  {
    BatchCase c = paged;
    c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
    c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
    run_case(c, rng);
  }
  {
    BatchCase c = paged;
    for (std::size_t b = 0; b < c.qo_lens.size(); ++b) {
      c.masks.push_back(testing::random_mask(c.qo_lens[b], c.kv_lens[b], 0.6, rng, 5));
    }
    run_case(c, rng);
  }
  {
    BatchCase c = paged;
    c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
    c.ref.rope_llama = true;
    c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
    run_case(c, rng);
  }
  // ALiBi / RoPE-Llama with a soft cap and a window (JIT-served), ragged and
  // paged (page 1 too).
  for (const PosEncodingMode mode : {PosEncodingMode::kAlibi, PosEncodingMode::kRopeLlama}) {
    for (const bool is_paged : {false, true}) {
      BatchCase c = is_paged ? paged : base;
      c.page_size = mode == PosEncodingMode::kAlibi ? 1 : 16;
      c.options.pos_encoding_mode = mode;
      c.options.logits_soft_cap = 7.0;
      c.options.window_left = 90;
      if (mode == PosEncodingMode::kAlibi) {
        c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
      } else {
        c.ref.rope_llama = true;
        c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
      }
      run_case(c, rng);
    }
  }
}

// head_dim 256 (JIT-compiled on first use; 64-row tiles): ragged and paged,
// mixed lengths with an empty request, causal and not, GQA, a split request,
// a variant.
TEST(BatchPrefill, HeadDim256MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  BatchCase c;
  c.head_dim = 256;
  c.expect_q_tile = 64;
  c.qo_lens = {1, 130, 0, 300};
  c.kv_lens = {900, 200, 7, 300};
  run_case(c, rng);
  c.paged = true;
  run_case(c, rng);
  c.causal = false;
  c.page_size = 5;
  c.dtype = DType::kFloat16;
  run_case(c, rng);
  c.causal = true;
  c.options.logits_soft_cap = 30.0;
  c.options.sm_scale = 0.3;
  run_case(c, rng);
  // Short queries on long KV: split KV + merge at head_dim 256.
  BatchCase split;
  split.head_dim = 256;
  split.qo_lens = {16, 3};
  split.kv_lens = {20000, 9000};
  run_case(split, rng);
}

// q/k 192 with v/o 128 through the ragged wrapper (JIT-served FA2; v with
// strides of its own, partials and the merge at v/o width): mixed lengths
// with qo > kv and empty requests, non-causal, GQA 32/8 in fp16, HND, NaN
// rows after the keys, and short queries on long KV (split KV + merge); on
// auto it runs FA2 (the Hopper kernels lack head dim 192).
TEST(BatchPrefill, RaggedHeadDimQk192Vo128MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const auto split = [](BatchCase c) {
    c.head_dim = 192;
    c.head_dim_vo = 128;
    return c;
  };
  run_case_on_backend(split(mixed_causal()), rng);
  run_case_on_backend(split(mixed_non_causal()), rng);
  BatchCase gqa = split(mixed_causal());
  gqa.num_qo_heads = 32;
  gqa.num_kv_heads = 8;
  gqa.dtype = DType::kFloat16;
  gqa.layout = KVLayout::kHND;
  gqa.nan_tail_rows = 40;
  run_case_on_backend(gqa, rng);
  BatchCase short_on_long = split(BatchCase{});
  short_on_long.qo_lens = {16, 3};
  short_on_long.kv_lens = {20000, 9000};
  run_case_on_backend(short_on_long, rng);
  BatchCase automatic = split(mixed_non_causal());
  automatic.backend = PrefillBackend::kAuto;
  run_case_on_backend(automatic, rng);
}

// The pair's v and out are checked at head_dim_vo and k at head_dim, each
// named; fa3 by name is refused at run() naming "backend".
TEST(BatchPrefill, RaggedHeadDimQk192Vo128ArgumentsAreNamed) {
  TESSERA_REQUIRE_GPU();
  BatchCase c;
  c.head_dim = 192;
  c.head_dim_vo = 128;
  const std::vector<int32_t> qo_indptr{0, 4}, kv_indptr{0, 6};
  const PrefillPlanBounds bounds{1, 4};
  const std::size_t bytes =
      BatchPrefillWithRaggedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchPrefillWithRaggedKVCache prefill(shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  prefill.plan(qo_indptr, kv_indptr, true, stream.get());
  DeviceTensor q(c.dtype, {4, c.num_qo_heads, 192}), k(c.dtype, {6, c.num_kv_heads, 192});
  DeviceTensor v(c.dtype, {6, c.num_kv_heads, 128}), out(c.dtype, {4, c.num_qo_heads, 128});
  DeviceTensor qo_dev = int_tensor(qo_indptr), kv_dev = int_tensor(kv_indptr);
  const auto run = [&](DeviceTensor& k_in, DeviceTensor& v_in, DeviceTensor& o) {
    prefill.run(q.dl(), k_in.dl(), v_in.dl(), qo_dev.dl(), kv_dev.dl(), o.dl(), nullptr, {},
                stream.get(), Validate::kOn);
  };
  testing::expect_argument_error([&] { run(k, k, out); }, "v");
  testing::expect_argument_error([&] { run(v, v, out); }, "k");
  testing::expect_argument_error([&] { run(k, v, q); }, "out");
  run(k, v, out);  // the right shapes run
  stream.synchronize();

  c.backend = PrefillBackend::kFa3;
  BatchPrefillWithRaggedKVCache on_fa3(shape_of(c), bounds, workspace.data(), bytes, 0);
  on_fa3.plan(qo_indptr, kv_indptr, true, stream.get());
  testing::expect_argument_error(
      [&] {
        on_fa3.run(q.dl(), k.dl(), v.dl(), qo_dev.dl(), kv_dev.dl(), out.dl(), nullptr, {},
                   stream.get(), Validate::kOn);
      },
      "backend");
}

// Short queries on long KV: the q tiles alone cannot fill the GPU, so the
// planner splits KV and the merge pass combines the chunks.
TEST(BatchPrefill, SplitKvShortQueriesOnLongKvMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const bool paged : {false, true}) {
    BatchCase c;
    c.qo_lens = {16, 3};
    c.kv_lens = {20000, 9000};
    c.paged = paged;
    run_case(c, rng);
    c.causal = false;
    run_case(c, rng);
  }
}

TEST(BatchPrefill, VariantsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  BatchCase base;
  base.qo_lens = {100, 1, 300};
  base.kv_lens = {100, 2000, 700};
  base.paged = true;
  base.page_size = 16;
  {
    BatchCase c = base;
    c.options.logits_soft_cap = 30.0;
    c.options.sm_scale = 0.3;  // large logits so the cap matters
    run_case(c, rng);
  }
  {
    BatchCase c = base;
    c.options.window_left = 100;
    run_case(c, rng);
    // Soft-cap + window: JIT-compiled on first use (not on the AOT list).
    c.options.logits_soft_cap = 30.0;
    c.options.sm_scale = 0.3;
    run_case(c, rng);
    c.paged = false;
    run_case(c, rng);
  }
  {
    BatchCase c = base;
    c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
    c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
    run_case(c, rng);
  }
  {
    // RoPE-Llama on the fly (JIT-served), paged and ragged.
    BatchCase c = base;
    c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
    c.ref.rope_llama = true;
    // The kernel stores rotated rows back in q's type.
    c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
    run_case(c, rng);
    c.paged = false;
    run_case(c, rng);
  }
}

// "auto" on many short requests: on sm90 the plan is the Hopper kernel's
// persistent unit lists (tiles of <= 512 KV tokens, more units than a wave),
// and a call those kernels do not serve (RoPE on the fly) runs FA2 on that
// plan, which must still run every unit. Plain runs the Hopper kernel.
TEST(BatchPrefill, AutoRunsEveryUnitOfAShortBatchOnEitherKernel) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  BatchCase c;
  c.qo_lens.assign(48, 100);  // 48 x 4 tiles of 128 GQA rows, x 2 KV heads > 132 SMs
  c.kv_lens.assign(48, 100);
  c.qo_lens[7] = 37;
  c.kv_lens[7] = 90;
  c.backend = PrefillBackend::kAuto;
  for (const bool paged : {false, true}) {
    c.paged = paged;
    c.options = AttentionOptions{};
    c.ref = reference::AttentionRefParams{};
    run_case_on_backend(c, rng);
    c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
    c.ref.rope_llama = true;
    c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
    run_case_on_backend(c, rng);
  }
}

// A float8 paged cache with scales (chunked prefill over an fp8 KV cache),
// e4m3fn and e5m2: the tiles are widened to q's type in shared memory (e5m2
// by a byte permute). Page sizes 1 and 16, mixed lengths with a split
// request, plain and window (AOT for e4m3fn with bf16 q) and soft-cap (JIT
// on first use; e5m2 is JIT-served throughout), a custom mask.
TEST(BatchPrefill, Fp8PagedCacheMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DType format : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    SCOPED_TRACE(dtype_name(format));
    for (const int64_t page : {int64_t{16}, int64_t{1}}) {
      BatchCase c = mixed_causal();
      c.paged = true;
      c.page_size = page;
      c.fp8_kv = true;
      c.fp8_format = format;
      c.options.k_scale = 0.5;
      c.options.v_scale = 2.0;
      run_case(c, rng);
    }
    BatchCase c;
    c.qo_lens = {100, 1, 300};
    c.kv_lens = {100, 2000, 700};
    c.paged = true;
    c.fp8_kv = true;
    c.fp8_format = format;
    c.dtype = DType::kFloat16;  // fp16 q: the widener's half path (JIT-served)
    run_case(c, rng);
    c.dtype = DType::kBFloat16;
    c.options.window_left = 100;
    run_case(c, rng);
    c.options.window_left = -1;
    c.options.logits_soft_cap = 30.0;
    c.options.sm_scale = 0.3;
    run_case(c, rng);
    c.options = {};
    c.causal = false;
    for (std::size_t b = 0; b < c.qo_lens.size(); ++b) {
      c.masks.push_back(testing::random_mask(c.qo_lens[b], c.kv_lens[b], 0.5, rng));
    }
    run_case(c, rng);
  }
}

// An e5m2 cache over its exponent range (past e4m3fn's 448, and subnormals
// below 2^-14), scaled back by k_scale / v_scale; HND with padded strides,
// GQA 8, fp16 and bf16 q, RoPE on the fly (keys rotated after widening).
TEST(BatchPrefill, Fp8E5m2PagedCacheRangeLayoutsAndRopeMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const float kv_std : {3000.f, 1e-4f}) {
    for (const DType q : {DType::kFloat16, DType::kBFloat16}) {
      BatchCase c = mixed_causal();
      c.paged = true;
      c.dtype = q;
      c.fp8_kv = true;
      c.fp8_format = DType::kFloat8E5M2;
      c.kv_std = kv_std;
      c.options.k_scale = 1.0 / kv_std;
      c.options.v_scale = 1.0 / kv_std;
      run_case(c, rng);
    }
  }
  BatchCase c = mixed_non_causal();
  c.paged = true;
  c.padded_cache = true;
  c.layout = KVLayout::kHND;
  c.page_size = 5;
  c.num_qo_heads = 16;
  c.num_kv_heads = 2;
  c.fp8_kv = true;
  c.fp8_format = DType::kFloat8E5M2;
  run_case(c, rng);
  c = mixed_causal();
  c.paged = true;
  c.fp8_kv = true;
  c.fp8_format = DType::kFloat8E5M2;
  c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
  c.ref.rope_llama = true;
  // The kernel stores rotated rows back in q's type.
  c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
  run_case(c, rng);
}

// run()'s checks of the new arguments, named: a custom mask shorter than
// the plan's bits, an fp8 cache at head_dim 64.
TEST(BatchPrefill, MaskAndFp8ArgumentsAreNamed) {
  TESSERA_REQUIRE_GPU();
  CudaStream stream;
  const std::vector<int32_t> qo_indptr = {0, 10, 30}, kv_indptr = {0, 100, 300};
  DeviceTensor q(DType::kBFloat16, {30, 8, 128}), out(DType::kBFloat16, {30, 8, 128});
  DeviceTensor k(DType::kBFloat16, {300, 2, 128}), v(DType::kBFloat16, {300, 2, 128});
  DeviceTensor qo_dev = int_tensor(qo_indptr), kv_dev = int_tensor(kv_indptr);
  const PrefillPlanShape shape{8, 2, 128, 0};
  const PrefillPlanBounds bounds{2, 30};
  const std::size_t bytes = BatchPrefillWithRaggedKVCache::workspace_size_bytes(shape, bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchPrefillWithRaggedKVCache ragged(shape, bounds, workspace.data(), bytes, 0);
  ragged.plan(qo_indptr, kv_indptr, false, stream.get());
  // ceil(10 * 100 / 8) + ceil(20 * 200 / 8) = 125 + 500 bytes.
  DeviceTensor short_mask(DType::kUInt8, {624});
  DLTensor short_dl = short_mask.dl();
  AttentionOptions options;
  options.custom_mask = &short_dl;
  testing::expect_argument_error(
      [&] {
        ragged.run(q.dl(), k.dl(), v.dl(), qo_dev.dl(), kv_dev.dl(), out.dl(), nullptr, options,
                   stream.get());
      },
      "custom_mask");
  for (const DType fp8 : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    DeviceTensor fp8_k(fp8, {300, 2, 128});
    testing::expect_argument_error(
        [&] {
          ragged.run(q.dl(), fp8_k.dl(), v.dl(), qo_dev.dl(), kv_dev.dl(), out.dl(), nullptr, {},
                     stream.get());
        },
        "k");
  }

  const PrefillPlanShape paged_shape{8, 2, 64, 16};
  const std::size_t paged_bytes =
      BatchPrefillWithPagedKVCache::workspace_size_bytes(paged_shape, bounds, 0);
  DeviceBuffer paged_workspace(paged_bytes);
  BatchPrefillWithPagedKVCache paged(paged_shape, bounds, paged_workspace.data(), paged_bytes, 0);
  const std::vector<int32_t> page_indptr = {0, 7, 20}, last = {4, 8};
  paged.plan(qo_indptr, page_indptr, last, false, stream.get());
  DeviceTensor pages = int_tensor(std::vector<int32_t>(20, 0)), page_dev = int_tensor(page_indptr),
               last_dev = int_tensor(last);
  DeviceTensor q64(DType::kBFloat16, {30, 8, 64}), out64(DType::kBFloat16, {30, 8, 64});
  for (const DType fp8 : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    DeviceTensor cache(fp8, {20, 2, 16, 2, 64});
    DLTensor cache_dl = cache.dl();
    testing::expect_argument_error(
        [&] {
          paged.run(q64.dl(), PagedKVCacheArg::combined(cache_dl, KVLayout::kNHD), pages.dl(),
                    qo_dev.dl(), page_dev.dl(), last_dev.dl(), out64.dl(), nullptr, {},
                    stream.get());
        },
        "paged_kv_cache");
  }
}

// Custom boolean masks (FlashInfer's packed_custom_mask), per request, with
// fully masked rows, ANDed with causal; ragged and paged (page 1 and 16),
// a split long request among them. The mask buffer's bits of request b
// start at byte sum of ceil(qo * kv / 8) over the earlier ones.
TEST(BatchPrefill, CustomMasksMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const bool causal : {false, true}) {
    for (const int64_t page : {int64_t{0}, int64_t{1}, int64_t{16}}) {
      BatchCase c;
      c.causal = causal;
      c.qo_lens = {37, 1, 0, 150, 9};
      c.kv_lens = {300, 77, 5, 150, 3001};
      c.paged = page > 0;
      c.page_size = page > 0 ? page : 16;
      for (std::size_t b = 0; b < c.qo_lens.size(); ++b) {
        c.masks.push_back(testing::random_mask(c.qo_lens[b], c.kv_lens[b], 0.6, rng, 5));
      }
      run_case(c, rng);
    }
  }
  // With a variant and without GQA packing (heads 4 / 4).
  BatchCase c;
  c.causal = false;
  c.num_qo_heads = c.num_kv_heads = 4;
  c.head_dim = 64;
  c.qo_lens = {70, 20};
  c.kv_lens = {90, 700};
  c.options.logits_soft_cap = 20.0;
  c.options.sm_scale = 0.3;
  for (std::size_t b = 0; b < c.qo_lens.size(); ++b) {
    c.masks.push_back(testing::random_mask(c.qo_lens[b], c.kv_lens[b], 0.3, rng));
  }
  run_case(c, rng);
}

// Block-sparse (BSR) attention: block row i of R queries attends to the
// block columns indices[indptr[i] .. indptr[i + 1]) of C keys each, in that
// order; rows with no blocks give 0 / -inf. R and C include 1 (vector
// sparsity) and values that do not divide the kernel's tiles.
TEST(BlockSparse, RandomPatternsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const int64_t hq = 8, hk = 2, d = 128;
  const int64_t shapes[][2] = {{16, 16}, {1, 1}, {64, 5}, {3, 64}};
  for (const auto& rc : shapes) {
    const int64_t r = rc[0], c = rc[1];
    const int64_t block_rows = 24, block_cols = 40;
    SCOPED_TRACE("R " + std::to_string(r) + ", C " + std::to_string(c));
    std::vector<int32_t> indptr = {0}, indices;
    for (int64_t i = 0; i < block_rows; ++i) {
      const int64_t nnz = i == 3 ? 0 : rng.integer(1, 12);  // row 3 attends to nothing
      std::vector<int32_t> cols(static_cast<std::size_t>(block_cols));
      std::iota(cols.begin(), cols.end(), 0);
      std::shuffle(cols.begin(), cols.end(), std::mt19937(static_cast<uint32_t>(rng.integer(0, 1 << 30))));
      indices.insert(indices.end(), cols.begin(), cols.begin() + nnz);
      indptr.push_back(static_cast<int32_t>(indices.size()));
    }
    const int64_t m = block_rows * r, n = block_cols * c;
    const auto q_host = testing::round_to(DType::kBFloat16, rng.normal_vector(static_cast<std::size_t>(m * hq * d)));
    const auto k_host = testing::round_to(DType::kBFloat16, rng.normal_vector(static_cast<std::size_t>(n * hk * d)));
    const auto v_host = testing::round_to(DType::kBFloat16, rng.normal_vector(static_cast<std::size_t>(n * hk * d)));
    DeviceTensor q(DType::kBFloat16, {m, hq, d}), k(DType::kBFloat16, {n, hk, d}),
        v(DType::kBFloat16, {n, hk, d}), out(DType::kBFloat16, {m, hq, d}),
        lse(DType::kFloat32, {m, hq});
    q.upload(q_host);
    k.upload(k_host);
    v.upload(v_host);
    DeviceTensor indptr_dev = int_tensor(indptr), indices_dev = int_tensor(indices);
    Expected e;
    const int64_t key_row = hk * d;
    for (int64_t i = 0; i < block_rows; ++i) {
      std::vector<float> kb, vb;
      for (int32_t j = indptr[i]; j < indptr[i + 1]; ++j) {
        const auto first = k_host.begin() + indices[j] * c * key_row;
        kb.insert(kb.end(), first, first + c * key_row);
        const auto vfirst = v_host.begin() + indices[j] * c * key_row;
        vb.insert(vb.end(), vfirst, vfirst + c * key_row);
      }
      reference::AttentionRefParams p;
      p.qo_len = r;
      p.kv_len = static_cast<int64_t>(kb.size()) / key_row;
      p.num_qo_heads = hq;
      p.num_kv_heads = hk;
      p.head_dim = d;
      const std::span<const float> qb(q_host.data() + i * r * hq * d, static_cast<std::size_t>(r * hq * d));
      const auto res = reference::attention_reference(qb, kb, vb, p);
      e.out.insert(e.out.end(), res.out.begin(), res.out.end());
      e.lse.insert(e.lse.end(), res.lse.begin(), res.lse.end());
    }
    for (const PrefillBackend backend : testing::prefill_backends()) {
      SCOPED_TRACE(testing::prefill_backend_name(backend));
      out.poison();
      lse.poison();
      BlockSparseShape shape{hq, hk, d, r, c};
      shape.backend = backend;
      const BlockSparseBounds bounds{block_rows};
      const std::size_t bytes = BlockSparseAttention::workspace_size_bytes(shape, bounds, 0);
      DeviceBuffer workspace(bytes);
      BlockSparseAttention attention(shape, bounds, workspace.data(), bytes, 0);
      CudaStream stream;
      attention.plan(indptr, indices, stream.get());
      DLTensor lse_dl = lse.dl();
      if (!testing::run_on_backend(backend, [&] {
            attention.run(q.dl(), k.dl(), v.dl(), indptr_dev.dl(), indices_dev.dl(), out.dl(),
                          &lse_dl, AttentionOptions{}, stream.get(), Validate::kOn);
          })) {
        continue;
      }
      stream.synchronize();
      EXPECT_TRUE(
          testing::all_close(out.download(), e.out, testing::tolerance_for(DType::kBFloat16)));
      EXPECT_TRUE(testing::lse_close(lse.download(), e.lse, kLseTolerance));
    }
  }
}

// The serving loop: run() captured once at the bounds, replayed after plan()
// with other lengths (query and KV) each time.
// Captures run() once at the first step's plan and replays the graph after
// re-planning each later step (new lengths, new inputs in the captured
// buffers); kv_len = (causal ? qo_len : 1) + [0, kv_extra]. expect_tiles
// (when given): the q tile each step's plan must choose.
void graph_replay_case(BatchCase c, const std::vector<std::vector<int32_t>>& qo_steps,
                       int64_t max_batch, int64_t max_tokens, int32_t kv_extra,
                       const std::vector<int64_t>& expect_tiles, Rng& rng) {
  c.paged = true;
  const PrefillPlanBounds bounds{max_batch, max_tokens};
  const std::size_t bytes = BatchPrefillWithPagedKVCache::workspace_size_bytes(shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchPrefillWithPagedKVCache prefill(shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  // Device buffers sized for the bounds, refilled before every replay.
  const int64_t max_pages =
      max_batch * ((max_tokens + kv_extra + c.page_size - 1) / c.page_size + 1) + 2;
  DeviceTensor q(c.dtype, {max_tokens, c.num_qo_heads, c.head_dim});
  DeviceTensor out(c.dtype, {max_tokens, c.num_qo_heads, c.head_dim});
  DeviceTensor lse(DType::kFloat32, {max_tokens, c.num_qo_heads});
  DeviceTensor cache(c.dtype, {max_pages, 2, c.page_size, c.num_kv_heads, c.head_dim});
  DeviceTensor qo_dev(DType::kInt32, {max_batch + 1});
  DeviceTensor indptr_dev(DType::kInt32, {max_batch + 1});
  DeviceTensor last_dev(DType::kInt32, {max_batch});
  DeviceTensor indices_dev(DType::kInt32, {max_pages});
  DLTensor lse_dl = lse.dl();
  cudaGraphExec_t exec = nullptr;
  cudaGraph_t graph = nullptr;
  for (std::size_t step = 0; step < qo_steps.size(); ++step) {
    c.qo_lens = qo_steps[step];
    c.kv_lens.clear();
    for (const int32_t qo : c.qo_lens) {
      c.kv_lens.push_back((c.causal ? qo : 1) + static_cast<int32_t>(rng.integer(0, kv_extra)));
    }
    SCOPED_TRACE("step " + std::to_string(step));
    const BatchInputs in = make_inputs(c, rng);
    PagedKV paged(c, in, rng);
    ASSERT_LE(paged.cache.numel(), cache.numel());
    // Copy this step's cache and inputs into the captured buffers.
    TESSERA_CUDA_CHECK(cudaMemcpy(cache.data(), paged.cache.data(),
                                  static_cast<std::size_t>(paged.cache.numel()) * 2,
                                  cudaMemcpyDeviceToDevice));
    std::vector<float> q_host = in.q;
    q_host.resize(static_cast<std::size_t>(q.numel()), 0.f);
    q.upload(q_host);
    const std::vector<int32_t> qo_indptr = prefix_sum(c.qo_lens);
    auto upload_ints = [](DeviceTensor& t, const std::vector<int32_t>& v) {
      std::vector<int64_t> wide(v.begin(), v.end());
      wide.resize(static_cast<std::size_t>(t.numel()), 0);
      t.upload_ints(wide);
    };
    upload_ints(qo_dev, qo_indptr);
    upload_ints(indptr_dev, paged.kv_indptr);
    upload_ints(last_dev, paged.kv_last_page_len);
    upload_ints(indices_dev, paged.kv_indices);
    out.poison();
    lse.poison();
    prefill.plan(qo_indptr, paged.kv_indptr, paged.kv_last_page_len, c.causal, stream.get());
    if (!expect_tiles.empty()) EXPECT_EQ(prefill.planned_q_tile_rows(), expect_tiles[step]);
    if (exec == nullptr) {
      TESSERA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
      prefill.run(q.dl(), PagedKVCacheArg::combined(cache.dl(), c.layout), indices_dev.dl(),
                  qo_dev.dl(), indptr_dev.dl(), last_dev.dl(), out.dl(), &lse_dl, c.options,
                  stream.get(), Validate::kOff);
      TESSERA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
      TESSERA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    }
    TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
    stream.synchronize();
    const Expected e = reference_for(c, in);
    const auto rows = static_cast<std::size_t>(qo_indptr.back() * c.num_qo_heads);
    std::vector<float> got = out.download();
    got.resize(rows * static_cast<std::size_t>(c.head_dim));
    std::vector<float> got_lse = lse.download();
    got_lse.resize(rows);
    EXPECT_TRUE(testing::all_close(got, e.out, testing::tolerance_for(c.dtype)));
    EXPECT_TRUE(testing::lse_close(got_lse, e.lse, kLseTolerance));
  }
  TESSERA_CUDA_CHECK(cudaGraphExecDestroy(exec));
  TESSERA_CUDA_CHECK(cudaGraphDestroy(graph));
}

TEST(BatchPrefill, CudaGraphReplaysForChangingLengths) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  int major = 0;
  int minor = 0;
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  TESSERA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
  for (const PrefillBackend backend : testing::prefill_backends()) {
    if (backend == PrefillBackend::kFa3 && !(major == 9 && minor == 0)) continue;  // sm_90a only
    BatchCase c;
    c.page_size = 16;
    c.backend = backend;
    SCOPED_TRACE(describe(c));
    graph_replay_case(c, {{512, 512, 512, 512}, {1, 1000, 7}, {2048}, {3, 0, 100, 9, 64, 1, 1, 2}},
                      8, 2048, 2000, {}, rng);
  }
}

// The graph follows each plan's q tile: captured with 128-row tiles, then
// replayed with plans of 64-row tiles and back (32 / 8 heads, non-causal
// over short KV so the reference stays cheap).
TEST(BatchPrefill, CudaGraphReplaysAcrossQTileSizes) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  BatchCase c;
  c.num_qo_heads = 32;
  c.num_kv_heads = 8;
  c.causal = false;
  c.page_size = 16;
  graph_replay_case(c, {{1500, 600}, {3, 0, 100, 9}, {2100}, {64, 1, 1, 2}}, 4, 2100, 128,
                    {128, 64, 128, 64}, rng);
}

}  // namespace
}  // namespace tessera
