// single_prefill_with_kv_cache argument validation without a GPU: fake device
// pointers, so every rejection must happen before any CUDA call.
#include <gtest/gtest.h>

#include <cstdint>

#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/api/prefill.h"

namespace tessera {
namespace {

using testing::expect_argument_error;
using testing::FakeTensor;

// A consistent set of arguments (NHD, causal); each test breaks one thing.
struct SinglePrefillArgs {
  static constexpr int64_t kQoLen = 50;
  static constexpr int64_t kKvLen = 100;
  static constexpr int64_t kQoHeads = 8;
  static constexpr int64_t kKvHeads = 2;
  static constexpr int64_t kHeadDim = 128;

  FakeTensor q{DType::kBFloat16, {kQoLen, kQoHeads, kHeadDim}};
  FakeTensor k{DType::kBFloat16, {kKvLen, kKvHeads, kHeadDim}};
  FakeTensor v{DType::kBFloat16, {kKvLen, kKvHeads, kHeadDim}};
  FakeTensor out{DType::kBFloat16, {kQoLen, kQoHeads, kHeadDim}};
  FakeTensor lse{DType::kFloat32, {kQoLen, kQoHeads}};
  KVLayout layout = KVLayout::kNHD;
  bool causal = true;
  AttentionOptions options;

  SinglePrefillArgs() {
    out.with_data(0x20000000);
    k.with_data(0x30000000);
    v.with_data(0x40000000);
    lse.with_data(0x50000000);
  }
  void run() {
    single_prefill_with_kv_cache(q, k, v, out, &lse.dl(), layout, causal, options, nullptr);
  }
};

#define EXPECT_REJECTED(setup, name)                             \
  do {                                                           \
    SinglePrefillArgs a;                                         \
    setup;                                                       \
    expect_argument_error([&] { a.run(); }, name);               \
  } while (0)

TEST(SinglePrefillArgs, QMustBeThreeDimensional16BitOnCuda) {
  EXPECT_REJECTED(a.q = FakeTensor(DType::kBFloat16, {50, 8 * 128}), "q");
  EXPECT_REJECTED(a.q = FakeTensor(DType::kFloat32, {50, 8, 128}), "q");
  EXPECT_REJECTED(a.q = FakeTensor(DType::kBFloat16, {50, 8, 128}, {kDLCPU, 0}), "q");
  EXPECT_REJECTED(a.q.with_strides({8 * 256, 256, 2}), "q");  // head_dim not contiguous
}

TEST(SinglePrefillArgs, UnsupportedHeadDimIsRejectedNamingQ) {
  for (const int64_t d : {32, 72, 160}) {
    SinglePrefillArgs a;
    a.q = FakeTensor(DType::kBFloat16, {50, 8, d});
    a.k = FakeTensor(DType::kBFloat16, {100, 2, d});
    a.v = FakeTensor(DType::kBFloat16, {100, 2, d});
    a.out = FakeTensor(DType::kBFloat16, {50, 8, d});
    a.out.with_data(0x20000000);
    expect_argument_error([&] { a.run(); }, "q");
  }
}

TEST(SinglePrefillArgs, HeadDim192WithVOf192IsRejectedNamingV) {
  // q / k at 192 exist only with v / out at 128 (DeepSeek's prefill).
  SinglePrefillArgs a;
  a.q = FakeTensor(DType::kBFloat16, {50, 8, 192});
  a.k = FakeTensor(DType::kBFloat16, {100, 2, 192});
  a.v = FakeTensor(DType::kBFloat16, {100, 2, 192});
  a.out = FakeTensor(DType::kBFloat16, {50, 8, 192});
  a.out.with_data(0x20000000);
  expect_argument_error([&] { a.run(); }, "v");
}

TEST(SinglePrefillArgs, UnalignedQRowsAreRejected) {
  EXPECT_REJECTED(a.q.with_strides({8 * 132, 132, 1}), "q");
  EXPECT_REJECTED(a.q.with_strides({8 * 132 + 4, 132 + 4, 1}), "q");
  EXPECT_REJECTED(a.q.with_data(0x10000002), "q");
}

TEST(SinglePrefillArgs, KvDtypeMustMatchQ) {
  EXPECT_REJECTED((a.k = FakeTensor(DType::kFloat16, {100, 2, 128}),
                   a.v = FakeTensor(DType::kFloat16, {100, 2, 128})),
                  "k");
  EXPECT_REJECTED((a.k = FakeTensor(DType::kFloat8E4M3, {100, 2, 128}),
                   a.v = FakeTensor(DType::kFloat8E4M3, {100, 2, 128})),
                  "k");  // fp8 KV: not built for prefill yet
}

TEST(SinglePrefillArgs, KvHeadDimAndHeadsMustFitQ) {
  EXPECT_REJECTED(a.k = FakeTensor(DType::kBFloat16, {100, 2, 64}), "k");
  EXPECT_REJECTED((a.k = FakeTensor(DType::kBFloat16, {100, 3, 128}),
                   a.v = FakeTensor(DType::kBFloat16, {100, 3, 128})),
                  "k");
  EXPECT_REJECTED(a.k = FakeTensor(DType::kBFloat16, {100, 2, 128}, {kDLCPU, 0}), "k");
}

TEST(SinglePrefillArgs, KvRowsMustBe16ByteAligned) {
  EXPECT_REJECTED((a.k.with_strides({2 * 132, 132, 1}), a.v.with_strides({2 * 132, 132, 1})),
                  "k");
  EXPECT_REJECTED(a.k.with_data(0x30000008), "k");
}

TEST(SinglePrefillArgs, VMustMatchKShapeDtypeAndStrides) {
  EXPECT_REJECTED(a.v = FakeTensor(DType::kBFloat16, {99, 2, 128}), "v");
  EXPECT_REJECTED(a.v = FakeTensor(DType::kFloat16, {100, 2, 128}), "v");
  EXPECT_REJECTED(a.v.with_strides({2 * 128 * 2, 128, 1}), "v");
}

TEST(SinglePrefillArgs, HndLayoutReadsKvLenFromDimOne) {
  // HND [kv_heads, kv_len, D]: 3 heads do not divide 8; the same [2, 100, D]
  // tensors read as NHD have 100 heads, which do not divide 8 either.
  EXPECT_REJECTED((a.k = FakeTensor(DType::kBFloat16, {3, 100, 128}),
                   a.v = FakeTensor(DType::kBFloat16, {3, 100, 128}), a.layout = KVLayout::kHND),
                  "k");
  EXPECT_REJECTED((a.k = FakeTensor(DType::kBFloat16, {2, 100, 128}),
                   a.v = FakeTensor(DType::kBFloat16, {2, 100, 128})),
                  "k");
}

TEST(SinglePrefillArgs, OutMustMatchQ) {
  EXPECT_REJECTED(a.out = FakeTensor(DType::kFloat16, {50, 8, 128}), "out");
  EXPECT_REJECTED(a.out = FakeTensor(DType::kBFloat16, {49, 8, 128}), "out");
  EXPECT_REJECTED(a.out.with_strides({8 * 132, 132, 1}), "out");
  EXPECT_REJECTED(a.out.with_data((uintptr_t{1} << 20) + 256), "out");  // overlaps q without being q
}

TEST(SinglePrefillArgs, LseMustBeFloat32QoLenByHeads) {
  EXPECT_REJECTED(a.lse = FakeTensor(DType::kBFloat16, {50, 8}), "lse");
  EXPECT_REJECTED(a.lse = FakeTensor(DType::kFloat32, {8, 50}), "lse");
  EXPECT_REJECTED(a.lse = FakeTensor(DType::kFloat32, {50 * 8}), "lse");
  EXPECT_REJECTED(a.lse.with_strides({1, 50}), "lse");
}

TEST(SinglePrefillArgs, BadOptionsAreRejectedNamingOptions) {
  EXPECT_REJECTED(a.options.sm_scale = -1, "options");
  FakeTensor slopes(DType::kFloat32, {8});
  slopes.with_data(0x60000000);
  EXPECT_REJECTED(a.options.alibi_slopes = &slopes.dl(), "options");  // slopes without ALiBi
}

// The packed custom mask: uint8, 1-D, contiguous, on q's device, with at
// least ceil(qo_len * kv_len / 8) = 625 bytes.
TEST(SinglePrefillArgs, CustomMaskIsValidatedNamingCustomMask) {
  FakeTensor short_mask(DType::kUInt8, {624});
  short_mask.with_data(0x60000000);
  FakeTensor wide_mask(DType::kInt32, {625});
  wide_mask.with_data(0x60000000);
  FakeTensor host_mask(DType::kUInt8, {625}, {kDLCPU, 0});
  FakeTensor square_mask(DType::kUInt8, {25, 25});
  square_mask.with_data(0x60000000);
  EXPECT_REJECTED(a.options.custom_mask = &short_mask.dl(), "custom_mask");
  EXPECT_REJECTED(a.options.custom_mask = &wide_mask.dl(), "custom_mask");
  EXPECT_REJECTED(a.options.custom_mask = &host_mask.dl(), "custom_mask");
  EXPECT_REJECTED(a.options.custom_mask = &square_mask.dl(), "custom_mask");
}

TEST(SinglePrefillArgs, AlibiSlopesAreValidated) {
  FakeTensor slopes(DType::kFloat32, {4});
  slopes.with_data(0x60000000);
  EXPECT_REJECTED((a.options.pos_encoding_mode = PosEncodingMode::kAlibi,
                   a.options.alibi_slopes = &slopes.dl()),
                  "alibi_slopes");
}

}  // namespace
}  // namespace tessera
