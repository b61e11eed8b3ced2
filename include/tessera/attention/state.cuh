// Online softmax state in base 2: for logits s_j already in log2 units,
//   m = max_j s_j,  d = sum_j 2^(s_j - m),  o = sum_j 2^(s_j - m) v_j,
// so out = o / d and lse = m + log2(d) (base 2). Two states over disjoint
// token sets merge exactly. An empty state is (m = -inf, d = 0, o = 0); the
// code never computes -inf - -inf (that would be NaN): the rescale uses 0 as
// the reference when both maxima are -inf.
// Device header: compiles under nvcc and NVRTC.
#pragma once

namespace tessera::attention {

__device__ __forceinline__ float negative_infinity() { return __int_as_float(0xff800000u); }

// 2^x with the hardware approximation (2 ulp); 2^-inf = +0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// A finite reference maximum: m itself, or 0 when m is -inf (all masked).
__device__ __forceinline__ float safe_max(float m) { return m == negative_infinity() ? 0.f : m; }

template <int N>
struct SoftmaxState {
  float m;
  float d;
  float o[N];

  __device__ __forceinline__ void init() {
    m = negative_infinity();
    d = 0.f;
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] = 0.f;
  }

  // Raises the running max to m_new (>= m) and rescales d and o; returns the
  // finite reference the caller subtracts from new logits.
  __device__ __forceinline__ float rescale_to(float m_new) {
    const float reference = safe_max(m_new);
    const float factor = fast_exp2(m - reference);
    d *= factor;
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] *= factor;
    m = m_new;
    return reference;
  }

  // Folds in another state over a disjoint token set.
  __device__ __forceinline__ void merge(float other_m, float other_d, const float (&other_o)[N]) {
    const float m_new = fmaxf(m, other_m);
    const float reference = safe_max(m_new);
    const float self_factor = fast_exp2(m - reference);
    const float other_factor = fast_exp2(other_m - reference);
    d = d * self_factor + other_d * other_factor;
#pragma unroll
    for (int i = 0; i < N; ++i) o[i] = o[i] * self_factor + other_o[i] * other_factor;
    m = m_new;
  }

  // Base-2 log-sum-exp; -inf for an empty state.
  __device__ __forceinline__ float lse() const {
    return d > 0.f ? m + __log2f(d) : negative_infinity();
  }
  // 1 / d, or 0 for an empty state (its o is 0, so out is 0, never NaN).
  __device__ __forceinline__ float normalizer() const { return d > 0.f ? 1.f / d : 0.f; }
};

}  // namespace tessera::attention
