// The kernel table (src/api/aot_kernels.h): the Hopper prefill family's
// entries are also what backend fa3 serves of dtype x head_dim x variant x
// mask (prefill_backend.cpp asks the table), so these pin that set.
#include "api/aot_kernels.h"  // header-only: tested directly

#include <gtest/gtest.h>

#include <cstdint>

#include "support/argument_error.h"
#include "tessera/api/prefill.h"

namespace tessera::detail {
namespace {

using attention::VariantKind;

TEST(KernelTable, HopperPrefillServesTheListedCases) {
  for (const DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (const int64_t head_dim : {64, 128, 256}) {
      for (const VariantKind v : {VariantKind::kPlain, VariantKind::kSoftCap,
                                  VariantKind::kSlidingWindow, VariantKind::kSoftCapSlidingWindow}) {
        EXPECT_TRUE(aot_prefill_sm90_kernel(v, dtype, dtype, head_dim, false))
            << static_cast<int>(v) << " head_dim " << head_dim;
      }
    }
    EXPECT_TRUE(aot_prefill_sm90_kernel(VariantKind::kAlibi, dtype, dtype, 128, false));
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kAlibi, dtype, dtype, 64, false));
    EXPECT_TRUE(aot_prefill_sm90_kernel(VariantKind::kPlain, dtype, dtype, 128, true));
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, dtype, dtype, 64, true));
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kSoftCap, dtype, dtype, 128, true));
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kRopeLlama, dtype, dtype, 128, false));
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kAlibiSoftCap, dtype, dtype, 128, false));
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kAlibi, dtype, dtype, 256, false));
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, dtype, dtype, 256, true));
    for (const int64_t head_dim : {80, 96, 112}) {  // FA2 only: auto runs it, fa3 refuses
      EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, dtype, dtype, head_dim, false));
    }
  }
  // fp8 e4m3 paged K/V with bf16 q at head_dim 128, plain and window (FA2's
  // AOT fp8 set; the gather widens the tiles).
  const DType bf16 = DType::kBFloat16;
  const DType e4m3 = DType::kFloat8E4M3;
  EXPECT_TRUE(aot_prefill_sm90_kernel(VariantKind::kPlain, bf16, e4m3, 128, false));
  EXPECT_TRUE(aot_prefill_sm90_kernel(VariantKind::kSlidingWindow, bf16, e4m3, 128, false));
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kSoftCap, bf16, e4m3, 128, false));
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, bf16, e4m3, 128, true));
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, bf16, e4m3, 64, false));
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, DType::kFloat16, e4m3, 128, false));
  EXPECT_FALSE(
      aot_prefill_sm90_kernel(VariantKind::kPlain, bf16, DType::kFloat8E5M2, 128, false));
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, DType::kFloat16, DType::kBFloat16, 128,
                                       false));
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, DType::kFloat32, DType::kFloat32, 128,
                                       false));
}

// Head dims 80 / 96 / 112 are JIT-only (aot_kernels.h: library size, CI
// build time): no decode or prefill entry of any variant or dtype.
TEST(KernelTable, HeadDims80To112AreJitOnly) {
  for (const int64_t head_dim : {80, 96, 112}) {
    for (const DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      for (const VariantKind v : {VariantKind::kPlain, VariantKind::kSoftCap,
                                  VariantKind::kSlidingWindow, VariantKind::kAlibi}) {
        EXPECT_FALSE(aot_decode_kernel(v, dtype, dtype, head_dim)) << head_dim;
        EXPECT_FALSE(aot_prefill_kernel(v, dtype, dtype, head_dim, false)) << head_dim;
      }
      EXPECT_FALSE(aot_prefill_kernel(VariantKind::kPlain, dtype, dtype, head_dim, true));
    }
    EXPECT_FALSE(aot_decode_kernel(VariantKind::kPlain, DType::kBFloat16, DType::kFloat8E4M3,
                                   head_dim));
  }
  // The head dims around them keep their entries.
  EXPECT_TRUE(aot_decode_kernel(VariantKind::kPlain, DType::kBFloat16, DType::kBFloat16, 64));
  EXPECT_TRUE(aot_prefill_kernel(VariantKind::kPlain, DType::kBFloat16, DType::kBFloat16, 128,
                                 false));
}

// The public question (tessera::prefill_backend_support_sm90, the C ABI's
// and Python utils' source): the table's answer, auto's head_dim 256 rule,
// and head_dim 0 = at every head_dim the Hopper kernels have.
TEST(KernelTable, BackendSupportAnswersFromTheTable) {
  const auto ask = [](PosEncodingMode pos, bool soft_cap, bool window, bool mask, DType q,
                      DType kv, int64_t head_dim) {
    return prefill_backend_support_sm90(pos, soft_cap, window, mask, q, kv, head_dim);
  };
  const DType bf16 = DType::kBFloat16;
  PrefillBackendSupport s = ask(PosEncodingMode::kNone, false, false, false, bf16, bf16, 128);
  EXPECT_TRUE(s.fa3_serves);
  EXPECT_TRUE(s.auto_takes_fa3);
  s = ask(PosEncodingMode::kNone, true, true, false, bf16, bf16, 64);  // soft-cap + window
  EXPECT_TRUE(s.fa3_serves && s.auto_takes_fa3);
  s = ask(PosEncodingMode::kNone, false, false, false, bf16, bf16, 256);
  EXPECT_TRUE(s.fa3_serves);
  EXPECT_FALSE(s.auto_takes_fa3);  // fa3 by name only at 256
  s = ask(PosEncodingMode::kNone, false, false, false, bf16, bf16, 0);
  EXPECT_TRUE(s.fa3_serves);
  EXPECT_FALSE(s.auto_takes_fa3);
  s = ask(PosEncodingMode::kAlibi, false, false, false, bf16, bf16, 128);
  EXPECT_TRUE(s.fa3_serves);
  EXPECT_FALSE(ask(PosEncodingMode::kAlibi, false, false, false, bf16, bf16, 0).fa3_serves);
  EXPECT_FALSE(ask(PosEncodingMode::kAlibi, true, false, false, bf16, bf16, 128).fa3_serves);
  EXPECT_FALSE(ask(PosEncodingMode::kRopeLlama, false, false, false, bf16, bf16, 128).fa3_serves);
  EXPECT_FALSE(ask(PosEncodingMode::kNone, false, false, true, bf16, bf16, 64).fa3_serves);
  EXPECT_TRUE(ask(PosEncodingMode::kNone, false, false, true, bf16, bf16, 128).fa3_serves);
  s = ask(PosEncodingMode::kNone, false, false, false, bf16, DType::kFloat8E4M3, 128);
  EXPECT_TRUE(s.fa3_serves && s.auto_takes_fa3);
  EXPECT_FALSE(
      ask(PosEncodingMode::kNone, false, false, false, bf16, DType::kFloat8E5M2, 128).fa3_serves);
  EXPECT_FALSE(ask(PosEncodingMode::kNone, false, false, false, bf16, bf16, 96).fa3_serves);
  testing::expect_argument_error(
      [&] { ask(PosEncodingMode::kNone, false, false, false, bf16, bf16, -1); }, "head_dim");
}

}  // namespace
}  // namespace tessera::detail
