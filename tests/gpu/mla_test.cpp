// BatchMlaPagedAttention on the GPU (both kernels) against the float64 reference
// (tests/reference/mla_ref.h), request by request: mixed qo_len 1 / 2 / 4 / 7
// and kv_len 0 / 1 / 63 / 64 / 65 / long, page sizes 1 / 16 / 64 on shuffled
// pages, caches and q with the strides of slices of one 576-wide tensor
// (SGLang's layout), causal and not, heads 16 / 32 / 128 (128 split and
// merged), a CUDA graph replayed for other plans within its bounds. Inputs
// rounded to the dtype; outputs poisoned first.
#include "tessera/api/mla.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "reference/mla_ref.h"
#include "support/argument_error.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;

constexpr int64_t kCkv = 512;
constexpr int64_t kKpe = 64;
constexpr int64_t kWide = kCkv + kKpe;
constexpr testing::Tolerance kLseTolerance{1e-3, 2e-3, 1e-3};

struct MlaCase {
  std::vector<int32_t> qo_lens;
  std::vector<int32_t> kv_lens;
  int64_t heads = 16;
  int64_t page_size = 16;
  bool causal = true;
  DType dtype = DType::kBFloat16;
  bool wide_q = false;  // q_nope / q_pe with a [tokens, heads, 576] tensor's strides
};

// One batch on the device: q, the paged latent cache (rows of every request
// on shuffled pages; unused slots NaN), index arrays, poisoned outputs.
struct MlaBatch {
  MlaCase c;
  std::vector<int32_t> qo_indptr, kv_indptr, kv_indices;
  std::vector<float> q_nope, q_pe;           // [tokens, heads, 512 / 64]
  std::vector<std::vector<float>> ckv, kpe;  // per request, [kv_len, 512 / 64]
  int64_t pages = 0;

  MlaBatch(const MlaCase& mc, testing::Rng& rng) : c(mc) {
    qo_indptr = {0};
    kv_indptr = {0};
    for (std::size_t b = 0; b < c.qo_lens.size(); ++b) {
      qo_indptr.push_back(qo_indptr.back() + c.qo_lens[b]);
      const int32_t pages_b = static_cast<int32_t>((c.kv_lens[b] + c.page_size - 1) / c.page_size);
      kv_indptr.push_back(kv_indptr.back() + pages_b);
    }
    pages = kv_indptr.back() + 3;  // spare pages nobody reads
    std::vector<int32_t> order(static_cast<std::size_t>(pages));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng.engine());
    kv_indices.assign(order.begin(), order.begin() + kv_indptr.back());
    const int64_t tokens = qo_indptr.back();
    q_nope = testing::round_to(c.dtype, rng.normal_vector(tokens * c.heads * kCkv, 0.f, 0.05f));
    q_pe = testing::round_to(c.dtype, rng.normal_vector(tokens * c.heads * kKpe, 0.f, 0.5f));
    for (std::size_t b = 0; b < c.kv_lens.size(); ++b) {
      ckv.push_back(testing::round_to(c.dtype, rng.normal_vector(c.kv_lens[b] * kCkv)));
      kpe.push_back(testing::round_to(c.dtype, rng.normal_vector(c.kv_lens[b] * kKpe)));
    }
  }

  // The [pages, page_size, 576] layout's values, NaN where no request lives.
  std::vector<float> latent_buffer() const {
    std::vector<float> buffer(static_cast<std::size_t>(pages * c.page_size * kWide), NAN);
    for (std::size_t b = 0; b < c.kv_lens.size(); ++b) {
      for (int32_t j = 0; j < c.kv_lens[b]; ++j) {
        const int64_t page = kv_indices[kv_indptr[b] + j / c.page_size];
        float* row = buffer.data() + (page * c.page_size + j % c.page_size) * kWide;
        std::copy_n(ckv[b].data() + j * kCkv, kCkv, row);
        std::copy_n(kpe[b].data() + j * kKpe, kKpe, row + kCkv);
      }
    }
    return buffer;
  }
};

// The cache as two strided views ([pages, page_size, 512] and [.., 64],
// entry stride 576), each uploaded from the 576-wide layout's values.
struct LatentCache {
  DeviceTensor ckv, kpe;
  LatentCache(const MlaBatch& batch)
      : ckv(batch.c.dtype, {batch.pages, batch.c.page_size, kCkv},
            {batch.c.page_size * kWide, kWide, 1}),
        kpe(batch.c.dtype, {batch.pages, batch.c.page_size, kKpe},
            {batch.c.page_size * kWide, kWide, 1}) {
    const std::vector<float> buffer = batch.latent_buffer();
    std::vector<float> a, b;
    for (int64_t r = 0; r < batch.pages * batch.c.page_size; ++r) {
      a.insert(a.end(), buffer.begin() + r * kWide, buffer.begin() + r * kWide + kCkv);
      b.insert(b.end(), buffer.begin() + r * kWide + kCkv, buffer.begin() + (r + 1) * kWide);
    }
    ckv.upload(a);
    kpe.upload(b);
  }
};

DeviceTensor int_tensor(const std::vector<int32_t>& values) {
  DeviceTensor t(DType::kInt32, {static_cast<int64_t>(std::max<std::size_t>(values.size(), 1))});
  std::vector<int64_t> v(values.begin(), values.end());
  if (v.empty()) v.push_back(0);
  t.upload_ints(v);
  return t;
}

// Runs `batch` through `mla` (planned here) and checks every request.
void run_and_check(BatchMlaPagedAttention& mla, const MlaBatch& batch, double sm_scale) {
  const MlaCase& c = batch.c;
  const int64_t tokens = batch.qo_indptr.back();
  const int64_t q_width = c.wide_q ? kWide : kCkv;
  DeviceTensor q_nope(c.dtype, {tokens, c.heads, kCkv}, {c.heads * q_width, q_width, 1});
  DeviceTensor q_pe(c.dtype, {tokens, c.heads, kKpe},
                    c.wide_q ? std::vector<int64_t>{c.heads * kWide, kWide, 1}
                             : testing::contiguous_strides({tokens, c.heads, kKpe}));
  q_nope.upload(batch.q_nope);
  q_pe.upload(batch.q_pe);
  LatentCache cache(batch);
  DeviceTensor out(c.dtype, {tokens, c.heads, kCkv});
  DeviceTensor lse(DType::kFloat32, {tokens, c.heads});
  out.poison();
  lse.poison();
  std::vector<int32_t> kv_len(c.kv_lens.begin(), c.kv_lens.end());
  DeviceTensor d_qo = int_tensor(batch.qo_indptr), d_kv = int_tensor(batch.kv_indptr),
               d_len = int_tensor(kv_len), d_idx = int_tensor(batch.kv_indices);
  mla.plan(batch.qo_indptr, batch.kv_indptr, kv_len, c.causal, nullptr);
  DLTensor lse_dl = lse.dl();
  mla.run(q_nope.dl(), q_pe.dl(), cache.ckv.dl(), cache.kpe.dl(), d_idx.dl(), d_qo.dl(), d_kv.dl(),
          d_len.dl(), out.dl(), &lse_dl, {.sm_scale = sm_scale}, nullptr, Validate::kOn);
  TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = out.download();
  const std::vector<float> got_lse = lse.download();
  for (std::size_t b = 0; b < c.qo_lens.size(); ++b) {
    SCOPED_TRACE("request " + std::to_string(b) + ": qo_len " + std::to_string(c.qo_lens[b]) +
                 ", kv_len " + std::to_string(c.kv_lens[b]));
    const int64_t q0 = batch.qo_indptr[b];
    const int64_t n = c.qo_lens[b];
    const auto q_rows = [&](const std::vector<float>& v, int64_t width) {
      return std::span<const float>(v).subspan(q0 * c.heads * width, n * c.heads * width);
    };
    const reference::MlaRefResult ref = reference::mla_attention(
        q_rows(batch.q_nope, kCkv), q_rows(batch.q_pe, kKpe), batch.ckv[b], batch.kpe[b], n,
        c.kv_lens[b], c.heads, kCkv, kKpe, c.causal, sm_scale);
    EXPECT_TRUE(testing::all_close(q_rows(got, kCkv), ref.out, testing::tolerance_for(c.dtype)));
    EXPECT_TRUE(testing::lse_close(q_rows(got_lse, 1), ref.lse, kLseTolerance));
  }
}

// Every test on both kernels: fa3 (Hopper) and fa2 (mma.sync, sm80+ with
// 144 KB of shared memory per block).
struct Mla : ::testing::TestWithParam<PrefillBackend> {
  void SetUp() override {
    TESSERA_REQUIRE_GPU();
    if (GetParam() == PrefillBackend::kFa3 && !testing::device_is_sm90()) {
      GTEST_SKIP() << "fa3 needs an sm_90 GPU";
    }
    int per_block = 0;
    TESSERA_CUDA_CHECK(
        cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    if (per_block < 144 * 1024) GTEST_SKIP() << "fa2 needs 144 KB of shared memory per block";
  }
  PrefillBackend backend() const { return GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(Backends, Mla,
                         ::testing::Values(PrefillBackend::kFa2, PrefillBackend::kFa3),
                         [](const ::testing::TestParamInfo<PrefillBackend>& info) {
                           return info.param == PrefillBackend::kFa2 ? "fa2" : "fa3";
                         });

void check_case(PrefillBackend backend, const MlaCase& c, MlaPlanBounds bounds = {}) {
  TESSERA_SEEDED_RNG(rng);
  const MlaBatch batch(c, rng);
  if (bounds.max_batch_size == 0) {
    bounds = {static_cast<int64_t>(c.qo_lens.size()), batch.qo_indptr.back()};
  }
  const MlaPlanShape shape{.num_heads = c.heads, .page_size = c.page_size, .backend = backend};
  const std::size_t bytes = BatchMlaPagedAttention::workspace_size_bytes(shape, bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchMlaPagedAttention mla(shape, bounds, workspace.data(), bytes, 0);
  run_and_check(mla, batch, 1.0 / std::sqrt(192.0));
}

TEST_P(Mla, MixedBatchMatchesReferenceOnEveryPageSize) {
  for (const int64_t page : {1, 16, 64}) {
    for (const bool causal : {true, false}) {
      SCOPED_TRACE("page_size " + std::to_string(page) + (causal ? " causal" : ""));
      check_case(backend(), {.qo_lens = {1, 2, 4, 7, 1, 2},
                             .kv_lens = {0, 1, 63, 64, 65, 300},
                             .heads = 16,
                             .page_size = page,
                             .causal = causal});
    }
  }
}

TEST_P(Mla, WideQueryStridesMatchReference) {
  check_case(backend(), {.qo_lens = {3, 1, 5},
                         .kv_lens = {70, 1, 130},
                         .heads = 16,
                         .page_size = 16,
                         .causal = true,
                         .wide_q = true});
}

TEST_P(Mla, DecodeBatchFp16MatchesReference) {
  check_case(backend(),
             {.qo_lens = std::vector<int32_t>(40, 1),
              .kv_lens = {1,   7,  64, 65, 129, 513, 1000, 2,   3,   4,   5,   6,   7,   8,
                          9,   10, 11, 12, 13,  14,  100,  200, 300, 400, 500, 600, 700, 800,
                          900, 1,  1,  1,  1,   1,   1,    1,   1,   1,   1,   1},
              .heads = 32,
              .page_size = 64,
              .causal = false,
              .dtype = DType::kFloat16});
}

TEST_P(Mla, LongKvSplitsAndMerges) {
  // Few rows on 4097 keys: the planner splits KV over the SMs.
  check_case(backend(),
             {.qo_lens = {2}, .kv_lens = {4097}, .heads = 128, .page_size = 64, .causal = true});
  check_case(
      backend(),
      {.qo_lens = {1, 1}, .kv_lens = {4097, 6000}, .heads = 16, .page_size = 1, .causal = false});
}

// One graph captured for the bounds replays for later plans of other
// batches and lengths: the fixed buffers get each batch's values, the plan
// its schedule (and, fa3, the job counter its reset by the kernel's last CTA).
TEST_P(Mla, GraphReplaysForOtherPlansWithinBounds) {
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kHeads = 16, kPage = 16, kMaxBatch = 4, kMaxTokens = 12, kMaxPages = 160;
  const MlaPlanShape shape{.num_heads = kHeads, .page_size = kPage, .backend = backend()};
  const MlaPlanBounds bounds{kMaxBatch, kMaxTokens};
  const std::size_t bytes = BatchMlaPagedAttention::workspace_size_bytes(shape, bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchMlaPagedAttention mla(shape, bounds, workspace.data(), bytes, 0);
  const DType dtype = DType::kBFloat16;
  DeviceTensor q_nope(dtype, {kMaxTokens, kHeads, kCkv}), q_pe(dtype, {kMaxTokens, kHeads, kKpe});
  DeviceTensor ckv(dtype, {kMaxPages, kPage, kCkv}), kpe(dtype, {kMaxPages, kPage, kKpe});
  DeviceTensor out(dtype, {kMaxTokens, kHeads, kCkv}), lse(DType::kFloat32, {kMaxTokens, kHeads});
  DeviceTensor d_qo(DType::kInt32, {kMaxBatch + 1}), d_kv(DType::kInt32, {kMaxBatch + 1});
  DeviceTensor d_len(DType::kInt32, {kMaxBatch}), d_idx(DType::kInt32, {kMaxPages});
  CudaStream stream;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  const double sm_scale = 1.0 / std::sqrt(192.0);
  const std::vector<MlaCase> steps = {
      {.qo_lens = {1, 1, 1, 1},
       .kv_lens = {40, 7, 300, 1},
       .heads = kHeads,
       .page_size = kPage,
       .causal = true},
      {.qo_lens = {12}, .kv_lens = {2000}, .heads = kHeads, .page_size = kPage, .causal = true},
      {.qo_lens = {3, 2}, .kv_lens = {0, 65}, .heads = kHeads, .page_size = kPage, .causal = true}};
  for (std::size_t step = 0; step < steps.size(); ++step) {
    SCOPED_TRACE("plan " + std::to_string(step));
    const MlaBatch batch(steps[step], rng);
    ASSERT_LE(batch.pages, kMaxPages);
    const auto padded = [](std::vector<float> v, int64_t n) {
      v.resize(static_cast<std::size_t>(n), 0.f);
      return v;
    };
    q_nope.upload(padded(batch.q_nope, q_nope.numel()));
    q_pe.upload(padded(batch.q_pe, q_pe.numel()));
    const std::vector<float> buffer = batch.latent_buffer();
    std::vector<float> a(static_cast<std::size_t>(ckv.numel()), 0.f);
    std::vector<float> b(static_cast<std::size_t>(kpe.numel()), 0.f);
    for (int64_t r = 0; r < batch.pages * kPage; ++r) {
      std::copy_n(buffer.begin() + r * kWide, kCkv, a.begin() + r * kCkv);
      std::copy_n(buffer.begin() + r * kWide + kCkv, kKpe, b.begin() + r * kKpe);
    }
    ckv.upload(a);
    kpe.upload(b);
    const auto ints = [](const std::vector<int32_t>& v, int64_t n) {
      std::vector<int64_t> w(v.begin(), v.end());
      w.resize(static_cast<std::size_t>(n), 0);
      return w;
    };
    std::vector<int32_t> kv_len(batch.c.kv_lens.begin(), batch.c.kv_lens.end());
    d_qo.upload_ints(ints(batch.qo_indptr, kMaxBatch + 1));
    d_kv.upload_ints(ints(batch.kv_indptr, kMaxBatch + 1));
    d_len.upload_ints(ints(kv_len, kMaxBatch));
    d_idx.upload_ints(ints(batch.kv_indices, kMaxPages));
    out.poison();
    lse.poison();
    mla.plan(batch.qo_indptr, batch.kv_indptr, kv_len, true, stream.get());
    DLTensor lse_dl = lse.dl();
    if (exec == nullptr) {
      TESSERA_CUDA_CHECK(cudaStreamBeginCapture(stream.get(), cudaStreamCaptureModeThreadLocal));
      mla.run(q_nope.dl(), q_pe.dl(), ckv.dl(), kpe.dl(), d_idx.dl(), d_qo.dl(), d_kv.dl(),
              d_len.dl(), out.dl(), &lse_dl, {.sm_scale = sm_scale}, stream.get(), Validate::kOff);
      TESSERA_CUDA_CHECK(cudaStreamEndCapture(stream.get(), &graph));
      TESSERA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    }
    TESSERA_CUDA_CHECK(cudaGraphLaunch(exec, stream.get()));
    stream.synchronize();
    const std::vector<float> got = out.download();
    const std::vector<float> got_lse = lse.download();
    for (std::size_t r = 0; r < batch.c.qo_lens.size(); ++r) {
      const int64_t q0 = batch.qo_indptr[r];
      const int64_t n = batch.c.qo_lens[r];
      const auto rows = [&](const std::vector<float>& v, int64_t width) {
        return std::span<const float>(v).subspan(q0 * kHeads * width, n * kHeads * width);
      };
      const reference::MlaRefResult ref = reference::mla_attention(
          rows(batch.q_nope, kCkv), rows(batch.q_pe, kKpe), batch.ckv[r], batch.kpe[r], n,
          batch.c.kv_lens[r], kHeads, kCkv, kKpe, true, sm_scale);
      EXPECT_TRUE(testing::all_close(rows(got, kCkv), ref.out, testing::tolerance_for(dtype)));
      EXPECT_TRUE(testing::lse_close(rows(got_lse, 1), ref.lse, kLseTolerance));
    }
  }
  TESSERA_CUDA_CHECK(cudaGraphExecDestroy(exec));
  TESSERA_CUDA_CHECK(cudaGraphDestroy(graph));
}

TEST_P(Mla, NamesBadArguments) {
  const MlaPlanBounds bounds{4, 16};
  testing::expect_argument_error(
      [&] {
        BatchMlaPagedAttention::workspace_size_bytes(
            {.num_heads = 16, .head_dim_ckv = 256, .page_size = 16}, bounds, 0);
      },
      "head_dim_ckv");
  const MlaPlanShape shape{.num_heads = 16, .page_size = 16, .backend = backend()};
  const std::size_t bytes = BatchMlaPagedAttention::workspace_size_bytes(shape, bounds, 0);
  DeviceBuffer workspace(bytes);
  BatchMlaPagedAttention mla(shape, bounds, workspace.data(), bytes, 0);
  const std::vector<int32_t> qo = {0, 1}, kv = {0, 1};
  testing::expect_argument_error([&] { mla.plan(qo, kv, std::vector<int32_t>{17}, true, nullptr); },
                                 "kv_len");
  mla.plan(qo, kv, std::vector<int32_t>{16}, true, nullptr);
  DeviceTensor q_nope(DType::kBFloat16, {1, 16, kCkv}), q_pe(DType::kBFloat16, {1, 16, kKpe});
  DeviceTensor ckv(DType::kFloat16, {1, 16, kCkv}), kpe(DType::kBFloat16, {1, 16, kKpe});
  DeviceTensor out(DType::kBFloat16, {1, 16, kCkv});
  DeviceTensor d_qo = int_tensor(qo), d_kv = int_tensor(kv), d_len = int_tensor({16}),
               d_idx = int_tensor({0});
  testing::expect_argument_error(
      [&] {
        mla.run(q_nope.dl(), q_pe.dl(), ckv.dl(), kpe.dl(), d_idx.dl(), d_qo.dl(), d_kv.dl(),
                d_len.dl(), out.dl(), nullptr, {.sm_scale = 0.1}, nullptr);
      },
      "ckv_cache");
}

}  // namespace
}  // namespace tessera
