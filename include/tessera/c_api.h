/* Tessera's C ABI: every entry point of the C++ API as an extern "C"
 * function over DLPack's DLTensor, for bindings that load libtessera without
 * a C++ compiler (the Python package calls it through ctypes, so one build
 * serves every Python and PyTorch version).
 *
 * Conventions:
 * - Each function returns 0 on success and nonzero on failure; then
 *   tessera_last_error() holds the message of the tessera::Error (or other
 *   exception) that the C++ API threw, in this thread, until the next failure.
 *   Return 1: an argument error (the message names the argument); 2: any
 *   other failure (CUDA error, internal limit).
 * - Optional tensors are NULL pointers. Streams are cudaStream_t passed as
 *   void* (NULL: the legacy default stream).
 * - Enums are ints: layout 0 = NHD, 1 = HND; validate 0 = from the
 *   TESSERA_VALIDATE environment variable, 1 = off, 2 = on; decode backend
 *   0 = auto, 1 = CUDA cores, 2 = tensor cores; prefill backend 0 = auto,
 *   1 = fa2, 2 = fa3 (tessera/api/prefill_backend.h); pos_encoding_mode
 *   0 = none, 1 = RoPE (Llama), 2 = ALiBi.
 * - Plan/run objects are opaque handles made by *_create and released by
 *   *_destroy (which never fails; NULL is ignored).
 */
#ifndef TESSERA_C_API_H_
#define TESSERA_C_API_H_

#include <dlpack/dlpack.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define TESSERA_C_API
#else
#define TESSERA_C_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- core */
TESSERA_C_API const char* tessera_last_error(void);
/* Major * 10000 + minor * 100 + patch (0.1.0 -> 100). */
TESSERA_C_API int tessera_version(void);

/* AttentionOptions (tessera/api/attention_options.h); zero-initialise and
 * set what you need (sm_scale 0 -> 1/sqrt(head_dim); window_left < 0 -> no
 * window; soft cap 0 -> none; rope_scale / rope_theta / k_scale / v_scale
 * 0 -> their defaults 1, 1e4, 1, 1). */
typedef struct TesseraAttentionOptions {
  double sm_scale;
  double logits_soft_cap;
  int64_t window_left;
  int32_t pos_encoding_mode;
  double rope_scale;
  double rope_theta;
  const DLTensor* alibi_slopes; /* float32 [num_qo_heads] or NULL */
  double k_scale;
  double v_scale;
  /* A TesseraJitVariant (tessera_jit_variant_create) for the kernel being
   * called, or NULL: the built-in variant the fields above select. */
  const struct TesseraJitVariant* jit_variant;
  /* Prefill only: uint8 packed custom mask (AttentionOptions::custom_mask)
   * or NULL. */
  const DLTensor* custom_mask;
  /* Single prefill only (AttentionOptions::backend): 0 auto, 1 fa2, 2 fa3.
   * The batch prefill wrappers take theirs in *_create_with_backend. */
  int32_t prefill_backend;
} TesseraAttentionOptions;

/* A paged KV cache: kv_data [pages, 2, ...] (v_data NULL) or separate
 * k_data = `first` and v_data tensors; layout 0 NHD, 1 HND. */
typedef struct TesseraPagedKV {
  const DLTensor* first;
  const DLTensor* v_data;
  int32_t layout;
} TesseraPagedKV;

/* Flat tensor lists: the *_run_flat entry points take the tensors of a
 * run() as one int64 array instead of DLTensor structs, for bindings that call
 * once per layer and step (building n DLTensors per call costs the Python
 * package more host time than the C++ run()). For n tensors: n data pointers,
 * then n descriptors, each [ndim, dtype, device, shape[ndim], strides[ndim]]
 * (strides in elements), or [-1] (and data 0) for an absent optional tensor.
 * dtype: DLDataType's code | bits << 8 | lanes << 16; device: a CUDA device
 * index (>= 0), -1 for host memory, -2 for pinned host memory. The DLTensors
 * built over the array are checked exactly as the DLTensor entry points'
 * are; an absent required tensor is an argument error naming it (as NULL). */

/* ---- normalization (tessera/api/norm.h) */
TESSERA_C_API int tessera_rmsnorm(const DLTensor* input, const DLTensor* weight,
                                  const DLTensor* out, double eps, void* stream);
TESSERA_C_API int tessera_fused_add_rmsnorm(const DLTensor* input, const DLTensor* residual,
                                            const DLTensor* weight, double eps, void* stream);
TESSERA_C_API int tessera_gemma_rmsnorm(const DLTensor* input, const DLTensor* weight,
                                        const DLTensor* out, double eps, void* stream);
TESSERA_C_API int tessera_gemma_fused_add_rmsnorm(const DLTensor* input,
                                                  const DLTensor* residual,
                                                  const DLTensor* weight, double eps,
                                                  void* stream);

/* ---- sampling (tessera/api/sampling.h). A NULL *_arr: the scalar for every
 * row; success (uint8 [batch]) may be NULL; deterministic / check_nan: 0 or 1. */
TESSERA_C_API int tessera_sampling_from_probs(const DLTensor* probs,
                                              const DLTensor* uniform_samples,
                                              const DLTensor* samples, const DLTensor* success,
                                              int32_t deterministic, int32_t check_nan,
                                              void* stream);
TESSERA_C_API int tessera_top_p_sampling_from_probs(
    const DLTensor* probs, const DLTensor* uniform_samples, const DLTensor* top_p_arr,
    double top_p, const DLTensor* samples, const DLTensor* success, int32_t deterministic,
    int32_t check_nan, void* stream);
TESSERA_C_API int tessera_top_k_sampling_from_probs(
    const DLTensor* probs, const DLTensor* uniform_samples, const DLTensor* top_k_arr,
    int64_t top_k, const DLTensor* samples, const DLTensor* success, int32_t deterministic,
    int32_t check_nan, void* stream);
TESSERA_C_API int tessera_min_p_sampling_from_probs(
    const DLTensor* probs, const DLTensor* uniform_samples, const DLTensor* min_p_arr,
    double min_p, const DLTensor* samples, const DLTensor* success, int32_t deterministic,
    int32_t check_nan, void* stream);
TESSERA_C_API int tessera_top_k_top_p_sampling_from_probs(
    const DLTensor* probs, const DLTensor* uniform_samples, const DLTensor* top_k_arr,
    int64_t top_k, const DLTensor* top_p_arr, double top_p, const DLTensor* samples,
    const DLTensor* success, int32_t deterministic, int32_t check_nan, void* stream);
TESSERA_C_API int tessera_top_p_renorm_probs(const DLTensor* probs, const DLTensor* top_p_arr,
                                             double top_p, const DLTensor* renorm_probs,
                                             void* stream);
TESSERA_C_API int tessera_top_k_renorm_probs(const DLTensor* probs, const DLTensor* top_k_arr,
                                             int64_t top_k, const DLTensor* renorm_probs,
                                             void* stream);
TESSERA_C_API int tessera_top_k_mask_logits(const DLTensor* logits, const DLTensor* top_k_arr,
                                            int64_t top_k, const DLTensor* masked_logits,
                                            void* stream);
TESSERA_C_API int tessera_chain_speculative_sampling(
    const DLTensor* draft_probs, const DLTensor* draft_token_ids, const DLTensor* uniform_samples,
    const DLTensor* target_probs, const DLTensor* output_token_ids,
    const DLTensor* output_accepted_token_num, const DLTensor* output_emitted_token_num,
    int32_t deterministic, void* stream);

/* ---- activations (tessera/api/activation.h) */
TESSERA_C_API int tessera_silu_and_mul(const DLTensor* input, const DLTensor* out, void* stream);
TESSERA_C_API int tessera_gelu_and_mul(const DLTensor* input, const DLTensor* out, void* stream);
TESSERA_C_API int tessera_gelu_tanh_and_mul(const DLTensor* input, const DLTensor* out,
                                            void* stream);

/* ---- RoPE (tessera/api/rope.h). rotary_dim 0 -> head_dim; llama31 != 0
 * applies Llama 3.1 frequency scaling with the three factors. */
typedef struct TesseraRopeOptions {
  int64_t rotary_dim;
  int32_t interleave;
  double rope_scale;
  double rope_theta;
  int32_t llama31;
  double low_freq_factor;
  double high_freq_factor;
  double old_context_len;
} TesseraRopeOptions;

TESSERA_C_API int tessera_apply_rope(const DLTensor* q, const DLTensor* k, const DLTensor* q_rope,
                                     const DLTensor* k_rope, const DLTensor* indptr,
                                     const DLTensor* offsets, const TesseraRopeOptions* options,
                                     void* stream, int validate);
TESSERA_C_API int tessera_apply_rope_pos_ids(const DLTensor* q, const DLTensor* k,
                                             const DLTensor* q_rope, const DLTensor* k_rope,
                                             const DLTensor* pos_ids,
                                             const TesseraRopeOptions* options, void* stream);
TESSERA_C_API int tessera_apply_rope_with_cos_sin_cache(
    const DLTensor* positions, const DLTensor* query, const DLTensor* key,
    const DLTensor* query_out, const DLTensor* key_out, int64_t head_size,
    const DLTensor* cos_sin_cache, int is_neox, void* stream, int validate);

/* ---- paged KV cache (tessera/api/page.h) */
TESSERA_C_API int tessera_get_batch_indices_positions(const DLTensor* append_indptr,
                                                      const DLTensor* seq_lens,
                                                      const DLTensor* batch_indices,
                                                      const DLTensor* positions, void* stream);
TESSERA_C_API int tessera_append_paged_kv_cache(
    const DLTensor* append_key, const DLTensor* append_value, const DLTensor* batch_indices,
    const DLTensor* positions, const TesseraPagedKV* paged_kv_cache, const DLTensor* kv_indices,
    const DLTensor* kv_indptr, const DLTensor* kv_last_page_len, void* stream, int validate);

/* ---- attention states (tessera/api/decode.h) */
TESSERA_C_API int tessera_merge_state(const DLTensor* v_a, const DLTensor* s_a,
                                      const DLTensor* v_b, const DLTensor* s_b,
                                      const DLTensor* v_merged, const DLTensor* s_merged,
                                      void* stream);
TESSERA_C_API int tessera_merge_state_in_place(const DLTensor* v, const DLTensor* s,
                                               const DLTensor* v_other, const DLTensor* s_other,
                                               const DLTensor* mask, void* stream);
TESSERA_C_API int tessera_merge_states(const DLTensor* v, const DLTensor* s,
                                       const DLTensor* v_merged, const DLTensor* s_merged,
                                       void* stream);

/* ---- decode (tessera/api/decode.h) */
TESSERA_C_API int tessera_single_decode_with_kv_cache(const DLTensor* q, const DLTensor* k,
                                                      const DLTensor* v, const DLTensor* out,
                                                      const DLTensor* lse, int layout,
                                                      const TesseraAttentionOptions* options,
                                                      int backend, void* stream);

typedef struct TesseraBatchDecode TesseraBatchDecode;
/* max_work_units 0: derived from the GPU. */
TESSERA_C_API int tessera_batch_decode_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                                      int64_t head_dim, int64_t page_size,
                                                      int64_t max_batch_size,
                                                      int64_t max_work_units, int device_id,
                                                      size_t* bytes);
TESSERA_C_API int tessera_batch_decode_create(int64_t num_qo_heads, int64_t num_kv_heads,
                                              int64_t head_dim, int64_t page_size,
                                              int64_t max_batch_size, int64_t max_work_units,
                                              void* workspace, size_t workspace_bytes,
                                              int device_id, TesseraBatchDecode** handle);
TESSERA_C_API void tessera_batch_decode_destroy(TesseraBatchDecode* handle);
/* Host arrays: kv_indptr [batch + 1], kv_last_page_len [batch]. */
TESSERA_C_API int tessera_batch_decode_plan(TesseraBatchDecode* handle, const int32_t* kv_indptr,
                                            int64_t kv_indptr_len,
                                            const int32_t* kv_last_page_len,
                                            int64_t kv_last_page_len_len,
                                            int64_t fixed_split_size, int backend, void* stream);
TESSERA_C_API int tessera_batch_decode_run(TesseraBatchDecode* handle, const DLTensor* q,
                                           const TesseraPagedKV* paged_kv_cache,
                                           const DLTensor* kv_indices, const DLTensor* kv_indptr,
                                           const DLTensor* kv_last_page_len, const DLTensor* out,
                                           const DLTensor* lse,
                                           const TesseraAttentionOptions* options, void* stream,
                                           int validate);

/* run() over a flat tensor list (see "Flat tensor lists" below): tensors
 * kv_indices, kv_indptr, kv_last_page_len, q, paged_kv_cache (kv_data or
 * k_data), v_data (absent with kv_data), out, lse (optional), in this order;
 * layout as TesseraPagedKV's. */
TESSERA_C_API int tessera_batch_decode_run_flat(TesseraBatchDecode* handle,
                                                const int64_t* tensors, int layout,
                                                const TesseraAttentionOptions* options,
                                                void* stream, int validate);

/* ---- MLA (tessera/api/mla.h); backend as prefill's (0 auto, 1 fa2, 2 fa3) */
typedef struct TesseraBatchMla TesseraBatchMla;
/* minimum != 0: min_workspace_size_bytes (no split-KV room). */
TESSERA_C_API int tessera_batch_mla_workspace_size(int64_t num_heads, int64_t head_dim_ckv,
                                                   int64_t head_dim_kpe, int64_t page_size,
                                                   int64_t max_batch_size,
                                                   int64_t max_total_qo_tokens, int minimum,
                                                   int device_id, size_t* bytes);
TESSERA_C_API int tessera_batch_mla_create(int64_t num_heads, int64_t head_dim_ckv,
                                           int64_t head_dim_kpe, int64_t page_size,
                                           int64_t max_batch_size, int64_t max_total_qo_tokens,
                                           void* workspace, size_t workspace_bytes,
                                           int device_id, int backend,
                                           TesseraBatchMla** handle);
TESSERA_C_API void tessera_batch_mla_destroy(TesseraBatchMla* handle);
/* Host arrays: qo_indptr / kv_indptr [batch + 1], kv_len [batch]. */
TESSERA_C_API int tessera_batch_mla_plan(TesseraBatchMla* handle, const int32_t* qo_indptr,
                                         int64_t qo_indptr_len, const int32_t* kv_indptr,
                                         int64_t kv_indptr_len, const int32_t* kv_len,
                                         int64_t kv_len_len, int causal, void* stream);
TESSERA_C_API int tessera_batch_mla_run(TesseraBatchMla* handle, const DLTensor* q_nope,
                                        const DLTensor* q_pe, const DLTensor* ckv_cache,
                                        const DLTensor* kpe_cache, const DLTensor* kv_indices,
                                        const DLTensor* qo_indptr, const DLTensor* kv_indptr,
                                        const DLTensor* kv_len, const DLTensor* out,
                                        const DLTensor* lse, double sm_scale, void* stream,
                                        int validate);
/* ---- prefill (tessera/api/prefill.h) */
/* tessera::prefill_backend_support_sm90 (tessera/api/prefill.h): whether
 * backend fa3 serves, and auto takes it, on an sm_90 GPU for the built-in
 * variant of pos_encoding_mode with / without a soft cap, sliding window and
 * custom mask, q / K/V dtypes as TesseraJitSpec's codes (0 float16,
 * 1 bfloat16, 2 float8_e4m3fn, 3 float8_e5m2) and head_dim (0: at every
 * head_dim the Hopper kernels have); *fa3_serves / *auto_takes_fa3 get 0 / 1.
 * Needs no GPU. */
TESSERA_C_API int tessera_prefill_backend_support_sm90(int32_t pos_encoding_mode,
                                                       int32_t soft_cap, int32_t sliding_window,
                                                       int32_t custom_mask, int32_t q_dtype,
                                                       int32_t kv_dtype, int64_t head_dim,
                                                       int32_t* fa3_serves,
                                                       int32_t* auto_takes_fa3);
TESSERA_C_API int tessera_single_prefill_with_kv_cache(const DLTensor* q, const DLTensor* k,
                                                       const DLTensor* v, const DLTensor* out,
                                                       const DLTensor* lse, int layout,
                                                       int causal,
                                                       const TesseraAttentionOptions* options,
                                                       void* stream);

/* Prefill workspaces (ragged, paged, block-sparse): *_workspace_size is the
 * room for every split-KV plan, *_min_workspace_size the schedule alone;
 * *_create accepts any size from the minimum up and splits KV only as far as
 * its partials fit (prefill.h). */
typedef struct TesseraBatchPrefillRagged TesseraBatchPrefillRagged;
TESSERA_C_API int tessera_batch_prefill_ragged_workspace_size(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t max_batch_size,
    int64_t max_total_qo_tokens, int device_id, size_t* bytes);
TESSERA_C_API int tessera_batch_prefill_ragged_min_workspace_size(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t max_batch_size,
    int64_t max_total_qo_tokens, int device_id, size_t* bytes);
TESSERA_C_API int tessera_batch_prefill_ragged_create(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t max_batch_size,
    int64_t max_total_qo_tokens, void* workspace, size_t workspace_bytes, int device_id,
    TesseraBatchPrefillRagged** handle);
/* As *_create with PrefillPlanShape::backend (0 auto, 1 fa2, 2 fa3); the
 * plain *_create is backend 0. The workspace sizes do not depend on it. */
TESSERA_C_API int tessera_batch_prefill_ragged_create_with_backend(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t max_batch_size,
    int64_t max_total_qo_tokens, void* workspace, size_t workspace_bytes, int device_id,
    int backend, TesseraBatchPrefillRagged** handle);
/* As *_create_with_backend with v's and out's head dim head_dim_vo (0:
 * head_dim_qk); head_dim_qk 192 with head_dim_vo 128 is DeepSeek-style
 * prefill (FA2, JIT-served; backend 2 (fa3) is rejected naming "backend");
 * *_min_workspace_size_with_head_dims sizes its workspace. */
TESSERA_C_API int tessera_batch_prefill_ragged_min_workspace_size_with_head_dims(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim_qk, int64_t head_dim_vo,
    int64_t max_batch_size, int64_t max_total_qo_tokens, int device_id, size_t* bytes);
TESSERA_C_API int tessera_batch_prefill_ragged_create_with_head_dims(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim_qk, int64_t head_dim_vo,
    int64_t max_batch_size, int64_t max_total_qo_tokens, void* workspace, size_t workspace_bytes,
    int device_id, int backend, TesseraBatchPrefillRagged** handle);
TESSERA_C_API void tessera_batch_prefill_ragged_destroy(TesseraBatchPrefillRagged* handle);
TESSERA_C_API int tessera_batch_prefill_ragged_plan(TesseraBatchPrefillRagged* handle,
                                                    const int32_t* qo_indptr,
                                                    int64_t qo_indptr_len,
                                                    const int32_t* kv_indptr,
                                                    int64_t kv_indptr_len, int causal,
                                                    void* stream);
TESSERA_C_API int tessera_batch_prefill_ragged_run(
    TesseraBatchPrefillRagged* handle, const DLTensor* q, const DLTensor* k, const DLTensor* v,
    const DLTensor* qo_indptr, const DLTensor* kv_indptr, const DLTensor* out,
    const DLTensor* lse, const TesseraAttentionOptions* options, void* stream, int validate);

/* run() over a flat tensor list: qo_indptr, kv_indptr, q, k, v, out, lse
 * (optional), in this order. */
TESSERA_C_API int tessera_batch_prefill_ragged_run_flat(TesseraBatchPrefillRagged* handle,
                                                        const int64_t* tensors,
                                                        const TesseraAttentionOptions* options,
                                                        void* stream, int validate);

typedef struct TesseraBatchPrefillPaged TesseraBatchPrefillPaged;
TESSERA_C_API int tessera_batch_prefill_paged_workspace_size(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t page_size,
    int64_t max_batch_size, int64_t max_total_qo_tokens, int device_id, size_t* bytes);
TESSERA_C_API int tessera_batch_prefill_paged_min_workspace_size(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t page_size,
    int64_t max_batch_size, int64_t max_total_qo_tokens, int device_id, size_t* bytes);
TESSERA_C_API int tessera_batch_prefill_paged_create(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t page_size,
    int64_t max_batch_size, int64_t max_total_qo_tokens, void* workspace,
    size_t workspace_bytes, int device_id, TesseraBatchPrefillPaged** handle);
/* As *_create with a backend (as the ragged one). */
TESSERA_C_API int tessera_batch_prefill_paged_create_with_backend(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t page_size,
    int64_t max_batch_size, int64_t max_total_qo_tokens, void* workspace,
    size_t workspace_bytes, int device_id, int backend, TesseraBatchPrefillPaged** handle);
TESSERA_C_API void tessera_batch_prefill_paged_destroy(TesseraBatchPrefillPaged* handle);
TESSERA_C_API int tessera_batch_prefill_paged_plan(
    TesseraBatchPrefillPaged* handle, const int32_t* qo_indptr, int64_t qo_indptr_len,
    const int32_t* kv_indptr, int64_t kv_indptr_len, const int32_t* kv_last_page_len,
    int64_t kv_last_page_len_len, int causal, void* stream);
TESSERA_C_API int tessera_batch_prefill_paged_run(
    TesseraBatchPrefillPaged* handle, const DLTensor* q, const TesseraPagedKV* paged_kv_cache,
    const DLTensor* kv_indices, const DLTensor* qo_indptr, const DLTensor* kv_indptr,
    const DLTensor* kv_last_page_len, const DLTensor* out, const DLTensor* lse,
    const TesseraAttentionOptions* options, void* stream, int validate);

/* run() over a flat tensor list: kv_indices, qo_indptr, kv_indptr,
 * kv_last_page_len, q, paged_kv_cache (kv_data or k_data), v_data (absent with
 * kv_data), out, lse (optional), in this order; layout as TesseraPagedKV's. */
TESSERA_C_API int tessera_batch_prefill_paged_run_flat(TesseraBatchPrefillPaged* handle,
                                                       const int64_t* tensors, int layout,
                                                       const TesseraAttentionOptions* options,
                                                       void* stream, int validate);

typedef struct TesseraBlockSparse TesseraBlockSparse;
TESSERA_C_API int tessera_block_sparse_workspace_size(int64_t num_qo_heads, int64_t num_kv_heads,
                                                      int64_t head_dim, int64_t block_rows,
                                                      int64_t block_cols, int64_t max_block_rows,
                                                      int device_id, size_t* bytes);
TESSERA_C_API int tessera_block_sparse_min_workspace_size(int64_t num_qo_heads,
                                                          int64_t num_kv_heads, int64_t head_dim,
                                                          int64_t block_rows, int64_t block_cols,
                                                          int64_t max_block_rows, int device_id,
                                                          size_t* bytes);
TESSERA_C_API int tessera_block_sparse_create(int64_t num_qo_heads, int64_t num_kv_heads,
                                              int64_t head_dim, int64_t block_rows,
                                              int64_t block_cols, int64_t max_block_rows,
                                              void* workspace, size_t workspace_bytes,
                                              int device_id, TesseraBlockSparse** handle);
/* As tessera_block_sparse_create with BlockSparseShape::backend (0 auto,
 * 1 fa2, 2 fa3); the workspace sizes do not depend on it. */
TESSERA_C_API int tessera_block_sparse_create_with_backend(
    int64_t num_qo_heads, int64_t num_kv_heads, int64_t head_dim, int64_t block_rows,
    int64_t block_cols, int64_t max_block_rows, void* workspace, size_t workspace_bytes,
    int device_id, int backend, TesseraBlockSparse** handle);
TESSERA_C_API void tessera_block_sparse_destroy(TesseraBlockSparse* handle);
TESSERA_C_API int tessera_block_sparse_plan(TesseraBlockSparse* handle, const int32_t* indptr,
                                            int64_t indptr_len, const int32_t* indices,
                                            int64_t indices_len, int causal, void* stream);
TESSERA_C_API int tessera_block_sparse_run(TesseraBlockSparse* handle, const DLTensor* q,
                                           const DLTensor* k, const DLTensor* v,
                                           const DLTensor* indptr, const DLTensor* indices,
                                           const DLTensor* out, const DLTensor* lse,
                                           const TesseraAttentionOptions* options, void* stream,
                                           int validate);

/* ---- GEMM (tessera/api/gemm.h). workspace may be NULL. */
TESSERA_C_API int tessera_bmm_fp8(const DLTensor* A, const DLTensor* B, const DLTensor* A_scale,
                                  const DLTensor* B_scale, const DLTensor* out,
                                  const DLTensor* workspace, void* stream);
/* seg_lens or seg_indptr (the latter wins when both are given);
 * weight_indices may be NULL; backend 0 auto, 1 sm80, 2 sm90 (compute
 * capability 9.0 only: elsewhere an argument error). */
TESSERA_C_API int tessera_segment_gemm(const DLTensor* x, const DLTensor* weights,
                                       const DLTensor* y, int64_t batch_size,
                                       int weight_column_major, const DLTensor* seg_lens,
                                       const DLTensor* seg_indptr,
                                       const DLTensor* weight_indices, int backend, void* stream,
                                       int validate);

/* ---- JIT variants (tessera/jit/jit.h). kernel: 0 batch decode (single
 * decode too), 1 single prefill, 2 ragged prefill, 3 paged prefill. dtypes:
 * 0 float16, 1 bfloat16, 2 float8_e4m3fn, 3 float8_e5m2 (fp8: KV only, for
 * decode and for paged prefill at head_dim 128). Param types: 0 float,
 * 1 int32, 2 float* (device), 3 int32* (device). */
typedef struct TesseraJitParam {
  const char* name;
  int32_t type;
} TesseraJitParam;

typedef struct TesseraJitSpec {
  const char* name;   /* the variant struct's name in source */
  const char* source; /* C++ defining it */
  int32_t kernel;
  int32_t q_dtype;
  int32_t kv_dtype;
  int64_t head_dim;
  const TesseraJitParam* params;
  int32_t num_params;
  /* Nonzero for a variant without softmax (its kUseSoftmax is false, e.g.
   * sigmoid attention); zero (the default) for softmax variants. */
  int32_t without_softmax;
  /* Nonzero: a prefill kernel that reads options.custom_mask (calls with a
   * mask need it, calls without one must not use it). */
  int32_t custom_mask;
} TesseraJitSpec;

/* Compiles (or finds in the memory / disk cache) the kernel for `arch`
 * ("sm_90a"); needs no GPU. key: the cache key (hex, NUL-terminated, cut to
 * key_capacity); from_disk / from_memory / cubin_bytes may be NULL. */
TESSERA_C_API int tessera_jit_compile(const TesseraJitSpec* spec, const char* arch,
                                      int use_disk_cache, char* key, size_t key_capacity,
                                      int* from_disk, int* from_memory, size_t* cubin_bytes);

typedef struct TesseraJitVariant TesseraJitVariant;
/* Compiles for arch (NULL or "": the current GPU's) and loads the kernel
 * into the current CUDA context. */
TESSERA_C_API int tessera_jit_variant_create(const TesseraJitSpec* spec, const char* arch,
                                             TesseraJitVariant** handle);
TESSERA_C_API void tessera_jit_variant_destroy(TesseraJitVariant* handle);
/* Extra parameters by name (all must be set before a launch). */
TESSERA_C_API int tessera_jit_variant_set_float(TesseraJitVariant* handle, const char* name,
                                                float value);
TESSERA_C_API int tessera_jit_variant_set_int32(TesseraJitVariant* handle, const char* name,
                                                int32_t value);
TESSERA_C_API int tessera_jit_variant_set_pointer(TesseraJitVariant* handle, const char* name,
                                                  const void* device_pointer);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* TESSERA_C_API_H_ */
