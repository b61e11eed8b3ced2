#include "api/prefill_sm90_launch.cuh"

namespace tessera::detail {

// Single prefill as a batch of one request without a schedule: grid (q
// tiles, qo heads), contiguous K/V through TMA (NHD or HND by its strides).
void launch_single_prefill_sm90(const SinglePrefillSm90Launch& launch, cudaStream_t stream) {
  const SinglePrefillTensors& l = launch.t;
  dispatch_sm90_types(launch.dtype, l.head_dim, [&]<typename T, int kHeadDim>() {
    using Kv = prefill::RaggedKv<T>;
    prefill_sm90::Params<T, Kv> p{};
    const int64_t element = 2;
    p.q_map =
        encode_rows_tensor_map(l.q, kHeadDim, l.num_qo_heads, l.qo_len, l.q_stride_head * element,
                               l.q_stride_token * element, 1, 128, "q");
    encode_kv_maps<T, kHeadDim>(p, l.k, l.v, l.num_kv_heads, l.kv_len, l.kv_stride_head,
                                l.kv_stride_entry);
    p.out = static_cast<T*>(l.out);
    p.out_stride_token = l.out_stride_token;
    p.out_stride_head = l.out_stride_head;
    p.lse = l.lse;
    p.num_qo_heads = static_cast<int32_t>(l.num_qo_heads);
    p.heads_y = static_cast<int32_t>(l.num_qo_heads);
    p.per_token = FastDivmod::make(1);
    p.group_size = static_cast<int32_t>(l.num_qo_heads / l.num_kv_heads);
    p.single_qo_len = static_cast<int32_t>(l.qo_len);
    p.single_kv_len = static_cast<int32_t>(l.kv_len);
    p.single_causal = l.causal;
    p.custom_mask = l.custom_mask;
    p.variant = l.variant;
    const dim3 grid(
        static_cast<unsigned>((l.qo_len + prefill_sm90::kBlockM - 1) / prefill_sm90::kBlockM),
        static_cast<unsigned>(l.num_qo_heads));
    const void* kernel = sm90_kernel<T, kHeadDim, Kv>(launch.variant_kind, launch.jit_kernel,
                                                      l.custom_mask != nullptr);
    launch_sm90_kernel<T, kHeadDim, Kv>(kernel, p, grid, stream);
    TESSERA_CHECK_LAUNCH();
  });
}

}  // namespace tessera::detail
