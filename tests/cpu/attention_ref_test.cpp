// The float64 attention reference against hand-computed cases, and the
// host mapping AttentionOptions -> built-in variant (unsupported combinations
// rejected naming "options").
#include "reference/attention_ref.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "../../src/api/attention_variant.h"
#include "support/argument_error.h"

namespace tessera {
namespace {

using reference::AttentionRefParams;
using reference::attention_reference;
constexpr double kEps = 1e-12;

TEST(AttentionReference, OneTokenGivesItsValueAndItsLogit) {
  AttentionRefParams p{.kv_len = 1, .head_dim = 2, .sm_scale = 0.5};
  const std::vector<float> q = {1, 2}, k = {3, 4}, v = {5, -6};
  const auto r = attention_reference(q, k, v, p);
  EXPECT_NEAR(r.out[0], 5, kEps);
  EXPECT_NEAR(r.out[1], -6, kEps);
  EXPECT_NEAR(r.lse[0], 0.5 * 11 * std::numbers::log2e, kEps);  // s = 0.5 * (3 + 8)
}

TEST(AttentionReference, TwoTokensWeightBySoftmax) {
  AttentionRefParams p{.kv_len = 2, .head_dim = 2, .sm_scale = 1};
  const std::vector<float> q = {1, 0}, k = {1, 0, 0, 1}, v = {1, 2, 3, 4};
  const auto r = attention_reference(q, k, v, p);
  const double e = std::numbers::e;
  EXPECT_NEAR(r.out[0], (e * 1 + 3) / (e + 1), kEps);
  EXPECT_NEAR(r.out[1], (e * 2 + 4) / (e + 1), kEps);
  EXPECT_NEAR(r.lse[0], std::log2(e + 1), kEps);
}

TEST(AttentionReference, SoftCapSquashesLogits) {
  AttentionRefParams p{.kv_len = 1, .head_dim = 1, .sm_scale = 1, .logits_soft_cap = 2};
  const std::vector<float> q = {3}, k = {2}, v = {1};
  const auto r = attention_reference(q, k, v, p);
  EXPECT_NEAR(r.lse[0], 2 * std::tanh(3.0) * std::numbers::log2e, kEps);
}

TEST(AttentionReference, WindowZeroSeesOnlyTheLastToken) {
  AttentionRefParams p{.kv_len = 3, .head_dim = 1, .sm_scale = 1, .window_left = 0};
  const std::vector<float> q = {1}, k = {5, 5, 1}, v = {10, 20, 30};
  const auto r = attention_reference(q, k, v, p);
  EXPECT_NEAR(r.out[0], 30, kEps);
  EXPECT_NEAR(r.lse[0], std::numbers::log2e, kEps);
}

TEST(AttentionReference, CausalQueryZeroSeesOnlyItsPrefix) {
  // qo_len 2 over kv_len 3: query 0 sits at position 1 (tokens 0, 1).
  AttentionRefParams p{.qo_len = 2, .kv_len = 3, .head_dim = 1, .causal = true, .sm_scale = 1};
  const std::vector<float> q = {0, 0}, k = {1, 2, 3}, v = {10, 20, 60};
  const auto r = attention_reference(q, k, v, p);
  EXPECT_NEAR(r.out[0], 15, kEps);  // equal weights over tokens 0, 1
  EXPECT_NEAR(r.out[1], 30, kEps);  // equal weights over all three
  EXPECT_NEAR(r.lse[0], 1.0, kEps);  // log2(2)
}

TEST(AttentionReference, AlibiAddsSlopeTimesDistance) {
  AttentionRefParams p{.kv_len = 2, .head_dim = 1, .sm_scale = 1, .alibi_slopes = {0.5}};
  const std::vector<float> q = {0}, k = {0, 0}, v = {1, 3};
  const auto r = attention_reference(q, k, v, p);
  // logits: -0.5 (token 0, distance -1) and 0.
  const double w0 = std::exp(-0.5), w1 = 1;
  EXPECT_NEAR(r.out[0], (w0 * 1 + w1 * 3) / (w0 + w1), kEps);
  EXPECT_NEAR(r.lse[0], std::log2(w0 + w1), kEps);
}

TEST(AttentionReference, RopeRotatesQueryAndKeyByTheirPositions) {
  // D = 2, theta irrelevant (freq_0 = 1): q at position 1 rotated by 1 rad,
  // k at position 0 unrotated, so q.k = cos(1) for q = k = (1, 0).
  AttentionRefParams p{.kv_len = 2, .head_dim = 2, .sm_scale = 1, .rope_llama = true};
  const std::vector<float> q = {1, 0}, k = {1, 0, 1, 0}, v = {1, 0, 0, 1};
  const auto r = attention_reference(q, k, v, p);
  const double w0 = std::exp(std::cos(1.0)), w1 = std::exp(1.0);
  EXPECT_NEAR(r.out[0], w0 / (w0 + w1), kEps);
  EXPECT_NEAR(r.out[1], w1 / (w0 + w1), kEps);
}

TEST(AttentionReference, GroupedHeadsShareTheirKvHead) {
  AttentionRefParams p{.kv_len = 1, .num_qo_heads = 2, .num_kv_heads = 1, .head_dim = 1,
                       .sm_scale = 1};
  const std::vector<float> q = {1, 2}, k = {1}, v = {7};
  const auto r = attention_reference(q, k, v, p);
  EXPECT_NEAR(r.out[0], 7, kEps);
  EXPECT_NEAR(r.out[1], 7, kEps);
  EXPECT_NEAR(r.lse[1], 2 * std::numbers::log2e, kEps);
}

TEST(AttentionReference, KvAndVScalesApply) {
  AttentionRefParams p{.kv_len = 1, .head_dim = 1, .sm_scale = 1, .k_scale = 2, .v_scale = 3};
  const std::vector<float> q = {1}, k = {1}, v = {1};
  const auto r = attention_reference(q, k, v, p);
  EXPECT_NEAR(r.out[0], 3, kEps);
  EXPECT_NEAR(r.lse[0], 2 * std::numbers::log2e, kEps);
}

TEST(AttentionReference, EmptyKvGivesZeroAndMinusInfinity) {
  AttentionRefParams p{.kv_len = 0, .head_dim = 2};
  const std::vector<float> q = {1, 2}, kv;
  const auto r = attention_reference(q, kv, kv, p);
  EXPECT_EQ(r.out, (std::vector<double>{0, 0}));
  EXPECT_EQ(r.lse[0], -std::numeric_limits<double>::infinity());
}

TEST(AttentionReference, StandardAlibiSlopes) {
  const auto slopes = reference::standard_alibi_slopes(8);
  for (int h = 0; h < 8; ++h) EXPECT_DOUBLE_EQ(slopes[h], std::exp2(-(h + 1.0)));
}

// ------------------------------------------------------- variant mapping

using attention::VariantKind;

TEST(AttentionVariant, JitVariantSelectsKJitAndExcludesPosEncodings) {
  AttentionOptions o;
  // select_variant only looks at the pointer (loading one needs a GPU).
  o.jit_variant = reinterpret_cast<const jit::LoadedVariant*>(uintptr_t{0x100});
  o.logits_soft_cap = 30;  // still a parameter the variant may read
  EXPECT_EQ(detail::select_variant(o), VariantKind::kJit);
  o.pos_encoding_mode = PosEncodingMode::kAlibi;
  testing::expect_argument_error([&] { detail::select_variant(o); }, "options");
}

TEST(AttentionVariant, OptionsMapToTheBuiltInList) {
  AttentionOptions o;
  EXPECT_EQ(detail::select_variant(o), VariantKind::kPlain);
  o.logits_soft_cap = 30;
  EXPECT_EQ(detail::select_variant(o), VariantKind::kSoftCap);
  o.window_left = 128;
  EXPECT_EQ(detail::select_variant(o), VariantKind::kSoftCapSlidingWindow);
  o.logits_soft_cap = 0;
  EXPECT_EQ(detail::select_variant(o), VariantKind::kSlidingWindow);
  o.window_left = -1;
  o.pos_encoding_mode = PosEncodingMode::kAlibi;
  EXPECT_EQ(detail::select_variant(o), VariantKind::kAlibi);
  o.pos_encoding_mode = PosEncodingMode::kRopeLlama;
  EXPECT_EQ(detail::select_variant(o), VariantKind::kRopeLlama);
}

// Every combination of a position encoding with a soft cap and / or a
// window has its own (JIT-served) kind, as FlashInfer accepts them all.
TEST(AttentionVariant, PositionalCombinationsHaveTheirOwnKinds) {
  const auto kind = [](AttentionOptions o) { return detail::select_variant(o); };
  using P = PosEncodingMode;
  EXPECT_EQ(kind({.logits_soft_cap = 10, .pos_encoding_mode = P::kAlibi}),
            VariantKind::kAlibiSoftCap);
  EXPECT_EQ(kind({.window_left = 4, .pos_encoding_mode = P::kAlibi}),
            VariantKind::kAlibiSlidingWindow);
  EXPECT_EQ(kind({.logits_soft_cap = 10, .window_left = 0, .pos_encoding_mode = P::kAlibi}),
            VariantKind::kAlibiSoftCapSlidingWindow);
  EXPECT_EQ(kind({.logits_soft_cap = 10, .pos_encoding_mode = P::kRopeLlama}),
            VariantKind::kRopeLlamaSoftCap);
  EXPECT_EQ(kind({.window_left = 4, .pos_encoding_mode = P::kRopeLlama}),
            VariantKind::kRopeLlamaSlidingWindow);
  EXPECT_EQ(kind({.logits_soft_cap = 10, .window_left = 4, .pos_encoding_mode = P::kRopeLlama}),
            VariantKind::kRopeLlamaSoftCapSlidingWindow);
  for (const VariantKind k :
       {VariantKind::kAlibi, VariantKind::kAlibiSoftCap, VariantKind::kAlibiSlidingWindow,
        VariantKind::kAlibiSoftCapSlidingWindow}) {
    EXPECT_TRUE(detail::uses_alibi(k));
  }
  EXPECT_FALSE(detail::uses_alibi(VariantKind::kRopeLlamaSoftCap));
  // Slopes still need ALiBi.
  testing::expect_argument_error(
      [&] {
        detail::select_variant({.logits_soft_cap = 10,
                                .alibi_slopes = reinterpret_cast<const DLTensor*>(uintptr_t{8})});
      },
      "options");
}

TEST(AttentionVariant, OutOfRangeValuesAreRejectedNamingOptions) {
  const auto rejects = [](AttentionOptions o) {
    testing::expect_argument_error([&] { detail::select_variant(o); }, "options");
  };
  rejects({.sm_scale = -1});
  rejects({.sm_scale = std::numeric_limits<double>::quiet_NaN()});
  rejects({.logits_soft_cap = -1});
  rejects({.window_left = -2});
  rejects({.k_scale = 0});
  rejects({.v_scale = std::numeric_limits<double>::infinity()});
  rejects({.pos_encoding_mode = PosEncodingMode::kRopeLlama, .rope_scale = 0});
  rejects({.pos_encoding_mode = PosEncodingMode::kRopeLlama, .rope_theta = -1});
}

TEST(AttentionVariant, StandardAlibiSlopesNeedPowerOfTwoHeads) {
  AttentionOptions o{.pos_encoding_mode = PosEncodingMode::kAlibi};
  testing::expect_argument_error(
      [&] { detail::resolve_variant(o, 128, 12, DLDevice{kDLCUDA, 0}); }, "options");
  EXPECT_EQ(detail::resolve_variant(o, 128, 16, DLDevice{kDLCUDA, 0}).kind, VariantKind::kAlibi);
}

TEST(AttentionVariant, SmScaleDefaultsToInverseSqrtHeadDim) {
  const auto r = detail::resolve_variant(AttentionOptions{}, 64, 8, DLDevice{kDLCUDA, 0});
  EXPECT_FLOAT_EQ(r.params.sm_scale, 0.125f);
}

}  // namespace
}  // namespace tessera
