// single_decode_with_kv_cache (and through it the decode kernel, the planner's
// split-KV chunks and the merge) on the GPU against the float64 reference.
// Inputs are rounded to their storage dtype on the host first, so the
// reference sees exactly what the kernel sees; outputs are poisoned before
// each run. Tolerances: out is one rounding of a float32 result to q's dtype
// (tolerance_for); lse is float32 log-sum-exp, checked to 2e-3 absolute +
// 1e-3 relative (float32 sums over up to 32k terms, ex2.approx/lg2.approx).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "reference/attention_ref.h"
#include "support/argument_error.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/kv_tensor.h"
#include "support/random.h"
#include "tessera/api/decode.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;

constexpr testing::Tolerance kLseTolerance{1e-3, 2e-3, 1e-3};

struct DecodeCase {
  int64_t kv_len = 100;
  int64_t num_qo_heads = 8;
  int64_t num_kv_heads = 2;
  int64_t head_dim = 128;
  DType q_dtype = DType::kBFloat16;
  DType kv_dtype = DType::kBFloat16;
  KVLayout layout = KVLayout::kNHD;
  int64_t token_padding = 0;  // extra elements per row of the outer K/V axis (strided K/V)
  bool with_lse = true;
  AttentionOptions options;
  reference::AttentionRefParams ref;  // variant fields; shapes filled in
  DecodeBackend backend = DecodeBackend::kAuto;
  float kv_std = 1.f;  // K/V values ~ N(0, kv_std^2) before rounding (fp8 range tests)
};

// K/V of logical [kv_len, kv_heads, D] values in the case's layout, with an
// optional padded outer stride.
DeviceTensor make_kv(const DecodeCase& c, const std::vector<float>& nhd_values) {
  return testing::make_kv_tensor(c.kv_dtype, c.layout, c.kv_len, c.num_kv_heads, c.head_dim,
                                 c.token_padding, nhd_values);
}

void run_case(DecodeCase c, Rng& rng) {
  SCOPED_TRACE("kv_len " + std::to_string(c.kv_len) + ", heads " + std::to_string(c.num_qo_heads) +
               "/" + std::to_string(c.num_kv_heads) + ", D " + std::to_string(c.head_dim));
  const int64_t d = c.head_dim;
  const auto q_host = testing::round_to(c.q_dtype, rng.normal_vector(c.num_qo_heads * d));
  const auto kv_count = static_cast<std::size_t>(c.kv_len * c.num_kv_heads * d);
  const auto k_host = testing::round_to(c.kv_dtype, rng.normal_vector(kv_count, 0.f, c.kv_std));
  const auto v_host = testing::round_to(c.kv_dtype, rng.normal_vector(kv_count, 0.f, c.kv_std));

  DeviceTensor q(c.q_dtype, {c.num_qo_heads, d});
  q.upload(q_host);
  DeviceTensor k = make_kv(c, k_host);
  DeviceTensor v = make_kv(c, v_host);
  DeviceTensor out(c.q_dtype, {c.num_qo_heads, d});
  DeviceTensor lse(DType::kFloat32, {c.num_qo_heads});
  out.poison();
  lse.poison();

  CudaStream stream;
  DLTensor q_dl = q.dl(), k_dl = k.dl(), v_dl = v.dl(), out_dl = out.dl(), lse_dl = lse.dl();
  single_decode_with_kv_cache(q_dl, k_dl, v_dl, out_dl, c.with_lse ? &lse_dl : nullptr, c.layout,
                              c.options, stream.get(), c.backend);
  stream.synchronize();

  reference::AttentionRefParams p = c.ref;
  p.qo_len = 1;
  p.kv_len = c.kv_len;
  p.num_qo_heads = c.num_qo_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = d;
  p.sm_scale = c.options.sm_scale;
  p.k_scale = c.options.k_scale;
  p.v_scale = c.options.v_scale;
  const auto expected = reference::attention_reference(q_host, k_host, v_host, p);

  const auto got = out.download();
  if (c.kv_len == 0) {
    for (const float x : got) EXPECT_EQ(x, 0.f);
  } else {
    EXPECT_TRUE(testing::all_close(got, expected.out, testing::tolerance_for(c.q_dtype)));
  }
  if (c.with_lse) {
    const auto got_lse = lse.download();
    if (c.kv_len == 0) {
      for (const float x : got_lse) EXPECT_EQ(x, -std::numeric_limits<float>::infinity());
    } else {
      EXPECT_TRUE(testing::all_close(got_lse, expected.lse, kLseTolerance));
    }
  } else {
    for (const float x : lse.download()) EXPECT_TRUE(std::isnan(x));  // never written: still poison
  }
  EXPECT_TRUE(testing::padding_untouched(k));  // K padding still poisoned: read-only input
}

TEST(DecodeKernel, KvLengthsAroundTileAndChunkEdgesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t kv_len : {1, 15, 16, 17, 63, 64, 65, 1000, 32768}) {
    run_case({.kv_len = kv_len}, rng);
  }
}

// Both kernels forced (kAuto picks tensor cores from GQA 4): short and
// split lengths, groups 1/4/8/16, HND and strided K/V.
TEST(DecodeKernel, BothBackendsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DecodeBackend backend : {DecodeBackend::kCudaCores, DecodeBackend::kTensorCores}) {
    for (const int64_t kv_len : {1, 17, 65, 5000, 32768}) {
      for (const int64_t group : {1, 4, 8, 16}) {
        DecodeCase c{.kv_len = kv_len, .num_qo_heads = 2 * group, .num_kv_heads = 2};
        c.backend = backend;
        c.layout = kv_len == 65 ? KVLayout::kHND : KVLayout::kNHD;
        c.token_padding = kv_len == 5000 ? 64 : 0;
        c.head_dim = group == 16 ? 64 : 128;
        run_case(c, rng);
      }
    }
  }
}

TEST(DecodeKernel, EmptyKvGivesZeroOutputAndMinusInfinityLse) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_case({.kv_len = 0}, rng);
}

TEST(DecodeKernel, GroupSizesOneFourEightMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t kv_heads : {8, 2, 1}) {
    run_case({.kv_len = 1000, .num_qo_heads = 8, .num_kv_heads = kv_heads}, rng);
  }
}

TEST(DecodeKernel, GroupLargerThanOneRoundMatchesReference) {
  // 32 query heads on one KV head: D=256 has 8 lanes, so 4 rounds.
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_case({.kv_len = 300, .num_qo_heads = 32, .num_kv_heads = 1, .head_dim = 256}, rng);
  run_case({.kv_len = 300, .num_qo_heads = 6, .num_kv_heads = 2, .head_dim = 128}, rng);  // group 3
}

TEST(DecodeKernel, HeadDims64And256MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t d : {64, 256}) {
    for (const int64_t kv_len : {1, 17, 1000, 32768}) {
      run_case({.kv_len = kv_len, .num_qo_heads = 4, .num_kv_heads = 1, .head_dim = d}, rng);
    }
  }
}

// Head dims 80 / 96 / 112 (Phi-2, Phi-3, StableLM; JIT-served): both kernels
// (the CUDA-core one pads a row's 10 / 12 / 14 slice threads to 16, the
// tensor-core one pads the tile pitch), lengths around the tiles (51 / 42 /
// 36 tokens per CUDA-core tile, 64 per tensor-core tile) and a split length,
// GQA 1 / 4 / 8, both 16-bit dtypes, HND at one length.
TEST(DecodeKernel, HeadDims80To112MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DecodeBackend backend : {DecodeBackend::kCudaCores, DecodeBackend::kTensorCores}) {
    for (const int64_t d : {80, 96, 112}) {
      for (const int64_t kv_len : {1, 37, 52, 65, 5000}) {
        for (const int64_t group : {1, 4, 8}) {
          SCOPED_TRACE("head_dim " + std::to_string(d) + ", kv_len " + std::to_string(kv_len) +
                       ", group " + std::to_string(group));
          const DType dtype = group == 4 ? DType::kFloat16 : DType::kBFloat16;
          DecodeCase c{.kv_len = kv_len, .num_qo_heads = 2 * group, .num_kv_heads = 2,
                       .head_dim = d, .q_dtype = dtype, .kv_dtype = dtype};
          c.backend = backend;
          c.layout = kv_len == 65 ? KVLayout::kHND : KVLayout::kNHD;
          run_case(c, rng);
        }
      }
    }
  }
}

TEST(DecodeKernel, HndLayoutMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t kv_len : {17, 1000, 32768}) {
    run_case({.kv_len = kv_len, .layout = KVLayout::kHND}, rng);
  }
}

TEST(DecodeKernel, StridedKvMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_case({.kv_len = 1000, .token_padding = 64}, rng);
  run_case({.kv_len = 1000, .layout = KVLayout::kHND, .token_padding = 8}, rng);
}

TEST(DecodeKernel, Float16MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t kv_len : {1, 1000, 32768}) {
    run_case({.kv_len = kv_len, .q_dtype = DType::kFloat16, .kv_dtype = DType::kFloat16}, rng);
  }
}

// Both fp8 formats (e4m3fn AOT-built with bf16 q; e5m2 and fp16 q
// JIT-served), every head_dim.
TEST(DecodeKernel, Fp8KvWithScalesMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DType kv_dtype : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    for (const DType q_dtype : {DType::kBFloat16, DType::kFloat16}) {
      for (const int64_t d : {64, 96, 128, 256}) {
        SCOPED_TRACE(std::string(dtype_name(q_dtype)) + " q, " + dtype_name(kv_dtype) + " KV");
        DecodeCase c{.kv_len = 1000, .head_dim = d, .q_dtype = q_dtype, .kv_dtype = kv_dtype};
        c.options.k_scale = 0.5;
        c.options.v_scale = 2.0;
        run_case(c, rng);
      }
    }
  }
}

// e5m2's exponent range, which e4m3fn lacks: K/V of magnitude ~3000 (past
// e4m3fn's 448) and ~1e-4 (e5m2 subnormals below 2^-14 among them), scaled
// back to unit logits and values by k_scale / v_scale. A widening that got
// the exponent wrong would be off by powers of two here.
TEST(DecodeKernel, Fp8E5m2KvUsesItsWholeExponentRange) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const float kv_std : {3000.f, 1e-4f}) {
    for (const int64_t kv_len : {1, 17, 5000}) {
      DecodeCase c{.kv_len = kv_len, .kv_dtype = DType::kFloat8E5M2, .kv_std = kv_std};
      c.options.k_scale = 1.0 / kv_std;
      c.options.v_scale = 1.0 / kv_std;
      run_case(c, rng);
    }
  }
}

// Variants over an e5m2 cache (JIT-served): soft-cap + window, ALiBi and
// RoPE on the fly (the key rotated after widening), GQA 1 and 8, HND and
// strided K/V, an empty cache.
TEST(DecodeKernel, Fp8E5m2KvWithVariantsAndLayoutsMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const DType e5m2 = DType::kFloat8E5M2;
  {
    DecodeCase c{.kv_len = 3000, .kv_dtype = e5m2};
    c.options.logits_soft_cap = 3.0;
    c.options.window_left = 700;
    c.ref.logits_soft_cap = 3.0;
    c.ref.window_left = 700;
    run_case(c, rng);
  }
  {
    DecodeCase c{.kv_len = 1000, .q_dtype = DType::kFloat16, .kv_dtype = e5m2};
    c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
    c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
    run_case(c, rng);
  }
  {
    DecodeCase c{.kv_len = 1000, .kv_dtype = e5m2};
    c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
    c.ref.rope_llama = true;
    run_case(c, rng);
  }
  for (const int64_t kv_heads : {8, 1}) {
    run_case({.kv_len = 2000, .num_qo_heads = 8, .num_kv_heads = kv_heads, .kv_dtype = e5m2}, rng);
  }
  run_case({.kv_len = 1000, .kv_dtype = e5m2, .layout = KVLayout::kHND, .token_padding = 16}, rng);
  run_case({.kv_len = 1000, .kv_dtype = e5m2, .token_padding = 32}, rng);
  run_case({.kv_len = 0, .kv_dtype = e5m2}, rng);
}

// The tensor-core kernel is 16-bit K/V only: asking for it over an fp8
// cache of either format is a named error, never a silent fallback.
TEST(DecodeKernel, TensorCoresOverAnFp8CacheAreRejectedNamingBackend) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const DType kv_dtype : {DType::kFloat8E4M3, DType::kFloat8E5M2}) {
    DecodeCase c{.kv_len = 100, .num_qo_heads = 8, .num_kv_heads = 2, .kv_dtype = kv_dtype};
    c.backend = DecodeBackend::kTensorCores;
    testing::expect_argument_error([&] { run_case(c, rng); }, "backend");
  }
}

TEST(DecodeKernel, WithoutLseWritesOnlyOut) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  run_case({.kv_len = 1000, .with_lse = false}, rng);
}

TEST(DecodeKernel, CustomSmScaleMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  DecodeCase c{.kv_len = 1000};
  c.options.sm_scale = 0.3;
  run_case(c, rng);
}

TEST(DecodeKernel, SoftCapMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t kv_len : {17, 5000}) {
    DecodeCase c{.kv_len = kv_len};
    c.options.sm_scale = 1.0;  // logits ~ N(0, 128): the cap really bites
    c.options.logits_soft_cap = 5.0;
    c.ref.logits_soft_cap = 5.0;
    run_case(c, rng);
  }
}

TEST(DecodeKernel, SlidingWindowMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t window : {0, 1, 100, 5000}) {
    DecodeCase c{.kv_len = 3000};
    c.options.window_left = window;
    c.ref.window_left = window;
    run_case(c, rng);
  }
}

TEST(DecodeKernel, SoftCapWithSlidingWindowMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  DecodeCase c{.kv_len = 3000};
  c.options.logits_soft_cap = 3.0;
  c.options.window_left = 700;
  c.ref.logits_soft_cap = 3.0;
  c.ref.window_left = 700;
  run_case(c, rng);
}

// head_dim 64 and 256 ALiBi are off the AOT list (JIT on first use).
TEST(DecodeKernel, AlibiStandardSlopesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t d : {128, 64, 256}) {
    DecodeCase c{.kv_len = 1000, .head_dim = d};
    c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
    c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
    run_case(c, rng);
  }
}

TEST(DecodeKernel, AlibiGivenSlopesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  DecodeCase c{.kv_len = 1000, .num_qo_heads = 12, .num_kv_heads = 4};
  const auto slopes = rng.uniform_vector(12, 0.001f, 0.2f);
  DeviceTensor slopes_dev(DType::kFloat32, {12});
  slopes_dev.upload(slopes);
  DLTensor slopes_dl = slopes_dev.dl();
  c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
  c.options.alibi_slopes = &slopes_dl;
  c.ref.alibi_slopes.assign(slopes.begin(), slopes.end());
  run_case(c, rng);
}

TEST(DecodeKernel, RopeLlamaMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // 80 / 96 / 112: the rotation's partner is 5 / 6 / 7 lanes away, not an xor.
  for (const int64_t d : {64, 80, 96, 112, 128, 256}) {
    DecodeCase c{.kv_len = 1000, .head_dim = d};
    c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
    c.options.rope_theta = 5e5;
    c.options.rope_scale = 2.0;
    c.ref.rope_llama = true;
    c.ref.rope_theta = 5e5;
    c.ref.rope_scale = 2.0;
    run_case(c, rng);
  }
}

}  // namespace
}  // namespace tessera
