// The kernel table (src/api/aot_kernels.h): the Hopper prefill family's
// entries are also what backend fa3 serves of dtype x head_dim x variant x
// mask (prefill_backend.cpp asks the table), so these pin that set.
#include "api/aot_kernels.h"  // header-only: tested directly

#include <gtest/gtest.h>

#include <cstdint>

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
    EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, dtype, dtype, 96, false));
    EXPECT_FALSE(
        aot_prefill_sm90_kernel(VariantKind::kPlain, dtype, DType::kFloat8E4M3, 128, false));
  }
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, DType::kFloat16, DType::kBFloat16, 128,
                                       false));
  EXPECT_FALSE(aot_prefill_sm90_kernel(VariantKind::kPlain, DType::kFloat32, DType::kFloat32, 128,
                                       false));
}

}  // namespace
}  // namespace tessera::detail
