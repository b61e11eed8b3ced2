// variant: FlashSigmoid
// Sigmoid attention (FlashSigmoid): out = sum_j sigmoid(sm_scale q.k_j + bias) v_j,
// no softmax, so no normalisation and no lse (the kernels write lse = 0).
// Extra parameter `bias` (float; sigmoid attention papers use -log(kv_len)).
// Compile it with VariantSpec::use_softmax = false.
struct FlashSigmoid : VariantBase {
  static constexpr bool kUseSoftmax = false;
  static constexpr bool kHasLogitsTransform = true;
  float scale;
  float bias;
  __device__ __forceinline__ FlashSigmoid(const VariantParams& p, int, int)
      : scale(p.sm_scale * p.k_scale), bias(extra(p).bias) {}
  __device__ __forceinline__ float query_scale() const { return scale; }
  // The weight of the token: 1 / (1 + e^-(s + bias)); e^+inf = inf gives 0.
  __device__ __forceinline__ float logits_transform(float dot, int) const {
    return 1.f / (1.f + __expf(-(dot + bias)));
  }
};
