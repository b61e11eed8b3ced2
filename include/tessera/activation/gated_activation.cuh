// Gated activations: out[r, j] = act(input[r, j]) * input[r, d + j] for
// 0 <= j < d, computed in float32 (act: SiLU, exact GELU, tanh GELU).
//
// Grid: (num_rows, column chunks): blockIdx.x is the row (gridDim.x allows
// 2^31 - 1 rows), blockIdx.y strides over the row's vectors, so a long row is
// spread over several CTAs and short rows do not waste threads. Each thread
// moves one vector of x, one of the gate half and one of out per step: three
// coalesced 16-byte accesses on the vector path (kVecElems = 8 for 16-bit
// types), scalars otherwise.
// Shared memory: none. Limits: the 16-byte path needs d % 8 == 0 and 16-byte
// aligned rows of input and out; the host falls back to kVecElems = 1.
// Device header: compiles under nvcc and NVRTC.
#pragma once

#include <cuda/std/cstdint>

#include "tessera/core/numeric.cuh"
#include "tessera/core/vec.cuh"

namespace tessera::activation {

enum class GatedActivation : int { kSilu, kGelu, kGeluTanh };

inline constexpr int kGatedActivationThreads = 256;
inline constexpr int kGatedActivationVecBytes = 16;

inline constexpr float kInvSqrt2 = 0.70710678118654752440f;
inline constexpr float kSqrt2OverPi = 0.79788456080286535588f;
inline constexpr float kGeluTanhCubicCoefficient = 0.044715f;

template <GatedActivation kAct>
__device__ __forceinline__ float activate(float x) {
  if constexpr (kAct == GatedActivation::kSilu) {
    // expf(-x) overflows to inf for x < -88: the quotient is then -0, the limit.
    return x / (1.f + expf(-x));
  } else if constexpr (kAct == GatedActivation::kGelu) {
    return 0.5f * x * (1.f + erff(x * kInvSqrt2));
  } else {
    const float inner = kSqrt2OverPi * (x + kGeluTanhCubicCoefficient * x * x * x);
    return 0.5f * x * (1.f + tanhf(inner));
  }
}

template <typename T>
struct GatedActivationParams {
  const T* __restrict__ input;  // row r: x at input + r * input_row_stride, gate at + d
  T* __restrict__ out;
  int64_t input_row_stride;  // elements
  int64_t out_row_stride;
  int64_t d;  // output columns; input rows hold 2 * d
};

template <typename T, int kVecElems, GatedActivation kAct>
__global__ void __launch_bounds__(kGatedActivationThreads)
    gated_activation_kernel(const GatedActivationParams<T> params) {
  static_assert(kVecElems * static_cast<int>(sizeof(T)) <= kGatedActivationVecBytes,
                "a vector is at most one 16-byte transaction");
  using VecT = Vec<T, kVecElems>;

  const int64_t row = blockIdx.x;
  const T* x_row = params.input + row * params.input_row_stride;
  const T* gate_row = x_row + params.d;
  T* out_row = params.out + row * params.out_row_stride;
  const int64_t num_vecs = params.d / kVecElems;
  const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.x;

  for (int64_t v = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; v < num_vecs;
       v += step) {
    VecT x_raw;
    VecT gate_raw;
    x_raw.load(x_row + v * kVecElems);
    gate_raw.load(gate_row + v * kVecElems);
    const FloatVec<kVecElems> x = to_float(x_raw);
    const FloatVec<kVecElems> gate = to_float(gate_raw);
    FloatVec<kVecElems> y;
#pragma unroll
    for (int k = 0; k < kVecElems; ++k) y[k] = activate<kAct>(x[k]) * gate[k];
    from_float<T>(y).store(out_row + v * kVecElems);
  }
}

}  // namespace tessera::activation
