// The C ABI's prefill backend ints (tessera/c_api.h) without a GPU: a value
// outside 0 (auto), 1 (fa2), 2 (fa3) is an argument error (return 1) whose
// message names the argument, raised before any CUDA call.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "support/device_tensor.h"
#include "tessera/c_api.h"

namespace tessera {
namespace {

using testing::FakeTensor;

constexpr int kArgumentError = 1;

void expect_backend_error(int rc, const char* argument) {
  EXPECT_EQ(rc, kArgumentError);
  const std::string message = tessera_last_error();
  EXPECT_NE(message.find(std::string("'") + argument + "'"), std::string::npos) << message;
}

TEST(CapiPrefillBackend, RaggedCreateRejectsAnUnknownBackend) {
  for (const int backend : {-1, 3}) {
    TesseraBatchPrefillRagged* handle = nullptr;
    const int rc = tessera_batch_prefill_ragged_create_with_backend(
        8, 2, 128, 4, 256, reinterpret_cast<void*>(0x10000000), 1 << 20, 0, backend, &handle);
    expect_backend_error(rc, "backend");
    EXPECT_EQ(handle, nullptr);
  }
}

TEST(CapiPrefillBackend, PagedCreateRejectsAnUnknownBackend) {
  TesseraBatchPrefillPaged* handle = nullptr;
  const int rc = tessera_batch_prefill_paged_create_with_backend(
      8, 2, 128, 16, 4, 256, reinterpret_cast<void*>(0x10000000), 1 << 20, 0, 7, &handle);
  expect_backend_error(rc, "backend");
  EXPECT_EQ(handle, nullptr);
}

TEST(CapiPrefillBackend, BlockSparseCreateRejectsAnUnknownBackend) {
  TesseraBlockSparse* handle = nullptr;
  const int rc = tessera_block_sparse_create_with_backend(
      8, 2, 128, 16, 16, 4, reinterpret_cast<void*>(0x10000000), 1 << 20, 0, -2, &handle);
  expect_backend_error(rc, "backend");
  EXPECT_EQ(handle, nullptr);
}

TEST(CapiPrefillBackend, SinglePrefillRejectsAnUnknownOptionsBackend) {
  // Valid fake tensors, so the options are the only bad argument.
  FakeTensor q{DType::kBFloat16, {16, 8, 128}};
  FakeTensor k{DType::kBFloat16, {32, 2, 128}};
  FakeTensor v{DType::kBFloat16, {32, 2, 128}};
  FakeTensor out{DType::kBFloat16, {16, 8, 128}};
  q.with_data(0x10000000);
  k.with_data(0x20000000);
  v.with_data(0x30000000);
  out.with_data(0x40000000);
  TesseraAttentionOptions options{};
  options.window_left = -1;
  options.prefill_backend = 3;
  const int rc = tessera_single_prefill_with_kv_cache(&q.dl(), &k.dl(), &v.dl(), &out.dl(),
                                                      nullptr, 0, 1, &options, nullptr);
  expect_backend_error(rc, "prefill_backend");
}

// tessera_prefill_backend_support_sm90: the table's answer as 0 / 1, and
// named errors for bad codes and NULL outputs.
TEST(CapiPrefillBackend, SupportQueryAnswersAndNamesBadArguments) {
  int32_t serves = -1;
  int32_t takes = -1;
  ASSERT_EQ(tessera_prefill_backend_support_sm90(0, 0, 0, 0, 1, 1, 128, &serves, &takes), 0);
  EXPECT_EQ(serves, 1);
  EXPECT_EQ(takes, 1);
  ASSERT_EQ(tessera_prefill_backend_support_sm90(1, 0, 0, 0, 1, 1, 128, &serves, &takes), 0);
  EXPECT_EQ(serves, 0);  // RoPE
  EXPECT_EQ(takes, 0);
  ASSERT_EQ(tessera_prefill_backend_support_sm90(0, 0, 0, 0, 0, 0, 256, &serves, &takes), 0);
  EXPECT_EQ(serves, 1);
  EXPECT_EQ(takes, 0);
  expect_backend_error(tessera_prefill_backend_support_sm90(5, 0, 0, 0, 1, 1, 128, &serves, &takes),
                       "pos_encoding_mode");
  expect_backend_error(tessera_prefill_backend_support_sm90(0, 0, 0, 0, 9, 1, 128, &serves, &takes),
                       "q_dtype");
  expect_backend_error(tessera_prefill_backend_support_sm90(0, 0, 0, 0, 1, -1, 128, &serves, &takes),
                       "kv_dtype");
  expect_backend_error(
      tessera_prefill_backend_support_sm90(0, 0, 0, 0, 1, 1, 128, nullptr, &takes), "fa3_serves");
  expect_backend_error(
      tessera_prefill_backend_support_sm90(0, 0, 0, 0, 1, 1, -8, &serves, &takes), "head_dim");
}

}  // namespace
}  // namespace tessera
