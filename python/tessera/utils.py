"""FlashInfer 0.2's ``flashinfer.utils`` helpers that users import: the enums,
capability queries and back-end choice, with FlashInfer's names and
semantics where Tessera has the same thing to say.

Back ends: Tessera's prefill has two kernel families, ``"fa2"``
(FlashAttention-2 style, sm_80 and later, every case) and ``"fa3"`` (Hopper:
an sm_90 GPU, 16-bit q and K/V of one dtype, head_dim 64, 128 or 256, no position
encoding or ALiBi at 128; docs/python.md has the whole list).
``determine_attention_backend``
answers ``"fa3"`` where these arguments allow it, else ``"fa2"``; the
wrappers' ``backend="auto"`` makes the same choice per call, with what only a
call knows (GQA group, scales, soft cap / window, JIT variant).
Tessera has no GEMM kernels yet: ``determine_gemm_backend`` answers
FlashInfer's device question (``"sm90"`` on compute capability 9.x with CUDA
12.3 or later, else ``"sm80"``) for code that branches on it.
"""

from __future__ import annotations

import ctypes
import math
from enum import Enum
from typing import Tuple, Union

import torch

from . import _checks, _lib

log2e = 1.44269504088896340736


class PosEncodingMode(Enum):
    NONE = 0
    ROPE_LLAMA = 1
    ALIBI = 2


class MaskMode(Enum):
    NON_CAUSAL = 0
    CAUSAL = 1
    CUSTOM = 2


class TensorLayout(Enum):
    NHD = 0
    HND = 1


def _cuda_at_least(major: int, minor: int) -> bool:
    """Whether torch's CUDA toolkit is at least major.minor (False without CUDA)."""
    version = torch.version.cuda
    if not version:
        return False
    parts = version.split(".")
    return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) >= (major, minor)


def get_compute_capability(device: torch.device) -> Tuple[int, int]:
    """(major, minor) of a CUDA device; ValueError for any other device."""
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError("tessera: argument 'device': expected a cuda device, got "
                         f"{device.type}")
    return torch.cuda.get_device_capability(device.index)


def is_sm90a_supported(device: torch.device) -> bool:
    """Compute capability 9.x and a CUDA 12.3+ toolkit (FlashInfer's test)."""
    major, _ = get_compute_capability(device)
    return major == 9 and _cuda_at_least(12, 3)


def is_sm100a_supported(device: torch.device) -> bool:
    """Compute capability 10.x and a CUDA 12.8+ toolkit (FlashInfer's test).
    Tessera has no sm_100a kernels: its sm_80 kernels run there."""
    major, _ = get_compute_capability(device)
    return major == 10 and _cuda_at_least(12, 8)


def device_support_pdl(device: torch.device) -> bool:
    """Whether the device has programmatic dependent launch (sm_90 and later)."""
    major, _ = get_compute_capability(device)
    return major >= 9


def determine_gemm_backend(device: torch.device) -> str:
    """FlashInfer's answer for its segment GEMM ("sm90" or "sm80"); Tessera
    has no GEMM kernel (module docstring)."""
    major, _ = get_compute_capability(device)
    return "sm90" if major == 9 and _cuda_at_least(12, 3) else "sm80"


def _pos_encoding_value(pos_encoding_mode) -> int:
    """FlashInfer passes PosEncodingMode.X.value; its enum and name work too."""
    if isinstance(pos_encoding_mode, PosEncodingMode):
        return pos_encoding_mode.value
    if isinstance(pos_encoding_mode, str):
        return PosEncodingMode[pos_encoding_mode].value
    return int(pos_encoding_mode)


def _fa3_support(pos_encoding_mode, use_custom_mask, dtype_q, dtype_kv, head_dim):
    """(fa3 serves, auto takes fa3) on an sm_90 GPU, from the library's
    kernel table (tessera_prefill_backend_support_sm90; head_dim None: at
    every head_dim the Hopper kernels have)."""
    q_code = _lib.dtype_code(canonicalize_torch_dtype(dtype_q))
    kv_code = _lib.dtype_code(canonicalize_torch_dtype(dtype_kv))
    if q_code is None or kv_code is None:
        return False, False  # no kernel of either back end has these dtypes
    serves, takes = _lib.c_int32(), _lib.c_int32()
    _lib.call("tessera_prefill_backend_support_sm90", _pos_encoding_value(pos_encoding_mode),
              0, 0, 1 if use_custom_mask else 0, q_code, kv_code,
              0 if head_dim is None else int(head_dim), ctypes.byref(serves),
              ctypes.byref(takes))
    return bool(serves.value), bool(takes.value)


def is_fa3_backend_supported(pos_encoding_mode: int, use_fp16_qk_reductions: bool,
                             use_custom_mask: bool, dtype_q: torch.dtype,
                             dtype_kv: torch.dtype, *, head_dim=None) -> bool:
    """Whether Tessera's Hopper kernels serve these arguments on an sm_90 GPU,
    as the library's kernel table says (docs/python.md lists the cases: fp16 /
    bf16 q with K/V of the same dtype or a float8_e4m3fn paged cache with
    bf16 q at head_dim 128, no position encoding or ALiBi at head_dim 128, a
    custom mask only at head_dim 128, head_dim 64 / 128 / 256). head_dim
    (Tessera's extension; FlashInfer's signature has none) None: whether they
    serve it at every head_dim they have. use_fp16_qk_reductions is ignored
    (Tessera always accumulates q.k in float32)."""
    del use_fp16_qk_reductions
    return _fa3_support(pos_encoding_mode, use_custom_mask, dtype_q, dtype_kv, head_dim)[0]


def determine_attention_backend(device: torch.device, pos_encoding_mode: int,
                                use_fp16_qk_reductions: bool, use_custom_mask: bool,
                                dtype_q: torch.dtype, dtype_kv: torch.dtype, *,
                                head_dim=None) -> str:
    """"fa3" on a GPU of compute capability 9.0 where backend="auto" takes the
    Hopper kernels for these arguments (not at head_dim 256; head_dim None:
    where is_fa3_backend_supported, FlashInfer's rule), else "fa2".
    backend="auto" decides per call with what only the call knows (GQA group
    dividing 128, sm_scale * k_scale > 0, a JIT variant's Hopper kernel), so
    it may still run fa2 where this answers "fa3". The device is checked as
    FlashInfer does (a CUDA device)."""
    if get_compute_capability(device) != (9, 0):
        return "fa2"
    serves, takes = _fa3_support(pos_encoding_mode, use_custom_mask, dtype_q, dtype_kv, head_dim)
    # head_dim None: FlashInfer's question (served at every head_dim).
    return "fa3" if (serves if head_dim is None else takes) else "fa2"


def determine_mla_backend(device: torch.device) -> str:
    """FlashInfer's MLA back-end choice: "fa3" (the Hopper kernel) where
    sm_90a is supported, else "fa2" (the portable mma.sync kernel)."""
    return "fa3" if is_sm90a_supported(device) else "fa2"


def get_alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's slopes for n_heads (float32 [n_heads], CPU), as FlashInfer and
    the ALiBi paper define them: 2^(-8 h / n) for h = 1 .. n with n the
    largest power of two <= n_heads, then the odd steps of 2^(-4 h / n) for
    the rest. For a power of two, these are the slopes Tessera's kernels use
    when none are given."""
    n_heads = _checks.integer(n_heads, "n_heads", minimum=1)
    n = 2 ** math.floor(math.log2(n_heads))
    slopes = torch.pow(2.0 ** (-8.0 / n), torch.arange(1, 1 + n, dtype=torch.float64))
    if n < n_heads:
        extra = torch.pow(2.0 ** (-4.0 / n),
                          torch.arange(1, 1 + 2 * (n_heads - n), 2, dtype=torch.float64))
        slopes = torch.cat([slopes, extra])
    return slopes.float()


def canonicalize_torch_dtype(dtype: Union[torch.dtype, str]) -> torch.dtype:
    """A torch.dtype from a dtype or its name ("float16")."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise TypeError(f"tessera: argument 'dtype': expected a torch.dtype or its name, got "
                    f"{dtype!r}")


def is_float8(x: torch.Tensor) -> bool:
    return x.dtype in _checks.FP8


def get_indptr(x: torch.Tensor) -> torch.Tensor:
    """[len(x) + 1] int64 prefix sums of x, starting at 0."""
    x = x.to(torch.int64)
    indptr = torch.zeros(x.numel() + 1, dtype=torch.int64, device=x.device)
    indptr[1:] = x.cumsum(0)
    return indptr


def ceil_div(x: int, y: int) -> int:
    return (x + y - 1) // y


def round_up(x: int, y: int) -> int:
    return ceil_div(x, y) * y


def next_positive_power_of_2(x: int) -> int:
    """The least power of two >= x (1 for x < 1), for x < 2^64."""
    if x < 1:
        return 1
    # Shifts rather than int.bit_length, which torch.compile does not trace.
    n = x - 1
    for shift in (1, 2, 4, 8, 16, 32):
        n |= n >> shift
    return n + 1


def get_device_sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


__all__ = [
    "log2e", "PosEncodingMode", "MaskMode", "TensorLayout", "get_compute_capability",
    "is_sm90a_supported", "is_sm100a_supported", "device_support_pdl", "determine_gemm_backend",
    "is_fa3_backend_supported", "determine_attention_backend", "determine_mla_backend",
    "get_alibi_slopes", "canonicalize_torch_dtype", "is_float8", "get_indptr", "ceil_div",
    "round_up", "next_positive_power_of_2", "get_device_sm_count",
]
