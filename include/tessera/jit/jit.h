// JIT-compiled attention variants: specification, code generation, NVRTC
// compile to a cubin, disk and memory caches, loading (LoadedVariant) and
// launching through the plan/run API (AttentionOptions::jit_variant), and the
// built-in kernels off the AOT list (has_aot_kernel below).
//
// A variant is a C++ struct implementing the variant interface of
// include/tessera/attention/variant.cuh (derive from
// tessera::attention::VariantBase and override what you need): constructor
// (const VariantParams&, int qo_head, int q_pos), query_scale(), and the
// hooks its kHas* flags enable. jit::compile() specialises one of Tessera's
// kernel templates with it, compiles the translation unit in-process with
// NVRTC (no nvcc at run time) for the given architecture, and caches the
// cubin: in memory, and on disk under TESSERA_CACHE_DIR (default
// $XDG_CACHE_HOME/tessera or ~/.cache/tessera), keyed by a hash of the
// source, kernel, dtypes, head dim, architecture, Tessera, NVRTC and CUDA
// header versions. Disk writes are atomic (temporary file + rename), so
// processes compiling the same key at once leave one valid entry; an
// unreadable or corrupt entry is rebuilt. Compile errors throw
// tessera::Error (argument "variant") with NVRTC's log, line numbers counted
// in the variant's own source. NVRTC reads Tessera's headers beside the
// loaded libtessera and the CUDA headers from $CUDA_HOME, the build's
// toolkit or $TESSERA_JIT_CUDA_INCLUDE_PATH, after $TESSERA_JIT_INCLUDE_PATH
// (docs/jit.md); a missing header throws tessera::Error naming it and every
// directory searched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tessera/attention/variant_params.h"
#include "tessera/core/dtype.h"
#include "tessera/core/export.h"

namespace tessera::jit {

// The kernel template a variant specialises.
enum class KernelKind {
  kBatchDecode,         // decode.cuh: decode_kernel (single decode uses it too)
  kSinglePrefill,       // prefill_sm80.cuh: single_prefill_kernel
  kBatchPrefillRagged,  // prefill_sm80.cuh: batch_prefill_kernel, ragged K/V
  kBatchPrefillPaged,   // prefill_sm80.cuh: batch_prefill_kernel, paged K/V
};

// An extra parameter of a variant, passed by name at run time. Pointers are
// device pointers (e.g. a per-head tensor's data).
enum class ParamType { kFloat, kInt32, kFloatPointer, kInt32Pointer };

struct ParamSpec {
  std::string name;  // a C++ identifier
  ParamType type = ParamType::kFloat;
};

TESSERA_API const char* kernel_kind_name(KernelKind kind);

struct VariantSpec {
  std::string name;    // the struct's name in `source` (an identifier)
  std::string source;  // C++ defining that struct (may define helpers too)
  KernelKind kernel = KernelKind::kBatchDecode;
  DType q_dtype = DType::kBFloat16;   // fp16 / bf16
  DType kv_dtype = DType::kBFloat16;  // = q_dtype, or fp8 e4m3 / e5m2 (decode, paged prefill 128)
  // 64, 80, 96, 112, 128 or 256; prefill also 192: q/k 192 with v/o 128
  // (DeepSeek-style, the one pair of unequal head dims).
  int64_t head_dim = 128;
  // Must equal the variant's kUseSoftmax (a static_assert checks it): false
  // for attention without softmax (e.g. sigmoid attention), whose split-KV
  // partials the merge sums instead of combining by lse.
  bool use_softmax = true;
  // Prefill kinds: the kernel reads AttentionOptions::custom_mask (a
  // separate instantiation, so kernels without one pay nothing); a call
  // must give a mask exactly when its variant was compiled with this set.
  bool custom_mask = false;
  // Extra parameters, in order. The generated code declares
  //   struct Extra { <type> <name>; ... };   and   const Extra& extra(const VariantParams&)
  // before the variant's source, so the variant reads extra(p).<name> in its
  // constructor. At most kVariantExtraBytes (64) bytes, each field aligned
  // to its size.
  std::vector<ParamSpec> params;
};

// Byte offsets of the extra parameters in VariantParams::extra (throws naming
// "variant" for a bad name, a duplicate or too many bytes).
struct ExtraLayout {
  std::vector<std::size_t> offsets;  // per spec.params entry
  std::size_t bytes = 0;
};
TESSERA_API ExtraLayout extra_layout(const VariantSpec& spec);

// The values of a variant's extra parameters by name, packed as the
// generated `Extra` struct reads them.
class TESSERA_API ExtraParams {
 public:
  explicit ExtraParams(const VariantSpec& spec);
  // Throws naming the parameter when it does not exist or has another type.
  ExtraParams& set(const std::string& name, float value);
  ExtraParams& set(const std::string& name, int32_t value);
  ExtraParams& set(const std::string& name, const float* device_pointer);
  ExtraParams& set(const std::string& name, const int32_t* device_pointer);
  // Throws naming the first parameter never set.
  void copy_to(unsigned char (&destination)[64]) const;

 private:
  template <typename T>
  ExtraParams& put(const std::string& name, ParamType type, const T& value);
  std::vector<ParamSpec> params_;
  ExtraLayout layout_;
  std::vector<bool> set_;
  unsigned char bytes_[64] = {};
};

struct CompileOptions {
  std::string arch = "sm_90a";  // NVRTC -arch (sm_90a on an H100)
  bool use_disk_cache = true;
};

struct CompiledKernel {
  std::string key;            // hex digest of everything that shapes the cubin
  std::string kernel_name;    // lowered (mangled) name of the __global__ function
  // The variant's second kernel in the same cubin, where the dtypes and
  // head_dim have one (16-bit K/V = q, head_dim 64 / 128) and the variant
  // qualifies (softmax, no q/k transform); else empty. Batch decode: the
  // tensor-core decode kernel (decode_mma.cuh). Prefill compiled for
  // sm_90a: the Hopper prefill kernel (prefill_sm90/), which backend "fa3"
  // runs.
  std::string mma_kernel_name;
  std::vector<char> cubin;
  bool from_disk = false;     // loaded from the disk cache
  bool from_memory = false;   // found in this process's cache
};

// Compiles (or finds) the kernel. Thread-safe.
TESSERA_API CompiledKernel compile(const VariantSpec& spec, const CompileOptions& options = {});

// A variant compiled for the current device's architecture and loaded
// (cudaLibraryLoadData: usable on every device of the process), with the
// values of its extra parameters. Pass it as AttentionOptions::jit_variant
// to the entry point of its kernel kind; set every extra parameter first.
// Needs a CUDA device. Not thread-safe to modify while a launch reads it.
// Keep it alive while launches that use it may still run, and while a CUDA
// graph captured with it exists: destroying it unloads the kernel. Extra
// values are copied into the kernel parameters at each launch, so a captured
// graph keeps the values of the capture.
class TESSERA_API LoadedVariant {
 public:
  // options.arch empty: the current device's (sm_90a on an H100).
  explicit LoadedVariant(const VariantSpec& spec, CompileOptions options = {""});
  ~LoadedVariant();
  LoadedVariant(const LoadedVariant&) = delete;
  LoadedVariant& operator=(const LoadedVariant&) = delete;

  const VariantSpec& spec() const { return spec_; }
  ExtraParams& extra_params() { return extra_; }
  const ExtraParams& extra_params() const { return extra_; }
  // The kernel handle, usable where the runtime takes a kernel function
  // (cudaLaunchKernel, cudaFuncSetAttribute).
  const void* kernel() const { return kernel_; }
  // Batch decode: the tensor-core decode kernel (CompiledKernel::
  // mma_kernel_name), or null.
  const void* mma_kernel() const {
    return spec_.kernel == KernelKind::kBatchDecode ? companion_kernel_ : nullptr;
  }
  // Prefill kinds: the Hopper prefill kernel (backend "fa3"), or null.
  const void* hopper_kernel() const {
    return spec_.kernel == KernelKind::kBatchDecode ? nullptr : companion_kernel_;
  }
  const CompiledKernel& compiled() const { return compiled_; }

 private:
  VariantSpec spec_;
  ExtraParams extra_;
  CompiledKernel compiled_;
  void* library_ = nullptr;
  const void* kernel_ = nullptr;
  const void* companion_kernel_ = nullptr;  // CompiledKernel::mma_kernel_name's
};

// "sm_XY" of a device (with "a" for sm_90: the Hopper-only instructions).
TESSERA_API std::string device_arch(int device);

// Compiles (or finds) every spec on `threads` threads (0: one per CPU), so
// an engine pays the JIT cost once at start-up. Writes one progress line per
// finished kernel to `progress` ("tessera jit: 3/12 ready (2 compiled, 1
// from disk) ...") unless it is null. Every spec is attempted; the first
// error (in spec order) is rethrown after all threads finish.
struct WarmUpResult {
  std::vector<CompiledKernel> kernels;  // in spec order
  double seconds = 0.0;
};
TESSERA_API WarmUpResult warm_up(const std::vector<VariantSpec>& specs,
                                 const CompileOptions& options = {}, int threads = 0,
                                 std::FILE* progress = stderr);

// AOT and JIT meet here. libtessera carries an explicit list of built-in
// kernels compiled ahead of time (the common Llama / Qwen / Mistral / Gemma
// shapes, docs/jit.md); a call to a built-in variant outside it JIT-compiles
// the same kernel template with the built-in struct on first use (cached in
// memory and on disk like any variant, loaded once per process, safe inside
// CUDA-graph capture). These name the list and the spec such a call
// compiles, so an engine can warm_up() them at start-up.
//   has_aot_kernel: whether `variant` (a built-in kind, not kJit) has an AOT
//   kernel for `kernel` with these dtypes and head_dim.
TESSERA_API bool has_aot_kernel(KernelKind kernel, attention::VariantKind variant, DType q_dtype,
                                DType kv_dtype, int64_t head_dim, bool custom_mask = false);
//   builtin_variant_spec: the spec of the built-in variant's kernel (its
//   source derives from the built-in struct). Throws naming "variant" for
//   kJit.
TESSERA_API VariantSpec builtin_variant_spec(KernelKind kernel, attention::VariantKind variant,
                                             DType q_dtype, DType kv_dtype, int64_t head_dim,
                                             bool custom_mask = false);

// The generated translation unit (for inspection and error reports).
TESSERA_API std::string generate_source(const VariantSpec& spec);

// The cache key compile() would use.
TESSERA_API std::string cache_key(const VariantSpec& spec, const CompileOptions& options);

// The disk cache directory in use (TESSERA_CACHE_DIR or the user's default).
TESSERA_API std::string cache_directory();

// NVRTC compilations this process has run (tests count cache hits with it).
TESSERA_API int64_t compilations();

// Empties this process's memory cache (tests: "a fresh process").
TESSERA_API void clear_memory_cache();

}  // namespace tessera::jit
