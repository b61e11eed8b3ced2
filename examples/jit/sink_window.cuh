// variant: SinkWindow
// A custom mask over positions: the first `sinks` keys plus a window of
// `window` keys before the query (StreamingLLM). Both are extra parameters
// (int32 sinks, int32 window). Keys in the gap are never read only when
// sinks = 0 (first_kv_position), else masked.
struct SinkWindow : VariantBase {
  static constexpr bool kHasLogitsMask = true;
  float scale_log2;
  int sinks;
  int first_window_position;
  __device__ __forceinline__ SinkWindow(const VariantParams& p, int, int q_pos)
      : scale_log2(p.sm_scale * p.k_scale * kLog2e),
        sinks(extra(p).sinks),
        first_window_position(q_pos - extra(p).window) {}
  __device__ __forceinline__ float query_scale() const { return scale_log2; }
  __device__ __forceinline__ bool logits_mask(int kv_pos) const {
    return kv_pos < sinks || kv_pos >= first_window_position;
  }
  __device__ __forceinline__ int first_kv_position() const {
    return sinks > 0 || first_window_position < 0 ? 0 : first_window_position;
  }
};
