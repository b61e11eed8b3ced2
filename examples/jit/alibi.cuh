// variant: Alibi
// logits = sm_scale q.k + slope_h (kv_pos - q_pos), slopes from
// VariantParams::alibi_slopes or the standard 2^(-8 (h + 1) / H).
struct Alibi : VariantBase {
  static constexpr bool kHasLogitsTransform = true;
  float scale_log2;
  float slope_log2;
  int q_position;
  __device__ __forceinline__ Alibi(const VariantParams& p, int qo_head, int q_pos)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e), q_position(q_pos) {
    const float slope = p.alibi_slopes != nullptr
                            ? p.alibi_slopes[qo_head]
                            : exp2f(-8.f * static_cast<float>(qo_head + 1) /
                                    static_cast<float>(p.num_qo_heads));
    slope_log2 = slope * kLog2e;
  }
  __device__ __forceinline__ float query_scale() const { return scale_log2; }
  __device__ __forceinline__ float logits_transform(float dot, int kv_pos) const {
    return fmaf(slope_log2, static_cast<float>(kv_pos - q_position), dot);
  }
};
