// The two fp8 KV-cache formats, float8_e4m3fn and float8_e5m2, without a GPU:
// their DLPack codes and names, the host conversions the float64 references
// and the GPU tests round through (tests/support/host_convert.h), and the
// entry points' dtype checks (each accepts both formats where it accepts
// one, and names the argument when the formats are mixed or misplaced).
// Acceptance is checked with empty inputs, so no CUDA call is made.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include "support/argument_error.h"
#include "support/device_tensor.h"
#include "support/host_convert.h"
#include "tessera/api/decode.h"
#include "tessera/api/page.h"
#include "tessera/core/dtype.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::expect_argument_error;
using testing::FakeTensor;
using testing::rejected_argument;

constexpr DType kFp8Formats[] = {DType::kFloat8E4M3, DType::kFloat8E5M2};

// The tessera::Error message of `call`, or "" if it returned.
std::string error_message(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

// ---------------------------------------------------------------- DType

TEST(Fp8Formats, DlpackCodesAreDlpack11s) {
  // DLPack 1.1: kDLFloat8_e4m3fn = 10, kDLFloat8_e5m2 = 12 (what torch and
  // other frameworks export).
  DType dtype{};
  ASSERT_TRUE(dtype_from_dlpack({10, 8, 1}, &dtype));
  EXPECT_EQ(dtype, DType::kFloat8E4M3);
  ASSERT_TRUE(dtype_from_dlpack({12, 8, 1}, &dtype));
  EXPECT_EQ(dtype, DType::kFloat8E5M2);
  EXPECT_FALSE(dtype_from_dlpack({13, 8, 1}, &dtype));  // e5m2fnuz: another format
  EXPECT_FALSE(dtype_from_dlpack({12, 16, 1}, &dtype));
  EXPECT_FALSE(dtype_from_dlpack({12, 8, 2}, &dtype));
  for (const DType fp8 : kFp8Formats) {
    const DLDataType dl = dtype_to_dlpack(fp8);
    ASSERT_TRUE(dtype_from_dlpack(dl, &dtype));
    EXPECT_EQ(dtype, fp8);
    EXPECT_EQ(dl.bits, 8);
    EXPECT_EQ(dl.lanes, 1);
    EXPECT_EQ(dtype_size_bytes(fp8), 1u);
    EXPECT_TRUE(is_float8(fp8));
  }
  EXPECT_FALSE(is_float8(DType::kUInt8));
  EXPECT_FALSE(is_float8(DType::kFloat16));
}

TEST(Fp8Formats, NamesAreTorchs) {
  EXPECT_STREQ(dtype_name(DType::kFloat8E4M3), "float8_e4m3fn");
  EXPECT_STREQ(dtype_name(DType::kFloat8E5M2), "float8_e5m2");
  EXPECT_EQ(dlpack_dtype_name({12, 8, 1}), "float8_e5m2");
}

// ------------------------------------------- host conversions (references)

float e5m2_round(float value) {
  return testing::round_to(DType::kFloat8E5M2, value);
}

uint8_t e5m2_bits(float value) {
  uint8_t bits = 0;
  testing::float_to_storage(DType::kFloat8E5M2, value, &bits);
  return bits;
}

TEST(Fp8Formats, E5m2RoundsToNearestEvenWithTwoMantissaBits) {
  // 1, 1.25, 1.5, 1.75 are representable; ties go to the even mantissa.
  EXPECT_EQ(e5m2_round(1.25f), 1.25f);
  EXPECT_EQ(e5m2_round(1.125f), 1.0f);   // tie between 1 (00) and 1.25 (01)
  EXPECT_EQ(e5m2_round(1.375f), 1.5f);   // tie between 1.25 (01) and 1.5 (10)
  EXPECT_EQ(e5m2_round(1.126f), 1.25f);  // past the tie
  EXPECT_EQ(e5m2_round(-3.0f), -3.0f);
  EXPECT_EQ(e5m2_round(0.0f), 0.0f);
  // Subnormals: 2^-16 is the smallest; half of it ties to even (zero).
  EXPECT_EQ(e5m2_round(std::ldexp(1.0f, -16)), std::ldexp(1.0f, -16));
  EXPECT_EQ(e5m2_round(std::ldexp(3.0f, -16)), std::ldexp(3.0f, -16));
  EXPECT_EQ(e5m2_round(std::ldexp(1.0f, -17)), 0.0f);
  // Beyond e4m3fn's 448 (e5m2's reason to exist): 20480 = 1.25 * 2^14.
  EXPECT_EQ(e5m2_round(20480.f), 20480.f);
  EXPECT_EQ(testing::round_to(DType::kFloat8E4M3, 20480.f), 448.f);
}

TEST(Fp8Formats, E5m2SaturatesToItsLargestFiniteValue) {
  // The same saturating cast the append kernel does (never infinity from a
  // finite value, nor from an infinite one); NaN stays NaN.
  constexpr float kMax = 57344.f;
  EXPECT_EQ(e5m2_round(kMax), kMax);
  EXPECT_EQ(e5m2_round(61440.f), kMax);  // would round to infinity unsaturated
  EXPECT_EQ(e5m2_round(1e9f), kMax);
  EXPECT_EQ(e5m2_round(-1e9f), -kMax);
  EXPECT_EQ(e5m2_round(std::numeric_limits<float>::infinity()), kMax);
  EXPECT_EQ(e5m2_round(-std::numeric_limits<float>::infinity()), -kMax);
  EXPECT_TRUE(std::isnan(e5m2_round(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(e5m2_bits(kMax), 0x7b);
  EXPECT_EQ(e5m2_bits(-kMax), 0xfb);
}

TEST(Fp8Formats, E5m2ByteIsTheHighByteOfTheFloat16) {
  // What the kernels rely on when they widen e5m2 with a shift / byte
  // permute: every byte reads as the fp16 whose high byte it is (NaN
  // payloads aside), and storing that fp16's value gives the byte back.
  for (int byte = 0; byte < 256; ++byte) {
    const auto bits = static_cast<uint8_t>(byte);
    const float value = testing::storage_to_float(DType::kFloat8E5M2, &bits);
    const auto half_bits = static_cast<uint16_t>(byte << 8);
    const float as_half = testing::storage_to_float(DType::kFloat16, &half_bits);
    if (std::isnan(as_half)) {
      EXPECT_TRUE(std::isnan(value)) << "byte " << byte;
      continue;
    }
    EXPECT_EQ(value, as_half) << "byte " << byte;
    if (std::isfinite(value)) EXPECT_EQ(e5m2_bits(value), bits) << "byte " << byte;
  }
}

TEST(Fp8Formats, E4m3ConversionsAreUnchanged) {
  // The e4m3fn side of the shared switch cases: 448 is its largest value
  // and 0x7e its byte; 1.0625 ties to 1 (three mantissa bits).
  EXPECT_EQ(testing::round_to(DType::kFloat8E4M3, 1e6f), 448.f);
  EXPECT_EQ(testing::round_to(DType::kFloat8E4M3, 1.0625f), 1.0f);
  uint8_t bits = 0;
  testing::float_to_storage(DType::kFloat8E4M3, 448.f, &bits);
  EXPECT_EQ(bits, 0x7e);
}

// ------------------------------------------------------ single decode

// q with no heads: every check runs, then the call returns before any CUDA
// work (fake device pointers).
struct EmptyDecodeArgs {
  FakeTensor q{DType::kBFloat16, {0, 128}};
  FakeTensor k{DType::kFloat8E5M2, {100, 2, 128}};
  FakeTensor v{DType::kFloat8E5M2, {100, 2, 128}};
  FakeTensor out{DType::kBFloat16, {0, 128}};

  EmptyDecodeArgs() {
    k.with_data(0x30000000);
    v.with_data(0x40000000);
    out.with_data(0x20000000);
  }
  void run() {
    single_decode_with_kv_cache(q, k, v, out, nullptr, KVLayout::kNHD, AttentionOptions{}, nullptr);
  }
};

TEST(Fp8Formats, SingleDecodeAcceptsEitherFormatWithEitherQ) {
  for (const DType fp8 : kFp8Formats) {
    for (const DType q : {DType::kBFloat16, DType::kFloat16}) {
      EmptyDecodeArgs a;
      a.q = FakeTensor(q, {0, 128});
      a.out = FakeTensor(q, {0, 128});
      a.k = FakeTensor(fp8, {100, 2, 128});
      a.v = FakeTensor(fp8, {100, 2, 128});
      a.k.with_data(0x30000000);
      a.v.with_data(0x40000000);
      EXPECT_EQ(rejected_argument([&] { a.run(); }), "<accepted>") << dtype_name(fp8);
    }
  }
}

TEST(Fp8Formats, SingleDecodeRejectsMixedFormatsNamingV) {
  EmptyDecodeArgs a;
  a.v = FakeTensor(DType::kFloat8E4M3, {100, 2, 128});
  a.v.with_data(0x40000000);
  expect_argument_error([&] { a.run(); }, "v");
}

TEST(Fp8Formats, SingleDecodeDtypeErrorNamesBothFormats) {
  EmptyDecodeArgs a;
  a.k = FakeTensor(DType::kFloat16, {100, 2, 128});  // neither q's dtype nor fp8
  a.k.with_data(0x30000000);
  const std::string message = error_message([&] { a.run(); });
  EXPECT_NE(message.find("float8_e4m3fn"), std::string::npos) << message;
  EXPECT_NE(message.find("float8_e5m2"), std::string::npos) << message;
}

// ------------------------------------------------------------- append

// No tokens: every check runs, then the call returns before any CUDA work.
struct EmptyAppendArgs {
  FakeTensor key{DType::kBFloat16, {0, 2, 64}};
  FakeTensor value{DType::kBFloat16, {0, 2, 64}};
  FakeTensor cache{DType::kFloat8E5M2, {8, 2, 16, 2, 64}};
  FakeTensor batch_indices{DType::kInt32, {0}};
  FakeTensor positions{DType::kInt32, {0}};
  FakeTensor kv_indices{DType::kInt32, {8}};
  FakeTensor kv_indptr{DType::kInt32, {4}};
  FakeTensor kv_last_page_len{DType::kInt32, {3}};

  void set_dtypes(DType append, DType cache_dtype) {
    key = FakeTensor(append, {0, 2, 64});
    value = FakeTensor(append, {0, 2, 64});
    cache = FakeTensor(cache_dtype, {8, 2, 16, 2, 64});
  }
  void run() {
    append_paged_kv_cache(key, value, batch_indices, positions,
                          PagedKVCacheArg::combined(cache, KVLayout::kNHD), kv_indices, kv_indptr,
                          kv_last_page_len, nullptr, Validate::kOn);
  }
};

TEST(Fp8Formats, AppendAcceptsHalfTypesOrTheSameFormatIntoEitherFp8Cache) {
  for (const DType fp8 : kFp8Formats) {
    for (const DType append : {DType::kFloat16, DType::kBFloat16, fp8}) {
      EmptyAppendArgs a;
      a.set_dtypes(append, fp8);
      EXPECT_EQ(rejected_argument([&] { a.run(); }), "<accepted>")
          << dtype_name(append) << " into " << dtype_name(fp8);
    }
  }
}

TEST(Fp8Formats, AppendRejectsTheOtherFp8FormatNamingAppendKey) {
  // fp8 appends are byte copies: a cache of the other format would get
  // bytes of a different meaning.
  EmptyAppendArgs a;
  a.set_dtypes(DType::kFloat8E4M3, DType::kFloat8E5M2);
  expect_argument_error([&] { a.run(); }, "append_key");
  a.set_dtypes(DType::kFloat8E5M2, DType::kFloat8E4M3);
  expect_argument_error([&] { a.run(); }, "append_key");
  const std::string message = error_message([&] { a.run(); });
  EXPECT_NE(message.find("float8_e5m2"), std::string::npos) << message;
  EXPECT_NE(message.find("float8_e4m3fn"), std::string::npos) << message;
}

TEST(Fp8Formats, AppendRejectsFp8IntoAHalfCacheNamingAppendKey) {
  for (const DType fp8 : kFp8Formats) {
    EmptyAppendArgs a;
    a.set_dtypes(fp8, DType::kBFloat16);
    expect_argument_error([&] { a.run(); }, "append_key");
  }
}

TEST(Fp8Formats, AppendRejectsMixedKeyAndValueFormatsNamingAppendValue) {
  EmptyAppendArgs a;
  a.set_dtypes(DType::kFloat8E5M2, DType::kFloat8E5M2);
  a.value = FakeTensor(DType::kFloat8E4M3, {0, 2, 64});
  expect_argument_error([&] { a.run(); }, "append_value");
}

}  // namespace
}  // namespace tessera
