// TensorView: a validated, non-owning view of a DLPack DLTensor as the API
// layer sees it: element type, shape, strides in elements (filled in when
// DLPack leaves them null), device, and the data pointer with byte_offset
// applied. Every expect_* check throws tessera::Error naming the argument.
#pragma once

#include <dlpack/dlpack.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "tessera/core/dtype.h"

namespace tessera {

class TensorView {
 public:
  static constexpr int kMaxDims = 8;

  // Throws if the DLTensor's dtype is not one Tessera knows, its rank is over
  // kMaxDims, a size is negative, or data is null while elements exist.
  TensorView(const DLTensor& tensor, std::string_view name);

  std::string_view name() const { return name_; }
  DType dtype() const { return dtype_; }
  int ndim() const { return ndim_; }
  // Negative dims count from the end, as in Python.
  int64_t size(int dim) const { return shape_[normalize(dim)]; }
  int64_t stride(int dim) const { return strides_[normalize(dim)]; }
  int64_t numel() const { return numel_; }
  DLDevice device() const { return device_; }
  void* data() const { return data_; }
  template <typename T>
  T* data_as() const { return static_cast<T*>(data_); }
  std::string shape_string() const;

  // True if data() and every stride except the last (times the element size)
  // are multiples of `bytes`: the condition for vector loads of that width.
  bool rows_aligned_to(std::size_t bytes) const;

  const TensorView& expect_dtype(std::initializer_list<DType> allowed) const;
  const TensorView& expect_ndim(int ndim) const;
  const TensorView& expect_ndim_between(int min_ndim, int max_ndim) const;
  // `what` names the quantity for the message, e.g. "head_dim of q".
  const TensorView& expect_size(int dim, int64_t expected, std::string_view what) const;
  const TensorView& expect_cuda() const;
  const TensorView& expect_cpu() const;
  const TensorView& expect_last_dim_contiguous() const;
  const TensorView& expect_contiguous() const;

 private:
  int normalize(int dim) const;

  std::string name_;
  DType dtype_{};
  int ndim_ = 0;
  std::array<int64_t, kMaxDims> shape_{};
  std::array<int64_t, kMaxDims> strides_{};
  int64_t numel_ = 0;
  DLDevice device_{};
  void* data_ = nullptr;
};

void expect_same_device(const TensorView& a, const TensorView& b);
void expect_same_dtype(const TensorView& a, const TensorView& b);
void expect_same_shape(const TensorView& a, const TensorView& b);
// Two views either describe exactly the same elements (in-place use) or do
// not overlap at all; partial overlap would make the result order-dependent.
bool same_storage(const TensorView& a, const TensorView& b);
void expect_identical_or_disjoint(const TensorView& a, const TensorView& b);

std::string device_name(DLDevice device);

}  // namespace tessera
