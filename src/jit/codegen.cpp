#include "jit/codegen.h"

#include <cctype>
#include <string>

#include "tessera/attention/head_dims.h"
#include "tessera/core/error.h"

namespace tessera::jit {

const char* kernel_kind_name(KernelKind kind) {
  switch (kind) {
    case KernelKind::kBatchDecode: return "batch_decode";
    case KernelKind::kSinglePrefill: return "single_prefill";
    case KernelKind::kBatchPrefillRagged: return "batch_prefill_ragged";
    case KernelKind::kBatchPrefillPaged: return "batch_prefill_paged";
  }
  return "unknown";
}

namespace detail {

bool is_identifier(const std::string& name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) {
    return false;
  }
  for (const char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

namespace {

const char* device_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return "tessera::half_t";
    case DType::kBFloat16: return "tessera::bfloat16_t";
    case DType::kFloat8E4M3: return "tessera::fp8_e4m3_t";
    case DType::kFloat8E5M2:
      return "tessera::fp8_e5m2_t";
    default: return nullptr;
  }
}

}  // namespace

bool q_dtype_supported(DType q_dtype) {
  return q_dtype == DType::kFloat16 || q_dtype == DType::kBFloat16;
}

bool kv_dtype_supported(KernelKind kernel, DType q_dtype, DType kv_dtype, int64_t head_dim) {
  const bool fp8_ok = kernel == KernelKind::kBatchDecode ||
                      (kernel == KernelKind::kBatchPrefillPaged && head_dim == 128);
  return kv_dtype == q_dtype || (fp8_ok && is_float8(kv_dtype));
}

// Prefill's head_dim 192 is q/k 192 with v/o 128 (the one pair of unequal
// head dims, attention/head_dims.h); decode has no 192.
bool head_dim_supported(KernelKind kernel, int64_t head_dim) {
  return attention::supported_head_dim(head_dim) ||
         (kernel != KernelKind::kBatchDecode && head_dim == attention::kSplitHeadDimQk);
}

bool has_kernel_template(KernelKind kernel, DType q_dtype, DType kv_dtype, int64_t head_dim,
                         bool custom_mask) {
  return q_dtype_supported(q_dtype) && kv_dtype_supported(kernel, q_dtype, kv_dtype, head_dim) &&
         head_dim_supported(kernel, head_dim) &&
         !(custom_mask && kernel == KernelKind::kBatchDecode);
}


GeneratedSource generate(const VariantSpec& spec, const std::string& arch) {
  TESSERA_CHECK_ARG(is_identifier(spec.name), "variant",
                    "a struct name that is a C++ identifier", "name '" + spec.name + "'");
  TESSERA_CHECK_ARG(!spec.source.empty(), "variant", "the struct's C++ source", "empty source");
  TESSERA_CHECK_ARG(q_dtype_supported(spec.q_dtype), "variant", "q_dtype float16 or bfloat16",
                    dtype_name(spec.q_dtype));
  const bool decode = spec.kernel == KernelKind::kBatchDecode;
  // fp8 K/V: decode (any head_dim), paged prefill at head_dim 128.
  const bool fp8_ok =
      kv_dtype_supported(spec.kernel, spec.q_dtype, DType::kFloat8E4M3, spec.head_dim);
  TESSERA_CHECK_ARG(
      kv_dtype_supported(spec.kernel, spec.q_dtype, spec.kv_dtype, spec.head_dim), "variant",
      fp8_ok ? "kv_dtype = q_dtype, float8_e4m3fn or float8_e5m2" : "kv_dtype = q_dtype",
      dtype_name(spec.kv_dtype));
  TESSERA_CHECK_ARG(head_dim_supported(spec.kernel, spec.head_dim), "variant",
                    "head_dim 64, 80, 96, 112, 128 or 256 (prefill also 192: q/k 192, v/o 128)",
                    "head_dim " + std::to_string(spec.head_dim));

  TESSERA_CHECK_ARG(!spec.custom_mask || !decode, "variant",
                    "custom_mask only for the prefill kernels", "custom_mask with batch_decode");
  const std::string mask = spec.custom_mask ? ", true" : "";
  const std::string q = device_type(spec.q_dtype);
  const std::string kv = device_type(spec.kv_dtype);
  const std::string dim = std::to_string(spec.head_dim);
  // PrefillTraits' head dims: q/k and v/o.
  const std::string prefill_dims =
      spec.head_dim == attention::kSplitHeadDimQk
          ? dim + ", " + std::to_string(attention::kSplitHeadDimVo)
          : dim;
  const std::string variant = std::string(kUserNamespace) + "::" + spec.name;
  std::string kernel_header;
  std::string hopper_kv;  // prefill: the Hopper kernel's K/V kind
  GeneratedSource out;
  switch (spec.kernel) {
    case KernelKind::kBatchDecode:
      kernel_header = "tessera/attention/decode.cuh";
      out.name_expression = "&tessera::decode::decode_kernel<tessera::decode::DecodeTraits<" + q +
                            ", " + kv + ", " + dim + ">, " + variant + ">";
      if (spec.kv_dtype == spec.q_dtype && spec.head_dim <= 128 && spec.use_softmax) {
        kernel_header = "tessera/attention/decode_mma.cuh";  // includes decode.cuh
        out.mma_name_expression =
            "&tessera::decode_mma::decode_mma_kernel<tessera::decode_mma::DecodeMmaTraits<" + q +
            ", " + dim + ">, tessera::decode_mma::JitVariantFor<" + variant + ">>";
      }
      break;
    case KernelKind::kSinglePrefill:
      kernel_header = "tessera/attention/prefill_sm80.cuh";
      out.name_expression =
          "&tessera::prefill::single_prefill_kernel<tessera::prefill::PrefillTraits<" + q + ", " +
          prefill_dims + ">, " + variant + ", " + q + mask + ">";
      hopper_kv = "RaggedKv";  // single prefill is a one-request ragged batch there
      break;
    case KernelKind::kBatchPrefillRagged:
    case KernelKind::kBatchPrefillPaged: {
      kernel_header = "tessera/attention/prefill_sm80.cuh";
      const std::string kv_kind =
          spec.kernel == KernelKind::kBatchPrefillRagged ? "RaggedKv" : "PagedKv";
      out.name_expression =
          "&tessera::prefill::batch_prefill_kernel<tessera::prefill::PrefillTraits<" + q + ", " +
          prefill_dims + ">, " + variant + ", " + q + ", tessera::prefill::" + kv_kind + "<" + kv +
          ">" +
          mask + ">";
      hopper_kv = kv_kind;
      break;
    }
  }
  // Prefill on sm_90a: the Hopper kernel for the same variant beside FA2's.
  std::string hopper_header;
  // (The Hopper kernels have head_dim 64 / 128 / 256; 80 / 96 / 112 run FA2.)
  if (!hopper_kv.empty() && arch == "sm_90a" && spec.kv_dtype == spec.q_dtype &&
      (spec.head_dim == 64 || spec.head_dim == 128)) {
    hopper_header = "tessera/attention/prefill_sm90/kernel.cuh";
    out.mma_name_expression =
        "&tessera::prefill_sm90::prefill_sm90_kernel<tessera::prefill_sm90::Traits<" + q + ", " +
        dim + ">, tessera::prefill_sm90::JitVariantFor<" + variant + ">, " + q +
        ", tessera::prefill::" + hopper_kv + "<" + q + ">, " +
        (spec.custom_mask ? "true" : "false") + ">";
  }
  // The kernel header comes first, so the user's struct sees the whole
  // device library; its lines are numbered from 1 in "variant".
  std::string text;
  text += "// Generated by tessera::jit: variant " + spec.name + ", kernel " +
          kernel_kind_name(spec.kernel) + ", " + q + " / " + kv + ", head_dim " + dim + ".\n";
  text += "#include \"tessera/attention/variant.cuh\"\n";
  text += "#include \"" + kernel_header + "\"\n";
  if (!hopper_header.empty()) text += "#include \"" + hopper_header + "\"\n";
  text += "namespace " + std::string(kUserNamespace) + " {\n";
  text += "using namespace tessera::attention;\n";
  // The extra parameters, read in place from VariantParams::extra.
  const ExtraLayout layout = extra_layout(spec);
  text += "struct Extra {\n";
  for (std::size_t i = 0; i < spec.params.size(); ++i) {
    const ParamSpec& param = spec.params[i];
    const char* type = param.type == ParamType::kFloat          ? "float"
                       : param.type == ParamType::kInt32        ? "int32_t"
                       : param.type == ParamType::kFloatPointer ? "const float*"
                                                                : "const int32_t*";
    text += "  " + std::string(type) + " " + param.name + ";  // offset " +
            std::to_string(layout.offsets[i]) + "\n";
  }
  text += "};\n";
  text += "static_assert(sizeof(Extra) <= sizeof(VariantParams::extra), \"extra parameters\");\n";
  text += "__device__ __forceinline__ const Extra& extra(const VariantParams& p) {\n"
          "  return *reinterpret_cast<const Extra*>(p.extra);\n}\n";
  text += "#line 1 \"" + std::string(kVariantFileName) + "\"\n";
  text += spec.source;
  if (text.back() != '\n') text += '\n';
  text += "#line 1 \"tessera_jit_footer\"\n";
  // use_softmax tells the host how split partials merge; it must be the
  // variant's own.
  text += std::string("static_assert(") + spec.name +
          "::kUseSoftmax == " + (spec.use_softmax ? "true" : "false") +
          ", \"VariantSpec::use_softmax must equal the variant's kUseSoftmax\");\n";
  text += "}  // namespace " + std::string(kUserNamespace) + "\n";
  out.text = std::move(text);
  return out;
}

bool instantiates_user_variant(const std::string& lowered_name) {
  return lowered_name.find(kUserNamespace) != std::string::npos;
}

}  // namespace detail
}  // namespace tessera::jit
