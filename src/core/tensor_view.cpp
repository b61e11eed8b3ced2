#include "tessera/core/tensor_view.h"

#include <algorithm>

#include "tessera/core/error.h"

namespace tessera {

namespace {

std::string view_label(const TensorView& view) { return std::string(view.name()); }

// Byte range [lo, hi) spanned by a view; empty views span nothing.
std::pair<uintptr_t, uintptr_t> byte_span(const TensorView& view) {
  const auto base = reinterpret_cast<uintptr_t>(view.data());
  if (view.numel() == 0) return {base, base};
  int64_t lo = 0;
  int64_t hi = 0;
  for (int d = 0; d < view.ndim(); ++d) {
    const int64_t extent = (view.size(d) - 1) * view.stride(d);
    if (extent < 0) lo += extent; else hi += extent;
  }
  const auto bytes = static_cast<int64_t>(dtype_size_bytes(view.dtype()));
  return {base + lo * bytes, base + (hi + 1) * bytes};
}

}  // namespace

std::string device_name(DLDevice device) {
  switch (device.device_type) {
    case kDLCPU: return "cpu";
    case kDLCUDA: return "cuda:" + std::to_string(device.device_id);
    case kDLCUDAHost: return "cuda_host";
    case kDLCUDAManaged: return "cuda_managed";
    default: return "device type " + std::to_string(static_cast<int>(device.device_type));
  }
}

TensorView::TensorView(const DLTensor& tensor, std::string_view name) : name_(name) {
  if (!dtype_from_dlpack(tensor.dtype, &dtype_)) {
    throw_argument_error(name_, "a supported dtype", dlpack_dtype_name(tensor.dtype));
  }
  TESSERA_CHECK_ARG(tensor.ndim >= 0 && tensor.ndim <= kMaxDims, name_,
                    "rank at most " + std::to_string(kMaxDims),
                    "rank " + std::to_string(tensor.ndim));
  ndim_ = tensor.ndim;
  device_ = tensor.device;
  numel_ = 1;
  for (int d = 0; d < ndim_; ++d) {
    TESSERA_CHECK_ARG(tensor.shape[d] >= 0, name_, "non-negative sizes",
                      "size " + std::to_string(tensor.shape[d]) + " at dim " + std::to_string(d));
    shape_[d] = tensor.shape[d];
    numel_ *= shape_[d];
  }
  if (tensor.strides != nullptr) {
    for (int d = 0; d < ndim_; ++d) strides_[d] = tensor.strides[d];
  } else {
    int64_t running = 1;
    for (int d = ndim_ - 1; d >= 0; --d) {
      strides_[d] = running;
      running *= std::max<int64_t>(shape_[d], 1);
    }
  }
  TESSERA_CHECK_ARG(tensor.data != nullptr || numel_ == 0, name_, "a non-null data pointer",
                    "null with " + std::to_string(numel_) + " elements");
  data_ = static_cast<char*>(tensor.data) + tensor.byte_offset;
}

int TensorView::normalize(int dim) const {
  const int normalized = dim < 0 ? dim + ndim_ : dim;
  TESSERA_CHECK_ARG(normalized >= 0 && normalized < ndim_, name_,
                    "a dimension index below rank " + std::to_string(ndim_),
                    "dimension " + std::to_string(dim));
  return normalized;
}

std::string TensorView::shape_string() const {
  std::string text = "[";
  for (int d = 0; d < ndim_; ++d) {
    if (d > 0) text += ", ";
    text += std::to_string(shape_[d]);
  }
  return text + "]";
}

bool TensorView::rows_aligned_to(std::size_t bytes) const {
  const std::size_t element = dtype_size_bytes(dtype_);
  if (reinterpret_cast<uintptr_t>(data_) % bytes != 0) return false;
  for (int d = 0; d + 1 < ndim_; ++d) {
    if (shape_[d] > 1 && (static_cast<std::size_t>(strides_[d]) * element) % bytes != 0) return false;
  }
  return true;
}

const TensorView& TensorView::expect_dtype(std::initializer_list<DType> allowed) const {
  const bool ok = std::find(allowed.begin(), allowed.end(), dtype_) != allowed.end();
  TESSERA_CHECK_ARG(ok, name_, "dtype " + dtype_list_name(allowed), dtype_name(dtype_));
  return *this;
}

const TensorView& TensorView::expect_ndim(int ndim) const {
  TESSERA_CHECK_ARG(ndim_ == ndim, name_, "rank " + std::to_string(ndim),
                    "rank " + std::to_string(ndim_) + " with shape " + shape_string());
  return *this;
}

const TensorView& TensorView::expect_ndim_between(int min_ndim, int max_ndim) const {
  TESSERA_CHECK_ARG(ndim_ >= min_ndim && ndim_ <= max_ndim, name_,
                    "rank " + std::to_string(min_ndim) + " to " + std::to_string(max_ndim),
                    "rank " + std::to_string(ndim_) + " with shape " + shape_string());
  return *this;
}

const TensorView& TensorView::expect_size(int dim, int64_t expected, std::string_view what) const {
  const int64_t actual = size(dim);
  TESSERA_CHECK_ARG(actual == expected, name_,
                    std::string(what) + " = " + std::to_string(expected) + " at dim " +
                        std::to_string(dim),
                    std::to_string(actual) + " (shape " + shape_string() + ")");
  return *this;
}

const TensorView& TensorView::expect_cuda() const {
  TESSERA_CHECK_ARG(device_.device_type == kDLCUDA, name_, "a CUDA device tensor",
                    "a tensor on " + device_name(device_));
  return *this;
}

const TensorView& TensorView::expect_cpu() const {
  TESSERA_CHECK_ARG(device_.device_type == kDLCPU || device_.device_type == kDLCUDAHost, name_,
                    "a host (CPU) tensor", "a tensor on " + device_name(device_));
  return *this;
}

const TensorView& TensorView::expect_last_dim_contiguous() const {
  TESSERA_CHECK_ARG(ndim_ == 0 || shape_[ndim_ - 1] <= 1 || strides_[ndim_ - 1] == 1, name_,
                    "stride 1 in the last dimension",
                    "stride " + std::to_string(ndim_ > 0 ? strides_[ndim_ - 1] : 0));
  return *this;
}

const TensorView& TensorView::expect_contiguous() const {
  int64_t running = 1;
  for (int d = ndim_ - 1; d >= 0; --d) {
    TESSERA_CHECK_ARG(shape_[d] <= 1 || strides_[d] == running, name_,
                      "a contiguous (row-major) tensor",
                      "stride " + std::to_string(strides_[d]) + " at dim " + std::to_string(d) +
                          " for shape " + shape_string());
    running *= shape_[d];
  }
  return *this;
}

void expect_same_device(const TensorView& a, const TensorView& b) {
  const bool same = a.device().device_type == b.device().device_type &&
                    a.device().device_id == b.device().device_id;
  TESSERA_CHECK_ARG(same, view_label(b), "the device of " + view_label(a) + " (" +
                                             device_name(a.device()) + ")",
                    device_name(b.device()));
}

void expect_same_dtype(const TensorView& a, const TensorView& b) {
  TESSERA_CHECK_ARG(a.dtype() == b.dtype(), view_label(b),
                    "the dtype of " + view_label(a) + " (" + dtype_name(a.dtype()) + ")",
                    dtype_name(b.dtype()));
}

void expect_same_shape(const TensorView& a, const TensorView& b) {
  bool same = a.ndim() == b.ndim();
  for (int d = 0; same && d < a.ndim(); ++d) same = a.size(d) == b.size(d);
  TESSERA_CHECK_ARG(same, view_label(b), "the shape of " + view_label(a) + " " + a.shape_string(),
                    b.shape_string());
}

bool same_storage(const TensorView& a, const TensorView& b) {
  if (a.data() != b.data() || a.ndim() != b.ndim() || a.dtype() != b.dtype()) return false;
  for (int d = 0; d < a.ndim(); ++d) {
    if (a.size(d) != b.size(d)) return false;
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

void expect_identical_or_disjoint(const TensorView& a, const TensorView& b) {
  if (same_storage(a, b)) return;
  const auto [a_lo, a_hi] = byte_span(a);
  const auto [b_lo, b_hi] = byte_span(b);
  const bool disjoint = a_hi <= b_lo || b_hi <= a_lo;
  TESSERA_CHECK_ARG(disjoint, view_label(b),
                    "either exactly the elements of " + view_label(a) + " (in place) or no overlap",
                    "memory partly overlapping " + view_label(a));
}

}  // namespace tessera
