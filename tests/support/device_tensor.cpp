#include "support/device_tensor.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "support/host_convert.h"
#include "tessera/core/cuda_check.h"

namespace tessera::testing {

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t running = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    strides[d] = running;
    running *= std::max<int64_t>(shape[d], 1);
  }
  return strides;
}

DeviceTensor::DeviceTensor(DType dtype, std::vector<int64_t> shape)
    : DeviceTensor(dtype, shape, contiguous_strides(shape)) {}

DeviceTensor::DeviceTensor(DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides)
    : dtype_(dtype), shape_(std::move(shape)), strides_(std::move(strides)) {
  if (strides_.size() != shape_.size()) throw std::invalid_argument("strides rank != shape rank");
  span_elements_ = 1;
  bool empty = false;
  for (std::size_t d = 0; d < shape_.size(); ++d) {
    if (shape_[d] == 0) empty = true;
    span_elements_ += (shape_[d] - 1) * strides_[d];
  }
  if (empty) span_elements_ = 0;
  // Round up to 16 bytes and never allocate 0 bytes, so data() is non-null.
  const std::size_t bytes = std::max<std::size_t>(
      (span_elements_ * dtype_size_bytes(dtype_) + 15) / 16 * 16, 16);
  buffer_ = DeviceBuffer(bytes);
}

int64_t DeviceTensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape_) n *= s;
  return n;
}

DLTensor DeviceTensor::dl() {
  DLTensor tensor{};
  tensor.data = buffer_.data();
  tensor.device = {kDLCUDA, 0};
  int device = 0;
  if (cudaGetDevice(&device) == cudaSuccess) tensor.device.device_id = device;
  tensor.ndim = static_cast<int>(shape_.size());
  tensor.dtype = dtype_to_dlpack(dtype_);
  tensor.shape = shape_.data();
  tensor.strides = strides_.data();
  return tensor;
}

int64_t DeviceTensor::storage_offset(int64_t logical_index) const {
  int64_t offset = 0;
  for (int d = static_cast<int>(shape_.size()) - 1; d >= 0; --d) {
    offset += (logical_index % shape_[d]) * strides_[d];
    logical_index /= shape_[d];
  }
  return offset;
}

void DeviceTensor::upload(const std::vector<float>& values) {
  if (static_cast<int64_t>(values.size()) != numel()) throw std::invalid_argument("upload size");
  const std::size_t element = dtype_size_bytes(dtype_);
  std::vector<unsigned char> host = download_bytes();  // keep padding as it is
  for (int64_t i = 0; i < numel(); ++i) {
    float_to_storage(dtype_, values[i], host.data() + storage_offset(i) * element);
  }
  TESSERA_CUDA_CHECK(cudaMemcpy(buffer_.data(), host.data(), host.size(), cudaMemcpyHostToDevice));
}

void DeviceTensor::upload_ints(const std::vector<int64_t>& values) {
  if (static_cast<int64_t>(values.size()) != numel()) throw std::invalid_argument("upload size");
  const std::size_t element = dtype_size_bytes(dtype_);
  std::vector<unsigned char> host = download_bytes();
  for (int64_t i = 0; i < numel(); ++i) {
    unsigned char* slot = host.data() + storage_offset(i) * element;
    if (dtype_ == DType::kInt32) {
      const auto v = static_cast<int32_t>(values[i]);
      std::memcpy(slot, &v, 4);
    } else if (dtype_ == DType::kInt64) {
      std::memcpy(slot, &values[i], 8);
    } else if (dtype_ == DType::kUInt8) {
      *slot = static_cast<unsigned char>(values[i]);
    } else {
      throw std::invalid_argument("upload_ints: not an integer tensor");
    }
  }
  TESSERA_CUDA_CHECK(cudaMemcpy(buffer_.data(), host.data(), host.size(), cudaMemcpyHostToDevice));
}

std::vector<unsigned char> DeviceTensor::download_bytes() const {
  std::vector<unsigned char> host(buffer_.bytes());
  TESSERA_CUDA_CHECK(cudaMemcpy(host.data(), buffer_.data(), host.size(), cudaMemcpyDeviceToHost));
  return host;
}

std::vector<float> DeviceTensor::download() const {
  const std::vector<unsigned char> host = download_bytes();
  const std::size_t element = dtype_size_bytes(dtype_);
  std::vector<float> values(numel());
  for (int64_t i = 0; i < numel(); ++i) {
    values[i] = storage_to_float(dtype_, host.data() + storage_offset(i) * element);
  }
  return values;
}

std::vector<int64_t> DeviceTensor::download_ints() const {
  const std::vector<unsigned char> host = download_bytes();
  const std::size_t element = dtype_size_bytes(dtype_);
  std::vector<int64_t> values(numel());
  for (int64_t i = 0; i < numel(); ++i) {
    const unsigned char* slot = host.data() + storage_offset(i) * element;
    if (dtype_ == DType::kInt32) {
      int32_t v;
      std::memcpy(&v, slot, 4);
      values[i] = v;
    } else if (dtype_ == DType::kUInt8) {
      values[i] = *slot;
    } else if (dtype_ == DType::kInt64) {
      std::memcpy(&values[i], slot, 8);
    } else {
      throw std::invalid_argument("download_ints: not an integer tensor");
    }
  }
  return values;
}

void DeviceTensor::poison() {
  TESSERA_CUDA_CHECK(cudaMemset(buffer_.data(), 0xff, buffer_.bytes()));
}

FakeTensor::FakeTensor(DType dtype, std::vector<int64_t> shape, DLDevice device)
    : shape_(std::move(shape)) {
  tensor_.data = reinterpret_cast<void*>(uintptr_t{1} << 20);
  tensor_.device = device;
  tensor_.ndim = static_cast<int>(shape_.size());
  tensor_.dtype = dtype_to_dlpack(dtype);
  tensor_.shape = shape_.data();
  tensor_.strides = nullptr;
}

FakeTensor& FakeTensor::with_strides(std::vector<int64_t> strides) {
  strides_ = std::move(strides);
  tensor_.strides = strides_.data();
  return *this;
}

FakeTensor& FakeTensor::with_data(uintptr_t address) {
  tensor_.data = reinterpret_cast<void*>(address);
  return *this;
}

}  // namespace tessera::testing
