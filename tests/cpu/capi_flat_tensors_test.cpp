// The flat tensor lists of the C ABI's *_run_flat entry points (c_api.h):
// data pointers, then [ndim, dtype, device, shape, strides] descriptors, read
// as DLTensors over the caller's array; malformed lists and absent required
// tensors are argument errors naming them. No GPU needed.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "capi/capi_support.h"
#include "tessera/c_api.h"
#include "tessera/core/error.h"

namespace tessera {
namespace {

constexpr int64_t kBFloat16Word = 4 | 16 << 8 | 1 << 16;  // kDLBfloat, 16 bits, 1 lane
constexpr int64_t kInt32Word = 0 | 32 << 8 | 1 << 16;     // kDLInt, 32 bits, 1 lane

std::string argument_of(const Error& e) { return std::string(e.argument()); }

TEST(CapiFlatTensors, DescriptorsBecomeDLTensorsOverTheArray) {
  // q [2, 4, 8] bf16 on CUDA device 1; an absent tensor; indptr [3] int32 on host.
  const std::vector<int64_t> words = {0x1000, 0, 0x2000,
                                      3, kBFloat16Word, 1, 2, 4, 8, 32, 8, 1,
                                      -1,
                                      1, kInt32Word, -1, 3, 1};
  DLTensor t[3];
  bool present[3];
  capi::parse_flat_tensors(words.data(), 3, t, present);
  EXPECT_TRUE(present[0]);
  EXPECT_FALSE(present[1]);
  EXPECT_TRUE(present[2]);
  EXPECT_EQ(t[0].data, reinterpret_cast<void*>(0x1000));
  EXPECT_EQ(t[0].device.device_type, kDLCUDA);
  EXPECT_EQ(t[0].device.device_id, 1);
  EXPECT_EQ(t[0].ndim, 3);
  EXPECT_EQ(t[0].dtype.code, kDLBfloat);
  EXPECT_EQ(t[0].dtype.bits, 16);
  EXPECT_EQ(t[0].dtype.lanes, 1);
  EXPECT_EQ(t[0].shape, words.data() + 6);  // no copy: views of the caller's array
  EXPECT_EQ(t[0].strides[0], 32);
  EXPECT_EQ(t[0].strides[2], 1);
  EXPECT_EQ(t[0].byte_offset, 0u);
  EXPECT_EQ(t[2].data, reinterpret_cast<void*>(0x2000));
  EXPECT_EQ(t[2].device.device_type, kDLCPU);
  EXPECT_EQ(t[2].shape[0], 3);
  EXPECT_EQ(t[2].strides[0], 1);
}

TEST(CapiFlatTensors, PinnedHostMemoryIsCudaHost) {
  const std::vector<int64_t> words = {0x1000, 1, kInt32Word, -2, 5, 1};
  DLTensor t;
  bool present;
  capi::parse_flat_tensors(words.data(), 1, &t, &present);
  EXPECT_EQ(t.device.device_type, kDLCUDAHost);
}

TEST(CapiFlatTensors, MalformedDescriptorsNameTheList) {
  DLTensor t;
  bool present;
  for (const std::vector<int64_t>& words :
       {std::vector<int64_t>{0, -2}, std::vector<int64_t>{0x1000, -1},
        std::vector<int64_t>{0x1000, 17, kInt32Word, 0}}) {
    try {
      capi::parse_flat_tensors(words.data(), 1, &t, &present);
      ADD_FAILURE() << "no error for descriptor " << words[1];
    } catch (const Error& e) {
      EXPECT_EQ(argument_of(e), "tensors") << e.what();
    }
  }
}

TEST(CapiFlatTensors, AnAbsentRequiredTensorIsNamed) {
  const std::vector<int64_t> words = {0, -1};
  const capi::FlatTensors<1> t(words.data());
  EXPECT_EQ(t.optional(0), nullptr);
  try {
    t.get(0, "q");
    ADD_FAILURE() << "no error for an absent q";
  } catch (const Error& e) {
    EXPECT_EQ(argument_of(e), "q") << e.what();
  }
}

TEST(CapiFlatTensors, RunEntryPointsNameANullHandleOrList) {
  const std::vector<int64_t> words = {0, -1};
  EXPECT_EQ(tessera_batch_decode_run_flat(nullptr, words.data(), 0, nullptr, nullptr, 0), 1);
  EXPECT_NE(std::string(tessera_last_error()).find("'handle'"), std::string::npos);
  EXPECT_EQ(tessera_batch_prefill_paged_run_flat(nullptr, words.data(), 0, nullptr, nullptr, 0),
            1);
  EXPECT_NE(std::string(tessera_last_error()).find("'handle'"), std::string::npos);
  EXPECT_EQ(tessera_batch_prefill_ragged_run_flat(nullptr, words.data(), nullptr, nullptr, 0), 1);
  EXPECT_NE(std::string(tessera_last_error()).find("'handle'"), std::string::npos);
  DLTensor t;
  bool present;
  try {
    capi::parse_flat_tensors(nullptr, 1, &t, &present);
    ADD_FAILURE() << "no error for a NULL list";
  } catch (const Error& e) {
    EXPECT_EQ(argument_of(e), "tensors") << e.what();
  }
}

}  // namespace
}  // namespace tessera
