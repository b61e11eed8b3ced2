// single_decode_with_kv_cache argument validation without a GPU: fake device
// pointers, so every rejection must happen before any CUDA call.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "tessera/api/decode.h"

namespace tessera {
namespace {

using testing::expect_argument_error;
using testing::FakeTensor;

// A consistent set of arguments (NHD); each test breaks one thing.
struct SingleDecodeArgs {
  static constexpr int64_t kQoHeads = 8;
  static constexpr int64_t kKvHeads = 2;
  static constexpr int64_t kHeadDim = 128;
  static constexpr int64_t kKvLen = 100;

  FakeTensor q{DType::kBFloat16, {kQoHeads, kHeadDim}};
  FakeTensor k{DType::kBFloat16, {kKvLen, kKvHeads, kHeadDim}};
  FakeTensor v{DType::kBFloat16, {kKvLen, kKvHeads, kHeadDim}};
  FakeTensor out{DType::kBFloat16, {kQoHeads, kHeadDim}};
  FakeTensor lse{DType::kFloat32, {kQoHeads}};
  KVLayout layout = KVLayout::kNHD;
  AttentionOptions options;

  SingleDecodeArgs() {
    out.with_data(0x20000000);
    k.with_data(0x30000000);
    v.with_data(0x40000000);
    lse.with_data(0x50000000);
  }
  void run() {
    single_decode_with_kv_cache(q, k, v, out, &lse.dl(), layout, options, nullptr);
  }
};

TEST(SingleDecodeArgs, CustomMasksArePrefillOnly) {
  SingleDecodeArgs a;
  FakeTensor mask(DType::kUInt8, {13});
  mask.with_data(0x60000000);
  a.options.custom_mask = &mask.dl();
  testing::expect_argument_error([&] { a.run(); }, "custom_mask");
}

TEST(SingleDecodeArgs, QMustBeTwoDimensional16BitOnCuda) {
  { SingleDecodeArgs a; a.q = FakeTensor(DType::kBFloat16, {8, 1, 128}); expect_argument_error([&] { a.run(); }, "q"); }
  { SingleDecodeArgs a; a.q = FakeTensor(DType::kFloat32, {8, 128}); expect_argument_error([&] { a.run(); }, "q"); }
  { SingleDecodeArgs a; a.q = FakeTensor(DType::kBFloat16, {8, 128}, {kDLCPU, 0}); expect_argument_error([&] { a.run(); }, "q"); }
}

TEST(SingleDecodeArgs, UnsupportedHeadDimIsRejectedNamingQ) {
  SingleDecodeArgs a;
  a.q = FakeTensor(DType::kBFloat16, {8, 72});
  expect_argument_error([&] { a.run(); }, "q");
}

TEST(SingleDecodeArgs, KvDtypeMustMatchQOrBeFp8) {
  SingleDecodeArgs a;
  a.k = FakeTensor(DType::kFloat16, {100, 2, 128});
  a.v = FakeTensor(DType::kFloat16, {100, 2, 128});
  expect_argument_error([&] { a.run(); }, "k");
}

TEST(SingleDecodeArgs, KvHeadDimMustMatchQ) {
  SingleDecodeArgs a;
  a.k = FakeTensor(DType::kBFloat16, {100, 2, 64});
  expect_argument_error([&] { a.run(); }, "k");
}

TEST(SingleDecodeArgs, KvHeadsMustDivideQoHeads) {
  SingleDecodeArgs a;
  a.k = FakeTensor(DType::kBFloat16, {100, 3, 128});
  a.v = FakeTensor(DType::kBFloat16, {100, 3, 128});
  expect_argument_error([&] { a.run(); }, "k");
}

TEST(SingleDecodeArgs, VMustMatchKShapeDtypeAndStrides) {
  { SingleDecodeArgs a; a.v = FakeTensor(DType::kBFloat16, {99, 2, 128}); expect_argument_error([&] { a.run(); }, "v"); }
  { SingleDecodeArgs a; a.v = FakeTensor(DType::kFloat8E4M3, {100, 2, 128}); expect_argument_error([&] { a.run(); }, "v"); }
  {
    SingleDecodeArgs a;
    a.v.with_strides({2 * 128 * 2, 128, 1});  // padded token stride, unlike k
    expect_argument_error([&] { a.run(); }, "v");
  }
}

TEST(SingleDecodeArgs, KvRowsMustBeSixteenByteAligned) {
  { SingleDecodeArgs a; a.k.with_data(0x30000008); expect_argument_error([&] { a.run(); }, "k"); }
  {
    SingleDecodeArgs a;
    a.k.with_strides({2 * 132, 132, 1});
    a.v.with_strides({2 * 132, 132, 1});
    // 132 bf16 = 264 bytes: not a multiple of 16.
    expect_argument_error([&] { a.run(); }, "k");
  }
}

TEST(SingleDecodeArgs, KvHeadDimMustBeContiguous) {
  SingleDecodeArgs a;
  a.k.with_strides({2 * 256, 256, 2});
  expect_argument_error([&] { a.run(); }, "k");
}

TEST(SingleDecodeArgs, OutMustMatchQ) {
  { SingleDecodeArgs a; a.out = FakeTensor(DType::kFloat16, {8, 128}); expect_argument_error([&] { a.run(); }, "out"); }
  { SingleDecodeArgs a; a.out = FakeTensor(DType::kBFloat16, {4, 128}); expect_argument_error([&] { a.run(); }, "out"); }
}

TEST(SingleDecodeArgs, OutMustNotPartlyOverlapQ) {
  SingleDecodeArgs a;
  a.q.with_data(0x20000000);
  a.out.with_data(0x20000000 + 256);
  expect_argument_error([&] { a.run(); }, "out");
}

TEST(SingleDecodeArgs, LseMustBeFloat32PerHead) {
  { SingleDecodeArgs a; a.lse = FakeTensor(DType::kBFloat16, {8}); expect_argument_error([&] { a.run(); }, "lse"); }
  { SingleDecodeArgs a; a.lse = FakeTensor(DType::kFloat32, {4}); expect_argument_error([&] { a.run(); }, "lse"); }
  { SingleDecodeArgs a; a.lse = FakeTensor(DType::kFloat32, {8, 1}); expect_argument_error([&] { a.run(); }, "lse"); }
}

TEST(SingleDecodeArgs, BadOptionsAreRejectedNamingOptions) {
  { SingleDecodeArgs a; a.options.sm_scale = -1; expect_argument_error([&] { a.run(); }, "options"); }
  {
    SingleDecodeArgs a;
    FakeTensor slopes(DType::kFloat32, {8});
    a.options.alibi_slopes = &slopes.dl();  // slopes without ALiBi
    expect_argument_error([&] { a.run(); }, "options");
  }
}

TEST(SingleDecodeArgs, AlibiSlopesMustBeFloat32PerQoHead) {
  SingleDecodeArgs a;
  FakeTensor slopes(DType::kFloat32, {4});
  a.options.pos_encoding_mode = PosEncodingMode::kAlibi;
  a.options.alibi_slopes = &slopes.dl();
  expect_argument_error([&] { a.run(); }, "alibi_slopes");
}

TEST(SingleDecodeArgs, HndLayoutReadsHeadsFromTheFirstAxis) {
  // [kv_heads=100, kv_len=2, D]: 100 KV heads do not divide 8 query heads.
  SingleDecodeArgs a;
  a.layout = KVLayout::kHND;
  expect_argument_error([&] { a.run(); }, "k");
}

}  // namespace
}  // namespace tessera
