// Sampling family on the GPU against the exact float64 filtered distributions
// (tests/reference/sampling_ref.h): every draw inside the kept set, and the
// empirical distribution of many draws within a total-variation bound of the
// exact one; edge cases, per-request parameters, the exact fallback alone,
// NaN rows, bitwise reproducibility, and the renorm / mask outputs.
//
// Many draws from one distribution: a [draws, vocab] probs tensor whose rows
// all alias one row (row stride 0), so one launch gives `draws` independent
// samples (one uniform column each) without copying the row.
#include "tessera/api/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "reference/sampling_ref.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/random.h"
#include "tessera/core/cuda_check.h"

namespace tessera {
namespace {

using reference::SamplingFilter;
using testing::DeviceTensor;
using testing::Rng;

constexpr int kRounds = 32;  // FlashInfer's default uniform rows per call
// Draws per distribution check: the bound below scales with 1/sqrt(draws).
constexpr int64_t kDraws = 16384;
constexpr int64_t kMaxBatch = 4096;  // draws per launch
// Token buckets for the distance (token % kBuckets): with a 128k vocabulary a
// per-token distance would be all noise at 16k draws.
constexpr int64_t kBuckets = 256;

enum class Sampler { kPlain, kTopK, kTopP, kMinP, kJoint, kTopKFirst };

struct Case {
  Sampler sampler;
  SamplingFilter filter;
  std::string name;
};

std::vector<float> softmax_row(Rng& rng, int64_t vocab, float scale) {
  std::vector<float> logits = rng.normal_vector(vocab, 0.f, scale);
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float& x : logits) sum += (x = std::exp(x - max));
  for (float& x : logits) x = static_cast<float>(x / sum);
  return logits;
}

// Nearly equal entries: the threshold's radix bucket of the first pass holds
// most of the row (over the 4096 keys the second pass can set aside), so the
// search reads the row a third time; with 3000 entries it reads the set-aside
// keys instead.
std::vector<float> crowded_row(Rng& rng, int64_t vocab) {
  std::vector<float> row = rng.uniform_vector(static_cast<std::size_t>(vocab), 1.f, 1.001f);
  for (float& x : row) x /= static_cast<float>(vocab);
  return row;
}

// One sampler call over `batch` aliases of `row` on the device.
struct DeviceRow {
  DeviceTensor row;
  int64_t vocab;
  explicit DeviceRow(const std::vector<float>& values)
      : row(DType::kFloat32, {static_cast<int64_t>(values.size())}),
        vocab(static_cast<int64_t>(values.size())) {
    row.upload(values);
  }
  DLTensor rows(int64_t batch, std::vector<int64_t>& shape, std::vector<int64_t>& strides) {
    shape = {batch, vocab};
    strides = {0, 1};
    DLTensor t = row.dl();
    t.ndim = 2;
    t.shape = shape.data();
    t.strides = strides.data();
    return t;
  }
};

struct Draws {
  std::vector<int64_t> tokens;
  std::vector<int64_t> success;
};

void call_sampler(const Case& c, const DLTensor& probs, DeviceTensor& uniforms,
                  const SamplingOutputs& out, const DLTensor* top_k_arr = nullptr,
                  const DLTensor* top_p_arr = nullptr) {
  DLTensor u = uniforms.dl();
  switch (c.sampler) {
    case Sampler::kPlain:
      return sampling_from_probs(probs, u, out, nullptr);
    case Sampler::kTopK:
      return top_k_sampling_from_probs(probs, u, top_k_arr, c.filter.top_k, out, nullptr);
    case Sampler::kTopP:
      return top_p_sampling_from_probs(probs, u, top_p_arr, c.filter.top_p, out, nullptr);
    case Sampler::kMinP:
      return min_p_sampling_from_probs(probs, u, nullptr, c.filter.min_p, out, nullptr);
    case Sampler::kJoint:
      return top_k_top_p_sampling_from_probs(probs, u, top_k_arr, c.filter.top_k, top_p_arr,
                                             c.filter.top_p, out, nullptr);
    case Sampler::kTopKFirst:
      break;  // two calls, below
  }
  ADD_FAILURE() << "top_k_first runs through draw()";
}

// `draws` samples of `c` from `values`, `max_batch` rows per launch (the
// batch size picks the kernel: small batches take the cluster path on sm90).
Draws draw(const std::vector<float>& values, const Case& c, int64_t draws, Rng& rng,
           int rounds = kRounds, int64_t max_batch = kMaxBatch) {
  DeviceRow device_row(values);
  Draws result;
  // top_k_first: the top-k renormalised row, then top-p sampling from it.
  std::vector<float> renormed;
  if (c.sampler == Sampler::kTopKFirst) {
    DeviceTensor one(DType::kFloat32, {1, device_row.vocab});
    DeviceTensor out(DType::kFloat32, {1, device_row.vocab});
    one.upload(values);
    DLTensor in_dl = one.dl(), out_dl = out.dl();
    top_k_renorm_probs(in_dl, nullptr, c.filter.top_k, out_dl, nullptr);
    renormed = out.download();
  }
  DeviceRow sampled_row(c.sampler == Sampler::kTopKFirst ? renormed : values);
  const Case run = c.sampler == Sampler::kTopKFirst
                       ? Case{Sampler::kTopP, {.top_p = c.filter.top_p}, c.name}
                       : c;
  for (int64_t done = 0; done < draws;) {
    const int64_t batch = std::min(max_batch, draws - done);
    std::vector<int64_t> shape, strides;
    const DLTensor probs = sampled_row.rows(batch, shape, strides);
    DeviceTensor uniforms(DType::kFloat32, {rounds, batch});
    uniforms.upload(rng.uniform_vector(static_cast<std::size_t>(rounds * batch), 0.f, 1.f));
    DeviceTensor samples(DType::kInt32, {batch});
    DeviceTensor success(DType::kUInt8, {batch});
    samples.poison();
    DLTensor samples_dl = samples.dl(), success_dl = success.dl();
    call_sampler(run, probs, uniforms, {samples_dl, &success_dl});
    TESSERA_CUDA_CHECK(cudaDeviceSynchronize());
    const auto tokens = samples.download_ints();
    const auto ok = success.download_ints();
    result.tokens.insert(result.tokens.end(), tokens.begin(), tokens.end());
    result.success.insert(result.success.end(), ok.begin(), ok.end());
    done += batch;
  }
  return result;
}

// Expected total variation of `draws` multinomial draws from q (the
// half-normal mean of each bucket's deviation), for the bound below.
double expected_noise(const std::vector<double>& q, int64_t draws) {
  double sum = 0.0;
  for (double p : q) sum += std::sqrt(2.0 * p * (1.0 - p) / (M_PI * static_cast<double>(draws)));
  return sum / 2.0;
}

std::vector<double> bucketed(const std::vector<double>& dist) {
  std::vector<double> buckets(std::min<int64_t>(kBuckets, dist.size()), 0.0);
  for (size_t i = 0; i < dist.size(); ++i) buckets[i % buckets.size()] += dist[i];
  return buckets;
}

// Every draw succeeded and lies in the kept set (with a 1e-4 top-p slack for
// float32 vs float64 sums at the boundary); the bucketed empirical
// distribution is within 2x the expected sampling noise (+0.005) of the
// exact filtered one.
void expect_matches_filter(const std::vector<float>& row, const Case& c, const Draws& draws) {
  SCOPED_TRACE(c.name + ", vocab " + std::to_string(row.size()));
  SamplingFilter loose = c.filter;
  if (loose.top_p < 1.0) loose.top_p = std::min(1.0, loose.top_p + 1e-4);
  const std::vector<bool> allowed = reference::kept_entries(row, loose);
  int64_t outside = 0, failed = 0;
  for (size_t i = 0; i < draws.tokens.size(); ++i) {
    const int64_t t = draws.tokens[i];
    if (t < 0 || t >= static_cast<int64_t>(row.size()) || !allowed[t]) ++outside;
    if (draws.success[i] != 1) ++failed;
  }
  EXPECT_EQ(outside, 0) << "draws outside the kept set";
  EXPECT_EQ(failed, 0) << "draws without success";

  const std::vector<double> exact = bucketed(reference::filtered_distribution(row, c.filter));
  std::vector<int64_t> counts(exact.size(), 0);
  for (int64_t t : draws.tokens) {
    if (t >= 0 && t < static_cast<int64_t>(row.size())) ++counts[t % exact.size()];
  }
  const int64_t n = static_cast<int64_t>(draws.tokens.size());
  // A sum of k bucket deviations has a relative spread of about 0.75 / sqrt(k):
  // 2x its mean (+0.005) is over 4 standard deviations at k = 20, while a
  // wrong filter or a biased draw moves whole buckets.
  EXPECT_LT(reference::total_variation(exact, counts), 2.0 * expected_noise(exact, n) + 0.005);
}

std::vector<Case> filter_cases() {
  return {
      {Sampler::kPlain, {}, "sampling_from_probs"},
      {Sampler::kTopK, {.top_k = 1}, "top_k=1"},
      {Sampler::kTopK, {.top_k = 20}, "top_k=20"},
      {Sampler::kTopK, {.top_k = 1000}, "top_k=1000"},
      {Sampler::kTopP, {.top_p = 0.5}, "top_p=0.5"},
      {Sampler::kTopP, {.top_p = 0.9}, "top_p=0.9"},
      {Sampler::kTopP, {.top_p = 1.0}, "top_p=1"},
      {Sampler::kMinP, {.min_p = 0.0}, "min_p=0"},
      {Sampler::kMinP, {.min_p = 0.1}, "min_p=0.1"},
      {Sampler::kJoint, {.top_k = 50, .top_p = 0.7}, "joint k=50 p=0.7"},
      {Sampler::kTopKFirst, {.top_k = 50, .top_p = 0.7, .top_k_first = true}, "top_k_first"},
  };
}

// ---- Distribution checks: vocab x (peaked, flat) --------------------------

struct Shape {
  int64_t vocab;
  float logit_scale;  // softmax(scale * N(0, 1)): 3 peaked, 0.1 nearly flat
};

class SamplingDistribution : public ::testing::TestWithParam<Shape> {};

TEST_P(SamplingDistribution, DrawsFollowTheExactFilteredDistribution) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const Shape shape = GetParam();
  const std::vector<float> row = softmax_row(rng, shape.vocab, shape.logit_scale);
  for (const Case& c : filter_cases()) {
    expect_matches_filter(row, c, draw(row, c, kDraws, rng));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SamplingDistribution,
                         ::testing::Values(Shape{111, 3.f}, Shape{111, 0.1f}, Shape{32000, 3.f},
                                           Shape{32000, 0.1f}, Shape{128256, 3.f},
                                           Shape{128256, 0.1f}),
                         [](const auto& info) {
                           return "vocab" + std::to_string(info.param.vocab) +
                                  (info.param.logit_scale > 1.f ? "_peaked" : "_flat");
                         });

// ---- Edge cases ---------------------------------------------------------

TEST(SamplingEdge, TopKOneAlwaysGivesTheArgmax) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const std::vector<float> row = softmax_row(rng, 32000, 1.f);
  const int64_t argmax = std::max_element(row.begin(), row.end()) - row.begin();
  for (const Case& c : {Case{Sampler::kTopK, {.top_k = 1}, "top_k=1"},
                        Case{Sampler::kJoint, {.top_k = 1, .top_p = 0.99}, "joint k=1"},
                        Case{Sampler::kMinP, {.min_p = 1.0}, "min_p=1"}}) {
    const Draws d = draw(row, c, 2048, rng);
    EXPECT_EQ(std::count(d.tokens.begin(), d.tokens.end(), argmax), 2048) << c.name;
  }
}

TEST(SamplingEdge, RowWithOneNonZeroEntryAlwaysGivesIt) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (int64_t vocab : {111, 128256}) {
    std::vector<float> row(vocab, 0.f);
    const int64_t only = rng.integer(0, vocab - 1);
    row[only] = 1.f;
    for (const Case& c : filter_cases()) {
      const Draws d = draw(row, c, 1024, rng);
      EXPECT_EQ(std::count(d.tokens.begin(), d.tokens.end(), only), 1024) << c.name;
    }
  }
}

TEST(SamplingEdge, TiesAtTheTopKThresholdAreKeptTogether) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Four tied at 0.2, the rest share 0.2: top_k = 2 keeps the four, equally.
  std::vector<float> row(1000, 0.2f / 996);
  for (int64_t i : {3, 300, 600, 999}) row[i] = 0.2f;
  const Case c{Sampler::kTopK, {.top_k = 2}, "ties top_k=2"};
  const Draws d = draw(row, c, kDraws, rng);
  expect_matches_filter(row, c, d);
  for (int64_t i : {3, 300, 600, 999}) {
    EXPECT_NEAR(std::count(d.tokens.begin(), d.tokens.end(), i) / double(kDraws), 0.25, 0.03);
  }
}

TEST(SamplingEdge, CrowdedThresholdBucketGivesTheFilteredDistribution) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Most of the row in one radix bucket of the first pass: the third pass
  // reads the row (32000) or the set-aside keys (3000); top-p alone takes
  // the rejection rounds on the same row.
  for (int64_t vocab : {3000, 32000}) {
    const std::vector<float> row = crowded_row(rng, vocab);
    for (const Case& c : {Case{Sampler::kTopK, {.top_k = 20}, "top_k=20"},
                          Case{Sampler::kTopP, {.top_p = 0.5}, "top_p=0.5"},
                          Case{Sampler::kJoint, {.top_k = 1000, .top_p = 0.3}, "joint"}}) {
      expect_matches_filter(row, c, draw(row, c, kDraws, rng));
    }
  }
}

TEST(SamplingEdge, ExactFallbackAloneGivesTheFilteredDistribution) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const std::vector<float> row = softmax_row(rng, 32000, 0.5f);
  // One uniform row: no rejection round, the bisection finds the threshold.
  for (int rounds : {1, 2}) {
    for (const Case& c : {Case{Sampler::kTopK, {.top_k = 100}, "top_k=100"},
                          Case{Sampler::kTopP, {.top_p = 0.3}, "top_p=0.3"},
                          Case{Sampler::kJoint, {.top_k = 10, .top_p = 0.5}, "joint"}}) {
      SCOPED_TRACE("rounds " + std::to_string(rounds));
      expect_matches_filter(row, c, draw(row, c, kDraws, rng, rounds));
    }
  }
}

// ---- Small batches: a cluster of CTAs per row (sm90) ----------------------
//
// Batches of 1 / 2 / 7 / 32 rows pick the cluster kernel on an sm90 GPU
// (row_split.h: 16 CTAs per row up to ~14 rows on an H100, 8 at 32; vocab
// 111 gets 2); elsewhere they run the one-CTA kernel and these tests still
// hold. Every sampler has a cluster path: the rejection samplers (plain,
// top-p, min-p) over cluster-wide stats passes, top-k and joint top-k +
// top-p by the radix search over cluster-summed histograms.

// The samplers of one API call (top_k_first is two).
std::vector<Case> single_call_cases() {
  std::vector<Case> cases = filter_cases();
  std::erase_if(cases, [](const Case& c) { return c.sampler == Sampler::kTopKFirst; });
  return cases;
}

struct SmallBatch {
  int64_t vocab;
  int64_t batch;
};

class SamplingSmallBatch : public ::testing::TestWithParam<SmallBatch> {};

TEST_P(SamplingSmallBatch, DrawsFollowTheExactFilteredDistribution) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const SmallBatch shape = GetParam();
  // 512 launches per case: fewer draws at batch 1 and 2 (the bound widens
  // with 1 / sqrt(draws)).
  const int64_t draws = std::min<int64_t>(kDraws, shape.batch * 512);
  for (const float scale : {3.f, 0.1f}) {
    const std::vector<float> row = softmax_row(rng, shape.vocab, scale);
    for (const Case& c : single_call_cases()) {
      SCOPED_TRACE("batch " + std::to_string(shape.batch) + ", logit scale " +
                   std::to_string(scale));
      expect_matches_filter(row, c, draw(row, c, draws, rng, kRounds, shape.batch));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SamplingSmallBatch,
    ::testing::Values(SmallBatch{111, 1}, SmallBatch{111, 7}, SmallBatch{32000, 1},
                      SmallBatch{32000, 2}, SmallBatch{32000, 7}, SmallBatch{32000, 32},
                      SmallBatch{128256, 1}, SmallBatch{128256, 2}, SmallBatch{128256, 7},
                      SmallBatch{128256, 32}),
    [](const auto& info) {
      return "vocab" + std::to_string(info.param.vocab) + "_batch" +
             std::to_string(info.param.batch);
    });

TEST(SamplingSmallBatch, ExactFallbackAloneGivesTheFilteredDistribution) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Bisection with stats summed across the cluster.
  const std::vector<float> row = softmax_row(rng, 128256, 0.5f);
  for (int rounds : {1, 2}) {
    SCOPED_TRACE("rounds " + std::to_string(rounds));
    const Case c{Sampler::kTopP, {.top_p = 0.3}, "top_p=0.3"};
    expect_matches_filter(row, c, draw(row, c, 4096, rng, rounds, 8));
  }
}

TEST(SamplingSmallBatch, OnlyNonZeroEntryInAnySliceIsAlwaysDrawn) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Every other CTA's slice is empty: exactly one CTA holds every target.
  constexpr int64_t kVocab = 128256;
  for (int64_t only : {int64_t{0}, int64_t{5000}, int64_t{64000}, kVocab - 1}) {
    std::vector<float> row(kVocab, 0.f);
    row[only] = 0.5f;
    for (const Case& c : single_call_cases()) {
      const Draws d = draw(row, c, 64, rng, kRounds, 1);
      EXPECT_EQ(std::count(d.tokens.begin(), d.tokens.end(), only), 64)
          << c.name << ", entry " << only;
    }
  }
}

TEST(SamplingSmallBatch, EachRowIsSampledUnderItsOwnParameters) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Distinct peaked rows with small per-request top_k / top_p: a row read or
  // a parameter taken from the wrong request shows as a token outside the
  // set. Top-p alone takes the rejection cluster path; top-k and joint the
  // radix one.
  constexpr int64_t kVocab = 32000;
  for (const Sampler sampler : {Sampler::kTopP, Sampler::kTopK, Sampler::kJoint}) {
    for (int64_t batch : {1, 2, 7, 32}) {
      std::vector<std::vector<float>> rows;
      std::vector<float> probs, ps;
      std::vector<int64_t> ks;
      for (int64_t b = 0; b < batch; ++b) {
        rows.push_back(softmax_row(rng, kVocab, 4.f));
        probs.insert(probs.end(), rows.back().begin(), rows.back().end());
        ps.push_back(rng.uniform(0.01f, 0.3f));
        ks.push_back(rng.integer(1, 40));
      }
      DeviceTensor p(DType::kFloat32, {batch, kVocab}), u(DType::kFloat32, {kRounds, batch});
      DeviceTensor k(DType::kInt32, {batch}), tp(DType::kFloat32, {batch});
      DeviceTensor samples(DType::kInt32, {batch}), success(DType::kUInt8, {batch});
      p.upload(probs);
      k.upload_ints(ks);
      tp.upload(ps);
      DLTensor p_dl = p.dl(), k_dl = k.dl(), tp_dl = tp.dl();
      DLTensor s_dl = samples.dl(), ok_dl = success.dl();
      const Case c{sampler, {}, "per-request"};
      for (int trial = 0; trial < 20; ++trial) {
        u.upload(rng.uniform_vector(kRounds * batch, 0.f, 1.f));
        samples.poison();
        call_sampler(c, p_dl, u, {s_dl, &ok_dl}, &k_dl, &tp_dl);
        const auto tokens = samples.download_ints();
        const auto ok = success.download_ints();
        for (int64_t b = 0; b < batch; ++b) {
          SamplingFilter f;
          if (sampler != Sampler::kTopP) f.top_k = ks[b];
          if (sampler != Sampler::kTopK) f.top_p = std::min(1.0, ps[b] + 1e-4);
          const std::string where = "sampler " + std::to_string(static_cast<int>(sampler)) +
                                    ", batch " + std::to_string(batch) + ", row " +
                                    std::to_string(b);
          ASSERT_TRUE(tokens[b] >= 0 && tokens[b] < kVocab) << where;
          ASSERT_TRUE(reference::kept_entries(rows[b], f)[tokens[b]])
              << where << " k " << ks[b] << " p " << ps[b] << " token " << tokens[b];
          ASSERT_EQ(ok[b], 1) << where;
        }
      }
    }
  }
}

TEST(SamplingSmallBatch, CrowdedThresholdBucketGivesTheFilteredDistribution) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Most of the row in one radix bucket of the first pass, summed over the
  // cluster: each CTA sets its keys aside (3000: 4 CTAs at batch 1) or reads
  // its slice a third time (128256).
  for (int64_t vocab : {3000, 128256}) {
    const std::vector<float> row = crowded_row(rng, vocab);
    for (int64_t batch : {1, 7}) {
      for (const Case& c : {Case{Sampler::kTopK, {.top_k = 20}, "top_k=20"},
                            Case{Sampler::kJoint, {.top_k = 1000, .top_p = 0.3}, "joint"}}) {
        SCOPED_TRACE("vocab " + std::to_string(vocab) + ", batch " + std::to_string(batch));
        expect_matches_filter(row, c, draw(row, c, batch * 512, rng, kRounds, batch));
      }
    }
  }
}

TEST(SamplingSmallBatch, TiesAtTheTopKThresholdInDifferentSlicesAreKeptTogether) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Four tied at 0.2 in four different CTAs' slices, the rest share 0.2:
  // top_k = 2 keeps the four, equally.
  constexpr int64_t kVocab = 128256;
  std::vector<float> row(kVocab, 0.2f / (kVocab - 4));
  const std::vector<int64_t> tied = {3, 40000, 80000, kVocab - 1};
  for (int64_t i : tied) row[i] = 0.2f;
  const Case c{Sampler::kTopK, {.top_k = 2}, "ties top_k=2"};
  constexpr int64_t kTieDraws = 4096;
  const Draws d = draw(row, c, kTieDraws, rng, kRounds, 4);
  for (int64_t i : tied) {
    EXPECT_NEAR(std::count(d.tokens.begin(), d.tokens.end(), i) / double(kTieDraws), 0.25, 0.04)
        << "entry " << i;
  }
  EXPECT_EQ(std::count_if(
                d.tokens.begin(), d.tokens.end(),
                [&](int64_t t) { return std::find(tied.begin(), tied.end(), t) == tied.end(); }),
            0);
}

TEST(SamplingSmallBatch, CheckNanFlagsARowWithNaNInOneSlice) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // One NaN in the last CTA's slice of row 1: every CTA of its cluster must
  // see it (the radix path ors the slices' flags; the rejection path's
  // summary too).
  constexpr int64_t kBatch = 2, kVocab = 128256;
  std::vector<float> probs;
  for (int64_t b = 0; b < kBatch; ++b) {
    const auto row = softmax_row(rng, kVocab, 1.f);
    probs.insert(probs.end(), row.begin(), row.end());
  }
  probs[kVocab + kVocab - 5] = std::numeric_limits<float>::quiet_NaN();
  DeviceTensor p(DType::kFloat32, {kBatch, kVocab}), u(DType::kFloat32, {kRounds, kBatch});
  DeviceTensor samples(DType::kInt32, {kBatch}), success(DType::kUInt8, {kBatch});
  p.upload(probs);
  u.upload(rng.uniform_vector(kRounds * kBatch, 0.f, 1.f));
  DLTensor p_dl = p.dl(), s_dl = samples.dl(), ok_dl = success.dl();
  for (const Case& c : {Case{Sampler::kTopK, {.top_k = 50}, "top_k=50"},
                        Case{Sampler::kJoint, {.top_k = 50, .top_p = 0.9}, "joint"},
                        Case{Sampler::kTopP, {.top_p = 0.9}, "top_p=0.9"}}) {
    call_sampler(c, p_dl, u, {s_dl, &ok_dl, true, true});
    const auto ok = success.download_ints();
    const auto tokens = samples.download_ints();
    EXPECT_EQ(ok[0], 1) << c.name;
    EXPECT_EQ(ok[1], 0) << c.name;
    for (int64_t b = 0; b < kBatch; ++b) {
      EXPECT_TRUE(tokens[b] >= 0 && tokens[b] < kVocab) << c.name << ", row " << b;
    }
  }
}

TEST(SamplingSmallBatch, OutputIsBitwiseReproducible) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kVocab = 128256;
  for (int64_t batch : {1, 7, 32}) {
    std::vector<float> probs;
    for (int64_t b = 0; b < batch; ++b) {
      const auto row = softmax_row(rng, kVocab, b % 2 == 0 ? 3.f : 0.1f);
      probs.insert(probs.end(), row.begin(), row.end());
    }
    DeviceTensor p(DType::kFloat32, {batch, kVocab}), u(DType::kFloat32, {kRounds, batch});
    DeviceTensor samples(DType::kInt32, {batch}), success(DType::kUInt8, {batch});
    p.upload(probs);
    u.upload(rng.uniform_vector(kRounds * batch, 0.f, 1.f));
    DLTensor p_dl = p.dl(), s_dl = samples.dl(), ok_dl = success.dl();
    for (const Case& c : single_call_cases()) {
      std::vector<int64_t> first;
      for (int run = 0; run < 3; ++run) {
        call_sampler(c, p_dl, u, {s_dl, &ok_dl});
        const auto tokens = samples.download_ints();
        if (run == 0) {
          first = tokens;
        } else {
          EXPECT_EQ(tokens, first) << c.name << ", batch " << batch << ", run " << run;
        }
      }
    }
  }
}

// ---- Per-request parameters, NaN rows, reproducibility -----------------

TEST(SamplingRows, PerRequestTopKAndTopPApplyToTheirOwnRow) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kBatch = 64, kVocab = 5000;
  std::vector<float> probs;
  std::vector<std::vector<float>> rows;
  std::vector<int64_t> ks;
  std::vector<float> ps;
  for (int64_t b = 0; b < kBatch; ++b) {
    rows.push_back(softmax_row(rng, kVocab, 2.f));
    probs.insert(probs.end(), rows.back().begin(), rows.back().end());
    ks.push_back(rng.integer(1, 200));
    ps.push_back(rng.uniform(0.05f, 1.f));
  }
  DeviceTensor p(DType::kFloat32, {kBatch, kVocab}), u(DType::kFloat32, {kRounds, kBatch});
  DeviceTensor k(DType::kInt32, {kBatch}), tp(DType::kFloat32, {kBatch});
  DeviceTensor samples(DType::kInt32, {kBatch}), success(DType::kUInt8, {kBatch});
  p.upload(probs);
  k.upload_ints(ks);
  tp.upload(ps);
  DLTensor p_dl = p.dl(), k_dl = k.dl(), tp_dl = tp.dl(), s_dl = samples.dl(), ok_dl = success.dl();
  for (int trial = 0; trial < 20; ++trial) {
    u.upload(rng.uniform_vector(kRounds * kBatch, 0.f, 1.f));
    DLTensor u_dl = u.dl();
    top_k_top_p_sampling_from_probs(p_dl, u_dl, &k_dl, 0, &tp_dl, 0.0, {s_dl, &ok_dl}, nullptr);
    const auto tokens = samples.download_ints();
    for (int64_t b = 0; b < kBatch; ++b) {
      SamplingFilter f{.top_k = ks[b], .top_p = std::min(1.0, ps[b] + 1e-4)};
      ASSERT_TRUE(reference::kept_entries(rows[b], f)[tokens[b]])
          << "row " << b << " k " << ks[b] << " p " << ps[b] << " token " << tokens[b];
    }
  }
}

TEST(SamplingRows, CheckNanFlagsRowsWithNaN) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kBatch = 8, kVocab = 1024;
  std::vector<float> probs;
  for (int64_t b = 0; b < kBatch; ++b) {
    const auto row = softmax_row(rng, kVocab, 1.f);
    probs.insert(probs.end(), row.begin(), row.end());
  }
  probs[3 * kVocab + 17] = std::numeric_limits<float>::quiet_NaN();
  probs[6 * kVocab + 1000] = std::numeric_limits<float>::quiet_NaN();
  DeviceTensor p(DType::kFloat32, {kBatch, kVocab}), u(DType::kFloat32, {kRounds, kBatch});
  DeviceTensor samples(DType::kInt32, {kBatch}), success(DType::kUInt8, {kBatch});
  p.upload(probs);
  u.upload(rng.uniform_vector(kRounds * kBatch, 0.f, 1.f));
  DLTensor p_dl = p.dl(), u_dl = u.dl(), s_dl = samples.dl(), ok_dl = success.dl();
  top_p_sampling_from_probs(p_dl, u_dl, nullptr, 0.9, {s_dl, &ok_dl, true, true}, nullptr);
  const auto ok = success.download_ints();
  const auto tokens = samples.download_ints();
  for (int64_t b = 0; b < kBatch; ++b) {
    EXPECT_EQ(ok[b], (b == 3 || b == 6) ? 0 : 1) << "row " << b;
    EXPECT_TRUE(tokens[b] >= 0 && tokens[b] < kVocab) << "row " << b;
  }
}

TEST(SamplingRows, OutputIsBitwiseReproducible) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kBatch = 32, kVocab = 128256;  // small: memcheck runs it too
  std::vector<float> probs;
  for (int64_t b = 0; b < kBatch; ++b) {
    const auto row = softmax_row(rng, kVocab, b % 2 == 0 ? 3.f : 0.1f);
    probs.insert(probs.end(), row.begin(), row.end());
  }
  DeviceTensor p(DType::kFloat32, {kBatch, kVocab}), u(DType::kFloat32, {kRounds, kBatch});
  DeviceTensor samples(DType::kInt32, {kBatch}), success(DType::kUInt8, {kBatch});
  DeviceTensor renorm(DType::kFloat32, {kBatch, kVocab});
  p.upload(probs);
  u.upload(rng.uniform_vector(kRounds * kBatch, 0.f, 1.f));
  DLTensor p_dl = p.dl(), u_dl = u.dl(), s_dl = samples.dl(), ok_dl = success.dl(),
           r_dl = renorm.dl();
  std::vector<int64_t> first_tokens;
  std::vector<unsigned char> first_renorm;
  for (int run = 0; run < 3; ++run) {
    top_k_top_p_sampling_from_probs(p_dl, u_dl, nullptr, 500, nullptr, 0.8, {s_dl, &ok_dl},
                                    nullptr);
    top_p_renorm_probs(p_dl, nullptr, 0.8, r_dl, nullptr);
    const auto tokens = samples.download_ints();
    const auto bytes = renorm.download_bytes();
    if (run == 0) {
      first_tokens = tokens;
      first_renorm = bytes;
    } else {
      EXPECT_EQ(tokens, first_tokens) << "run " << run;
      EXPECT_TRUE(bytes == first_renorm) << "run " << run;
    }
  }
}

// ---- Renorm and mask -------------------------------------------------------

// top_p_renorm_probs (filter.top_p < 1) or top_k_renorm_probs of `rows`
// against the float64 reference, elementwise.
void expect_renorm_rows(const std::vector<std::vector<float>>& rows, const SamplingFilter& f) {
  const auto batch = static_cast<int64_t>(rows.size());
  const auto vocab = static_cast<int64_t>(rows[0].size());
  std::vector<float> probs;
  for (const auto& row : rows) probs.insert(probs.end(), row.begin(), row.end());
  DeviceTensor p(DType::kFloat32, {batch, vocab}), out(DType::kFloat32, {batch, vocab});
  p.upload(probs);
  out.poison();
  DLTensor p_dl = p.dl(), out_dl = out.dl();
  const bool top_p = f.top_p < 1.0;
  if (top_p) {
    top_p_renorm_probs(p_dl, nullptr, f.top_p, out_dl, nullptr);
  } else {
    top_k_renorm_probs(p_dl, nullptr, f.top_k, out_dl, nullptr);
  }
  const auto got = out.download();
  for (int64_t b = 0; b < batch; ++b) {
    const auto expected = reference::filtered_distribution(rows[b], f);
    int64_t mismatches = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      // float32 product of a float32 reciprocal of the exact sum: 1e-5 relative.
      if (!(std::abs(got[b * vocab + i] - expected[i]) <= 1e-5 * expected[i] + 1e-12)) {
        ++mismatches;
      }
    }
    EXPECT_EQ(mismatches, 0) << "row " << b << (top_p ? " top_p" : " top_k") << ", vocab " << vocab;
  }
}

void expect_renorm_matches(int64_t vocab, bool top_p, Rng& rng) {
  constexpr int64_t kBatch = 16;
  std::vector<std::vector<float>> rows;
  for (int64_t b = 0; b < kBatch; ++b) {
    rows.push_back(softmax_row(rng, vocab, b % 2 == 0 ? 3.f : 0.3f));
  }
  expect_renorm_rows(rows, top_p ? SamplingFilter{.top_p = 0.6} : SamplingFilter{.top_k = 37});
}

TEST(SamplingRenorm, TopPRenormMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (int64_t vocab : {111, 32000, 128256}) expect_renorm_matches(vocab, true, rng);
}

TEST(SamplingRenorm, TopKRenormMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (int64_t vocab : {111, 32000, 128256}) expect_renorm_matches(vocab, false, rng);
}

TEST(SamplingRenorm, CrowdedThresholdBucketMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (int64_t vocab : {3000, 32000}) {
    const std::vector<std::vector<float>> rows = {crowded_row(rng, vocab), crowded_row(rng, vocab)};
    expect_renorm_rows(rows, {.top_k = 37});
    expect_renorm_rows(rows, {.top_k = 2000});
    expect_renorm_rows(rows, {.top_p = 0.6});
  }
}

TEST(SamplingRenorm, TiesAtTheThresholdAreKeptTogether) {
  TESSERA_REQUIRE_GPU();
  // Five entries tie at 0.1 around the top-3 cut; top_k = 3 keeps all five
  // and the 0.3; top_p = 0.35 (0.3 above the ties) keeps them too.
  std::vector<float> row(1000, 0.1f / 994);
  row[7] = 0.3f;
  for (int64_t i : {1, 100, 400, 401, 999}) row[i] = 0.1f;
  expect_renorm_rows({row}, {.top_k = 3});
  expect_renorm_rows({row}, {.top_p = 0.35});
}

TEST(SamplingRenorm, VocabularyOverTheRadixLimitMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // 2^20 entries: bucket sums could overflow 32 bits, so bisection runs.
  const std::vector<std::vector<float>> rows = {softmax_row(rng, int64_t{1} << 20, 3.f)};
  expect_renorm_rows(rows, {.top_k = 37});
  expect_renorm_rows(rows, {.top_p = 0.6});
}

TEST(SamplingRenorm, AllZeroRowGivesZeros) {
  TESSERA_REQUIRE_GPU();
  expect_renorm_rows({std::vector<float>(500, 0.f)}, {.top_k = 5});
  expect_renorm_rows({std::vector<float>(500, 0.f)}, {.top_p = 0.5});
}

TEST(SamplingRenorm, TopKMaskLogitsKeepsTiesAndSignedZerosTogether) {
  TESSERA_REQUIRE_GPU();
  // -0 and +0 are equal logits: top_k = 3 over {2, 0, -0, 0, -1, ...} keeps
  // the 2 and all three zeros.
  std::vector<float> logits(300, -1.f);
  logits[10] = 2.f;
  logits[20] = 0.f;
  logits[30] = -0.f;
  logits[40] = 0.f;
  DeviceTensor in(DType::kFloat32, {1, 300}), out(DType::kFloat32, {1, 300});
  in.upload(logits);
  out.poison();
  DLTensor in_dl = in.dl(), out_dl = out.dl();
  top_k_mask_logits(in_dl, nullptr, 3, out_dl, nullptr);
  const auto got = out.download();
  const auto expected = reference::top_k_masked_logits(logits, 3);
  for (int64_t i = 0; i < 300; ++i) {
    EXPECT_EQ(static_cast<double>(got[i]), expected[i]) << "entry " << i;
  }
  EXPECT_TRUE(std::signbit(got[30])) << "kept logits are written as they are";
}

TEST(SamplingRenorm, TopKMaskLogitsMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (int64_t vocab : {111, 32000, 128256}) {
    constexpr int64_t kBatch = 8;
    std::vector<float> logits = rng.normal_vector(kBatch * vocab, 0.f, 4.f);
    logits[5] = -std::numeric_limits<float>::infinity();
    DeviceTensor in(DType::kFloat32, {kBatch, vocab}), out(DType::kFloat32, {kBatch, vocab});
    in.upload(logits);
    out.poison();
    DLTensor in_dl = in.dl(), out_dl = out.dl();
    top_k_mask_logits(in_dl, nullptr, 20, out_dl, nullptr);
    const auto got = out.download();
    for (int64_t b = 0; b < kBatch; ++b) {
      const std::vector<float> row(logits.begin() + b * vocab, logits.begin() + (b + 1) * vocab);
      const auto expected = reference::top_k_masked_logits(row, 20);
      int64_t mismatches = 0;
      for (int64_t i = 0; i < vocab; ++i) {
        if (static_cast<double>(got[b * vocab + i]) != expected[i]) ++mismatches;
      }
      EXPECT_EQ(mismatches, 0) << "vocab " << vocab << " row " << b;
    }
  }
}

}  // namespace
}  // namespace tessera

// ---- Chain speculative sampling ------------------------------------------

namespace tessera {
namespace {

struct SpeculativeRun {
  std::vector<int64_t> tokens;  // [batch, n + 1]
  std::vector<int64_t> accepted;
  std::vector<int64_t> emitted;
};

SpeculativeRun run_speculative(const std::vector<float>& draft, const std::vector<int64_t>& ids,
                               const std::vector<float>& uniforms, const std::vector<float>& target,
                               int64_t batch, int64_t n, int64_t vocab, int64_t counter_start) {
  DeviceTensor d(DType::kFloat32, {batch, n, vocab}), t(DType::kFloat32, {batch, n + 1, vocab});
  DeviceTensor id(DType::kInt32, {batch, n}), u(DType::kFloat32, {batch, n + 1});
  DeviceTensor out(DType::kInt32, {batch, n + 1});
  DeviceTensor accepted(DType::kInt32, {batch}), emitted(DType::kInt32, {batch});
  d.upload(draft);
  t.upload(target);
  id.upload_ints(ids);
  u.upload(uniforms);
  out.poison();
  accepted.upload_ints(std::vector<int64_t>(batch, counter_start));
  emitted.upload_ints(std::vector<int64_t>(batch, counter_start));
  DLTensor d_dl = d.dl(), t_dl = t.dl(), id_dl = id.dl(), u_dl = u.dl(), out_dl = out.dl(),
           a_dl = accepted.dl(), e_dl = emitted.dl();
  chain_speculative_sampling(d_dl, id_dl, u_dl, t_dl, {out_dl, a_dl, e_dl}, true, nullptr);
  return {out.download_ints(), accepted.download_ints(), emitted.download_ints()};
}

// The token drawn from `dist` (host inverse CDF, for building draft tokens).
int64_t host_draw(const std::vector<float>& dist, size_t offset, int64_t vocab, Rng& rng) {
  double u = rng.uniform(0.f, 1.f), running = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    running += dist[offset + i];
    if (running > u) return i;
  }
  return vocab - 1;
}

TEST(SamplingSpeculative, CountsAndAcceptedPrefixFollowTheRule) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kBatch = 256, kN = 4, kVocab = 1000, kStart = 7;
  std::vector<float> draft, target;
  for (int64_t r = 0; r < kBatch * kN; ++r) {
    const auto row = softmax_row(rng, kVocab, 1.f);
    draft.insert(draft.end(), row.begin(), row.end());
  }
  for (int64_t r = 0; r < kBatch * (kN + 1); ++r) {
    const auto row = softmax_row(rng, kVocab, 1.f);
    target.insert(target.end(), row.begin(), row.end());
  }
  std::vector<int64_t> ids;
  for (int64_t r = 0; r < kBatch * kN; ++r) {
    ids.push_back(host_draw(draft, r * kVocab, kVocab, rng));
  }
  const auto uniforms = rng.uniform_vector(kBatch * (kN + 1), 0.f, 1.f);
  const SpeculativeRun run =
      run_speculative(draft, ids, uniforms, target, kBatch, kN, kVocab, kStart);
  for (int64_t b = 0; b < kBatch; ++b) {
    int64_t pos = kN, accepted = 0;
    for (int64_t i = 0; i < kN; ++i) {
      const int64_t token = ids[b * kN + i];
      const float q = draft[(b * kN + i) * kVocab + token];
      const float p = target[(b * (kN + 1) + i) * kVocab + token];
      const bool accept = uniforms[b * (kN + 1) + i] * q < p;  // float32, as the kernel
      accepted += accept;
      if (!accept && pos == kN) pos = i;
    }
    EXPECT_EQ(run.accepted[b], kStart + accepted) << "request " << b;
    EXPECT_EQ(run.emitted[b], kStart + pos) << "request " << b;
    for (int64_t i = 0; i <= kN; ++i) {
      const int64_t got = run.tokens[b * (kN + 1) + i];
      if (i < pos) EXPECT_EQ(got, ids[b * kN + i]) << "request " << b << " slot " << i;
      if (i > pos) EXPECT_EQ(got, -1) << "request " << b << " slot " << i;
      if (i == pos) EXPECT_TRUE(got >= 0 && got < kVocab) << "request " << b;
    }
    // A resampled token comes from max(target - draft, 0): positive there.
    if (pos < kN) {
      const int64_t got = run.tokens[b * (kN + 1) + pos];
      EXPECT_GT(target[(b * (kN + 1) + pos) * kVocab + got], draft[(b * kN + pos) * kVocab + got])
          << "request " << b;
    }
  }
}

TEST(SamplingSpeculative, FirstEmittedTokenFollowsTheTargetDistribution) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // One draft token per request, every request the same (q, p): the emitted
  // first token, accepted or resampled, must be distributed as p.
  constexpr int64_t kBatch = 16384, kVocab = 111;
  const auto q = softmax_row(rng, kVocab, 1.5f);
  const auto p = softmax_row(rng, kVocab, 1.5f);
  std::vector<float> draft, target;
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < kBatch; ++b) {
    draft.insert(draft.end(), q.begin(), q.end());
    target.insert(target.end(), p.begin(), p.end());
    target.insert(target.end(), q.begin(), q.end());  // bonus row: unused by slot 0
    ids.push_back(host_draw(q, 0, kVocab, rng));
  }
  const auto uniforms = rng.uniform_vector(kBatch * 2, 0.f, 1.f);
  const SpeculativeRun run = run_speculative(draft, ids, uniforms, target, kBatch, 1, kVocab, 0);
  std::vector<int64_t> counts(kVocab, 0);
  for (int64_t b = 0; b < kBatch; ++b) ++counts[run.tokens[b * 2]];
  const std::vector<double> exact(p.begin(), p.end());
  EXPECT_LT(reference::total_variation(exact, counts), 2.0 * expected_noise(exact, kBatch) + 0.005);
}

TEST(SamplingSpeculative, IdenticalModelsAcceptEveryDraft) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  constexpr int64_t kBatch = 64, kN = 3, kVocab = 32000;
  std::vector<float> draft, target;
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < kBatch; ++b) {
    for (int64_t i = 0; i <= kN; ++i) {
      const auto row = softmax_row(rng, kVocab, 2.f);
      target.insert(target.end(), row.begin(), row.end());
      if (i < kN) {
        draft.insert(draft.end(), row.begin(), row.end());
        ids.push_back(host_draw(row, 0, kVocab, rng));
      }
    }
  }
  const auto uniforms = rng.uniform_vector(kBatch * (kN + 1), 0.f, 0.999f);
  const SpeculativeRun run = run_speculative(draft, ids, uniforms, target, kBatch, kN, kVocab, 0);
  for (int64_t b = 0; b < kBatch; ++b) {
    EXPECT_EQ(run.accepted[b], kN);
    EXPECT_EQ(run.emitted[b], kN);
    for (int64_t i = 0; i < kN; ++i) EXPECT_EQ(run.tokens[b * (kN + 1) + i], ids[b * kN + i]);
    const int64_t bonus = run.tokens[b * (kN + 1) + kN];
    ASSERT_TRUE(bonus >= 0 && bonus < kVocab);
    EXPECT_GT(target[(b * (kN + 1) + kN) * kVocab + bonus], 0.f);
  }
}

}  // namespace
}  // namespace tessera
