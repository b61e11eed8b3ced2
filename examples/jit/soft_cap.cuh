// variant: SoftCap
// logits = cap * tanh(sm_scale q.k / cap), in log2 units for the kernel's
// base-2 softmax: q carries sm_scale / cap, the transform cap * log2(e).
struct SoftCap : VariantBase {
  static constexpr bool kHasLogitsTransform = true;
  float q_scale;
  float cap_log2;
  __device__ __forceinline__ SoftCap(const VariantParams& p, int, int)
      : q_scale(p.sm_scale * p.k_scale / p.logits_soft_cap), cap_log2(p.logits_soft_cap * kLog2e) {}
  __device__ __forceinline__ float query_scale() const { return q_scale; }
  __device__ __forceinline__ float logits_transform(float dot, int) const {
    return cap_log2 * tanhf(dot);
  }
};
