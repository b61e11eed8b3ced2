// DeviceTensor: an owning device tensor for tests, with any strides (to test
// non-contiguous inputs), filled from host floats in logical row-major order
// and read back the same way. Values are converted to the storage dtype on the
// host. poison() fills the whole allocation with NaN bits, so an element a
// kernel forgets to write reads back as NaN.
#pragma once

#include <dlpack/dlpack.h>

#include <cstdint>
#include <vector>

#include "tessera/core/cuda_resources.h"
#include "tessera/core/dtype.h"

namespace tessera::testing {

class DeviceTensor {
 public:
  // Contiguous row-major.
  DeviceTensor(DType dtype, std::vector<int64_t> shape);
  // Explicit element strides (non-negative); the allocation covers the span.
  DeviceTensor(DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides);

  DLTensor dl();
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }
  int64_t numel() const;
  void* data() const { return buffer_.data(); }

  void upload(const std::vector<float>& values);
  void upload_ints(const std::vector<int64_t>& values);  // int32 / int64 / uint8 tensors
  std::vector<float> download() const;
  std::vector<int64_t> download_ints() const;
  // NaN bits (0xff bytes) over the whole allocation, padding included.
  void poison();
  // Raw bytes of the whole allocation (padding included), to check that a
  // kernel wrote nothing outside the logical elements.
  std::vector<unsigned char> download_bytes() const;

 private:
  int64_t storage_offset(int64_t logical_index) const;

  DType dtype_;
  std::vector<int64_t> shape_;
  std::vector<int64_t> strides_;
  int64_t span_elements_ = 0;
  DeviceBuffer buffer_;
};

// Contiguous row-major strides for `shape`.
std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape);

// A DLTensor for argument-validation tests that never touch memory: it points
// at a fake, aligned address on the chosen device. The owner keeps shape and
// strides alive.
class FakeTensor {
 public:
  FakeTensor(DType dtype, std::vector<int64_t> shape, DLDevice device = {kDLCUDA, 0});
  FakeTensor& with_strides(std::vector<int64_t> strides);
  FakeTensor& with_data(uintptr_t address);
  DLTensor& dl() { return tensor_; }
  operator const DLTensor&() { return tensor_; }  // NOLINT: convenience in tests

 private:
  std::vector<int64_t> shape_;
  std::vector<int64_t> strides_;
  DLTensor tensor_{};
};

}  // namespace tessera::testing
