// Vec<T, N>: N elements moved as one aligned load/store (16 bytes for
// N * sizeof(T) == 16), converted to float32 for arithmetic. Memory-bound
// kernels use it so every thread issues the widest transaction the data allows.
#pragma once

#include "tessera/core/numeric.cuh"

namespace tessera {

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  static_assert(N >= 1 && (N & (N - 1)) == 0, "Vec length must be a power of two");
  static_assert(sizeof(T) * N <= 16, "Vec wider than one 16-byte transaction");
  T elements[N];

  // The pointer must be aligned to sizeof(T) * N; the API layer checks it.
  __device__ __forceinline__ void load(const T* __restrict__ source) {
    *this = *reinterpret_cast<const Vec*>(source);
  }
  __device__ __forceinline__ void store(T* __restrict__ destination) const {
    *reinterpret_cast<Vec*>(destination) = *this;
  }
  __device__ __forceinline__ T& operator[](int i) { return elements[i]; }
  __device__ __forceinline__ const T& operator[](int i) const { return elements[i]; }
};

// Float32 working copy of a vector.
template <int N>
struct FloatVec {
  float elements[N];
  __device__ __forceinline__ float& operator[](int i) { return elements[i]; }
  __device__ __forceinline__ const float& operator[](int i) const { return elements[i]; }
};

template <typename T, int N>
__device__ __forceinline__ FloatVec<N> to_float(const Vec<T, N>& v) {
  FloatVec<N> out;
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = to_float(v[i]);
  return out;
}

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> from_float(const FloatVec<N>& v) {
  Vec<T, N> out;
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = from_float<T>(v[i]);
  return out;
}

}  // namespace tessera
