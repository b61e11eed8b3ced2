// MultiLevelCascadeAttention on the GPU against the float64 reference of
// plain attention over each request's concatenated KV (its levels' segments
// in order): 2 and 3 levels, GQA 32/8 and MHA, head dims 64 / 128, page
// sizes 1 and 16, causal on the last level or not, batch 1 and many, shared
// prefixes of 0, 1 and thousands of tokens, a CUDA graph captured once and
// replayed after later plans, rows past the plan left alone, and the run()
// errors that need a plan. Inputs rounded to their dtype first; outputs
// poisoned before each run. Tolerances as batch prefill's (one rounding of
// each level's output to the 16-bit type, then the merges: DESIGN.md's bars
// hold with room).
#include "tessera/api/cascade.h"

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
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/prefill_backends.h"
#include "support/random.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;

constexpr testing::Tolerance kLseTolerance{1e-3, 2e-3, 1e-3};
// Cache slots no level uses hold this: a wrong page read shows in the output.
constexpr float kUnusedSlot = 1000.f;

// The levels above the last: level l cuts the batch into groups of
// consecutive requests (group_sizes, summing to the batch) and gives group g
// kv_lens[g] tokens of its own. The last level is one group per request
// with unique_lens[b] tokens.
struct SharedLevel {
  std::vector<int32_t> group_sizes;
  std::vector<int32_t> kv_lens;
};

struct CascadeCase {
  std::vector<int32_t> qo_lens;  // per request
  std::vector<SharedLevel> shared;
  std::vector<int32_t> unique_lens;  // per request
  int64_t num_qo_heads = 32;
  int64_t num_kv_heads = 8;
  int64_t head_dim = 128;
  int64_t page_size = 16;
  bool causal = false;
  DType dtype = DType::kBFloat16;
  KVLayout layout = KVLayout::kNHD;
  PrefillBackend backend = PrefillBackend::kFa2;
  // The minimum workspace leaves no room for the last level's decode path.
  bool min_workspace = false;

  int64_t num_levels() const { return static_cast<int64_t>(shared.size()) + 1; }
  int64_t batch() const { return static_cast<int64_t>(qo_lens.size()); }
};

std::vector<int32_t> prefix_sum(const std::vector<int32_t>& lengths) {
  std::vector<int32_t> indptr(lengths.size() + 1, 0);
  std::partial_sum(lengths.begin(), lengths.end(), indptr.begin() + 1);
  return indptr;
}

DeviceTensor int_tensor(const std::vector<int32_t>& values, int64_t min_entries = 1) {
  DeviceTensor t(DType::kInt32,
                 {std::max<int64_t>(min_entries, static_cast<int64_t>(values.size()))});
  std::vector<int64_t> wide(values.begin(), values.end());
  wide.resize(static_cast<std::size_t>(t.numel()), 0);
  t.upload_ints(wide);
  return t;
}

// One level's page table (host).
struct LevelTable {
  std::vector<int32_t> qo_indptr, kv_indptr, kv_indices, kv_last_page_len;
};

// Everything a case needs on the host: q, the paged cache's contents, every
// level's table, and each request's concatenated K/V for the reference.
struct CascadeData {
  std::vector<float> q;
  std::vector<float> cache;  // the combined cache, in `layout`
  int64_t num_pages = 0;
  std::vector<LevelTable> levels;
  std::vector<std::vector<float>> k_concat, v_concat;  // per request, [kv_len, Hk, D]
};

// Segments (one per level group) in level order; segment s of `lens[s]`
// tokens is written onto the pages `pages[s]` of the cache.
CascadeData make_data(const CascadeCase& c, Rng& rng) {
  CascadeData d;
  const int64_t hk = c.num_kv_heads, dim = c.head_dim, page = c.page_size;
  const int64_t row = hk * dim;
  const int64_t tokens = std::accumulate(c.qo_lens.begin(), c.qo_lens.end(), int64_t{0});
  d.q = testing::round_to(c.dtype, rng.normal_vector(static_cast<std::size_t>(
                                       std::max<int64_t>(tokens, 1) * c.num_qo_heads * dim)));
  const std::vector<int32_t> token_indptr = prefix_sum(c.qo_lens);

  // (level, group) -> requests, tokens.
  struct Segment {
    int64_t level, first_request, requests, kv_len;
  };
  std::vector<Segment> segments;
  for (std::size_t l = 0; l < c.shared.size(); ++l) {
    int64_t first = 0;
    for (std::size_t g = 0; g < c.shared[l].group_sizes.size(); ++g) {
      segments.push_back(
          {static_cast<int64_t>(l), first, c.shared[l].group_sizes[g], c.shared[l].kv_lens[g]});
      first += c.shared[l].group_sizes[g];
    }
  }
  for (int64_t b = 0; b < c.batch(); ++b) {
    segments.push_back({c.num_levels() - 1, b, 1, c.unique_lens[static_cast<std::size_t>(b)]});
  }
  int64_t total_pages = 2;  // spares
  for (const Segment& s : segments) total_pages += (s.kv_len + page - 1) / page;
  d.num_pages = total_pages;
  std::vector<int32_t> perm(static_cast<std::size_t>(total_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(),
               std::mt19937(static_cast<uint32_t>(rng.integer(0, 1 << 30))));
  d.cache.assign(static_cast<std::size_t>(total_pages * 2 * page * row), kUnusedSlot);
  d.levels.resize(static_cast<std::size_t>(c.num_levels()));
  for (LevelTable& t : d.levels) {
    t.qo_indptr.push_back(0);
    t.kv_indptr.push_back(0);
  }
  d.k_concat.resize(static_cast<std::size_t>(c.batch()));
  d.v_concat.resize(static_cast<std::size_t>(c.batch()));
  std::size_t next_page = 0;
  for (const Segment& s : segments) {
    LevelTable& t = d.levels[static_cast<std::size_t>(s.level)];
    const auto n = static_cast<std::size_t>(s.kv_len * row);
    const std::vector<float> k = testing::round_to(c.dtype, rng.normal_vector(n));
    const std::vector<float> v = testing::round_to(c.dtype, rng.normal_vector(n));
    const int64_t pages = (s.kv_len + page - 1) / page;
    for (int64_t p = 0; p < pages; ++p) t.kv_indices.push_back(perm[next_page++]);
    t.kv_indptr.push_back(static_cast<int32_t>(t.kv_indices.size()));
    t.kv_last_page_len.push_back(
        static_cast<int32_t>(s.kv_len == 0 ? 0 : s.kv_len - (pages - 1) * page));
    t.qo_indptr.push_back(token_indptr[static_cast<std::size_t>(s.first_request + s.requests)]);
    for (int64_t pos = 0; pos < s.kv_len; ++pos) {
      const int64_t page_id =
          t.kv_indices[t.kv_indices.size() - static_cast<std::size_t>(pages - pos / page)];
      const int64_t slot = pos % page;
      for (int64_t h = 0; h < hk; ++h) {
        const int64_t inner =
            c.layout == KVLayout::kNHD ? (slot * hk + h) * dim : (h * page + slot) * dim;
        for (int64_t kv = 0; kv < 2; ++kv) {
          const std::vector<float>& src = kv == 0 ? k : v;
          const int64_t base = (page_id * 2 + kv) * page * row + inner;
          std::copy_n(src.begin() + (pos * hk + h) * dim, dim, d.cache.begin() + base);
        }
      }
    }
    for (int64_t b = s.first_request; b < s.first_request + s.requests; ++b) {
      auto& kc = d.k_concat[static_cast<std::size_t>(b)];
      auto& vc = d.v_concat[static_cast<std::size_t>(b)];
      kc.insert(kc.end(), k.begin(), k.end());
      vc.insert(vc.end(), v.begin(), v.end());
    }
  }
  return d;
}

struct Expected {
  std::vector<double> out, lse;
};

// Plain attention of each request's queries over its concatenated KV,
// causal (bottom-right aligned) over the whole concatenation when the case
// is causal: the same as causal on the last level when qo_len <= the
// request's unique tokens + 1, which every case keeps.
Expected reference_for(const CascadeCase& c, const CascadeData& d) {
  Expected e;
  const int64_t row = c.num_qo_heads * c.head_dim;
  int64_t offset = 0;
  for (int64_t b = 0; b < c.batch(); ++b) {
    reference::AttentionRefParams p;
    p.qo_len = c.qo_lens[static_cast<std::size_t>(b)];
    p.kv_len = static_cast<int64_t>(d.k_concat[static_cast<std::size_t>(b)].size()) /
               (c.num_kv_heads * c.head_dim);
    p.num_qo_heads = c.num_qo_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.head_dim = c.head_dim;
    p.causal = c.causal;
    const std::span<const float> qb(d.q.data() + offset * row,
                                    static_cast<std::size_t>(p.qo_len * row));
    const auto r = reference::attention_reference(qb, d.k_concat[static_cast<std::size_t>(b)],
                                                  d.v_concat[static_cast<std::size_t>(b)], p);
    e.out.insert(e.out.end(), r.out.begin(), r.out.end());
    e.lse.insert(e.lse.end(), r.lse.begin(), r.lse.end());
    offset += p.qo_len;
  }
  return e;
}

PrefillPlanShape shape_of(const CascadeCase& c) {
  return {c.num_qo_heads, c.num_kv_heads, c.head_dim, c.page_size, c.backend};
}

std::vector<CascadeLevelPlan> level_plans(const CascadeData& d) {
  std::vector<CascadeLevelPlan> plans;
  for (const LevelTable& t : d.levels) {
    plans.push_back({t.qo_indptr, t.kv_indptr, t.kv_last_page_len});
  }
  return plans;
}

// The levels' arrays on the device, and run()'s view of them.
struct DeviceLevels {
  std::vector<DeviceTensor> indices, qo_indptr, kv_indptr, last;
  std::vector<DLTensor> dl;  // 4 per level, kept alive for `arrays`
  std::vector<CascadeLevelArrays> arrays;
  explicit DeviceLevels(const CascadeData& d) {
    for (const LevelTable& t : d.levels) {
      indices.push_back(int_tensor(t.kv_indices));
      qo_indptr.push_back(int_tensor(t.qo_indptr));
      kv_indptr.push_back(int_tensor(t.kv_indptr));
      last.push_back(int_tensor(t.kv_last_page_len));
    }
    dl.reserve(4 * d.levels.size());
    for (std::size_t l = 0; l < d.levels.size(); ++l) {
      dl.push_back(indices[l].dl());
      dl.push_back(qo_indptr[l].dl());
      dl.push_back(kv_indptr[l].dl());
      dl.push_back(last[l].dl());
      arrays.push_back({&dl[4 * l], &dl[4 * l + 1], &dl[4 * l + 2], &dl[4 * l + 3]});
    }
  }
};

std::vector<int64_t> cache_shape(const CascadeCase& c, int64_t num_pages) {
  return c.layout == KVLayout::kNHD
             ? std::vector<int64_t>{num_pages, 2, c.page_size, c.num_kv_heads, c.head_dim}
             : std::vector<int64_t>{num_pages, 2, c.num_kv_heads, c.page_size, c.head_dim};
}

std::string describe(const CascadeCase& c) {
  std::string s = std::to_string(c.num_levels()) + " levels, batch " + std::to_string(c.batch()) +
                  ", heads " + std::to_string(c.num_qo_heads) + "/" +
                  std::to_string(c.num_kv_heads) + ", D " + std::to_string(c.head_dim) + ", page " +
                  std::to_string(c.page_size);
  s += c.causal ? ", causal" : ", non-causal";
  s += c.layout == KVLayout::kNHD ? ", NHD" : ", HND";
  s += std::string(", ") + dtype_name(c.dtype) + ", " + testing::prefill_backend_name(c.backend);
  s += c.min_workspace ? ", min workspace" : ", full workspace";
  return s;
}

void run_case_on_backend(const CascadeCase& c, Rng& rng, bool with_lse) {
  SCOPED_TRACE(describe(c) + (with_lse ? ", lse" : ", no lse"));
  const CascadeData d = make_data(c, rng);
  const int64_t tokens = d.levels[0].qo_indptr.back();
  const int64_t rows = std::max<int64_t>(tokens, 1);
  DeviceTensor q(c.dtype, {rows, c.num_qo_heads, c.head_dim});
  q.upload(d.q);
  DeviceTensor out(c.dtype, q.shape());
  DeviceTensor lse(DType::kFloat32, {rows, c.num_qo_heads});
  out.poison();
  lse.poison();
  DLTensor lse_dl = lse.dl();
  DeviceTensor cache(c.dtype, cache_shape(c, d.num_pages));
  cache.upload(d.cache);
  DeviceLevels levels(d);
  int64_t max_batch = 1;
  for (const LevelTable& t : d.levels) {
    max_batch = std::max<int64_t>(max_batch, static_cast<int64_t>(t.qo_indptr.size()) - 1);
  }
  const PrefillPlanBounds bounds{max_batch, rows};
  const std::size_t bytes =
      c.min_workspace ? MultiLevelCascadeAttention::min_workspace_size_bytes(
                            c.num_levels(), shape_of(c), bounds, 0)
                      : MultiLevelCascadeAttention::workspace_size_bytes(c.num_levels(),
                                                                         shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  MultiLevelCascadeAttention cascade(c.num_levels(), shape_of(c), bounds, workspace.data(), bytes,
                                     0);
  CudaStream stream;
  cascade.plan(level_plans(d), c.causal, stream.get());
  // A decode step (one token per request) runs its last level on the decode
  // kernel wherever the workspace has its room.
  const bool one_token_each = std::all_of(c.qo_lens.begin(), c.qo_lens.end(),
                                          [](int32_t n) { return n == 1; });
  const auto cache_arg = PagedKVCacheArg::combined(cache.dl(), c.layout);
  EXPECT_EQ(cascade.last_level_on_decode(cache_arg, stream.get()),
            one_token_each && !c.min_workspace);
  if (!testing::run_on_backend(c.backend, [&] {
        cascade.run(q.dl(), cache_arg, levels.arrays, out.dl(), with_lse ? &lse_dl : nullptr,
                    AttentionOptions{}, stream.get(), Validate::kOn);
      })) {
    return;
  }
  stream.synchronize();
  const Expected e = reference_for(c, d);
  std::vector<float> got = out.download();
  got.resize(e.out.size());
  EXPECT_TRUE(testing::all_close(got, e.out, testing::tolerance_for(c.dtype)));
  if (with_lse) {
    std::vector<float> got_lse = lse.download();
    got_lse.resize(e.lse.size());
    EXPECT_TRUE(testing::lse_close(got_lse, e.lse, kLseTolerance));
  }
}

// On every prefill back end, and a decode step also with the minimum
// workspace (its last level then on the prefill kernel too).
void run_case(const CascadeCase& c, Rng& rng, bool with_lse = true) {
  const bool one_token_each = std::all_of(c.qo_lens.begin(), c.qo_lens.end(),
                                          [](int32_t n) { return n == 1; });
  for (const PrefillBackend backend : testing::prefill_backends()) {
    for (const bool min_workspace : {false, true}) {
      if (min_workspace && !one_token_each) continue;
      CascadeCase on = c;
      on.backend = backend;
      on.min_workspace = min_workspace;
      run_case_on_backend(on, rng, with_lse);
    }
  }
}

// A decode step: every request one query token, one shared prefix, unique
// tails of 0 to max_unique tokens.
CascadeCase decode_step(int64_t batch, int32_t prefix, int32_t max_unique, Rng& rng) {
  CascadeCase c;
  c.qo_lens.assign(static_cast<std::size_t>(batch), 1);
  c.shared.push_back({{static_cast<int32_t>(batch)}, {prefix}});
  for (int64_t b = 0; b < batch; ++b) {
    c.unique_lens.push_back(static_cast<int32_t>(rng.integer(0, max_unique)));
  }
  return c;
}

TEST(Cascade, TwoLevelDecodeMatchesConcatenatedAttention) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t page_size : {1, 16}) {
    CascadeCase c = decode_step(13, 1000, 300, rng);
    c.page_size = page_size;
    run_case(c, rng);
    c.causal = true;  // one query per request: causal changes nothing
    run_case(c, rng);
  }
}

TEST(Cascade, TwoLevelAppendCausalAndNotMatchConcatenatedAttention) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t page_size : {1, 16}) {
    for (const bool causal : {false, true}) {
      CascadeCase c;
      c.qo_lens = {3, 17, 1, 64, 130};
      c.unique_lens = {3, 40, 1, 200, 130};  // qo_len <= unique tokens (causal: all visible)
      c.shared.push_back({{5}, {777}});
      c.page_size = page_size;
      c.causal = causal;
      run_case(c, rng);
    }
  }
}

TEST(Cascade, MhaAndHeadDim64AndFp16MatchConcatenatedAttention) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const int64_t heads[][2] = {{8, 8}, {32, 8}};
  for (const auto& h : heads) {
    for (const int64_t head_dim : {64, 128}) {
      CascadeCase c;
      c.qo_lens = {1, 9, 33};
      c.unique_lens = {5, 9, 50};
      c.shared.push_back({{3}, {513}});
      c.num_qo_heads = h[0];
      c.num_kv_heads = h[1];
      c.head_dim = head_dim;
      c.dtype = DType::kFloat16;
      c.causal = true;
      run_case(c, rng);
    }
  }
}

TEST(Cascade, ThreeLevelsMatchConcatenatedAttention) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t head_dim : {64, 128}) {
    for (const int64_t page_size : {1, 16}) {
      for (const bool causal : {false, true}) {
        CascadeCase c;
        c.qo_lens = {1, 4, 2, 8, 1, 16};
        c.unique_lens = {0, 4, 20, 8, 3, 100};
        c.shared.push_back({{6}, {1200}});            // a system prompt for all
        c.shared.push_back({{2, 3, 1}, {70, 1, 0}});  // then per-conversation prefixes
        c.head_dim = head_dim;
        c.page_size = page_size;
        c.causal = causal;
        run_case(c, rng);
      }
    }
  }
}

// Shared prefixes of 0 (that level contributes nothing: lse -inf), 1 and
// 5000 tokens, at batch 1 and 40.
TEST(Cascade, PrefixLengthsZeroOneAndLongAtBatchOneAndMany) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t batch : {1, 40}) {
    for (const int32_t prefix : {0, 1, 5000}) {
      CascadeCase c = decode_step(batch, prefix, 64, rng);
      c.unique_lens[0] = std::max<int32_t>(c.unique_lens[0], 1);
      run_case(c, rng);
    }
  }
}

// Tokens that see nothing in any level (empty prefix and empty tail) get
// out 0 and lse -inf, never NaN; HND caches read the same.
TEST(Cascade, EmptyLevelsGiveZeroAndMinusInfinityAndHndMatches) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CascadeCase c;
  c.qo_lens = {1, 1, 1};
  c.unique_lens = {0, 5, 0};
  c.shared.push_back({{2, 1}, {0, 9}});
  c.layout = KVLayout::kHND;
  run_case(c, rng);
}

// Without an lse the result's lse goes to the workspace; out is the same.
TEST(Cascade, RunWithoutLseMatchesConcatenatedAttention) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_case(decode_step(9, 300, 40, rng), rng, /*with_lse=*/false);
}

// q, out and lse larger than the plan (CUDA-graph buffers): rows past the
// planned tokens keep their poison in out and lse.
TEST(Cascade, RowsPastThePlanAreLeftAlone) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CascadeCase c = decode_step(5, 100, 20, rng);
  const CascadeData d = make_data(c, rng);
  constexpr int64_t kRows = 64;
  DeviceTensor q(c.dtype, {kRows, c.num_qo_heads, c.head_dim});
  std::vector<float> q_host = d.q;
  q_host.resize(static_cast<std::size_t>(q.numel()), 0.5f);
  q.upload(q_host);
  DeviceTensor out(c.dtype, q.shape());
  DeviceTensor lse(DType::kFloat32, {kRows, c.num_qo_heads});
  out.poison();
  lse.poison();
  DLTensor lse_dl = lse.dl();
  DeviceTensor cache(c.dtype, cache_shape(c, d.num_pages));
  cache.upload(d.cache);
  DeviceLevels levels(d);
  const PrefillPlanBounds bounds{8, kRows};
  const std::size_t bytes =
      MultiLevelCascadeAttention::workspace_size_bytes(2, shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  MultiLevelCascadeAttention cascade(2, shape_of(c), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  cascade.plan(level_plans(d), false, stream.get());
  cascade.run(q.dl(), PagedKVCacheArg::combined(cache.dl(), c.layout), levels.arrays, out.dl(),
              &lse_dl, AttentionOptions{}, stream.get(), Validate::kOn);
  stream.synchronize();
  const Expected e = reference_for(c, d);
  const std::vector<float> got = out.download();
  const std::vector<float> got_lse = lse.download();
  EXPECT_TRUE(testing::all_close(std::span(got).first(e.out.size()), e.out,
                                 testing::tolerance_for(c.dtype)));
  EXPECT_TRUE(testing::lse_close(std::span(got_lse).first(e.lse.size()), e.lse, kLseTolerance));
  const auto is_poison = [](float x) { return std::isnan(x); };
  EXPECT_TRUE(
      std::all_of(got.begin() + static_cast<std::ptrdiff_t>(e.out.size()), got.end(), is_poison));
  EXPECT_TRUE(std::all_of(got_lse.begin() + static_cast<std::ptrdiff_t>(e.lse.size()),
                          got_lse.end(), is_poison));
}

// The serving loop: run() captured once, replayed after plan() with other
// batches and lengths each step (the data copied into the captured buffers).
TEST(Cascade, CudaGraphReplaysForLaterPlans) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CascadeCase base;
  constexpr int64_t kMaxBatch = 16, kMaxTokens = 64, kMaxPages = 600;
  const PrefillPlanBounds bounds{kMaxBatch, kMaxTokens};
  const std::size_t bytes =
      MultiLevelCascadeAttention::workspace_size_bytes(2, shape_of(base), bounds, 0);
  DeviceBuffer workspace(bytes);
  MultiLevelCascadeAttention cascade(2, shape_of(base), bounds, workspace.data(), bytes, 0);
  CudaStream stream;
  DeviceTensor q(base.dtype, {kMaxTokens, base.num_qo_heads, base.head_dim});
  DeviceTensor out(base.dtype, q.shape());
  DeviceTensor lse(DType::kFloat32, {kMaxTokens, base.num_qo_heads});
  DeviceTensor cache(base.dtype, cache_shape(base, kMaxPages));
  DLTensor lse_dl = lse.dl();
  std::vector<DeviceTensor> buffers;  // per level: indices, qo_indptr, kv_indptr, last
  for (int l = 0; l < 2; ++l) {
    buffers.emplace_back(DType::kInt32, std::vector<int64_t>{kMaxPages});
    buffers.emplace_back(DType::kInt32, std::vector<int64_t>{kMaxBatch + 1});
    buffers.emplace_back(DType::kInt32, std::vector<int64_t>{kMaxBatch + 1});
    buffers.emplace_back(DType::kInt32, std::vector<int64_t>{kMaxBatch});
  }
  std::vector<DLTensor> dl;
  for (DeviceTensor& t : buffers) dl.push_back(t.dl());
  const std::vector<CascadeLevelArrays> arrays = {{&dl[0], &dl[1], &dl[2], &dl[3]},
                                                  {&dl[4], &dl[5], &dl[6], &dl[7]}};
  const auto upload = [](DeviceTensor& t, const std::vector<int32_t>& v) {
    std::vector<int64_t> wide(v.begin(), v.end());
    wide.resize(static_cast<std::size_t>(t.numel()), 0);
    t.upload_ints(wide);
  };
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  const int64_t batches[] = {16, 3, 9, 1};
  const int32_t prefixes[] = {2000, 17, 0, 4000};
  for (std::size_t step = 0; step < std::size(batches); ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const CascadeCase c = decode_step(batches[step], prefixes[step], 100, rng);
    const CascadeData d = make_data(c, rng);
    ASSERT_LE(d.num_pages, kMaxPages);
    std::vector<float> cache_host = d.cache;
    cache_host.resize(static_cast<std::size_t>(cache.numel()), kUnusedSlot);
    cache.upload(cache_host);
    std::vector<float> q_host = d.q;
    q_host.resize(static_cast<std::size_t>(q.numel()), 0.f);
    q.upload(q_host);
    for (std::size_t l = 0; l < 2; ++l) {
      upload(buffers[4 * l], d.levels[l].kv_indices);
      upload(buffers[4 * l + 1], d.levels[l].qo_indptr);
      upload(buffers[4 * l + 2], d.levels[l].kv_indptr);
      upload(buffers[4 * l + 3], d.levels[l].kv_last_page_len);
    }
    out.poison();
    lse.poison();
    cascade.plan(level_plans(d), false, stream.get());
    if (exec == nullptr) {
      TESSERA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
      cascade.run(q.dl(), PagedKVCacheArg::combined(cache.dl(), c.layout), arrays, out.dl(),
                  &lse_dl, AttentionOptions{}, stream.get(), Validate::kOff);
      TESSERA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
      TESSERA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    }
    TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
    stream.synchronize();
    const Expected e = reference_for(c, d);
    const std::vector<float> got = out.download();
    const std::vector<float> got_lse = lse.download();
    EXPECT_TRUE(testing::all_close(std::span(got).first(e.out.size()), e.out,
                                   testing::tolerance_for(c.dtype)));
    EXPECT_TRUE(testing::lse_close(std::span(got_lse).first(e.lse.size()), e.lse, kLseTolerance));
  }
  TESSERA_CUDA_CHECK(cudaGraphExecDestroy(exec));
  TESSERA_CUDA_CHECK(cudaGraphDestroy(graph));
}

// run()'s named errors, raised before any launch.
TEST(Cascade, RunRejectsBadArgumentsNamingThem) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  CascadeCase c = decode_step(4, 50, 10, rng);
  const CascadeData d = make_data(c, rng);
  DeviceTensor q(c.dtype, {4, c.num_qo_heads, c.head_dim});
  q.upload(d.q);
  DeviceTensor out(c.dtype, q.shape());
  DeviceTensor cache(c.dtype, cache_shape(c, d.num_pages));
  cache.upload(d.cache);
  DeviceLevels levels(d);
  const PrefillPlanBounds bounds{4, 4};
  const std::size_t bytes =
      MultiLevelCascadeAttention::min_workspace_size_bytes(2, shape_of(c), bounds, 0);
  DeviceBuffer workspace(bytes);
  MultiLevelCascadeAttention cascade(2, shape_of(c), bounds, workspace.data(), bytes, 0);
  const auto cache_arg = PagedKVCacheArg::combined(cache.dl(), c.layout);
  CudaStream stream;
  const auto run = [&](std::span<const CascadeLevelArrays> arrays, const DLTensor& q_arg,
                       const AttentionOptions& options) {
    return [&, arrays, options, q_copy = q_arg] {
      cascade.run(q_copy, cache_arg, arrays, out.dl(), nullptr, options, stream.get(),
                  Validate::kOff);
    };
  };
  const DLTensor q_dl = q.dl();
  testing::expect_argument_error(run(levels.arrays, q_dl, {}), "plan");
  cascade.plan(level_plans(d), false, stream.get());
  EXPECT_EQ(cascade.num_levels(), 2);
  testing::expect_argument_error(run(std::span(levels.arrays).first(1), q_dl, {}), "levels");
  std::vector<CascadeLevelArrays> missing = levels.arrays;
  missing[1].kv_last_page_len = nullptr;
  testing::expect_argument_error(run(missing, q_dl, {}), "levels[1].kv_last_page_len");
  AttentionOptions rope;
  rope.pos_encoding_mode = PosEncodingMode::kRopeLlama;
  testing::expect_argument_error(run(levels.arrays, q_dl, rope), "options");
  AttentionOptions window;
  window.window_left = 8;
  testing::expect_argument_error(run(levels.arrays, q_dl, window), "options");
  DeviceTensor short_q(c.dtype, {3, c.num_qo_heads, c.head_dim});
  const DLTensor short_dl = short_q.dl();
  testing::expect_argument_error(run(levels.arrays, short_dl, {}), "q");
  // Plan-time: level totals that disagree, a count that is not num_levels.
  std::vector<CascadeLevelPlan> plans = level_plans(d);
  const std::vector<int32_t> fewer_tokens = {0, 3};
  plans[0].qo_indptr = fewer_tokens;
  testing::expect_argument_error([&] { cascade.plan(plans, false, stream.get()); },
                                 "levels[1].qo_indptr");
  const std::vector<CascadeLevelPlan> all_levels = level_plans(d);
  testing::expect_argument_error(
      [&] { cascade.plan(std::span(all_levels).first(1), false, stream.get()); }, "levels");
}

}  // namespace
}  // namespace tessera
