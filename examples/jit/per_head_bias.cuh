// variant: PerHeadBias
// logits = sm_scale q.k + bias + head_bias[h]: extra parameters `bias`
// (float) and `head_bias` (const float*, [num_qo_heads] on the device).
struct PerHeadBias : VariantBase {
  static constexpr bool kHasLogitsTransform = true;
  float scale_log2;
  float bias_log2;
  __device__ __forceinline__ PerHeadBias(const VariantParams& p, int qo_head, int)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e),
        bias_log2((extra(p).bias + extra(p).head_bias[qo_head]) * kLog2e) {}
  __device__ __forceinline__ float query_scale() const { return scale_log2; }
  __device__ __forceinline__ float logits_transform(float dot, int) const {
    return dot + bias_log2;
  }
};
