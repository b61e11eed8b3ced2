// FA2-style prefill attention for sm80+ (mma.sync, ldmatrix, cp.async).
// Computes out[i, h] = softmax_j(logit(q_i, k_j)) v_j * v_scale and lse[i, h]
// (base 2) for the queries of one request, query i at kv position
// kv_len - qo_len + i.
//
// Work is cut into units (prefill_schedule.cuh): `rows` of one request, a row
// being a (query token, qo head) pair (with GQA packing, the rows_per_token
// heads of a group share one token and one K/V stream), against the unit's
// KV range. process_unit() runs one unit on a CTA of kThreads = 4 warps:
// a q tile of 64 rows (16 per warp, kept in registers as mma A fragments up
// to head_dim 128) or 128 (32 per warp, FA2's shape, head_dim <= 128) with
// the A fragments re-read from shared memory per k-step; streams K/V tiles
// of 64 positions (32 at head_dim 256: kv_tile_rows) through a double
// buffer filled with cp.async (K[t+1] and V[t+1] load under tile t's math,
// one barrier per tile),
// online softmax in base 2 in registers. The unit writes its rows' out/lse,
// or (split KV) normalised float32 partial rows that a merge pass combines.
// Two kernels call it:
//   single_prefill_kernel: grid (q tiles, qo heads), one unit per CTA,
//     contiguous K/V (reversed in x so the longest causal tiles start first);
//   batch_prefill_kernel: grid (max work units, heads_y), CTA x runs unit x
//     of the plan (made with one CTA per unit, heaviest first) for its head
//     y; K/V ragged (contiguous per request) or paged (any page size >= 1).
// Shared memory: 2 K + 2 V tiles, then the Q tile, rows XOR-swizzled in
// 16-byte chunks (chunk ^ row % 8) so ldmatrix is bank-conflict free
// (head_dim 80 / 96 / 112: rows padded to an odd count of chunks instead,
// prefill_tiles_sm80.cuh; 66 / 78 / 90 KB):
// (4 * 64 + 128) * head_dim * 2 bytes = 48 KB (hd 64), 96 KB (hd 128);
// head_dim 256 (64-row Q tiles, 32-row K/V tiles): (4 * 32 + 64) * 512 =
// 96 KB; plus the paged row table (kRowTableBytes, 512 bytes) between V and Q.
// Q last, so a launch that only runs 64-row tiles (a GPU where two 96 KB
// CTAs do not fit an SM, api/prefill_device_fit) requests (4 * 64 + 64)
// rows' worth.
// The Q region is reused to stage the output for 16-byte stores.
// q/k head dim 192 with v/o head dim 128 (DeepSeek-style prefill; PrefillTraits'
// QkTile / VoTile): Q and K tiles of 192, V tiles, the output staging and O
// of 128, 64-row Q and K/V tiles: (2 * 64 * 192 + 2 * 64 * 128 + 64 * 192) *
// 2 bytes + two row tables (V's strides are not K's) = 105 KB.
// Limits: head_dim 64 / 80 / 96 / 112 / 128 / 256 or 192 / 128 (q/k, v/o),
// 16-bit q = k = v dtype, 16-byte aligned rows,
// causal with qo_len > kv_len leaves rows before the first key with no tile
// (out 0, lse -inf); the batch kernel runs
// variants without output transforms (a split unit's partial is merged
// later).
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>
#include <cuda/std/type_traits>

#include "tessera/arch/sm80/cp_async.cuh"
#include "tessera/arch/sm80/mma.cuh"
#include "tessera/attention/prefill_masks.cuh"
#include "tessera/attention/prefill_rows.cuh"
#include "tessera/attention/prefill_schedule.cuh"
#include "tessera/attention/prefill_tiles_sm80.cuh"
#include "tessera/attention/state.cuh"
#include "tessera/attention/variant.cuh"
#include "tessera/core/fast_divmod.cuh"
#include "tessera/core/numeric.cuh"

namespace tessera::prefill {

// Rows [row_begin, row_end) of a request of qo_len queries and kv_len keys,
// against KV positions [kv_begin, kv_end) (kv_begin a multiple of kKvTile);
// causal and window trims are the kernel's. custom_mask (read only by the
// kernels instantiated with kCustomMask): the request's bit-packed boolean
// mask [qo_len, kv_len] (FlashInfer's packed_custom_mask: element e = token
// * kv_len + kv_pos is bit e % 8 of byte e / 8; 1 attends), ANDed with every
// other mask. A compile-time choice: the mask's registers and per-element
// test would slow the kernels without one by 10-20% (H200, 255 registers).
struct UnitSpan {
  int row_begin;
  int row_end;
  int qo_len;
  int kv_len;
  int kv_begin;
  int kv_end;
  bool causal;
  const uint8_t* custom_mask;
};

// RoPE-style q/k transforms in prefill (Variant::kHasQueryKeyTransform): the
// kTileRows rows of a Q or K tile in shared memory, pair (j, j + D/2) of row r
// rotated at position position_of(r) by the variant's rotate_pair, rounded
// back to T. Items are (row, chunk of 8 pairs); the caller synchronises
// before and after (other threads loaded and will read the rows).
template <typename Shape, int kTileRows, typename T, typename Variant, typename PositionOf>
__device__ __forceinline__ void rotate_tile_rows(T* tile, const Variant& variant,
                                                 PositionOf position_of) {
  constexpr int kHalfChunks = Shape::kChunks / 2;
  for (int item = static_cast<int>(threadIdx.x); item < kTileRows * kHalfChunks; item += kThreads) {
    const int r = item / kHalfChunks;
    const int c = item % kHalfChunks;
    T* const lo_ptr = tile + swizzled<Shape::kChunks>(r, c);
    T* const hi_ptr = tile + swizzled<Shape::kChunks>(r, c + kHalfChunks);
    Vec<T, kChunkElems> lo;
    Vec<T, kChunkElems> hi;
    lo.load(lo_ptr);
    hi.load(hi_ptr);
    const int position = position_of(r);
#pragma unroll
    for (int i = 0; i < kChunkElems; ++i) {
      float x = to_float(lo[i]);
      float y = to_float(hi[i]);
      variant.template rotate_pair<Shape::kHeadDim>(x, y, position, c * kChunkElems + i);
      lo[i] = from_float<T>(x);
      hi[i] = from_float<T>(y);
    }
    lo.store(lo_ptr);
    hi.store(hi_ptr);
  }
}

// A thread's query rows: rows g and g + 8 of each of its warp's kMBlocks
// m16 blocks; thread row i is warp row (i / 2) * 16 + (i % 2) * 8 + g.
__device__ __forceinline__ int thread_row_offset(int i, int g) {
  return (i / 2) * 16 + (i % 2) * 8 + g;
}

// Runs one unit on the whole CTA: a q tile of kWarps * 16 * kMBlocks rows.
// kMBlocks = 1 keeps the warp's 16 Q rows in registers as A fragments;
// kMBlocks = 2 (FA2's 32 rows per warp) re-reads them from shared memory per
// k-step, which the registers need, and every K/V fragment then feeds two
// mma, halving shared-memory reads per FLOP. Leaves no copy in flight; the
// caller synchronises before the shared memory is reused.
template <typename Traits, typename Variant, bool kCustomMask, int kMBlocks, typename T,
          typename KvRows>
__device__ __forceinline__ void process_unit(const attention::VariantParams& params,
                                             const QueryRows<T>& rows, const KvRows& kv,
                                             const OutputRows<T>& output, const UnitSpan& span,
                                             unsigned char* shared_raw) {
  static_assert(kMBlocks == 1 || kMBlocks == 2, "16 or 32 query rows per warp");
  constexpr int kRowsPerWarp = kMBlocks * 16;
  constexpr int kKvTile = Traits::kKvTile;  // this head dim's K/V tile rows
  constexpr int kQTile = kWarps * kRowsPerWarp;
  constexpr int kRows = 2 * kMBlocks;  // this thread's rows
  constexpr bool kQInRegisters = kMBlocks == 1 && Traits::kQFitsRegisters;
  static_assert(kMBlocks <= Traits::kMaxMBlocks, "the Q region holds the tile");
  // Without softmax (e.g. sigmoid attention) a logit is the token's weight:
  // masked tokens weigh 0, nothing is normalised, lse is written as 0 so
  // that split units' partials sum in the merge.
  constexpr bool kSoftmax = Variant::kUseSoftmax;
  const float masked = kSoftmax ? attention::negative_infinity() : 0.f;
  // Q and K tiles have q/k rows, V tiles and the output staging v/o rows.
  using QkTile = typename Traits::QkTile;
  using VoTile = typename Traits::VoTile;
  constexpr int kQkChunks = QkTile::kChunks;
  constexpr int kVoChunks = VoTile::kChunks;
  // fp8 K/V tiles are widened to T in shared memory once they land.
  using KVT = typename KvRows::Element;
  constexpr bool kWiden = sizeof(KVT) != sizeof(T);
  static_assert(!kWiden || Traits::kSquare, "fp8 K/V runs head_dim 128");
  [[maybe_unused]] Fp8TileWidener<QkTile, T, KVT> widener;
  T* const k_tiles = reinterpret_cast<T*>(shared_raw);
  T* const v_tiles = k_tiles + 2 * QkTile::kTileElems;
  uint32_t* const row_table = reinterpret_cast<uint32_t*>(v_tiles + 2 * VoTile::kTileElems);
  // Q last: see the file comment.
  T* const q_tile = reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(row_table) +
                                         Traits::kRowTableRegionBytes);

  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int g = lane / 4;  // mma row group
  const int t = lane % 4;  // mma column pair
  const int q0 = span.row_begin;
  const int delta = span.kv_len - span.qo_len;  // query i sits at kv position delta + i

  const int warp_row = warp * kRowsPerWarp;
  int row[kRows];  // unit rows (may pass row_end: padding)
  int pos[kRows];  // their kv positions
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    row[i] = q0 + warp_row + thread_row_offset(i, g);
    pos[i] = delta + rows.token(row[i]);
  }
  const RowVariants<Variant, kRows> var = make_row_variants<Variant, kRows>(
      [&](int i) { return Variant(params, rows.head(row[i]), pos[i]); });
  [[maybe_unused]] int64_t mask_row[kRows];
  if constexpr (kCustomMask) {
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      mask_row[i] =
          row[i] < span.row_end ? static_cast<int64_t>(rows.token(row[i])) * span.kv_len : -1;
    }
  }

  // The unit's KV range: up to the diagonal of its last row (causal), from
  // the window start of its first row (the smallest), tile-aligned.
  const int first_pos = delta + rows.token(q0);
  const int last_pos = delta + rows.token(span.row_end - 1);
  const int kv_end = span.causal ? min(span.kv_end, last_pos + 1) : span.kv_end;
  const Variant var_first(params, rows.head(q0), first_pos);
  const int kv_begin = max(span.kv_begin, var_first.first_kv_position() / kKvTile * kKvTile);
  const int num_tiles = kv_end > kv_begin ? (kv_end - kv_begin + kKvTile - 1) / kKvTile : 0;
  // Tiles that need no per-element mask: wholly below kv_end and on or left
  // of the diagonal of the unit's first row.
  const int unmasked_end = span.causal ? min(kv_end, first_pos + 1) : kv_end;

  // Prologue: one group, Q + K[0] + V[0].
  load_q_tile<QkTile, kQTile>(q_tile, rows, q0, span.row_end);
  // Contiguous K/V: copies address rows by position. Paged: through the row
  // table; tiles 0 and 1 are published here, tile t + 2 at the end of
  // iteration t (its page ids fetched after the barrier that starts it).
  // V's rows share K's offsets when the head dims are equal; otherwise
  // (other strides) V has a table of its own, laid out for V's copies.
  [[maybe_unused]] const PagedRowTable<QkTile, KvRows> table{row_table};
  [[maybe_unused]] const PagedRowTable<VoTile, KvRows> value_table{row_table + 2 * kKvTile};
  const auto publish = [&](int slot, int pos0, int32_t page_id) {
    if constexpr (!KvRows::kContiguous) {
      table.publish(kv, kv.units, slot, pos0, page_id);
      if constexpr (!Traits::kSquare) value_table.publish(kv, kv.v_units, slot, pos0, page_id);
    }
  };
  [[maybe_unused]] int32_t next_page = 0;
  const auto load_tile = [&](T* tile, bool value, int t) {
    const int pos0 = kv_begin + t * kKvTile;
    const typename KvRows::template TileRows<1> no_rows{};
    if constexpr (KvRows::kContiguous) {
      if (!value) {
        load_kv_tile<QkTile>(tile, kv.k, kv, no_rows, pos0, kv_end);
      } else if constexpr (Traits::kSquare) {
        load_kv_tile<VoTile>(tile, kv.v, kv, no_rows, pos0, kv_end);
      } else {
        load_kv_tile<VoTile>(tile, kv.v, kv.values(), no_rows, pos0, kv_end);
      }
    } else if (!value) {
      table.template load<T>(tile, kv.k_data, kv.units, t & 1, pos0, kv_end);
    } else if constexpr (Traits::kSquare) {
      table.template load<T>(tile, kv.v_data, kv.units, t & 1, pos0, kv_end);
    } else {
      value_table.template load<T>(tile, kv.v_data, kv.v_units, t & 1, pos0, kv_end);
    }
  };
  if constexpr (!KvRows::kContiguous) {
    const int32_t page0 = table.fetch(kv, kv_begin, kv_end);
    const int32_t page1 = table.fetch(kv, kv_begin + kKvTile, kv_end);
    publish(0, kv_begin, page0);
    publish(1, kv_begin + kKvTile, page1);
    __syncthreads();
  }
  if (num_tiles > 0) {
    load_tile(k_tiles, false, 0);
    load_tile(v_tiles, true, 0);
  }
  sm80::cp_async_commit();
  // Tile t's K and V (stage t % 2) landed and are visible, widened to T.
  const auto land_tile = [&](int stage) {
    sm80::cp_async_wait_group<0>();
    if constexpr (kWiden) {
      // Each thread reads the fp8 chunks it copied before the barrier; the
      // widened rows overwrite other threads' staging bytes after it.
      widener.read_own(k_tiles + stage * QkTile::kTileElems);
      __syncthreads();
      widener.write(k_tiles + stage * QkTile::kTileElems);
      widener.read_own(v_tiles + stage * VoTile::kTileElems);
      __syncthreads();
      widener.write(v_tiles + stage * VoTile::kTileElems);
    }
    __syncthreads();
  };
  land_tile(0);
  if constexpr (Variant::kHasQueryKeyTransform) {
    // Query i of the request sits at kv position delta + i; padding rows are
    // zeros, whatever their position.
    rotate_tile_rows<QkTile, kQTile>(q_tile, var_first, [&](int r) {
      return delta + rows.token(min(q0 + r, span.row_end - 1));
    });
    if (num_tiles > 0)
      rotate_tile_rows<QkTile, kKvTile>(k_tiles, var_first, [&](int r) { return kv_begin + r; });
    __syncthreads();
  }

  // A fragment of Q rows [warp_row + 16 mb, + 16) x dims [16 ks, + 16).
  const LaneTileAddress<kQkChunks> q_address(q_tile, warp_row + lane % 16, lane / 16);
  const auto q_fragment = [&](uint32_t(&a)[4], int mb, int ks) {
    sm80::ldmatrix_x4(a, q_address.at(mb * 16, ks));
  };
  // K tiles: rows nb * 8 + (lane / 16) * 8 + lane % 8, chunk 2 ks + (lane / 8) % 2;
  // V (transposed): rows 16 c + ((lane / 8) % 2) * 8 + lane % 8, chunk db + lane / 16.
  const LaneTileAddress<kQkChunks> k_address(k_tiles, (lane / 16) * 8 + lane % 8, (lane / 8) % 2);
  const LaneTileAddress<kVoChunks> v_address(v_tiles, ((lane / 8) % 2) * 8 + lane % 8,
                                             lane / 16);
  [[maybe_unused]] uint32_t q_frag[kQInRegisters ? Traits::kKSteps : 1][4];

  float o[kMBlocks][Traits::kDBlocks][4];
#pragma unroll
  for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
    for (int db = 0; db < Traits::kDBlocks; ++db) {
#pragma unroll
      for (int i = 0; i < 4; ++i) o[mb][db][i] = 0.f;
    }
  }
  float m[kRows];
  float d[kRows];  // this lane's partial row sums (reduced over the quad at the end)
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    m[i] = attention::negative_infinity();
    d[i] = 0.f;
  }
  float q_scale = var.v[0].query_scale();
  // Softmax without a logits transform keeps logits as raw q.k until the
  // exp2 and folds the scale into its FFMA (one FMUL less per logit; +1-2%
  // on the H200, benchmarks/results/logs/h200_ab_prefill_softmax_a6b05b2.txt).
  // That needs a positive scale: a negative one negates the Q tile instead
  // (exact), and 0 becomes the least normal float (logits 2^-126 q.k: 1
  // after exp2, as with 0, while masked -inf stays -inf, not 0 * -inf = NaN).
  constexpr bool kFoldScale = kSoftmax && !Variant::kHasLogitsTransform;
  if constexpr (kFoldScale) {
    q_scale = var_first.query_scale();  // CTA-uniform: the branch below syncs
    if (q_scale < 0.f) {
      q_scale = -q_scale;
      uint32_t* const words = reinterpret_cast<uint32_t*>(q_tile);
      // (Padded rows' pad words flip too: never read.)
      for (int w = static_cast<int>(threadIdx.x); w < kQTile * QkTile::kRowElems / 2;
           w += kThreads) {
        words[w] ^= 0x80008000u;  // the sign bits of two 16-bit values
      }
      __syncthreads();
    }
    q_scale = fmaxf(q_scale, 1.17549435e-38f);
  }
  if constexpr (kQInRegisters) {
#pragma unroll
    for (int ks = 0; ks < Traits::kKSteps; ++ks) q_fragment(q_frag[ks], 0, ks);
  }

  // One K/V tile of the main loop. kMask: the tile needs the per-element
  // mask (tiles across the causal diagonal or kv_end, and every tile of a
  // variant with a logits mask or of a custom mask). Two bodies rather than
  // a run-time test in one: the compiler if-converts that test into ~256
  // predicated ISETP / FSEL per tile that even the unmasked tiles issue.
  const auto run_tile = [&](auto mask_tag, const int tile) {
    constexpr bool kMask = decltype(mask_tag)::value;
    const int stage = tile & 1;
    const int kv0 = kv_begin + tile * kKvTile;
    if (tile > 0) {
      land_tile(stage);
      if constexpr (Variant::kHasQueryKeyTransform) {
        rotate_tile_rows<QkTile, kKvTile>(k_tiles + stage * QkTile::kTileElems, var_first,
                                          [&](int r) { return kv0 + r; });
        __syncthreads();
      }
    }
    // K[tile + 1] and V[tile + 1] into the other stage: everyone finished
    // tile - 1 before the barrier. One group and one barrier per tile; the
    // copies overlap the whole of this tile's math.
    if (tile + 1 < num_tiles) {
      load_tile(k_tiles + (stage ^ 1) * QkTile::kTileElems, false, tile + 1);
      load_tile(v_tiles + (stage ^ 1) * VoTile::kTileElems, true, tile + 1);
    }
    if constexpr (!KvRows::kContiguous) {
      if (tile + 2 < num_tiles) {
        next_page = table.fetch(kv, kv0 + 2 * kKvTile, kv_end);
      }
    }
    sm80::cp_async_commit();

    // ---- S = Q K^T (kRowsPerWarp rows x kKvTile per warp)
    float s[kMBlocks][Traits::kSBlocks][4];
#pragma unroll
    for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
      for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
#pragma unroll
        for (int i = 0; i < 4; ++i) s[mb][nb][i] = 0.f;
      }
    }
#pragma unroll
    for (int ks = 0; ks < Traits::kKSteps; ++ks) {
      uint32_t a[kMBlocks][4];
#pragma unroll
      for (int mb = 0; mb < kMBlocks; ++mb) {
        if constexpr (kQInRegisters) {
#pragma unroll
          for (int i = 0; i < 4; ++i) a[mb][i] = q_frag[ks][i];
        } else {
          q_fragment(a[mb], mb, ks);
        }
      }
#pragma unroll
      for (int nb = 0; nb < Traits::kSBlocks; nb += 2) {
        uint32_t b[4];
        sm80::ldmatrix_x4(b, k_address.at(stage * kKvTile + nb * 8, ks));
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
          sm80::mma_16816<T>(s[mb][nb], a[mb], b[0], b[1]);
          sm80::mma_16816<T>(s[mb][nb + 1], a[mb], b[2], b[3]);
        }
      }
    }

    // ---- logits (log2 units) and masks; s[mb][nb][2 h + e] is thread row 2 mb + h
#pragma unroll
    for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
      for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int i = 2 * mb + h;
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int col = kv0 + nb * 8 + 2 * t + e;
            float x = kFoldScale ? s[mb][nb][2 * h + e] : s[mb][nb][2 * h + e] * q_scale;
            if constexpr (Variant::kHasLogitsTransform) x = var.v[i].logits_transform(x, col);
            if constexpr (kMask) {
              if (!attends(var.v[i], span.causal, col, pos[i], kv_end) ||
                  (kCustomMask && !custom_mask_allows(span.custom_mask, mask_row[i], col))) {
                x = masked;
              }
            }
            s[mb][nb][2 * h + e] = x;
          }
        }
      }
    }

    // ---- online softmax: row max over the quad, rescale, exponentiate
    if constexpr (kSoftmax) {
      float factor[kRows];  // the rows' accumulator rescale
#pragma unroll
      for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int i = 2 * mb + h;
          float max_i = m[i];
#pragma unroll
          for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
            max_i = fmaxf(max_i, fmaxf(s[mb][nb][2 * h], s[mb][nb][2 * h + 1]));
          }
#pragma unroll
          for (int offset = 1; offset < 4; offset *= 2) {
            max_i = fmaxf(max_i, __shfl_xor_sync(0xffffffffu, max_i, offset));
          }
          const float ref = attention::safe_max(max_i);
          // exp2 argument of a logit x: x - ref, or (raw) x * scale - ref * scale.
          const float exp_offset = -ref * q_scale;
          const auto exponent = [&](float x) {
            return kFoldScale ? fmaf(x, q_scale, exp_offset) : x - ref;
          };
          // Exactly 1 when the max did not move: folded, exponent(m) would
          // be the rounding error of m * scale, a factor off 1 by an ulp
          // that defeats the rescale skip and biases lse tile after tile.
          factor[i] = max_i == m[i] ? 1.f : attention::fast_exp2(exponent(m[i]));
          m[i] = max_i;
          d[i] *= factor[i];
#pragma unroll
          for (int nb = 0; nb < Traits::kSBlocks; ++nb) {
            s[mb][nb][2 * h] = attention::fast_exp2(exponent(s[mb][nb][2 * h]));
            s[mb][nb][2 * h + 1] = attention::fast_exp2(exponent(s[mb][nb][2 * h + 1]));
            d[i] += s[mb][nb][2 * h] + s[mb][nb][2 * h + 1];
          }
        }
      }
      // The accumulator rescale (128 FMUL per thread per tile at 32 rows per
      // warp) only when some row of the warp has a new max: a factor of
      // exactly 1 leaves o bitwise unchanged. A warp-uniform branch. The
      // a6b05b2 A/B (fold + skip +2.4-4.1%, skip alone -1.4 to -4.5%) ran
      // before factors were exactly 1 on the folded path, when the skip
      // rarely fired: its own gain is unmeasured.
      bool any_rescale = false;
#pragma unroll
      for (int i = 0; i < kRows; ++i) any_rescale = any_rescale || factor[i] != 1.f;
      if (__any_sync(0xffffffffu, any_rescale)) {
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
          for (int db = 0; db < Traits::kDBlocks; ++db) {
            o[mb][db][0] *= factor[2 * mb];
            o[mb][db][1] *= factor[2 * mb];
            o[mb][db][2] *= factor[2 * mb + 1];
            o[mb][db][3] *= factor[2 * mb + 1];
          }
        }
      }
    }
    // P as A fragments: kv columns 16c..16c+15 are S n-blocks 2c and 2c + 1.
    uint32_t p_frag[kMBlocks][Traits::kKvSteps][4];
#pragma unroll
    for (int mb = 0; mb < kMBlocks; ++mb) {
#pragma unroll
      for (int c = 0; c < Traits::kKvSteps; ++c) {
        p_frag[mb][c][0] = sm80::pack2<T>(s[mb][2 * c][0], s[mb][2 * c][1]);
        p_frag[mb][c][1] = sm80::pack2<T>(s[mb][2 * c][2], s[mb][2 * c][3]);
        p_frag[mb][c][2] = sm80::pack2<T>(s[mb][2 * c + 1][0], s[mb][2 * c + 1][1]);
        p_frag[mb][c][3] = sm80::pack2<T>(s[mb][2 * c + 1][2], s[mb][2 * c + 1][3]);
      }
    }

    // ---- O += P V (V read transposed by ldmatrix)
#pragma unroll
    for (int c = 0; c < Traits::kKvSteps; ++c) {
#pragma unroll
      for (int db = 0; db < Traits::kDBlocks; db += 2) {
        uint32_t b[4];
        sm80::ldmatrix_x4_trans(b, v_address.at(stage * kKvTile + c * 16, db / 2));
#pragma unroll
        for (int mb = 0; mb < kMBlocks; ++mb) {
          sm80::mma_16816<T>(o[mb][db], p_frag[mb][c], b[0], b[1]);
          sm80::mma_16816<T>(o[mb][db + 1], p_frag[mb][c], b[2], b[3]);
        }
      }
    }
    if constexpr (!KvRows::kContiguous) {
      // Slot tile % 2 held this tile's offsets, read by copies issued before
      // this iteration's barrier; the next iteration's barrier publishes
      // tile + 2's to the copies that read them.
      if (tile + 2 < num_tiles) {
        publish(tile & 1, kv0 + 2 * kKvTile, next_page);
      }
    }
  };
  int tile = 0;
  if constexpr (!Variant::kHasLogitsMask && !kCustomMask) {
    const int unmasked_tiles =
        unmasked_end > kv_begin ? min(num_tiles, (unmasked_end - kv_begin) / kKvTile) : 0;
    for (; tile < unmasked_tiles; ++tile) run_tile(cuda::std::false_type{}, tile);
  }
  for (; tile < num_tiles; ++tile) run_tile(cuda::std::true_type{}, tile);
  sm80::cp_async_wait_all();  // only empty groups remain; no copy may outlive the unit

  // ---- finalize: quad-reduce the row sums, normalise, store
  const float neg_inf = attention::negative_infinity();
  float inv[kRows];
  float lse[kRows];
  bool valid[kRows];
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      d[i] += __shfl_xor_sync(0xffffffffu, d[i], offset);
    }
    inv[i] = !kSoftmax ? params.v_scale : d[i] > 0.f ? params.v_scale / d[i] : 0.f;
    const float m_log2 = kFoldScale ? m[i] * q_scale : m[i];
    lse[i] = !kSoftmax ? 0.f : d[i] > 0.f ? m_log2 + __log2f(d[i]) : neg_inf;
    valid[i] = row[i] < span.row_end;
  }

  if (output.partial_out != nullptr) {
    // Split KV: float32 rows straight from the accumulators (8-byte stores).
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (!valid[i]) continue;
      const int mb = i / 2;
      const int h = i % 2;
      float* const part = output.partial_out + (row[i] - q0) * output.partial_stride + 2 * t;
#pragma unroll
      for (int db = 0; db < Traits::kDBlocks; ++db) {
        *reinterpret_cast<float2*>(part + db * 8) =
            make_float2(o[mb][db][2 * h] * inv[i], o[mb][db][2 * h + 1] * inv[i]);
      }
      if (t == 0) output.partial_lse[(row[i] - q0) * output.partial_lse_stride] = lse[i];
    }
    return;
  }

  // The warp's Q rows were read (ldmatrix) only by this warp, after the
  // prologue barrier: the warp may overwrite them with its output once its
  // lanes' reads are ordered before the writes. A unit with no K/V tile has
  // no loop barrier in between (racecheck, paged 64-row tiles, 6cd1032).
  __syncwarp();
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    const int mb = i / 2;
    const int h = i % 2;
#pragma unroll
    for (int db = 0; db < Traits::kDBlocks; ++db) {
      float o0 = o[mb][db][2 * h] * inv[i];
      float o1 = o[mb][db][2 * h + 1] * inv[i];
      if constexpr (Variant::kHasOutputTransform) {
        o0 = var.v[i].output_transform(o0);
        o1 = var.v[i].output_transform(o1);
      }
      *reinterpret_cast<uint32_t*>(
          q_tile + swizzled<kVoChunks>(warp_row + thread_row_offset(i, g), db) + 2 * t) =
          sm80::pack2<T>(o0, o1);
    }
  }
  __syncwarp();
#pragma unroll
  for (int i = lane; i < kRowsPerWarp * kVoChunks; i += 32) {
    const int r = i / kVoChunks;
    const int chunk = i % kVoChunks;
    const int out_row = q0 + warp_row + r;
    if (out_row < span.row_end) {
      const uint4 value =
          *reinterpret_cast<const uint4*>(q_tile + swizzled<kVoChunks>(warp_row + r, chunk));
      const int token = rows.token(out_row);
      const int head = out_row - token * static_cast<int>(rows.per_token.divisor) + rows.head_base;
      *reinterpret_cast<uint4*>(output.out + token * output.stride_token +
                                head * output.stride_head + chunk * kChunkElems) = value;
    }
  }
  if (output.lse != nullptr && t == 0) {
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (valid[i]) output.lse[rows.token(row[i]) * output.lse_stride + rows.head(row[i])] = lse[i];
    }
  }
}

// ---------------------------------------------------------------- kernels

template <typename T>
struct SinglePrefillParams {
  const T* q;  // [qo_len, num_qo_heads, head_dim] strided
  int64_t q_stride_token;
  int64_t q_stride_head;
  T* out;      // like q
  int64_t out_stride_token;
  int64_t out_stride_head;
  float* lse;  // null or [qo_len, num_qo_heads] contiguous
  const T* k;  // [kv_len] rows of each head: k + head * kv_stride_head + pos * kv_stride_entry
  const T* v;  // the same with v_stride_head / v_stride_entry (k's when the head dims are equal)
  int64_t kv_stride_entry;
  int64_t kv_stride_head;
  int64_t v_stride_entry;
  int64_t v_stride_head;
  int32_t qo_len;
  int32_t kv_len;
  int32_t num_qo_heads;
  int32_t group_size;  // num_qo_heads / num_kv_heads
  bool causal;
  int32_t q_tile_rows;         // 64 or 128 (the host's choice; grid x = tiles)
  const uint8_t* custom_mask;  // null, or bit-packed [qo_len, kv_len] (UnitSpan)
  attention::VariantParams variant;
};

template <typename Traits, typename Variant, bool kCustomMask, int kMBlocks, typename T>
__device__ __forceinline__ void single_prefill_tile(const SinglePrefillParams<T>& p,
                                                    unsigned char* shared_raw) {
  constexpr int kQTile = kWarps * 16 * kMBlocks;
  const int qo_head = static_cast<int>(blockIdx.y);
  const int kv_head = qo_head / p.group_size;
  const int q0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kQTile;
  const QueryRows<T> rows{p.q, p.q_stride_token, p.q_stride_head, FastDivmod::make(1), qo_head};
  const ContiguousKvRows<T> kv{p.k + kv_head * p.kv_stride_head,
                               p.v + kv_head * p.v_stride_head, p.kv_stride_entry,
                               p.v_stride_entry};
  const OutputRows<T> output{p.out, p.out_stride_token, p.out_stride_head, p.lse,
                             p.num_qo_heads, nullptr, nullptr, 0, 0};
  const UnitSpan span{
      q0, min(q0 + kQTile, p.qo_len), p.qo_len, p.kv_len, 0, p.kv_len, p.causal, p.custom_mask};
  process_unit<Traits, Variant, kCustomMask, kMBlocks>(p.variant, rows, kv, output, span,
                                                       shared_raw);
}

template <typename Traits, typename Variant, typename T, bool kCustomMask = false>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    single_prefill_kernel(const SinglePrefillParams<T> p) {
  extern __shared__ __align__(128) unsigned char shared_raw[];
  if constexpr (Traits::kMaxMBlocks == 2) {
    if (p.q_tile_rows == kMaxQTile) {
      single_prefill_tile<Traits, Variant, kCustomMask, 2>(p, shared_raw);
      return;
    }
  }
  single_prefill_tile<Traits, Variant, kCustomMask, 1>(p, shared_raw);
}

template <typename T, typename Kv>
struct BatchPrefillParams {
  const T* q;  // [total_qo, num_qo_heads, head_dim] strided
  int64_t q_stride_token;
  int64_t q_stride_head;
  T* out;      // like q
  int64_t out_stride_token;
  int64_t out_stride_head;
  float* lse;  // null or [total_qo, num_qo_heads] contiguous
  Kv kv;       // request offsets and lengths: in the work units
  int32_t num_qo_heads;
  int32_t heads_y;      // gridDim.y: num_kv_heads (GQA packed) or num_qo_heads
  int32_t group_size;   // num_qo_heads / num_kv_heads
  FastDivmod per_token; // by the schedule's rows_per_token (host copy of it)
  int32_t head_dim;  // of v and out (head_dim_vo): the partial rows' width
  PrefillScheduleView schedule;  // causal is the plan's (header), so a graph follows it
  // Null, or every request's bit-packed custom mask; request r's bits start
  // at byte work_unit.mask_byte_begin (the plan's prefix sums).
  const uint8_t* custom_mask;
  attention::VariantParams variant;
};

template <typename Traits, typename Variant, typename T, typename Kv, bool kCustomMask = false>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    batch_prefill_kernel(const BatchPrefillParams<T, Kv> p) {
  static_assert(!Variant::kHasOutputTransform, "a split unit's output is finished by the merge");
  extern __shared__ __align__(128) unsigned char shared_raw[];
  const PrefillScheduleView& schedule = p.schedule;
  // CTA x runs work unit x (launched with one CTA per unit, also on a plan
  // whose CTA lists are the Hopper kernel's); no loop, so nothing stays live
  // across units.
  const int u = static_cast<int>(blockIdx.x);
  if (u >= schedule.header->num_work_units) return;
  const int y = static_cast<int>(blockIdx.y);
  const int rows_per_token = static_cast<int>(p.per_token.divisor);
  // Packed: y is the KV head and rows cover its group; else y is the qo head.
  const int kv_head = rows_per_token > 1 ? y : y / p.group_size;
  const int head_base = rows_per_token > 1 ? y * rows_per_token : y;
  const bool causal = schedule.header->causal != 0;
  {
    const PrefillWorkUnit unit = schedule.work_units[u];
    const int qo_begin = unit.qo_begin;
    const int qo_len = unit.qo_len;
    const QueryRows<T> rows{p.q + qo_begin * p.q_stride_token, p.q_stride_token, p.q_stride_head,
                            p.per_token, head_base};
    OutputRows<T> output{p.out + qo_begin * p.out_stride_token, p.out_stride_token,
                         p.out_stride_head,
                         p.lse == nullptr ? nullptr : p.lse + qo_begin * p.num_qo_heads,
                         p.num_qo_heads, nullptr, nullptr, 0, 0};
    if (unit.partial_index >= 0) {
      const int64_t first = static_cast<int64_t>(unit.partial_index) * p.heads_y + y;
      output.partial_out = schedule.partial_out + first * p.head_dim;
      output.partial_lse = schedule.partial_lse + first;
      output.partial_stride = static_cast<int64_t>(p.heads_y) * p.head_dim;
      output.partial_lse_stride = p.heads_y;
    }
    const UnitSpan span{unit.qo_tile_begin,
                        unit.qo_tile_begin + unit.qo_rows,
                        qo_len,
                        unit.kv_len,
                        unit.kv_begin,
                        unit.kv_end,
                        causal,
                        kCustomMask ? p.custom_mask + unit.mask_byte_begin : nullptr};
    // (The planner gives head_dim 256 64-row tiles only.)
    if constexpr (Traits::kMaxMBlocks == 2) {
      if (schedule.header->q_tile_rows == kMaxQTile) {
        process_unit<Traits, Variant, kCustomMask, 2>(
            p.variant, rows, p.kv.rows(unit.kv_start, kv_head), output, span, shared_raw);
        return;
      }
    }
    process_unit<Traits, Variant, kCustomMask, 1>(
        p.variant, rows, p.kv.rows(unit.kv_start, kv_head), output, span, shared_raw);
  }
}

}  // namespace tessera::prefill
