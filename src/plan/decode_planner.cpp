// Split-KV planner for decode (see decode_planner.h).
//
// Policy. The decode kernel runs one CTA per (work unit, KV head). When the
// batch alone gives at least one full wave (batch * num_kv_heads >= num_sms *
// ctas_per_sm) every request is one unit: splitting would only add partial
// writes and a merge. Otherwise each request is cut into chunks of `chunk`
// tokens, with `chunk` the SMALLEST multiple of kChunkGranularityTokens (at
// least kMinChunkTokens) for which all CTAs still fit in ONE wave:
// sum_b ceil(len_b / chunk) * num_kv_heads <= num_sms * ctas_per_sm.
// One wave, because every CTA of a split batch does about the same work: a
// few CTAs past the wave would run as a second wave as long as the first (the
// earlier rule, "largest chunk that still fills a wave", overshot to 280 CTAs
// for one 32k request with 8 KV heads and ran at 0.58x cuDNN). Smallest,
// because shorter chunks balance unequal requests better. units(chunk) is
// non-increasing in chunk, so a binary search over the multiples of the
// granularity finds it in O(batch * log(max_len / 64)).
// The hard bounds (max_work_units: the captured grid; max_partials: workspace
// slots) only grow more satisfiable as the chunk grows, so the chunk is the
// larger of that choice and the smallest one that fits them.
#include "plan/decode_planner.h"

#include <algorithm>
#include <limits>
#include <string>

#include "plan/workspace_regions.h"
#include "tessera/core/error.h"

namespace tessera::plan {

namespace {

// Chunks are multiples of 64 tokens: a multiple of the common page sizes
// (16, 32, 64), so chunk boundaries fall on page boundaries there and a CTA
// never starts mid-page, and of any KV tile the kernel is likely to use.
constexpr int64_t kChunkGranularityTokens = 64;
// A chunk reads at least 128 tokens of K and V per KV head (128 * 128 * 2 B *
// 2 = 64 KiB at head_dim 128, fp16) against a partial of group * head_dim *
// 4 B written and read back once (4 KiB for a GQA group of 8): the round trip
// stays under ~12% of the KV traffic, and the CTA's prologue (loading q,
// filling its pipeline) is amortised over >= 2 tiles of 64. The minimum only
// binds when the whole batch is too short to fill a wave (latency-bound
// anyway); 128 rather than 256 lets one 32k request with a single KV head
// still use 256 CTAs (>= the 132 SMs of an H100).
constexpr int64_t kMinChunkTokens = 128;
static_assert(kMinChunkTokens % kChunkGranularityTokens == 0,
              "the minimum chunk must be a multiple of the granularity");


struct UnitCount {
  int64_t units = 0;     // work units (CTAs per KV head)
  int64_t partials = 0;  // partial slots (units of split requests)
};

// Units and partial slots when every request is cut into chunks of `chunk`.
UnitCount count_units(std::span<const int64_t> lengths, int64_t chunk) {
  UnitCount count;
  for (const int64_t len : lengths) {
    const int64_t pieces = len <= chunk ? 1 : ceil_div(len, chunk);
    count.units += pieces;
    if (pieces >= 2) count.partials += pieces;
  }
  return count;
}

}  // namespace

DecodeScheduleHost plan_decode_schedule(const DecodePlannerInput& input) {
  const std::span<const int64_t> lengths = input.kv_lengths;
  const auto batch = static_cast<int64_t>(lengths.size());
  if (input.num_kv_heads < 1 || input.num_sms < 1 || input.ctas_per_sm < 1 ||
      input.max_partials < 0 || batch > input.max_work_units ||
      (!input.kv_indptr.empty() && static_cast<int64_t>(input.kv_indptr.size()) != batch + 1) ||
      batch > std::numeric_limits<int32_t>::max() - 1) {
    throw Error("tessera: decode planner: inconsistent input (batch " + std::to_string(batch) +
                ", max_work_units " + std::to_string(input.max_work_units) + ")");
  }
  int64_t max_len = 0;
  for (const int64_t len : lengths) {
    if (len < 0 || len > std::numeric_limits<int32_t>::max()) {
      throw Error("tessera: decode planner: kv length " + std::to_string(len) +
                  " outside [0, 2^31)");
    }
    max_len = std::max(max_len, len);
  }

  // chunk == max_len (or larger) means no request is split.
  int64_t chunk = std::max<int64_t>(max_len, 1);
  const int64_t target_ctas = input.num_sms * input.ctas_per_sm;
  const auto fits_bounds = [&](int64_t c) {
    const UnitCount count = count_units(lengths, c);
    return count.units <= input.max_work_units && count.partials <= input.max_partials;
  };
  if (input.fixed_chunk_tokens > 0) {
    // The caller's chunk, grown to the smallest that fits the bounds
    // (chunk = max_len always fits: one unit per request).
    int64_t lo = std::min(input.fixed_chunk_tokens, chunk), hi = chunk;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (fits_bounds(mid)) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    chunk = lo;
  } else if (batch * input.num_kv_heads < target_ctas && max_len > kMinChunkTokens) {
    // At least `batch` (the batch alone misses the wave), so k_max qualifies.
    const int64_t target_units = target_ctas / input.num_kv_heads;
    // Candidate chunks: k * granularity for k in [k_min, k_max]; k_max makes
    // one chunk cover the longest request (no split at all).
    const int64_t k_min = kMinChunkTokens / kChunkGranularityTokens;
    const int64_t k_max = ceil_div(max_len, kChunkGranularityTokens);
    // Smallest k whose units fit one wave (units(k) non-increasing).
    int64_t lo = k_min, hi = k_max;  // invariant: units(hi) <= target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (count_units(lengths, mid * kChunkGranularityTokens).units <= target_units) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    int64_t best = hi;
    // Smallest k that fits the bounds (k_max always fits: one unit per request).
    if (!fits_bounds(best * kChunkGranularityTokens)) {
      lo = best;
      hi = k_max;  // invariant: hi fits
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (fits_bounds(mid * kChunkGranularityTokens)) {
          hi = mid;
        } else {
          lo = mid + 1;
        }
      }
      best = hi;
    }
    chunk = std::min(best * kChunkGranularityTokens, chunk);
  }

  DecodeScheduleHost schedule;
  const UnitCount total = count_units(lengths, chunk);
  schedule.work_units.reserve(static_cast<std::size_t>(total.units));
  schedule.merge_indptr.resize(static_cast<std::size_t>(batch) + 1);
  schedule.merge_indptr[0] = 0;
  int32_t partial = 0;
  int64_t max_unit_tokens = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = lengths[static_cast<std::size_t>(b)];
    const int64_t pieces = len <= chunk ? 1 : ceil_div(len, chunk);
    const int32_t page_begin =
        input.kv_indptr.empty() ? 0 : input.kv_indptr[static_cast<std::size_t>(b)];
    if (pieces == 1) {
      // Unsplit (also length 0: the kernel writes out 0 and lse -inf).
      schedule.work_units.push_back({static_cast<int32_t>(b), 0, static_cast<int32_t>(len), -1,
                                     page_begin, static_cast<int32_t>(len)});
      max_unit_tokens = std::max(max_unit_tokens, len);
    } else {
      for (int64_t p = 0; p < pieces; ++p) {
        const int64_t begin = p * chunk;
        const int64_t end = std::min(len, begin + chunk);
        schedule.work_units.push_back({static_cast<int32_t>(b), static_cast<int32_t>(begin),
                                       static_cast<int32_t>(end), partial++, page_begin,
                                       static_cast<int32_t>(len)});
      }
      max_unit_tokens = std::max(max_unit_tokens, chunk);
    }
    schedule.merge_indptr[static_cast<std::size_t>(b) + 1] = partial;
  }
  schedule.header.num_work_units = static_cast<int32_t>(schedule.work_units.size());
  schedule.header.batch_size = static_cast<int32_t>(batch);
  schedule.header.num_partials = partial;
  schedule.header.max_chunk_tokens = static_cast<int32_t>(max_unit_tokens);
  return schedule;
}

DecodeWorkspaceLayout decode_workspace_layout(int64_t max_batch_size, int64_t max_work_units,
                                              int64_t num_qo_heads, int64_t head_dim) {
  DecodeWorkspaceLayout layout;
  layout.max_batch_size = max_batch_size;
  layout.max_work_units = max_work_units;
  // Each work unit fills at most one partial slot.
  layout.max_partials = max_work_units;
  const auto units = static_cast<std::size_t>(max_work_units);
  const auto partial_rows = static_cast<std::size_t>(layout.max_partials * num_qo_heads);
  std::size_t offset = 0;
  layout.header_offset = offset;
  offset = align_region(offset + sizeof(DecodeScheduleHeader));
  layout.work_units_offset = offset;
  offset = align_region(offset + units * sizeof(DecodeWorkUnit));
  layout.merge_indptr_offset = offset;
  offset = align_region(offset + static_cast<std::size_t>(max_batch_size + 1) * sizeof(int32_t));
  layout.partial_out_offset = offset;
  offset = align_region(offset + partial_rows * static_cast<std::size_t>(head_dim) * sizeof(float));
  layout.partial_lse_offset = offset;
  offset = align_region(offset + partial_rows * sizeof(float));
  layout.total_bytes = offset;
  return layout;
}

}  // namespace tessera::plan
