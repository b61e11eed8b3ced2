// Prefill's paged row offsets (src/api/paged_row_units.h): the unit is the
// common divisor of the strides that matter, offsets in units reproduce the
// element offsets, and caches it cannot address are named errors.
#include "api/paged_row_units.h"  // header-only: tested directly

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "support/argument_error.h"

namespace tessera::detail {
namespace {

using testing::expect_argument_error;

ResolvedPagedKV cache_of(DType dtype, int64_t pages, int64_t page_size, int64_t heads,
                         int64_t stride_page, int64_t stride_entry, int64_t stride_head) {
  ResolvedPagedKV c{};
  c.dtype = dtype;
  c.num_pages = pages;
  c.page_size = page_size;
  c.num_heads = heads;
  c.head_dim = 128;
  c.stride_page = stride_page;
  c.stride_entry = stride_entry;
  c.stride_head = stride_head;
  c.name = "paged_kv_cache";
  return c;
}

// Every (page, slot, head) offset in units times the unit is the byte offset.
void expect_exact(const ResolvedPagedKV& c) {
  const PagedRowUnits u = paged_row_units(c);
  const auto element_bytes = static_cast<int64_t>(dtype_size_bytes(c.dtype));
  const int64_t last_page = std::max<int64_t>(c.num_pages, 1) - 1;
  for (const int64_t page : {int64_t{0}, last_page / 2, last_page}) {
    for (const int64_t slot : {int64_t{0}, c.page_size - 1}) {
      for (const int64_t head : {int64_t{0}, c.num_heads - 1}) {
        const uint64_t units = static_cast<uint64_t>(page) * u.page +
                               static_cast<uint64_t>(slot) * u.entry +
                               static_cast<uint64_t>(head) * u.head;
        ASSERT_LE(units, uint64_t{0xffffffffu});
        EXPECT_EQ(units * u.bytes,
                  static_cast<uint64_t>(
                      (page * c.stride_page + slot * c.stride_entry + head * c.stride_head) *
                      element_bytes));
      }
    }
  }
}

TEST(PagedRowUnits, NhdAndHndCachesUseHeadRows) {
  // Combined NHD [pages, 2, 16, 8, 128]: a head's row (128 elements) is the unit.
  const ResolvedPagedKV nhd =
      cache_of(DType::kBFloat16, 1000, 16, 8, 2 * 16 * 8 * 128, 8 * 128, 128);
  const PagedRowUnits u = paged_row_units(nhd);
  EXPECT_EQ(u.bytes, 256u);
  EXPECT_EQ(u.page, 2u * 16 * 8);
  EXPECT_EQ(u.entry, 8u);
  EXPECT_EQ(u.head, 1u);
  expect_exact(nhd);
  // HND [pages, 2, 8, 16, 128].
  expect_exact(cache_of(DType::kFloat16, 1000, 16, 8, 2 * 8 * 16 * 128, 128, 16 * 128));
  // fp8 bytes.
  expect_exact(cache_of(DType::kFloat8E4M3, 1000, 16, 8, 2 * 8 * 16 * 128, 128, 16 * 128));
}

TEST(PagedRowUnits, PaddedStridesUseTheirCommonDivisor) {
  // Strides 9776 (page), 304 (entry), 144 (head): the gcd is 16 elements.
  const ResolvedPagedKV padded = cache_of(DType::kBFloat16, 300, 5, 2, 9776, 304, 144);
  EXPECT_EQ(paged_row_units(padded).bytes, 32u);
  expect_exact(padded);
}

TEST(PagedRowUnits, StridesOfSizeOneAxesAreIgnored) {
  // Page size 1 and one head: only the page stride matters, whatever the others.
  const ResolvedPagedKV c = cache_of(DType::kBFloat16, 64, 1, 1, 2 * 128, 7, -3);
  const PagedRowUnits u = paged_row_units(c);
  EXPECT_EQ(u.bytes, 2u * 2 * 128);
  EXPECT_EQ(u.page, 1u);
  EXPECT_EQ(u.entry, 0u);
  EXPECT_EQ(u.head, 0u);
  // One page of one slot and one head: offset 0 only.
  EXPECT_EQ(paged_row_units(cache_of(DType::kBFloat16, 1, 1, 1, 0, 0, 0)).bytes, 2u);
}

TEST(PagedRowUnits, UnaddressableCachesAreNamed) {
  // Negative strides.
  expect_argument_error(
      [] { paged_row_units(cache_of(DType::kBFloat16, 10, 16, 8, -16 * 8 * 128, 8 * 128, 128)); },
      "paged_kv_cache");
  // An 8-element common divisor over 2^30 pages of ~2^13 elements: > 2^32 units.
  expect_argument_error(
      [] {
        paged_row_units(cache_of(DType::kBFloat16, int64_t{1} << 30, 16, 8, 2 * 16 * 8 * 128 + 8,
                                 8 * 128, 128));
      },
      "paged_kv_cache");
  // 2^24 pages (1 TiB of K and V) with row-multiple strides: just under 2^32 units.
  expect_exact(cache_of(DType::kBFloat16, int64_t{1} << 24, 16, 8, 2 * 16 * 8 * 128, 8 * 128, 128));
  // Products past int64 are not taken for small ones.
  expect_argument_error(
      [] {
        paged_row_units(cache_of(DType::kBFloat16, int64_t{1} << 40, 16, 8, (int64_t{1} << 40) + 8,
                                 8 * 128, 128));
      },
      "paged_kv_cache");
}

TEST(PagedRowUnits, EmptyCachesAndHugeStridesAreAddressable) {
  // No pages: every offset is a slot or head one.
  expect_exact(cache_of(DType::kBFloat16, 0, 16, 8, 2 * 16 * 8 * 128, 8 * 128, 128));
  EXPECT_EQ(
      paged_row_units(cache_of(DType::kBFloat16, 0, 16, 8, 2 * 16 * 8 * 128, 8 * 128, 128)).entry,
      8u);
  // Page size 1, one head, 4 GiB pages: only the page stride matters and its
  // byte size does not fit 32 bits, so a smaller divisor is the unit.
  const ResolvedPagedKV huge = cache_of(DType::kBFloat16, 3, 1, 1, int64_t{1} << 31, 0, 0);
  const PagedRowUnits u = paged_row_units(huge);
  EXPECT_LE(u.bytes, 0xffffffffu);
  EXPECT_EQ(static_cast<uint64_t>(u.page) * u.bytes, uint64_t{1} << 32);
  expect_exact(huge);
}

}  // namespace
}  // namespace tessera::detail
