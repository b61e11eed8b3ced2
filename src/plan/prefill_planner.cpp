// Batch prefill planner (see prefill_planner.h).
//
// Policy.
// 1. Rows and heads. With GQA packing a CTA owns one KV head and rows are
//    (token, qo head of the group) pairs, so each K/V tile is loaded once per
//    group instead of once per qo head; heads_y = num_kv_heads CTAs per unit.
// 2. Q tile. 128 rows when head_dim <= 128, the mean packed query length of
//    the non-empty requests is >= 128 and 128-row tiles still give a full
//    wave (tiles * heads_y >= num_sms * ctas_per_sm); else 64. A 128-row tile
//    loads every K/V tile once per 128 rows instead of per 64 (half the
//    L2/HBM traffic per FLOP, longer mma runs per barrier), but it holds a
//    128 x head_dim float accumulator: at head_dim 256 that is 256 registers
//    a thread for 4 warps, so it spills; a short request fills a 128 tile
//    mostly with padding rows (30 rows: 77% wasted mma work against 53% at
//    64); and halving the tile count must not cost a wave (that would force a
//    split-KV round trip the 64 tile does not need).
// 3. Cost. A unit's cost is the KV tokens it reads plus kUnitOverheadTokens
//    (Q load, pipeline fill, epilogue). Causal: query i sees KV [0, kv_len -
//    qo_len + i] (none when that is negative: qo_len > kv_len), so a tile
//    reads KV up to its LAST row's position; the tile at the end of a request
//    costs kv_len, the first max(0, kv_len - qo_len + 64/g).
// 4. Split-KV only when the q tiles alone cannot fill the GPU (tiles *
//    heads_y < wave: short queries on long KV). Then every tile whose causal
//    KV extent exceeds `chunk` is cut into chunks of `chunk` tokens, with
//    `chunk` the LARGEST multiple of kChunkGranularityTokens (at least
//    the input's min_chunk_tokens, kMinChunkTokens by default) whose units
//    still reach a full wave: every extra chunk costs a partial round trip
//    and merge work (units(chunk) is non-increasing, binary search), then
//    grown until the bounds (max_work_units, max_partial_rows) hold. With one_unit_per_cta the
//    chunk is instead the smallest whose units fit ONE wave (as decode's
//    planner: a few units past the wave form a second, mostly idle wave).
// 5. Balance. When units * heads_y fit one wave, one unit per CTA (all
//    resident at once). Otherwise a fixed grid of wave / heads_y CTAs each
//    runs a list of units, filled by LPT (heaviest unit first to the least
//    loaded CTA, ties to the lower index: deterministic), which bounds a
//    CTA's load by mean + one unit's cost (and 4/3 of the optimum).
//    With one_unit_per_cta (what the FA2-style kernel is run with: measured
//    205 TFLOP/s persistent vs 276 for the same causal 16k request with one
//    CTA per tile, H100) every unit is its own CTA, heaviest first, and the
//    hardware's block scheduler balances them as they finish; launched head
//    by head (grid y), the CTAs resident at once share one head's K/V in L2.
//    The Hopper kernel takes the units of such a plan as (unit, head) jobs
//    from a counter on one CTA per SM (prefill_sm90/kernel.cuh), in this
//    order.
#include "plan/prefill_planner.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include "../api/batch_decode_args.h"
#include "plan/workspace_regions.h"
#include "tessera/attention/head_dims.h"
#include "tessera/core/error.h"

namespace tessera::plan {

namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kSmallQTile = 64;   // the FA2 kernel's 4 warps x 16 rows
constexpr int64_t kLargeQTile = 128;  // 4 warps x 32 rows
constexpr int64_t kLargeTileMaxHeadDim = 128;
// Chunks are multiples of 64 tokens: of the common page sizes and of the
// kernel's 64-row KV tile, so no CTA starts mid-tile or mid-page.
constexpr int64_t kChunkGranularityTokens = 64;
// A prefill chunk's partial is rows x head_dim floats written and read back
// (64 rows: 32 KiB at head_dim 128) against 2 x chunk x head_dim x 2 B of
// K/V; 256 tokens (128 KiB) keeps that round trip at 25%, and 4 KV tiles
// amortise the CTA prologue. The default of PrefillPlannerInput's
// min_chunk_tokens (the header states it; checked here).
constexpr int64_t kMinChunkTokens = 256;
static_assert(kMinChunkTokens % kChunkGranularityTokens == 0,
              "the minimum chunk must be a multiple of the granularity");
static_assert(PrefillPlannerInput{}.min_chunk_tokens == kMinChunkTokens,
              "the input's default minimum chunk is the prefill one");
// Fixed cost of a unit in KV tokens: loading the Q tile and the epilogue are
// about one KV tile's worth of memory traffic.
constexpr int64_t kUnitOverheadTokens = 64;

int64_t pieces_of(int64_t extent, int64_t chunk) {
  return extent <= chunk ? 1 : ceil_div(extent, chunk);
}

struct UnitCount {
  int64_t units = 0;
  int64_t partial_rows = 0;
};

UnitCount count_units(const std::vector<PrefillTile>& tiles, int64_t chunk) {
  UnitCount count;
  for (const PrefillTile& t : tiles) {
    const int64_t pieces = pieces_of(t.kv_extent, chunk);
    count.units += pieces;
    if (pieces >= 2) count.partial_rows += pieces * t.rows;
  }
  return count;
}

int64_t count_tiles(std::span<const int32_t> qo_indptr, int64_t rows_per_token, int64_t q_tile) {
  int64_t tiles = 0;
  for (std::size_t b = 0; b + 1 < qo_indptr.size(); ++b) {
    tiles += ceil_div((int64_t{qo_indptr[b + 1]} - qo_indptr[b]) * rows_per_token, q_tile);
  }
  return tiles;
}

}  // namespace

void validate_prefill_planner_input(const PrefillPlannerInput& in) {
  TESSERA_CHECK_ARG(in.num_qo_heads >= 1 && in.num_kv_heads >= 1 && in.num_kv_heads <= 65535 &&
                        in.num_qo_heads % in.num_kv_heads == 0,
                    "shape", "heads >= 1, num_qo_heads a multiple of num_kv_heads",
                    std::to_string(in.num_qo_heads) + " qo heads, " +
                        std::to_string(in.num_kv_heads) + " kv heads");
  // (192: q/k of 192 / 128 prefill; its partials are sized at 192, more
  // than the 128 floats a row the kernel writes.)
  TESSERA_CHECK_ARG(attention::supported_head_dim(in.head_dim) ||
                        in.head_dim == attention::kSplitHeadDimQk ||
                        (in.head_dim == 512 && in.num_kv_heads == 1),
                    "shape",
                    std::string(attention::kHeadDimsText) +
                        " (192: q/k beside v/o 128; 512: MLA's latent, one KV head)",
                    "head_dim " + std::to_string(in.head_dim));
  if (in.num_sms < 1 || in.ctas_per_sm < 1 || in.max_work_units < 0 || in.max_partial_rows < 0 ||
      in.min_chunk_tokens < kChunkGranularityTokens ||
      in.min_chunk_tokens % kChunkGranularityTokens != 0 ||
      in.max_work_units > kInt32Max || in.max_partial_rows > kInt32Max) {
    throw Error("tessera: prefill planner: inconsistent GPU description or bounds");
  }
  const std::span<const int32_t> qo = in.qo_indptr;
  TESSERA_CHECK_ARG(!qo.empty(), "qo_indptr", "batch_size + 1 >= 1 values", "an empty array");
  const std::size_t batch = qo.size() - 1;
  TESSERA_CHECK_ARG(static_cast<int64_t>(batch) <= in.max_batch_size, "qo_indptr",
                    "at most max_batch_size = " + std::to_string(in.max_batch_size) + " requests",
                    std::to_string(batch) + " requests");
  TESSERA_CHECK_ARG(in.kv_lengths.size() == batch, "kv_indptr",
                    std::to_string(batch) + " requests (len(qo_indptr) - 1)",
                    std::to_string(in.kv_lengths.size()) + " requests");
  TESSERA_CHECK_ARG(in.kv_indptr.size() == batch + 1, "kv_indptr",
                    std::to_string(batch + 1) + " values (len(qo_indptr))",
                    std::to_string(in.kv_indptr.size()) + " values");
  TESSERA_CHECK_ARG(qo[0] == 0, "qo_indptr", "qo_indptr[0] = 0",
                    element_text("qo_indptr", 0, qo[0]));
  for (std::size_t b = 0; b < batch; ++b) {
    const int64_t qo_len = int64_t{qo[b + 1]} - qo[b];
    TESSERA_CHECK_ARG(qo_len >= 0, "qo_indptr",
                      "non-decreasing values (qo_indptr[" + std::to_string(b) +
                          "] = " + std::to_string(qo[b]) + ")",
                      element_text("qo_indptr", b + 1, qo[b + 1]));
    const int64_t kv_len = in.kv_lengths[b];
    TESSERA_CHECK_ARG(kv_len >= 0 && kv_len <= kInt32Max, "kv_indptr", "KV lengths in [0, 2^31)",
                      element_text("kv length", b, kv_len));
  }
  const int64_t total = qo[batch];
  TESSERA_CHECK_ARG(total <= in.max_total_qo_tokens, "qo_indptr",
                    "at most max_total_qo_tokens = " + std::to_string(in.max_total_qo_tokens) +
                        " query tokens (the bounds)",
                    std::to_string(total) + " tokens");
  const int64_t rows_per_token = in.pack_gqa ? in.num_qo_heads / in.num_kv_heads : 1;
  TESSERA_CHECK_ARG(total * rows_per_token <= kInt32Max, "qo_indptr",
                    "total tokens x GQA group below 2^31",
                    std::to_string(total) + " x " + std::to_string(rows_per_token));
}

namespace {

// Largest chunk (multiple of the granularity, >= the minimum) whose units
// reach target_units (persistent CTAs balance them), or with one unit per
// CTA the smallest whose units fit one wave (max_units_one_wave: a few units
// past the wave would run as a second, mostly idle wave, as decode measured);
// then the smallest chunk >= it that fits the bounds.
int64_t choose_chunk(const std::vector<PrefillTile>& tiles, int64_t max_extent,
                     int64_t target_units, int64_t max_units_one_wave,
                     const PrefillPlannerInput& in) {
  const auto units_at = [&](int64_t k) { return count_units(tiles, k * kChunkGranularityTokens); };
  const auto fits = [&](const UnitCount& c) {
    return c.units <= in.max_work_units && c.partial_rows <= in.max_partial_rows;
  };
  const int64_t k_min = in.min_chunk_tokens / kChunkGranularityTokens;
  const int64_t k_max = ceil_div(max_extent, kChunkGranularityTokens);  // no split: always fits
  int64_t best = k_min;
  if (in.one_unit_per_cta) {
    // units(k_max) = the tiles alone, fewer than a wave here, so k_max qualifies.
    int64_t lo = k_min, hi = k_max;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (units_at(mid).units <= max_units_one_wave)
        hi = mid;
      else
        lo = mid + 1;
    }
    best = hi;
  } else if (units_at(k_min).units >= target_units) {
    int64_t lo = k_min, hi = k_max;  // invariant: units(lo) >= target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo + 1) / 2;
      if (units_at(mid).units >= target_units)
        lo = mid;
      else
        hi = mid - 1;
    }
    best = lo;
  }
  if (!fits(units_at(best))) {
    int64_t lo = best, hi = k_max;  // invariant: hi fits
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (fits(units_at(mid)))
        hi = mid;
      else
        lo = mid + 1;
    }
    best = hi;
  }
  return best * kChunkGranularityTokens;
}

}  // namespace

int64_t choose_q_tile_rows(std::span<const int32_t> qo_indptr, int64_t rows_per_token,
                           int64_t heads_y, int64_t head_dim, int64_t max_q_tile_rows,
                           int64_t wave) {
  if (head_dim > kLargeTileMaxHeadDim || max_q_tile_rows < kLargeQTile) return kSmallQTile;
  const auto batch = static_cast<int64_t>(qo_indptr.size()) - 1;
  int64_t non_empty = 0;
  for (int64_t b = 0; b < batch; ++b) non_empty += qo_indptr[b + 1] > qo_indptr[b] ? 1 : 0;
  const int64_t total_rows = int64_t{qo_indptr[batch]} * rows_per_token;
  const bool large = non_empty > 0 && total_rows >= kLargeQTile * non_empty &&
                     count_tiles(qo_indptr, rows_per_token, kLargeQTile) * heads_y >= wave;
  return large ? kLargeQTile : kSmallQTile;
}

namespace {

// Unit indices by cost, heaviest first, ties in index order (what a stable
// sort by descending cost gives), by an LSD radix sort of 64-bit keys
// (distance below the largest cost, then the index) over the distance's
// bits: one or two passes for the usual costs (< 65536 KV tokens apart),
// linear in the units, where a comparison sort was ~40% of a 2k-unit plan.
void order_heaviest_first(std::span<const int64_t> cost, std::vector<uint64_t>& keys,
                          std::vector<uint64_t>& buffer, std::vector<int32_t>& counts,
                          std::vector<int32_t>& order) {
  const std::size_t n = cost.size();
  order.resize(n);
  if (n < 2) {
    std::iota(order.begin(), order.end(), 0);
    return;
  }
  const auto [lightest, heaviest] = std::minmax_element(cost.begin(), cost.end());
  const int64_t top = *heaviest;
  const auto range = static_cast<uint64_t>(top - *lightest);
  keys.resize(n);
  for (std::size_t u = 0; u < n; ++u) {
    keys[u] = static_cast<uint64_t>(top - cost[u]) << 32 | static_cast<uint64_t>(u);
  }
  buffer.resize(n);
  int range_bits = 0;
  while (range_bits < 32 && (range >> range_bits) != 0) ++range_bits;
  // Digits of up to 16 bits, but no more buckets than ~4 per key: clearing
  // and summing the counts must not outweigh the keys.
  const int digit_bits = std::clamp<int>(static_cast<int>(std::bit_width(4 * n)), 8, 16);
  for (int shift = 0; shift < range_bits; shift += digit_bits) {
    const int bits = std::min(digit_bits, range_bits - shift);
    const uint64_t mask = (uint64_t{1} << bits) - 1;
    counts.assign((std::size_t{1} << bits) + 1, 0);
    for (const uint64_t k : keys) ++counts[(k >> (32 + shift) & mask) + 1];
    std::partial_sum(counts.begin(), counts.end(), counts.begin());
    for (const uint64_t k : keys) {
      buffer[static_cast<std::size_t>(counts[k >> (32 + shift) & mask]++)] = k;
    }
    keys.swap(buffer);
  }
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<int32_t>(keys[i] & 0xffffffffu);
}

}  // namespace

PrefillScheduleHeader plan_prefill_schedule(const PrefillPlannerInput& in,
                                            PrefillPlannerScratch& scratch,
                                            const PrefillScheduleTarget& target,
                                            int64_t* custom_mask_bytes) {
  validate_prefill_planner_input(in);
  const std::span<const int32_t> qo = in.qo_indptr;
  const auto batch = static_cast<int64_t>(qo.size()) - 1;
  const int64_t rows_per_token = in.pack_gqa ? in.num_qo_heads / in.num_kv_heads : 1;
  const int64_t heads_y = in.pack_gqa ? in.num_kv_heads : in.num_qo_heads;
  const int64_t wave = in.num_sms * in.ctas_per_sm;

  // Q tile (policy 2).
  const bool large_ok = in.head_dim <= kLargeTileMaxHeadDim && in.max_q_tile_rows >= kLargeQTile;
  int64_t q_tile = in.only_max_q_tile ? in.max_q_tile_rows
                                      : choose_q_tile_rows(qo, rows_per_token, heads_y, in.head_dim,
                                                           in.max_q_tile_rows, wave);
  int64_t num_tiles = count_tiles(qo, rows_per_token, q_tile);
  if (num_tiles > in.max_work_units && q_tile == kSmallQTile && large_ok) {
    q_tile = kLargeQTile;  // fewer, larger tiles rather than failing the bounds
    num_tiles = count_tiles(qo, rows_per_token, q_tile);
  }
  TESSERA_CHECK_ARG(num_tiles <= in.max_work_units, "bounds",
                    "max_work_units >= the q tiles of this batch (" + std::to_string(num_tiles) +
                        " of " + std::to_string(q_tile) + " rows)",
                    "max_work_units " + std::to_string(in.max_work_units));

  std::vector<PrefillTile>& tiles = scratch.tiles;
  tiles.clear();
  tiles.reserve(static_cast<std::size_t>(num_tiles));
  int64_t max_extent = 0;
  // Custom-mask byte offsets per request (segment_packbits layout); a plan
  // whose mask would pass 2^31 bytes keeps the total, and run() rejects a
  // mask for it.
  std::vector<int32_t>& mask_begin = scratch.mask_begin;
  mask_begin.assign(static_cast<std::size_t>(batch), 0);
  int64_t mask_bytes = 0;
  const int64_t tokens_per_tile = q_tile % rows_per_token == 0 ? q_tile / rows_per_token : 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t qo_len = int64_t{qo[b + 1]} - qo[b];
    const int64_t kv_len = in.kv_lengths[static_cast<std::size_t>(b)];
    mask_begin[static_cast<std::size_t>(b)] =
        static_cast<int32_t>(std::min<int64_t>(mask_bytes, std::numeric_limits<int32_t>::max()));
    mask_bytes += ceil_div(qo_len * kv_len, 8);
    const int64_t rows = qo_len * rows_per_token;
    for (int64_t r0 = 0, t0 = 0; r0 < rows; r0 += q_tile, t0 += tokens_per_tile) {
      const int64_t n = std::min(q_tile, rows - r0);
      // The tile's last query token, without a division per tile where the
      // tile holds whole tokens (GQA groups dividing it; ~20% of a plan).
      const int64_t last_token = tokens_per_tile > 0 ? std::min(t0 + tokens_per_tile, qo_len) - 1
                                                     : (r0 + n - 1) / rows_per_token;
      // Causal with qo_len > kv_len: the first qo_len - kv_len queries see no
      // key (FlashInfer's bottom-right alignment); a tile of only such rows
      // reads nothing and writes out 0, lse -inf.
      const int64_t extent =
          in.causal ? std::max<int64_t>(0, kv_len - qo_len + last_token + 1) : kv_len;
      tiles.push_back(
          {static_cast<int32_t>(b), static_cast<int32_t>(r0), static_cast<int32_t>(n), extent});
      max_extent = std::max(max_extent, extent);
    }
  }

  // Split-KV (policy 4); chunk >= max_extent means no tile is split.
  int64_t chunk = std::max<int64_t>(max_extent, 1);
  if (num_tiles * heads_y < wave && max_extent > in.min_chunk_tokens) {
    chunk = std::min(chunk,
                     choose_chunk(tiles, max_extent, ceil_div(wave, heads_y), wave / heads_y, in));
  }

  if (custom_mask_bytes != nullptr) *custom_mask_bytes = mask_bytes;
  std::vector<PrefillWorkUnit>& units = scratch.units;
  std::vector<int64_t>& cost = scratch.cost;
  std::vector<PrefillMergeTile>& merge_tiles = scratch.merge_tiles;
  units.clear();
  cost.clear();
  merge_tiles.clear();
  const UnitCount total = count_units(tiles, chunk);
  units.reserve(static_cast<std::size_t>(total.units));
  cost.reserve(static_cast<std::size_t>(total.units));
  int64_t partial = 0, max_unit_tokens = 0;
  for (const PrefillTile& t : tiles) {
    const int64_t pieces = pieces_of(t.kv_extent, chunk);
    if (pieces >= 2) {
      merge_tiles.push_back({t.request, t.row_begin, t.rows, static_cast<int32_t>(partial),
                             static_cast<int32_t>(pieces)});
    }
    for (int64_t p = 0; p < pieces; ++p) {
      const int64_t begin = pieces == 1 ? 0 : p * chunk;
      const int64_t end = pieces == 1 ? t.kv_extent : std::min(t.kv_extent, begin + chunk);
      const int64_t slot = pieces == 1 ? -1 : partial + p * t.rows;
      const auto b = static_cast<std::size_t>(t.request);
      units.push_back({t.request, t.row_begin, t.rows, static_cast<int32_t>(begin),
                       static_cast<int32_t>(end), static_cast<int32_t>(slot), mask_begin[b], qo[b],
                       qo[b + 1] - qo[b], in.kv_indptr[b], static_cast<int32_t>(in.kv_lengths[b])});
      cost.push_back(end - begin + kUnitOverheadTokens);
      max_unit_tokens = std::max(max_unit_tokens, end - begin);
    }
    if (pieces >= 2) partial += pieces * t.rows;
  }

  // CTA assignment (policy 5): cta_indptr and the order units are written in.
  const auto num_units = static_cast<int64_t>(units.size());
  const int64_t num_ctas = num_units * heads_y <= wave || in.one_unit_per_cta
                               ? num_units
                               : std::min(num_units, std::max<int64_t>(1, wave / heads_y));
  if (num_units > static_cast<int64_t>(target.work_units.size()) ||
      num_ctas + 1 > static_cast<int64_t>(target.cta_indptr.size()) ||
      merge_tiles.size() > target.merge_tiles.size() ||
      (!target.unit_cost.empty() && num_units > static_cast<int64_t>(target.unit_cost.size()))) {
    throw Error("tessera: prefill planner exceeded the workspace bounds");
  }
  const std::span<int32_t> cta_indptr =
      target.cta_indptr.first(static_cast<std::size_t>(num_ctas) + 1);
  std::vector<int32_t>& order = scratch.order;
  if (num_ctas == num_units) {
    // One unit per CTA: heaviest first (stable) with one_unit_per_cta, so the
    // longest causal tiles start first; else in tile order.
    if (in.one_unit_per_cta) {
      order_heaviest_first(cost, scratch.keys, scratch.key_buffer, scratch.counts, order);
    } else {
      order.resize(units.size());
      std::iota(order.begin(), order.end(), 0);
    }
    std::iota(cta_indptr.begin(), cta_indptr.end(), 0);
  } else {
    std::vector<int32_t>& heaviest = scratch.heaviest;
    order_heaviest_first(cost, scratch.keys, scratch.key_buffer, scratch.counts, heaviest);
    // Min-heap of loads with replace-top (one sift-down per unit). A load is
    // packed with its CTA below it into one 64-bit key (ties go to the lower
    // CTA, one compare per step): kCtaBits for the CTA, the rest for the load,
    // with costs shifted right in the (unrealistic) case the total would not fit.
    constexpr int kCtaBits = 20;
    constexpr int kLoadBits = 64 - kCtaBits - 1;
    if (num_ctas >= (int64_t{1} << kCtaBits))
      throw Error("tessera: prefill planner: too many CTAs");
    uint64_t total_cost = 0;
    for (const int64_t c : cost) total_cost += static_cast<uint64_t>(c);
    int cost_shift = 0;
    while ((total_cost >> cost_shift) >= (uint64_t{1} << kLoadBits)) ++cost_shift;
    std::vector<uint64_t>& heap = scratch.heap;
    heap.resize(static_cast<std::size_t>(num_ctas));
    for (std::size_t c = 0; c < heap.size(); ++c) heap[c] = c;  // load 0, cta c
    const std::size_t n = heap.size();
    constexpr uint64_t kCtaMask = (uint64_t{1} << kCtaBits) - 1;
    std::vector<int32_t>& owner = scratch.owner;
    owner.resize(units.size());
    std::fill(cta_indptr.begin(), cta_indptr.end(), 0);
    for (const int32_t u : heaviest) {
      uint64_t top = heap[0];
      const auto cta = static_cast<std::size_t>(top & kCtaMask);
      owner[static_cast<std::size_t>(u)] = static_cast<int32_t>(cta);
      ++cta_indptr[cta + 1];
      top += (static_cast<uint64_t>(cost[static_cast<std::size_t>(u)]) >> cost_shift) << kCtaBits;
      std::size_t i = 0;
      for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && heap[child + 1] < heap[child]) ++child;
        if (heap[child] >= top) break;
        heap[i] = heap[child];
        i = child;
      }
      heap[i] = top;
    }
    std::partial_sum(cta_indptr.begin(), cta_indptr.end(), cta_indptr.begin());
    // Heaviest first within each CTA.
    std::vector<int32_t> next(cta_indptr.begin(), cta_indptr.end() - 1);
    order.resize(units.size());
    for (const int32_t u : heaviest) {
      order[static_cast<std::size_t>(next[static_cast<std::size_t>(
          owner[static_cast<std::size_t>(u)])]++)] = u;
    }
  }
  for (std::size_t i = 0; i < order.size(); ++i) {
    target.work_units[i] = units[static_cast<std::size_t>(order[i])];
  }
  if (!target.unit_cost.empty()) {
    for (std::size_t i = 0; i < order.size(); ++i) {
      target.unit_cost[i] = cost[static_cast<std::size_t>(order[i])];
    }
  }
  std::copy(merge_tiles.begin(), merge_tiles.end(), target.merge_tiles.begin());

  PrefillScheduleHeader h{};
  h.num_work_units = static_cast<int32_t>(num_units);
  h.num_ctas = static_cast<int32_t>(num_ctas);
  h.batch_size = static_cast<int32_t>(batch);
  h.q_tile_rows = static_cast<int32_t>(q_tile);
  h.rows_per_token = static_cast<int32_t>(rows_per_token);
  h.num_merge_tiles = static_cast<int32_t>(merge_tiles.size());
  h.num_partial_rows = static_cast<int32_t>(partial);
  h.max_chunk_tokens = static_cast<int32_t>(max_unit_tokens);
  h.total_qo_tokens = qo[static_cast<std::size_t>(batch)];
  h.split_kv = merge_tiles.empty() ? 0 : 1;
  h.causal = in.causal ? 1 : 0;
  return h;
}

PrefillScheduleHost plan_prefill_schedule(const PrefillPlannerInput& in) {
  // Output sized by the bounds (the planner keeps to them), then trimmed.
  validate_prefill_planner_input(in);
  PrefillPlannerScratch scratch;
  PrefillScheduleHost s;
  const auto units = static_cast<std::size_t>(in.max_work_units);
  s.work_units.resize(units);
  s.unit_cost.resize(std::max<std::size_t>(units, 1));
  s.cta_indptr.resize(units + 1);
  s.merge_tiles.resize(units / 2);
  s.header = plan_prefill_schedule(in, scratch,
                                   {s.work_units, s.cta_indptr, s.merge_tiles, s.unit_cost},
                                   &s.custom_mask_bytes);
  s.work_units.resize(static_cast<std::size_t>(s.header.num_work_units));
  s.unit_cost.resize(static_cast<std::size_t>(s.header.num_work_units));
  s.cta_indptr.resize(static_cast<std::size_t>(s.header.num_ctas) + 1);
  s.merge_tiles.resize(static_cast<std::size_t>(s.header.num_merge_tiles));
  return s;
}

int64_t prefill_merge_row_slices(int64_t q_tile_rows, int64_t rows_per_pass) {
  if (q_tile_rows < 1 || rows_per_pass < 1) {
    throw Error("tessera: prefill merge: q tile rows and rows per pass must be >= 1");
  }
  return ceil_div(q_tile_rows, rows_per_pass);
}

void prefill_kv_lengths_ragged(std::span<const int32_t> kv_indptr, int64_t max_batch_size,
                               std::vector<int64_t>& kv_lengths) {
  TESSERA_CHECK_ARG(!kv_indptr.empty(), "kv_indptr", "batch_size + 1 >= 1 values",
                    "an empty array");
  const std::size_t batch = kv_indptr.size() - 1;
  TESSERA_CHECK_ARG(static_cast<int64_t>(batch) <= max_batch_size, "kv_indptr",
                    "at most max_batch_size = " + std::to_string(max_batch_size) + " requests",
                    std::to_string(batch) + " requests");
  TESSERA_CHECK_ARG(kv_indptr[0] == 0, "kv_indptr", "kv_indptr[0] = 0",
                    element_text("kv_indptr", 0, kv_indptr[0]));
  kv_lengths.resize(batch);
  for (std::size_t b = 0; b < batch; ++b) {
    const int64_t len = int64_t{kv_indptr[b + 1]} - kv_indptr[b];
    TESSERA_CHECK_ARG(len >= 0, "kv_indptr",
                      "non-decreasing values (kv_indptr[" + std::to_string(b) +
                          "] = " + std::to_string(kv_indptr[b]) + ")",
                      element_text("kv_indptr", b + 1, kv_indptr[b + 1]));
    kv_lengths[b] = len;
  }
}

void prefill_kv_lengths_paged(std::span<const int32_t> kv_indptr,
                              std::span<const int32_t> kv_last_page_len, int64_t page_size,
                              int64_t max_batch_size, std::vector<int64_t>& kv_lengths) {
  detail::plan_kv_lengths(kv_indptr, kv_last_page_len, page_size, max_batch_size, kv_lengths);
}

PrefillDerivedBounds derive_prefill_bounds(int64_t max_batch_size, int64_t max_total_qo_tokens,
                                           int64_t num_qo_heads, int64_t num_kv_heads,
                                           bool pack_gqa, int64_t num_sms, int64_t ctas_per_sm) {
  const int64_t rows_per_token = pack_gqa ? num_qo_heads / num_kv_heads : 1;
  const int64_t heads_y = pack_gqa ? num_kv_heads : num_qo_heads;
  const int64_t wave = num_sms * ctas_per_sm;
  // Unsplit 64-row tiles: one per 64 rows plus at most one ragged tail per request.
  const int64_t tiles =
      ceil_div(max_total_qo_tokens * rows_per_token, kSmallQTile) + max_batch_size;
  // Split only when tiles * heads_y < wave; the chosen chunk then gives about
  // target units, twice that leaves room for uneven tiles.
  const int64_t split_units = 2 * ceil_div(wave, heads_y);
  PrefillDerivedBounds b;
  b.max_work_units = std::min(kInt32Max, tiles + split_units);
  b.max_partial_rows = std::min(kInt32Max, split_units * kLargeQTile);
  b.max_ctas = wave;
  return b;
}

PrefillWorkspaceLayout prefill_workspace_layout(int64_t max_work_units, int64_t max_ctas,
                                                int64_t max_partial_rows, int64_t num_qo_heads,
                                                int64_t num_kv_heads, int64_t head_dim,
                                                bool pack_gqa) {
  PrefillWorkspaceLayout l;
  l.heads_y = pack_gqa ? num_kv_heads : num_qo_heads;
  const auto units = static_cast<std::size_t>(max_work_units);
  const auto partial = static_cast<std::size_t>(max_partial_rows * l.heads_y);
  std::size_t offset = 0;
  l.header_offset = offset;
  offset = align_region(offset + sizeof(PrefillScheduleHeader));
  l.work_units_offset = offset;
  offset = align_region(offset + units * sizeof(PrefillWorkUnit));
  l.cta_indptr_offset = offset;
  offset = align_region(offset + static_cast<std::size_t>(max_ctas + 1) * sizeof(int32_t));
  l.merge_tiles_offset = offset;  // a split tile has >= 2 units
  offset = align_region(offset + units / 2 * sizeof(PrefillMergeTile));
  l.partial_out_offset = offset;
  offset = align_region(offset + partial * static_cast<std::size_t>(head_dim) * sizeof(float));
  l.partial_lse_offset = offset;
  offset = align_region(offset + partial * sizeof(float));
  l.total_bytes = offset;
  return l;
}

}  // namespace tessera::plan
