// RoPE on the GPU against the float64 reference (tests/reference/rope_ref.h).
//
// Every case places q, k and their outputs as strided views in ONE device
// buffer filled with random values, with the output elements set to NaN
// (poison). After the call the outputs must match the reference and every
// other element of the buffer (head/token padding, the v slice of a fused qkv
// buffer, the inputs when out of place) must be bit-identical to what was
// uploaded: nothing outside the logical outputs is written.
//
// Tolerances: kBFloat16Tolerance / kFloat16Tolerance. The reference uses the
// same float32 angles the API specifies (freq rounded to float32, float32
// product pos * freq), so the kernel's own error is sincosf (<= 2 ulp) plus
// float32 arithmetic plus one rounding of the output to 16 bits: well inside
// both bars (half an ulp is 2^-9 for bf16, 2^-11 for fp16, against rtol 1.6e-2
// and 2e-3). A kernel using __sinf/__cosf fails the large-position tests:
// at angles ~1e5 their absolute error is ~1e-2 and more.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "reference/rope_ref.h"
#include "support/compare.h"
#include "support/device_tensor.h"
#include "support/gpu.h"
#include "support/host_convert.h"
#include "support/random.h"
#include "tessera/api/rope.h"
#include "tessera/core/cuda_resources.h"

namespace tessera {
namespace {

using testing::DeviceTensor;
using testing::Rng;
using testing::tolerance_for;

constexpr DType kHalfTypes[] = {DType::kFloat16, DType::kBFloat16};

// A strided view into the shared buffer.
struct View {
  int64_t offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  int64_t end() const {  // one past the last element
    int64_t last = offset;
    for (std::size_t d = 0; d < shape.size(); ++d) last += (shape[d] - 1) * strides[d];
    return numel() == 0 ? offset : last + 1;
  }
  // Buffer indices of the elements in logical row-major order.
  std::vector<int64_t> indices() const {
    std::vector<int64_t> out;
    out.reserve(numel());
    for (int64_t i = 0; i < numel(); ++i) {
      int64_t rest = i;
      int64_t index = offset;
      for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
        index += (rest % shape[d]) * strides[d];
        rest /= shape[d];
      }
      out.push_back(index);
    }
    return out;
  }
  // Same elements seen as [tokens, heads * head_dim] (heads packed in rows).
  View flattened_2d() const { return {offset, {shape[0], shape[1] * shape[2]}, {strides[0], 1}}; }
};

// One device buffer holding every tensor of a case.
class SharedBuffer {
 public:
  SharedBuffer(DType dtype, int64_t elements) : device_(dtype, {std::max<int64_t>(elements, 1)}) {}
  DLTensor dl(const View& view) {
    DLTensor t = device_.dl();
    t.ndim = static_cast<int>(view.shape.size());
    t.shape = const_cast<int64_t*>(view.shape.data());
    t.strides = const_cast<int64_t*>(view.strides.data());
    t.byte_offset = static_cast<uint64_t>(view.offset) * dtype_size_bytes(device_.dtype());
    return t;
  }
  DeviceTensor& device() { return device_; }

 private:
  DeviceTensor device_;
};

std::vector<float> gather(const std::vector<float>& buffer, const View& view) {
  std::vector<float> out;
  for (int64_t i : view.indices()) out.push_back(buffer[i]);
  return out;
}

enum class Entry { kPosIds32, kPosIds64, kRagged, kCosSinCache, kCosSinCache2d };

struct Case {
  DType dtype = DType::kBFloat16;
  int64_t num_tokens = 37;
  int64_t num_qo_heads = 32;
  int64_t num_kv_heads = 8;
  int64_t head_dim = 128;
  RopeOptions options;
  Entry entry = Entry::kPosIds32;
  bool in_place = false;
  bool fused_qkv = false;        // q, k slices of [tokens, hq + 2 hk, head_dim]
  int64_t head_pad = 0;          // extra elements after each head row
  int64_t token_pad = 0;         // extra elements after each token
  int64_t first_offset = 0;      // element offset of the first view (odd: misaligned)
  int64_t max_position = 4096;   // positions drawn from [0, max_position)
};

struct Outcome {
  std::vector<float> q_in, k_in, q_out, k_out;
  std::vector<double> q_ref, k_ref;
};

// Lays out q, k, q_out, k_out in one buffer as the case asks.
struct Layout {
  View q, k, q_out, k_out;
  int64_t elements = 0;
};

Layout make_layout(const Case& c) {
  Layout l;
  const int64_t t = c.num_tokens;
  const int64_t d = c.head_dim;
  auto round8 = [](int64_t n) { return (n + 7) / 8 * 8; };
  int64_t cursor = c.first_offset;
  auto place_fused = [&](View& q, View& k) {
    const int64_t row = (c.num_qo_heads + 2 * c.num_kv_heads) * d + c.token_pad;
    q = {cursor, {t, c.num_qo_heads, d}, {row, d, 1}};
    k = {cursor + c.num_qo_heads * d, {t, c.num_kv_heads, d}, {row, d, 1}};
    cursor = round8(cursor + t * row) + c.first_offset;
  };
  auto place = [&](View& v, int64_t heads) {
    const int64_t head_stride = d + c.head_pad;
    const int64_t token_stride = heads * head_stride + c.token_pad;
    v = {cursor, {t, heads, d}, {token_stride, head_stride, 1}};
    cursor = round8(cursor + t * token_stride + 8) + c.first_offset;
  };
  if (c.fused_qkv) {
    place_fused(l.q, l.k);
    if (c.in_place) { l.q_out = l.q; l.k_out = l.k; } else { place_fused(l.q_out, l.k_out); }
  } else {
    place(l.q, c.num_qo_heads);
    place(l.k, c.num_kv_heads);
    if (c.in_place) { l.q_out = l.q; l.k_out = l.k; } else {
      place(l.q_out, c.num_qo_heads);
      place(l.k_out, c.num_kv_heads);
    }
  }
  l.elements = cursor + 8;
  return l;
}

// Positions per token, and for kRagged the indptr/offsets that produce them:
// requests of random lengths (one of them empty) with random offsets.
struct Positions {
  std::vector<int64_t> per_token;
  std::vector<int32_t> indptr;
  std::vector<int32_t> offsets;
};

Positions make_positions(const Case& c, Rng& rng) {
  Positions p;
  if (c.entry != Entry::kRagged) {
    for (int64_t i = 0; i < c.num_tokens; ++i) p.per_token.push_back(rng.integer(0, c.max_position - 1));
    return p;
  }
  p.indptr.push_back(0);
  int64_t remaining = c.num_tokens;
  while (remaining > 0 || p.offsets.size() < 2) {
    const int64_t len = p.offsets.size() == 1 ? 0 : std::min<int64_t>(remaining, rng.integer(1, 9));
    const int64_t offset = rng.integer(0, std::max<int64_t>(c.max_position - len, 1) - 1);
    p.offsets.push_back(static_cast<int32_t>(offset));
    p.indptr.push_back(static_cast<int32_t>(p.indptr.back() + len));
    remaining -= len;
  }
  p.per_token = reference::ragged_positions(p.indptr, p.offsets);
  return p;
}

DeviceTensor index_tensor(DType dtype, const std::vector<int64_t>& values) {
  DeviceTensor t(dtype, {static_cast<int64_t>(values.size())});
  if (!values.empty()) t.upload_ints(values);
  return t;
}

// Runs the case; checks padding and non-output elements are untouched; returns
// inputs, outputs and references for the caller's checks.
Outcome run_case(const Case& c, Rng& rng) {
  const Layout layout = make_layout(c);
  SharedBuffer buffer(c.dtype, layout.elements);
  std::vector<float> host = testing::round_to(c.dtype, rng.normal_vector(layout.elements));
  Outcome o;
  o.q_in = gather(host, layout.q);
  o.k_in = gather(host, layout.k);
  std::vector<bool> is_output(layout.elements, false);
  for (const View* v : {&layout.q_out, &layout.k_out}) {
    for (int64_t i : v->indices()) {
      if (!c.in_place) host[i] = NAN;  // in place the outputs are the inputs
      is_output[i] = true;
    }
  }
  buffer.device().upload(host);

  const Positions positions = make_positions(c, rng);
  const int64_t head_dim = c.head_dim;
  CudaStream stream;
  DLTensor q = buffer.dl(layout.q), k = buffer.dl(layout.k);
  DLTensor q_out = buffer.dl(layout.q_out), k_out = buffer.dl(layout.k_out);
  if (c.entry == Entry::kCosSinCache || c.entry == Entry::kCosSinCache2d) {
    const int64_t rotary_dim = c.options.rotary_dim == 0 ? head_dim : c.options.rotary_dim;
    const std::vector<float> cache = reference::rope_cos_sin_cache(c.max_position, rotary_dim, c.options);
    DeviceTensor cache_device(DType::kFloat32, {c.max_position, rotary_dim});
    cache_device.upload(cache);
    DeviceTensor pos = index_tensor(DType::kInt64, positions.per_token);
    const bool flat = c.entry == Entry::kCosSinCache2d;
    const View q2 = layout.q.flattened_2d(), k2 = layout.k.flattened_2d();
    const View qo2 = layout.q_out.flattened_2d(), ko2 = layout.k_out.flattened_2d();
    if (flat) {
      q = buffer.dl(q2);
      k = buffer.dl(k2);
      q_out = buffer.dl(qo2);
      k_out = buffer.dl(ko2);
    }
    DLTensor pos_dl = pos.dl(), cache_dl = cache_device.dl();
    apply_rope_with_cos_sin_cache(pos_dl, q, k, q_out, k_out, head_dim, cache_dl,
                                  !c.options.interleave, stream.get(), Validate::kOn);
    stream.synchronize();
    o.q_ref = reference::apply_rope_with_cos_sin_cache(o.q_in, c.num_tokens, c.num_qo_heads, head_dim,
                                                       positions.per_token, cache, rotary_dim,
                                                       !c.options.interleave);
    o.k_ref = reference::apply_rope_with_cos_sin_cache(o.k_in, c.num_tokens, c.num_kv_heads, head_dim,
                                                       positions.per_token, cache, rotary_dim,
                                                       !c.options.interleave);
  } else {
    if (c.entry == Entry::kRagged) {
      DeviceTensor indptr = index_tensor(
          DType::kInt32, std::vector<int64_t>(positions.indptr.begin(), positions.indptr.end()));
      DeviceTensor offsets = index_tensor(
          DType::kInt32, std::vector<int64_t>(positions.offsets.begin(), positions.offsets.end()));
      DLTensor indptr_dl = indptr.dl(), offsets_dl = offsets.dl();
      apply_rope(q, k, q_out, k_out, indptr_dl, offsets_dl, c.options, stream.get(), Validate::kOn);
      stream.synchronize();
    } else {
      DeviceTensor pos = index_tensor(c.entry == Entry::kPosIds64 ? DType::kInt64 : DType::kInt32,
                                      positions.per_token);
      DLTensor pos_dl = pos.dl();
      apply_rope_pos_ids(q, k, q_out, k_out, pos_dl, c.options, stream.get());
      stream.synchronize();
    }
    o.q_ref = reference::apply_rope(o.q_in, c.num_tokens, c.num_qo_heads, head_dim,
                                    positions.per_token, c.options);
    o.k_ref = reference::apply_rope(o.k_in, c.num_tokens, c.num_kv_heads, head_dim,
                                    positions.per_token, c.options);
  }

  const std::vector<float> result = buffer.device().download();
  o.q_out = gather(result, layout.q_out);
  o.k_out = gather(result, layout.k_out);
  int64_t touched = 0;
  for (int64_t i = 0; i < layout.elements; ++i) {
    if (!is_output[i] && std::memcmp(&result[i], &host[i], sizeof(float)) != 0) ++touched;
  }
  EXPECT_EQ(touched, 0) << "elements outside q_rope/k_rope were written";
  return o;
}

void expect_matches_reference(const Case& c, Rng& rng) {
  const Outcome o = run_case(c, rng);
  EXPECT_TRUE(testing::all_close(o.q_out, o.q_ref, tolerance_for(c.dtype))) << "q";
  EXPECT_TRUE(testing::all_close(o.k_out, o.k_ref, tolerance_for(c.dtype))) << "k";
}

std::string name_of(DType dtype) { return dtype_name(dtype); }

// ---- apply_rope_pos_ids -----------------------------------------------------

TEST(RopePosIds, NeoXMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    expect_matches_reference(c, rng);
  }
}

TEST(RopePosIds, InterleavedMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.options.interleave = true;
    expect_matches_reference(c, rng);
  }
}

TEST(RopePosIds, Int64PositionsMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.entry = Entry::kPosIds64;
    expect_matches_reference(c, rng);
  }
}

TEST(RopePosIds, PartialRotaryDimCopiesTheRestExactly) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (bool interleave : {false, true}) {
      SCOPED_TRACE(name_of(dtype) + (interleave ? " interleaved" : " neox"));
      Case c;
      c.dtype = dtype;
      c.options.rotary_dim = 64;
      c.options.interleave = interleave;
      const Outcome o = run_case(c, rng);
      EXPECT_TRUE(testing::all_close(o.q_out, o.q_ref, tolerance_for(dtype)));
      EXPECT_TRUE(testing::all_close(o.k_out, o.k_ref, tolerance_for(dtype)));
      std::vector<float> tail_out, tail_in;
      for (std::size_t i = 0; i < o.q_out.size(); ++i) {
        if (static_cast<int64_t>(i) % c.head_dim >= 64) {
          tail_out.push_back(o.q_out[i]);
          tail_in.push_back(o.q_in[i]);
        }
      }
      EXPECT_TRUE(testing::all_equal(tail_out, tail_in));
    }
  }
}

TEST(RopePosIds, ScaleAndThetaMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (double theta : {1e4, 5e5, 1e6}) {
      SCOPED_TRACE(name_of(dtype) + " theta " + std::to_string(theta));
      Case c;
      c.dtype = dtype;
      c.options.rope_theta = theta;
      c.options.rope_scale = 2.5;
      expect_matches_reference(c, rng);
    }
  }
}

TEST(RopePosIds, Llama31ScalingMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.options.rope_theta = 5e5;
    c.options.rope_scale = 8.0;
    c.options.llama31 = Llama31Scaling{1.0, 4.0, 8192.0};
    c.max_position = 131072;
    expect_matches_reference(c, rng);
  }
}

TEST(RopePosIds, LargePositionsKeepFloat32SinCosPrecision) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (bool interleave : {false, true}) {
      SCOPED_TRACE(name_of(dtype) + (interleave ? " interleaved" : " neox"));
      Case c;
      c.dtype = dtype;
      c.options.interleave = interleave;
      c.num_tokens = 300;
      // Up to 2^17: angles of pair 0 pass 105615, where sincosf's slow
      // (Payne-Hanek) range reduction takes over.
      c.max_position = 131072;
      expect_matches_reference(c, rng);
    }
  }
}

TEST(RopePosIds, InPlaceOnFusedQkvSlicesLeavesVUntouched) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (bool interleave : {false, true}) {
      SCOPED_TRACE(name_of(dtype) + (interleave ? " interleaved" : " neox"));
      Case c;
      c.dtype = dtype;
      c.options.interleave = interleave;
      c.fused_qkv = true;
      c.in_place = true;
      expect_matches_reference(c, rng);
    }
  }
}

TEST(RopePosIds, OutOfPlaceFusedQkvSlicesMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.fused_qkv = true;
    c.options.rotary_dim = 64;
    expect_matches_reference(c, rng);
  }
}

TEST(RopePosIds, InPlaceWithPartialRotaryKeepsTail) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.in_place = true;
    c.options.rotary_dim = 32;
    expect_matches_reference(c, rng);
  }
}

TEST(RopePosIds, PaddedHeadsAndTokensLeavePaddingUntouched) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.head_pad = 8;    // keeps 16-byte alignment: wide path with gaps
    c.token_pad = 24;
    expect_matches_reference(c, rng);
  }
}

TEST(RopePosIds, SingleHeadsAndOneToken) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (int64_t tokens : {1, 5}) {
      SCOPED_TRACE(name_of(dtype) + " tokens " + std::to_string(tokens));
      Case c;
      c.dtype = dtype;
      c.num_tokens = tokens;
      c.num_qo_heads = 1;
      c.num_kv_heads = 1;
      expect_matches_reference(c, rng);
    }
  }
}

TEST(RopePosIds, ZeroTokensIsANoOp) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.num_tokens = 0;
    const Outcome o = run_case(c, rng);
    EXPECT_TRUE(o.q_out.empty());
  }
}

TEST(RopePosIds, HeadDims64And256MatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (int64_t head_dim : {64, 256}) {
      for (bool interleave : {false, true}) {
        SCOPED_TRACE(name_of(dtype) + " head_dim " + std::to_string(head_dim) +
                     (interleave ? " interleaved" : " neox"));
        Case c;
        c.dtype = dtype;
        c.head_dim = head_dim;
        c.options.interleave = interleave;
        expect_matches_reference(c, rng);
      }
    }
  }
}

// Scalar fallback: misaligned rows, odd head dims, rotary_dim / 2 not a
// multiple of the 8-element vector.
TEST(RopePosIds, ScalarPathMatchesReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  struct Shape {
    int64_t head_dim, rotary_dim, head_pad, first_offset;
  };
  const Shape shapes[] = {
      {128, 128, 1, 0},  // head stride 129: rows 2-byte aligned only
      {128, 128, 0, 3},  // base pointer off by 6 bytes
      {72, 72, 0, 0},    // rotary_dim / 2 = 36, not a multiple of 8
      {80, 36, 0, 0},    // partial rotary with 18 pairs
      {33, 6, 0, 0},     // odd head_dim
      {96, 96, 0, 0},    // interleaved fine, NeoX 48 pairs: vector; kept as a control
  };
  for (DType dtype : kHalfTypes) {
    for (const Shape& s : shapes) {
      for (bool interleave : {false, true}) {
        SCOPED_TRACE(name_of(dtype) + " head_dim " + std::to_string(s.head_dim) + " rotary " +
                     std::to_string(s.rotary_dim) + " pad " + std::to_string(s.head_pad) +
                     " offset " + std::to_string(s.first_offset) +
                     (interleave ? " interleaved" : " neox"));
        Case c;
        c.dtype = dtype;
        c.num_qo_heads = 5;
        c.num_kv_heads = 3;
        c.head_dim = s.head_dim;
        c.options.rotary_dim = s.rotary_dim;
        c.options.interleave = interleave;
        c.head_pad = s.head_pad;
        c.first_offset = s.first_offset;
        expect_matches_reference(c, rng);
      }
    }
  }
}

// ---- apply_rope (indptr + offsets) -------------------------------------------

TEST(RopeRagged, BatchPositionsComeFromIndptrAndOffsets) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (bool interleave : {false, true}) {
      SCOPED_TRACE(name_of(dtype) + (interleave ? " interleaved" : " neox"));
      Case c;
      c.dtype = dtype;
      c.entry = Entry::kRagged;
      c.num_tokens = 61;
      c.options.interleave = interleave;
      expect_matches_reference(c, rng);
    }
  }
}

TEST(RopeRagged, LargeOffsetsInPlaceOnFusedQkv) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.entry = Entry::kRagged;
    c.fused_qkv = true;
    c.in_place = true;
    c.max_position = 120000;
    c.options.llama31 = Llama31Scaling{};
    c.options.rope_scale = 8.0;
    c.options.rope_theta = 5e5;
    expect_matches_reference(c, rng);
  }
}

TEST(RopeRagged, SingleTokenAndScalarPath) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    SCOPED_TRACE(name_of(dtype));
    Case c;
    c.dtype = dtype;
    c.entry = Entry::kRagged;
    c.num_tokens = 1;
    c.num_qo_heads = 1;
    c.num_kv_heads = 1;
    c.head_dim = 66;
    expect_matches_reference(c, rng);
  }
}

TEST(RopeRagged, ZeroTokensIsANoOp) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  Case c;
  c.entry = Entry::kRagged;
  c.num_tokens = 0;
  EXPECT_TRUE(run_case(c, rng).q_out.empty());
}

// ---- apply_rope_with_cos_sin_cache --------------------------------------------

TEST(RopeCosSinCache, NeoXAndGptJMatchReference) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (bool interleave : {false, true}) {
      for (Entry entry : {Entry::kCosSinCache, Entry::kCosSinCache2d}) {
        SCOPED_TRACE(name_of(dtype) + (interleave ? " gptj" : " neox") +
                     (entry == Entry::kCosSinCache2d ? " 2-D" : " 3-D"));
        Case c;
        c.dtype = dtype;
        c.entry = entry;
        c.options.interleave = interleave;
        expect_matches_reference(c, rng);
      }
    }
  }
}

TEST(RopeCosSinCache, PartialRotaryInPlaceOnFusedQkv) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (Entry entry : {Entry::kCosSinCache, Entry::kCosSinCache2d}) {
      SCOPED_TRACE(name_of(dtype) + (entry == Entry::kCosSinCache2d ? " 2-D" : " 3-D"));
      Case c;
      c.dtype = dtype;
      c.entry = entry;
      c.fused_qkv = true;
      c.in_place = true;
      c.options.rotary_dim = 64;
      expect_matches_reference(c, rng);
    }
  }
}

TEST(RopeCosSinCache, ScalarPathAndLargePositions) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  for (DType dtype : kHalfTypes) {
    for (bool interleave : {false, true}) {
      SCOPED_TRACE(name_of(dtype) + (interleave ? " gptj" : " neox"));
      Case c;
      c.dtype = dtype;
      c.entry = Entry::kCosSinCache;
      c.head_dim = 80;
      c.options.rotary_dim = 20;
      c.num_qo_heads = 3;
      c.num_kv_heads = 1;
      c.options.interleave = interleave;
      c.max_position = 100000;
      expect_matches_reference(c, rng);
    }
  }
}

TEST(RopeCosSinCache, ZeroTokensIsANoOp) {
  TESSERA_REQUIRE_GPU();
  TESSERA_SEEDED_RNG(rng);
  Case c;
  c.entry = Entry::kCosSinCache;
  c.num_tokens = 0;
  EXPECT_TRUE(run_case(c, rng).q_out.empty());
}

}  // namespace
}  // namespace tessera
