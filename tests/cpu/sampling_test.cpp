// Sampling family on the CPU: the float64 filtered-distribution reference
// against hand-worked rows, and the argument rejections of every entry point
// (fake device pointers: validation throws before any CUDA call).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "reference/sampling_ref.h"
#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/api/sampling.h"

namespace tessera {
namespace {

using reference::SamplingFilter;
using testing::FakeTensor;
using testing::rejected_argument;

// ---- Reference sanity -------------------------------------------------------

const std::vector<float> kRow = {0.1f, 0.4f, 0.2f, 0.3f, 0.0f};

TEST(SamplingReference, TopKKeepsTheKLargest) {
  const auto dist = reference::filtered_distribution(kRow, {.top_k = 2});
  EXPECT_NEAR(dist[1], 0.4 / 0.7, 1e-6);
  EXPECT_NEAR(dist[3], 0.3 / 0.7, 1e-6);
  EXPECT_EQ(dist[0], 0.0);
  EXPECT_EQ(dist[2], 0.0);
  EXPECT_EQ(dist[4], 0.0);
}

TEST(SamplingReference, TopPKeepsEntriesWithLessThanPAbove) {
  // Mass above: 0.4 -> 0, 0.3 -> 0.4, 0.2 -> 0.7, 0.1 -> 0.9.
  const auto kept = reference::kept_entries(kRow, {.top_p = 0.5});
  EXPECT_EQ(kept, (std::vector<bool>{false, true, false, true, false}));
  const auto kept_all = reference::kept_entries(kRow, {.top_p = 1.0});
  EXPECT_EQ(kept_all, (std::vector<bool>{true, true, true, true, false}));
}

TEST(SamplingReference, MinPKeepsEntriesAboveAFractionOfTheMax) {
  const auto kept = reference::kept_entries(kRow, {.min_p = 0.5});  // >= 0.2
  EXPECT_EQ(kept, (std::vector<bool>{false, true, true, true, false}));
}

TEST(SamplingReference, TiesAtTheThresholdAreKeptTogether) {
  const std::vector<float> row = {0.25f, 0.25f, 0.25f, 0.25f};
  const auto kept = reference::kept_entries(row, {.top_k = 2});
  EXPECT_EQ(kept, (std::vector<bool>{true, true, true, true}));
}

TEST(SamplingReference, TopKFirstAppliesTopPToTheRenormalisedTopK) {
  // Top-2 renormalised: 0.4/0.7 = 0.571, 0.3/0.7. top_p 0.5: only the first.
  const auto first = reference::kept_entries(kRow, {.top_k = 2, .top_p = 0.5,
                                                    .top_k_first = true});
  EXPECT_EQ(first, (std::vector<bool>{false, true, false, false, false}));
  // Joint: top-p 0.5 of the whole row keeps 0.4 and 0.3.
  const auto joint = reference::kept_entries(kRow, {.top_k = 2, .top_p = 0.5});
  EXPECT_EQ(joint, (std::vector<bool>{false, true, false, true, false}));
}

TEST(SamplingReference, MaskLogitsKeepsTopKAndSetsTheRestToMinusInfinity) {
  const std::vector<float> logits = {-1.f, 3.f, 0.5f, -std::numeric_limits<float>::infinity()};
  const auto masked = reference::top_k_masked_logits(logits, 2);
  EXPECT_EQ(masked[1], 3.0);
  EXPECT_EQ(masked[2], 0.5);
  EXPECT_TRUE(std::isinf(masked[0]) && masked[0] < 0);
  EXPECT_TRUE(std::isinf(masked[3]) && masked[3] < 0);
}

TEST(SamplingReference, TotalVariationOfExactCountsIsZero) {
  EXPECT_NEAR(reference::total_variation({0.25, 0.75}, {25, 75}), 0.0, 1e-12);
  EXPECT_NEAR(reference::total_variation({0.5, 0.5}, {100, 0}), 0.5, 1e-12);
}

// ---- Argument validation ----------------------------------------------------

constexpr int64_t kBatch = 4;
constexpr int64_t kVocab = 1000;
constexpr int64_t kRounds = 8;

uintptr_t address(int slot) { return uintptr_t{1} << (20 + slot); }

// The shapes and dtypes of the fake tensors; each test breaks one thing (in
// the spec: FakeTensor must not be copied, its DLTensor points at its own
// shape).
struct SamplingSpec {
  DType probs_dtype = DType::kFloat32;
  std::vector<int64_t> probs_shape = {kBatch, kVocab};
  DLDevice probs_device = {kDLCUDA, 0};
  std::vector<int64_t> uniforms_shape = {kRounds, kBatch};
  DType samples_dtype = DType::kInt32;
  std::vector<int64_t> success_shape = {kBatch};
};

struct SamplingArgs {
  FakeTensor probs;
  FakeTensor uniforms;
  FakeTensor samples;
  FakeTensor success;
  FakeTensor top_k_arr{DType::kInt32, {kBatch}};
  FakeTensor out{DType::kFloat32, {kBatch, kVocab}};
  explicit SamplingArgs(const SamplingSpec& spec = {})
      : probs(spec.probs_dtype, spec.probs_shape, spec.probs_device),
        uniforms(DType::kFloat32, spec.uniforms_shape),
        samples(spec.samples_dtype, {kBatch}),
        success(DType::kUInt8, spec.success_shape) {
    probs.with_data(address(0));
    uniforms.with_data(address(1));
    samples.with_data(address(2));
    success.with_data(address(3));
    top_k_arr.with_data(address(4));
    out.with_data(address(6));
  }
  SamplingOutputs outputs() { return {samples, &success.dl()}; }
};

// The argument each sampler names for `a` (scalars valid unless given).
std::vector<std::string> sampler_rejections(SamplingArgs& a, int64_t top_k = 5,
                                            double top_p = 0.9, double min_p = 0.1) {
  return {
      rejected_argument([&] { sampling_from_probs(a.probs, a.uniforms, a.outputs(), nullptr); }),
      rejected_argument([&] {
        top_p_sampling_from_probs(a.probs, a.uniforms, nullptr, top_p, a.outputs(), nullptr);
      }),
      rejected_argument([&] {
        top_k_sampling_from_probs(a.probs, a.uniforms, nullptr, top_k, a.outputs(), nullptr);
      }),
      rejected_argument([&] {
        min_p_sampling_from_probs(a.probs, a.uniforms, nullptr, min_p, a.outputs(), nullptr);
      }),
      rejected_argument([&] {
        top_k_top_p_sampling_from_probs(a.probs, a.uniforms, nullptr, top_k, nullptr, top_p,
                                        a.outputs(), nullptr);
      }),
  };
}

void expect_every_sampler_names(SamplingArgs& a, const std::string& argument) {
  for (const std::string& named : sampler_rejections(a)) EXPECT_EQ(named, argument);
}

TEST(SamplingValidation, RejectsProbabilitiesThatAreNotFloat32) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16, DType::kFloat64}) {
    SamplingArgs a({.probs_dtype = dtype});
    expect_every_sampler_names(a, "probs");
  }
}

TEST(SamplingValidation, RejectsProbabilitiesOfWrongRank) {
  SamplingArgs a({.probs_shape = {kBatch * kVocab}});
  expect_every_sampler_names(a, "probs");
}

TEST(SamplingValidation, RejectsUniformsOfWrongShapeOrRank) {
  SamplingArgs wrong_batch({.uniforms_shape = {kRounds, kBatch + 1}});
  expect_every_sampler_names(wrong_batch, "uniform_samples");
  SamplingArgs wrong_rank({.uniforms_shape = {1, kRounds, kBatch}});
  expect_every_sampler_names(wrong_rank, "uniform_samples");
}

TEST(SamplingValidation, RejectsOutputsOfWrongDtypeOrLength) {
  SamplingArgs int64_samples({.samples_dtype = DType::kInt64});
  expect_every_sampler_names(int64_samples, "samples");
  SamplingArgs short_success({.success_shape = {kBatch - 1}});
  expect_every_sampler_names(short_success, "success");
}

TEST(SamplingValidation, RejectsTopKBelowOne) {
  SamplingArgs a;
  for (int64_t top_k : {0, -3}) {
    const auto named = sampler_rejections(a, top_k);
    EXPECT_EQ(named[2], "top_k");
    EXPECT_EQ(named[4], "top_k");
    EXPECT_EQ(rejected_argument([&] { top_k_renorm_probs(a.probs, nullptr, top_k, a.out, {}); }),
              "top_k");
    EXPECT_EQ(rejected_argument([&] { top_k_mask_logits(a.probs, nullptr, top_k, a.out, {}); }),
              "top_k");
  }
}

TEST(SamplingValidation, RejectsTopPOutsideZeroToOne) {
  SamplingArgs a;
  for (double top_p : {0.0, -0.1, 1.0001, std::numeric_limits<double>::quiet_NaN()}) {
    const auto named = sampler_rejections(a, 5, top_p);
    EXPECT_EQ(named[1], "top_p") << top_p;
    EXPECT_EQ(named[4], "top_p") << top_p;
    EXPECT_EQ(rejected_argument([&] { top_p_renorm_probs(a.probs, nullptr, top_p, a.out, {}); }),
              "top_p");
  }
}

TEST(SamplingValidation, RejectsMinPOutsideZeroToOne) {
  SamplingArgs a;
  for (double min_p : {-0.5, 1.5}) {
    EXPECT_EQ(sampler_rejections(a, 5, 0.9, min_p)[3], "min_p") << min_p;
  }
}

TEST(SamplingValidation, RejectsParameterTensorsOfWrongLengthOrDtype) {
  SamplingArgs a;
  FakeTensor short_k(DType::kInt32, {kBatch - 1});
  short_k.with_data(address(7));
  FakeTensor float_k(DType::kFloat32, {kBatch});
  float_k.with_data(address(7));
  FakeTensor long_p(DType::kFloat32, {kBatch + 2});
  long_p.with_data(address(8));
  for (FakeTensor* k : {&short_k, &float_k}) {
    EXPECT_EQ(rejected_argument([&] {
                top_k_sampling_from_probs(a.probs, a.uniforms, &k->dl(), 1, a.outputs(), {});
              }),
              "top_k_arr");
    EXPECT_EQ(rejected_argument([&] { top_k_renorm_probs(a.probs, &k->dl(), 1, a.out, {}); }),
              "top_k_arr");
  }
  EXPECT_EQ(rejected_argument([&] {
              top_p_sampling_from_probs(a.probs, a.uniforms, &long_p.dl(), 1, a.outputs(), {});
            }),
            "top_p_arr");
  EXPECT_EQ(rejected_argument([&] {
              top_k_top_p_sampling_from_probs(a.probs, a.uniforms, &a.top_k_arr.dl(), 1,
                                              &long_p.dl(), 1, a.outputs(), {});
            }),
            "top_p_arr");
  EXPECT_EQ(rejected_argument([&] {
              min_p_sampling_from_probs(a.probs, a.uniforms, &long_p.dl(), 0, a.outputs(), {});
            }),
            "min_p_arr");
}

TEST(SamplingValidation, RenormRejectsOutputsOfWrongShapeOrSameMemory) {
  SamplingArgs a;
  FakeTensor narrow(DType::kFloat32, {kBatch, kVocab - 1});
  narrow.with_data(address(6));
  EXPECT_EQ(rejected_argument([&] { top_p_renorm_probs(a.probs, nullptr, 0.5, narrow, {}); }),
            "renorm_probs");
  EXPECT_EQ(rejected_argument([&] { top_k_mask_logits(a.probs, nullptr, 3, narrow, {}); }),
            "masked_logits");
  EXPECT_EQ(rejected_argument([&] { top_k_renorm_probs(a.probs, nullptr, 3, a.probs, {}); }),
            "renorm_probs");
  FakeTensor half_logits(DType::kFloat16, {kBatch, kVocab});
  half_logits.with_data(address(0));
  EXPECT_EQ(rejected_argument([&] { top_k_mask_logits(half_logits, nullptr, 3, a.out, {}); }),
            "logits");
}

TEST(SamplingValidation, RejectsHostTensors) {
  SamplingArgs a({.probs_device = {kDLCPU, 0}});
  expect_every_sampler_names(a, "probs");
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// Chain speculative sampling: shapes must agree with draft_probs.
struct SpeculativeSpec {
  std::vector<int64_t> draft = {4, 3, 1000};
  std::vector<int64_t> ids = {4, 3};
  std::vector<int64_t> uniforms = {4, 4};
  std::vector<int64_t> target = {4, 4, 1000};
  DType draft_dtype = DType::kFloat32;
};

std::string speculative_rejection(const SpeculativeSpec& spec) {
  FakeTensor draft(spec.draft_dtype, spec.draft), ids(DType::kInt32, spec.ids);
  FakeTensor uniforms(DType::kFloat32, spec.uniforms), target(DType::kFloat32, spec.target);
  FakeTensor out(DType::kInt32, {4, 4}), accepted(DType::kInt32, {4}),
      emitted(DType::kInt32, {4});
  FakeTensor* all[] = {&draft, &ids, &uniforms, &target, &out, &accepted, &emitted};
  for (int i = 0; i < 7; ++i) all[i]->with_data(address(i));
  return rejected_argument([&] {
    chain_speculative_sampling(draft, ids, uniforms, target, {out, accepted, emitted}, true, {});
  });
}

TEST(SamplingValidation, SpeculativeRejectsMismatchedShapes) {
  EXPECT_EQ(speculative_rejection({.draft_dtype = DType::kFloat16}), "draft_probs");
  EXPECT_EQ(speculative_rejection({.draft = {4, 3000}}), "draft_probs");
  EXPECT_EQ(speculative_rejection({.target = {4, 3, 1000}}), "target_probs");
  EXPECT_EQ(speculative_rejection({.target = {4, 4, 999}}), "target_probs");
  EXPECT_EQ(speculative_rejection({.ids = {4, 2}}), "draft_token_ids");
  EXPECT_EQ(speculative_rejection({.uniforms = {4, 3}}), "uniform_samples");
}

}  // namespace
}  // namespace tessera
