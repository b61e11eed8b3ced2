// single_prefill_with_kv_cache on the GPU against the float64 reference, on
// both back ends: every case runs with PrefillBackend::kFa2 (the FA2-style
// sm80 kernel) and kFa3 where the Hopper kernel serves it
// (support/prefill_backends.h). Inputs are rounded to their storage dtype on
// the host first, so the reference sees what the kernel sees; outputs are
// poisoned before each run. Tolerances: out is a float32 accumulation of
// 16-bit P (the probabilities are rounded to q's dtype for the P V mma, as in
// FA2) rounded once to q's dtype: tolerance_for(dtype) (P's rounding is a
// relative 2^-9 / 2^-12 per term and averages out over the row). lse is
// float32 log-sum-exp with ex2/lg2.approx: 2e-3 absolute + 1e-3 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "reference/attention_ref.h"
#include "support/argument_error.h"
#include "support/compare.h"
#include "support/custom_mask.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/kv_tensor.h"
#include "support/prefill_backends.h"
#include "support/random.h"
#include "tessera/api/prefill.h"
#include "tessera/core/cuda_check.h"
#include "tessera/core/cuda_resources.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::device_is_sm90;
using testing::Rng;

constexpr testing::Tolerance kLseTolerance{1e-3, 2e-3, 1e-3};

struct PrefillCase {
  int64_t qo_len = 128;
  int64_t kv_len = 128;
  int64_t num_qo_heads = 4;
  int64_t num_kv_heads = 1;
  int64_t head_dim = 128;
  int64_t head_dim_vo = 0;  // v's and out's; 0: head_dim (192 / 128: DeepSeek-style)
  bool causal = true;
  DType dtype = DType::kBFloat16;
  KVLayout layout = KVLayout::kNHD;
  int64_t kv_padding = 0;   // extra elements per row of K/V's outer axis
  int64_t out_padding = 0;  // extra elements per token row of out
  bool with_lse = true;
  AttentionOptions options;
  reference::AttentionRefParams ref;  // variant fields; shapes filled in
  std::vector<float> alibi_slopes;    // uploaded when non-empty
  std::vector<bool> mask;             // custom mask [qo_len * kv_len] when non-empty
};

DeviceTensor make_kv(const PrefillCase& c, int64_t head_dim,
                     const std::vector<float>& nhd_values) {
  return testing::make_kv_tensor(c.dtype, c.layout, c.kv_len, c.num_kv_heads, head_dim,
                                 c.kv_padding, nhd_values);
}

// One run of case c on c.options.backend.
void run_case_on(PrefillCase c, Rng& rng) {
  SCOPED_TRACE("qo_len " + std::to_string(c.qo_len) + ", kv_len " + std::to_string(c.kv_len) +
               ", heads " + std::to_string(c.num_qo_heads) + "/" +
               std::to_string(c.num_kv_heads) + ", D " + std::to_string(c.head_dim) +
               (c.causal ? ", causal" : ", non-causal"));
  const int64_t d = c.head_dim;
  const int64_t dv = c.head_dim_vo > 0 ? c.head_dim_vo : d;
  const auto q_count = static_cast<std::size_t>(c.qo_len * c.num_qo_heads * d);
  const auto kv_count = static_cast<std::size_t>(c.kv_len * c.num_kv_heads * d);
  const auto v_count = static_cast<std::size_t>(c.kv_len * c.num_kv_heads * dv);
  const auto q_host = testing::round_to(c.dtype, rng.normal_vector(q_count));
  const auto k_host = testing::round_to(c.dtype, rng.normal_vector(kv_count));
  const auto v_host = testing::round_to(c.dtype, rng.normal_vector(v_count));

  DeviceTensor q(c.dtype, {c.qo_len, c.num_qo_heads, d});
  q.upload(q_host);
  DeviceTensor k = make_kv(c, d, k_host);
  DeviceTensor v = make_kv(c, dv, v_host);
  DeviceTensor out(c.dtype, {c.qo_len, c.num_qo_heads, dv},
                   {c.num_qo_heads * dv + c.out_padding, dv, 1});
  DeviceTensor lse(DType::kFloat32, {c.qo_len, c.num_qo_heads});
  out.poison();
  lse.poison();
  DeviceTensor slopes(DType::kFloat32, {c.num_qo_heads});
  DLTensor slopes_dl = slopes.dl();
  if (!c.alibi_slopes.empty()) {
    slopes.upload(c.alibi_slopes);
    c.options.alibi_slopes = &slopes_dl;
    c.ref.alibi_slopes.assign(c.alibi_slopes.begin(), c.alibi_slopes.end());
  }

  DeviceTensor mask = testing::upload_masks({c.mask});
  DLTensor mask_dl = mask.dl();
  if (!c.mask.empty()) {
    c.options.custom_mask = &mask_dl;
    c.ref.custom_mask = c.mask;
  }

  CudaStream stream;
  DLTensor q_dl = q.dl(), k_dl = k.dl(), v_dl = v.dl(), out_dl = out.dl(), lse_dl = lse.dl();
  if (!testing::run_on_backend(c.options.backend, [&] {
        single_prefill_with_kv_cache(q_dl, k_dl, v_dl, out_dl, c.with_lse ? &lse_dl : nullptr,
                                     c.layout, c.causal, c.options, stream.get());
      })) {
    return;
  }
  stream.synchronize();

  reference::AttentionRefParams p = c.ref;
  p.qo_len = c.qo_len;
  p.kv_len = c.kv_len;
  p.num_qo_heads = c.num_qo_heads;
  p.num_kv_heads = c.num_kv_heads;
  p.head_dim = d;
  p.head_dim_vo = dv;
  p.causal = c.causal;
  p.sm_scale = c.options.sm_scale;
  p.logits_soft_cap = c.options.logits_soft_cap;
  p.window_left = c.options.window_left;
  const auto expected = reference::attention_reference(q_host, k_host, v_host, p);

  const auto got = out.download();
  if (c.kv_len == 0) {
    for (const float x : got) EXPECT_EQ(x, 0.f);
  } else {
    EXPECT_TRUE(testing::all_close(got, expected.out, testing::tolerance_for(c.dtype)));
  }
  if (c.with_lse) {
    EXPECT_TRUE(testing::lse_close(lse.download(), expected.lse, kLseTolerance));
  } else {
    for (const float x : lse.download()) EXPECT_TRUE(std::isnan(x));  // never written
  }
  EXPECT_TRUE(testing::padding_untouched(out));
  EXPECT_TRUE(testing::padding_untouched(k));
}

// Case c on every back end of testing::prefill_backends() (fresh random inputs for each).
void run_case(PrefillCase c, Rng& rng) {
  for (const PrefillBackend backend : testing::prefill_backends()) {
    SCOPED_TRACE(testing::prefill_backend_name(backend));
    c.options.backend = backend;
    run_case_on(c, rng);
  }
}

// qo > kv included: FlashInfer's bottom-right alignment, the first qo - kv
// queries see no key (out 0, lse -inf).
TEST(SinglePrefill, CausalShapesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t qo : {1, 7, 128, 1000}) {
    for (const int64_t kv : {1, 127, 128, 4097}) {
      PrefillCase c;
      c.qo_len = qo;
      c.kv_len = kv;
      run_case(c, rng);
    }
  }
}

TEST(SinglePrefill, NonCausalShapesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t qo : {1, 7, 128, 1000}) {
    for (const int64_t kv : {1, 127, 128, 4097}) {
      PrefillCase c;
      c.qo_len = qo;
      c.kv_len = kv;
      c.causal = false;
      run_case(c, rng);
    }
  }
}

TEST(SinglePrefill, EmptyKvGivesZeroOutputAndMinusInfinityLse) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  PrefillCase c;
  c.qo_len = 7;
  c.kv_len = 0;
  c.causal = false;
  run_case(c, rng);
}

TEST(SinglePrefill, GroupedQueryAttentionMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t kv_heads : {8, 2, 1}) {  // group sizes 1, 4, 8
    PrefillCase c;
    c.qo_len = 130;
    c.kv_len = 300;
    c.num_qo_heads = 8;
    c.num_kv_heads = kv_heads;
    run_case(c, rng);
  }
}

TEST(SinglePrefill, Float16HeadDim64MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const bool causal : {true, false}) {
    PrefillCase c;
    c.dtype = DType::kFloat16;
    c.head_dim = 64;
    c.qo_len = 200;
    c.kv_len = 333;
    c.causal = causal;
    run_case(c, rng);
  }
}

TEST(SinglePrefill, HeadDim64Bfloat16AndFloat16HeadDim128MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  {
    PrefillCase c;
    c.head_dim = 64;
    c.qo_len = 65;
    c.kv_len = 129;
    run_case(c, rng);
  }
  {
    PrefillCase c;
    c.dtype = DType::kFloat16;
    c.qo_len = 63;
    c.kv_len = 1000;
    run_case(c, rng);
  }
}

TEST(SinglePrefill, HndStridedKvAndPaddedOutputMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  PrefillCase c;
  c.layout = KVLayout::kHND;
  c.num_qo_heads = 8;
  c.num_kv_heads = 2;
  c.qo_len = 100;
  c.kv_len = 257;
  c.kv_padding = 8;    // 16 bytes: rows stay aligned
  c.out_padding = 24;
  run_case(c, rng);
}

TEST(SinglePrefill, WithoutLseLeavesLseUntouched) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  PrefillCase c;
  c.with_lse = false;
  c.qo_len = 50;
  c.kv_len = 70;
  run_case(c, rng);
}

TEST(SinglePrefill, CustomSmScaleMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  PrefillCase c;
  c.options.sm_scale = 0.3;
  c.qo_len = 77;
  c.kv_len = 200;
  run_case(c, rng);
}

TEST(SinglePrefill, SoftCapMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const bool causal : {true, false}) {
    PrefillCase c;
    c.options.logits_soft_cap = 5.0;  // small enough that tanh saturates some logits
    c.options.sm_scale = 0.5;
    c.qo_len = 100;
    c.kv_len = 300;
    c.causal = causal;
    run_case(c, rng);
  }
}

TEST(SinglePrefill, SlidingWindowMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // Windows narrower than a tile, spanning tiles, and one that skips whole
  // leading tiles (kv_begin > 0).
  for (const int64_t window : {0, 5, 70, 200}) {
    for (const bool causal : {true, false}) {
      PrefillCase c;
      c.options.window_left = window;
      c.qo_len = 150;
      c.kv_len = 600;
      c.causal = causal;
      run_case(c, rng);
    }
  }
  // A window near 2^31 on queries at negative positions (non-causal,
  // qo_len > kv_len): q_pos - window_left must not overflow int (a wrapped
  // start would mask whole rows).
  PrefillCase c;
  c.options.window_left = std::numeric_limits<int32_t>::max();
  c.qo_len = 150;
  c.kv_len = 100;
  c.causal = false;
  run_case(c, rng);
}

// RoPE-Llama on the fly (JIT-served): q rotated at kv_len - qo_len + i, k at
// its index, NeoX halves, scale and theta; head_dim 64 and 128.
TEST(SinglePrefill, RopeLlamaMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t head_dim : {128, 64}) {
    for (const bool causal : {true, false}) {
      PrefillCase c;
      c.head_dim = head_dim;
      c.causal = causal;
      c.qo_len = 90;
      c.kv_len = 1000;
      c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
      c.options.rope_theta = 5e5;
      c.options.rope_scale = 2.0;
      c.ref.rope_llama = true;
      // The kernel stores rotated rows back in q's type.
      c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
      c.ref.rope_theta = 5e5;
      c.ref.rope_scale = 2.0;
      run_case(c, rng);
    }
  }
}

// Head dims 80 / 96 / 112 (Phi-2, Phi-3, StableLM; JIT-served FA2 with
// odd-pitch tiles, prefill_tiles_sm80.cuh): causal with qo < kv and qo >
// kv, non-causal, 64- and 128-row q tiles (qo_len 1100 x 32 heads fills a
// wave), GQA, fp16 and bf16, HND with padded rows, and "auto" (fa2 here: the
// Hopper kernels have 64 / 128 / 256; fa3 by name is refused naming
// "backend", which run_case reports as not served).
TEST(SinglePrefill, HeadDims80To112MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t head_dim : {80, 96, 112}) {
    for (const bool causal : {true, false}) {
      PrefillCase c;
      c.head_dim = head_dim;
      c.causal = causal;
      c.qo_len = 90;
      c.kv_len = 1000;
      c.dtype = causal ? DType::kBFloat16 : DType::kFloat16;
      run_case(c, rng);
    }
    PrefillCase wide;
    wide.head_dim = head_dim;
    wide.num_qo_heads = 32;
    wide.num_kv_heads = 8;
    wide.qo_len = 1100;
    wide.kv_len = 1150;
    run_case(wide, rng);
    PrefillCase early;  // qo > kv: the first 37 queries see no key
    early.head_dim = head_dim;
    early.qo_len = 137;
    early.kv_len = 100;
    early.layout = KVLayout::kHND;
    early.kv_padding = 24;
    run_case(early, rng);
    PrefillCase automatic;
    automatic.head_dim = head_dim;
    automatic.qo_len = 65;
    automatic.kv_len = 65;
    automatic.options.backend = PrefillBackend::kAuto;
    run_case_on(automatic, rng);
  }
}

// q/k 192 with v/o 128 (DeepSeek-style prefill, JIT-served FA2: Q/K tiles of
// 24 XOR-swizzled chunks, V and O of 128; prefill_tiles_sm80.cuh): causal
// with qo < kv and qo > kv, non-causal, GQA 32/8 over a wave, fp16 and
// bf16, HND with padded K/V rows, padded out rows; "auto" runs FA2 and fa3
// by name is refused naming "backend" (run_case reports it as not served).
TEST(SinglePrefill, HeadDimQk192Vo128MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  const auto split = [] {
    PrefillCase c;
    c.head_dim = 192;
    c.head_dim_vo = 128;
    return c;
  };
  for (const bool causal : {true, false}) {
    PrefillCase c = split();
    c.causal = causal;
    c.qo_len = 90;
    c.kv_len = 1000;
    c.dtype = causal ? DType::kBFloat16 : DType::kFloat16;
    run_case(c, rng);
  }
  PrefillCase wide = split();
  wide.num_qo_heads = 32;
  wide.num_kv_heads = 8;
  wide.qo_len = 1100;
  wide.kv_len = 1150;
  wide.out_padding = 8;
  run_case(wide, rng);
  PrefillCase early = split();  // qo > kv: the first 37 queries see no key
  early.qo_len = 137;
  early.kv_len = 100;
  early.layout = KVLayout::kHND;
  early.kv_padding = 24;
  run_case(early, rng);
  PrefillCase automatic = split();
  automatic.qo_len = 65;
  automatic.kv_len = 65;
  automatic.options.backend = PrefillBackend::kAuto;
  run_case_on(automatic, rng);
}

// v's last dim must be the v/o head dim of q's (128 beside 192, q's
// otherwise), out's v's: named errors before any launch.
TEST(SinglePrefill, HeadDimVoMismatchesAreNamedErrors) {
  TESSERA_REQUIRE_GPU();
  CudaStream stream;
  const auto expect_error = [&](int64_t qk, int64_t k_dim, int64_t v_dim, int64_t out_dim,
                                std::string_view argument) {
    DeviceTensor q(DType::kBFloat16, {16, 4, qk});
    DeviceTensor k(DType::kBFloat16, {32, 1, k_dim});
    DeviceTensor v(DType::kBFloat16, {32, 1, v_dim});
    DeviceTensor out(DType::kBFloat16, {16, 4, out_dim});
    const DLTensor q_dl = q.dl(), k_dl = k.dl(), v_dl = v.dl(), out_dl = out.dl();
    testing::expect_argument_error(
        [&] {
          single_prefill_with_kv_cache(q_dl, k_dl, v_dl, out_dl, nullptr, KVLayout::kNHD, true,
                                       AttentionOptions{}, stream.get());
        },
        argument);
  };
  expect_error(192, 192, 192, 192, "v");    // v must be 128
  expect_error(192, 192, 128, 192, "out");  // out like v
  expect_error(192, 128, 128, 128, "k");    // k like q
  expect_error(128, 128, 64, 64, "v");      // equal dims elsewhere
}

// RoPE on the fly at head_dim 96: the rotation pairs chunks c and c + 6 of
// a 12-chunk row in the padded tile.
TEST(SinglePrefill, RopeLlamaAtHeadDim96MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  PrefillCase c;
  c.head_dim = 96;
  c.qo_len = 90;
  c.kv_len = 1000;
  c.options.pos_encoding_mode = PosEncodingMode::kRopeLlama;
  c.options.rope_theta = 5e5;
  c.options.rope_scale = 2.0;
  c.ref.rope_llama = true;
  c.ref.rope_theta = 5e5;
  c.ref.rope_scale = 2.0;
  c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
  run_case(c, rng);
}

// 128-row query tiles: ceil(qo_len / 128) x 32 heads fills a wave of the
// GPU (up to 144 SMs), causal and not, head_dim 128 and 64, with GQA.
TEST(SinglePrefill, LargeQTilesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t head_dim : {128, 64}) {
    for (const bool causal : {true, false}) {
      PrefillCase c;
      c.head_dim = head_dim;
      c.causal = causal;
      c.num_qo_heads = 32;
      c.num_kv_heads = 8;
      c.qo_len = 1100;
      c.kv_len = causal ? 1150 : 300;
      run_case(c, rng);
    }
  }
}

// head_dim 256 (JIT-compiled on first use): causal and not, GQA, fp16,
// a window.
TEST(SinglePrefill, HeadDim256MatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const bool causal : {true, false}) {
    PrefillCase c;
    c.head_dim = 256;
    c.causal = causal;
    c.qo_len = 200;
    c.kv_len = 333;
    run_case(c, rng);
  }
  PrefillCase c;
  c.head_dim = 256;
  c.dtype = DType::kFloat16;
  c.qo_len = 70;
  c.kv_len = 1000;
  c.options.window_left = 200;
  run_case(c, rng);
}

// A custom boolean mask (packed bits, rows with nothing to attend among
// them), alone and ANDed with causal and a window, head_dim 64 and 128.
TEST(SinglePrefill, CustomMaskMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t head_dim : {128, 64}) {
    for (const bool causal : {false, true}) {
      PrefillCase c;
      c.head_dim = head_dim;
      c.causal = causal;
      c.qo_len = 130;
      c.kv_len = 333;
      c.mask = testing::random_mask(c.qo_len, c.kv_len, 0.5, rng, 7);
      run_case(c, rng);
    }
  }
  PrefillCase c;
  c.qo_len = 64;
  c.kv_len = 500;
  c.options.window_left = 100;
  c.mask = testing::random_mask(c.qo_len, c.kv_len, 0.8, rng);
  run_case(c, rng);
}

// Soft-cap + window (Gemma 2) has no AOT prefill kernel: the first call
// JIT-compiles the built-in variant (aot_kernels.h).
TEST(SinglePrefill, SoftCapWithSlidingWindowMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const bool causal : {true, false}) {
    PrefillCase c;
    c.options.logits_soft_cap = 5.0;
    c.options.sm_scale = 0.5;
    c.options.window_left = 70;
    c.qo_len = 150;
    c.kv_len = 600;
    c.causal = causal;
    run_case(c, rng);
  }
}

// head_dim 64 ALiBi is off the AOT list (JIT on first use); 128 is on it.
TEST(SinglePrefill, AlibiStandardSlopesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const int64_t head_dim : {128, 64}) {
    for (const bool causal : {true, false}) {
      PrefillCase c;
      c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
      c.num_qo_heads = 8;
      c.num_kv_heads = 2;
      c.head_dim = head_dim;
      c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
      c.qo_len = 90;
      c.kv_len = 250;
      c.causal = causal;
      run_case(c, rng);
    }
  }
}

TEST(SinglePrefill, AlibiCallerSlopesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  PrefillCase c;
  c.options.pos_encoding_mode = PosEncodingMode::kAlibi;
  c.num_qo_heads = 6;
  c.num_kv_heads = 3;
  c.alibi_slopes = rng.uniform_vector(6, 0.01f, 0.5f);
  c.qo_len = 64;
  c.kv_len = 64;
  run_case(c, rng);
}

// ALiBi and RoPE-Llama with a soft cap, a window or both (JIT-served): the
// ALiBi bias goes in before the cap, as FlashInfer; caller and standard
// slopes; causal with more queries than keys too.
TEST(SinglePrefill, PositionalVariantsWithSoftCapAndWindowMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (const PosEncodingMode mode : {PosEncodingMode::kAlibi, PosEncodingMode::kRopeLlama}) {
    for (const auto& [cap, window] :
         {std::pair{8.0, int64_t{-1}}, std::pair{0.0, int64_t{40}}, std::pair{8.0, int64_t{40}}}) {
      for (const bool causal : {true, false}) {
        PrefillCase c;
        c.options.pos_encoding_mode = mode;
        c.options.logits_soft_cap = cap;
        c.options.window_left = window;
        c.num_qo_heads = 8;
        c.num_kv_heads = 2;
        c.qo_len = causal ? 130 : 90;
        c.kv_len = causal ? 100 : 250;
        c.causal = causal;
        if (mode == PosEncodingMode::kAlibi) {
          if (causal) {
            c.alibi_slopes = rng.uniform_vector(8, 0.01f, 0.5f);
          } else {
            c.ref.alibi_slopes = reference::standard_alibi_slopes(c.num_qo_heads);
          }
        } else {
          c.options.rope_theta = 5e5;
          c.ref.rope_llama = true;
          c.ref.round_rotated = [dtype = c.dtype](float x) { return testing::round_to(dtype, x); };
          c.ref.rope_theta = 5e5;
        }
        run_case(c, rng);
      }
    }
  }
}

TEST(SinglePrefill, InPlaceOutputOverQMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  // out == q: each CTA reads its Q rows before it writes the same rows.
  const int64_t qo = 70, kv = 90, hq = 4, hk = 2, d = 128;
  const auto q_host = testing::round_to(DType::kBFloat16, rng.normal_vector(qo * hq * d));
  const auto k_host = testing::round_to(DType::kBFloat16, rng.normal_vector(kv * hk * d));
  const auto v_host = testing::round_to(DType::kBFloat16, rng.normal_vector(kv * hk * d));
  DeviceTensor q(DType::kBFloat16, {qo, hq, d});
  DeviceTensor k(DType::kBFloat16, {kv, hk, d});
  DeviceTensor v(DType::kBFloat16, {kv, hk, d});
  q.upload(q_host);
  k.upload(k_host);
  v.upload(v_host);
  reference::AttentionRefParams p;
  p.qo_len = qo;
  p.kv_len = kv;
  p.num_qo_heads = hq;
  p.num_kv_heads = hk;
  p.head_dim = d;
  p.causal = true;
  const auto expected = reference::attention_reference(q_host, k_host, v_host, p);
  CudaStream stream;
  DLTensor q_dl = q.dl(), k_dl = k.dl(), v_dl = v.dl();
  for (const PrefillBackend backend : testing::prefill_backends()) {
    SCOPED_TRACE(testing::prefill_backend_name(backend));
    q.upload(q_host);  // the previous back end's run overwrote it
    AttentionOptions options;
    options.backend = backend;
    if (!testing::run_on_backend(backend, [&] {
          single_prefill_with_kv_cache(q_dl, k_dl, v_dl, q_dl, nullptr, KVLayout::kNHD, true,
                                       options, stream.get());
        })) {
      continue;
    }
    stream.synchronize();
    EXPECT_TRUE(testing::all_close(q.download(), expected.out, testing::kBFloat16Tolerance));
  }
}

// kFa3 where the Hopper kernel does not serve the call is an argument error
// naming "backend" (kAuto would run FA2 there). On sm_90: head_dim 256 and
// RoPE; on any other GPU kFa3 never runs, so a served case errors too.
TEST(SinglePrefill, HopperBackendRejectsWhatItDoesNotServe) {
  TESSERA_REQUIRE_GPU();
  const bool sm90 = device_is_sm90();
  struct Unserved {
    const char* what;
    int64_t head_dim;
    PosEncodingMode pos_encoding_mode;
  };
  std::vector<Unserved> cases = {{"RoPE", 128, PosEncodingMode::kRopeLlama},
                                 {"ALiBi at head_dim 64", 64, PosEncodingMode::kAlibi}};
  if (!sm90) cases.push_back({"not sm_90", 128, PosEncodingMode::kNone});
  for (const Unserved& u : cases) {
    SCOPED_TRACE(u.what);
    const int64_t qo = 64, kv = 64, hq = 4, hk = 1;
    DeviceTensor q(DType::kBFloat16, {qo, hq, u.head_dim});
    DeviceTensor k(DType::kBFloat16, {kv, hk, u.head_dim});
    DeviceTensor v(DType::kBFloat16, {kv, hk, u.head_dim});
    DeviceTensor out(DType::kBFloat16, {qo, hq, u.head_dim});
    DLTensor q_dl = q.dl(), k_dl = k.dl(), v_dl = v.dl(), out_dl = out.dl();
    AttentionOptions options;
    options.backend = PrefillBackend::kFa3;
    options.pos_encoding_mode = u.pos_encoding_mode;
    CudaStream stream;
    try {
      single_prefill_with_kv_cache(q_dl, k_dl, v_dl, out_dl, nullptr, KVLayout::kNHD, true, options,
                                   stream.get());
      ADD_FAILURE() << "kFa3 ran a case the Hopper kernel does not serve";
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "backend") << e.what();
      EXPECT_NE(std::string(e.what()).find("backend"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace tessera
