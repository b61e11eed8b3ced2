// BatchMlaPagedAttention's shape and bounds checks run before any device
// call, so they are tested here without a GPU.
#include <gtest/gtest.h>

#include <string>

#include "support/argument_error.h"
#include "tessera/api/mla.h"
#include "tessera/c_api.h"

namespace tessera {
namespace {

TEST(MlaArgs, WorkspaceSizeNamesBadShapeAndBounds) {
  const MlaPlanBounds bounds{4, 16};
  const auto size_of = [&](const MlaPlanShape& shape, const MlaPlanBounds& b) {
    return [=] { BatchMlaPagedAttention::workspace_size_bytes(shape, b, 0); };
  };
  testing::expect_argument_error(
      size_of({.num_heads = 16, .head_dim_ckv = 256, .page_size = 16}, bounds), "head_dim_ckv");
  testing::expect_argument_error(
      size_of({.num_heads = 16, .head_dim_kpe = 128, .page_size = 16}, bounds), "head_dim_kpe");
  testing::expect_argument_error(size_of({.num_heads = 0, .page_size = 16}, bounds), "num_heads");
  testing::expect_argument_error(size_of({.num_heads = 16, .page_size = 0}, bounds), "page_size");
  testing::expect_argument_error(size_of({.num_heads = 16, .page_size = 16}, {0, 16}), "bounds");
  testing::expect_argument_error(size_of({.num_heads = 16, .page_size = 16}, {4, 0}), "bounds");
}

TEST(MlaArgs, CreateNamesAnUnknownBackend) {
  TesseraBatchMla* handle = nullptr;
  const int rc =
      tessera_batch_mla_create(16, 512, 64, 16, 4, 16, nullptr, 0, 0, /*backend=*/7, &handle);
  EXPECT_NE(rc, 0);
  EXPECT_EQ(handle, nullptr);
  EXPECT_NE(std::string(tessera_last_error()).find("'backend'"), std::string::npos)
      << tessera_last_error();
}

}  // namespace
}  // namespace tessera
