"""Loads libtessera and declares its C ABI (include/tessera/c_api.h) for ctypes.

ctypes rather than a compiled extension: the package is pure Python over one
shared library, so the same libtessera build serves every Python and PyTorch
version (a serving host needs no compiler, and CI can import-test the package
without building for a given interpreter). Where the library is found, first
match wins: $TESSERA_LIBRARY (a path to libtessera.so*), the copy installed
inside the package (tessera/lib), the repository's build directories
(development checkouts), then the system's library path. Loading it also
finds the CUDA runtime, NVRTC and CUDA headers in torch's pip wheels where
no toolkit provides them, and refuses a torch built for another CUDA major
(_cuda_paths.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
import threading

from . import _cuda_paths

c_int = ctypes.c_int
c_int32 = ctypes.c_int32
c_int64 = ctypes.c_int64
c_double = ctypes.c_double
c_void_p = ctypes.c_void_p
c_size_t = ctypes.c_size_t


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(c_int64)),
        ("strides", ctypes.POINTER(c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class AttentionOptions(ctypes.Structure):
    """TesseraAttentionOptions: zero fields mean the C++ defaults."""

    _fields_ = [
        ("sm_scale", c_double),
        ("logits_soft_cap", c_double),
        ("window_left", c_int64),
        ("pos_encoding_mode", c_int32),
        ("rope_scale", c_double),
        ("rope_theta", c_double),
        ("alibi_slopes", ctypes.POINTER(DLTensor)),
        ("k_scale", c_double),
        ("v_scale", c_double),
        ("jit_variant", c_void_p),
        ("custom_mask", ctypes.POINTER(DLTensor)),
        ("prefill_backend", c_int32),
    ]


class JitParam(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", c_int32)]


class JitSpec(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("source", ctypes.c_char_p),
        ("kernel", c_int32),
        ("q_dtype", c_int32),
        ("kv_dtype", c_int32),
        ("head_dim", c_int64),
        ("params", ctypes.POINTER(JitParam)),
        ("num_params", c_int32),
        ("without_softmax", c_int32),
        ("custom_mask", c_int32),
    ]


class PagedKV(ctypes.Structure):
    _fields_ = [
        ("first", ctypes.POINTER(DLTensor)),
        ("v_data", ctypes.POINTER(DLTensor)),
        ("layout", c_int32),
    ]


class RopeOptions(ctypes.Structure):
    _fields_ = [
        ("rotary_dim", c_int64),
        ("interleave", c_int32),
        ("rope_scale", c_double),
        ("rope_theta", c_double),
        ("llama31", c_int32),
        ("low_freq_factor", c_double),
        ("high_freq_factor", c_double),
        ("old_context_len", c_double),
    ]


class TesseraError(RuntimeError):
    """An error raised by libtessera: the message of its tessera::Error."""


class TesseraArgumentError(TesseraError, ValueError):
    """An argument error: the message names the argument, what was expected and what came."""


T = ctypes.POINTER(DLTensor)
P_KV = ctypes.POINTER(PagedKV)
P_OPT = ctypes.POINTER(AttentionOptions)
P_ROPE = ctypes.POINTER(RopeOptions)
P_I32 = ctypes.POINTER(c_int32)
P_I64 = ctypes.POINTER(c_int64)

# name: (restype, argtypes). int-returning functions get errcheck.
_PROTOTYPES = {
    "tessera_last_error": (ctypes.c_char_p, []),
    "tessera_version": (c_int, []),
    # norm / activation
    "tessera_rmsnorm": (c_int, [T, T, T, c_double, c_void_p]),
    "tessera_fused_add_rmsnorm": (c_int, [T, T, T, c_double, c_void_p]),
    "tessera_gemma_rmsnorm": (c_int, [T, T, T, c_double, c_void_p]),
    "tessera_gemma_fused_add_rmsnorm": (c_int, [T, T, T, c_double, c_void_p]),
    "tessera_silu_and_mul": (c_int, [T, T, c_void_p]),
    "tessera_gelu_and_mul": (c_int, [T, T, c_void_p]),
    "tessera_gelu_tanh_and_mul": (c_int, [T, T, c_void_p]),
    # sampling
    "tessera_sampling_from_probs": (c_int, [T, T, T, T, c_int32, c_int32, c_void_p]),
    "tessera_top_p_sampling_from_probs": (
        c_int, [T, T, T, c_double, T, T, c_int32, c_int32, c_void_p]),
    "tessera_top_k_sampling_from_probs": (
        c_int, [T, T, T, c_int64, T, T, c_int32, c_int32, c_void_p]),
    "tessera_min_p_sampling_from_probs": (
        c_int, [T, T, T, c_double, T, T, c_int32, c_int32, c_void_p]),
    "tessera_top_k_top_p_sampling_from_probs": (
        c_int, [T, T, T, c_int64, T, c_double, T, T, c_int32, c_int32, c_void_p]),
    "tessera_top_p_renorm_probs": (c_int, [T, T, c_double, T, c_void_p]),
    "tessera_top_k_renorm_probs": (c_int, [T, T, c_int64, T, c_void_p]),
    "tessera_top_k_mask_logits": (c_int, [T, T, c_int64, T, c_void_p]),
    "tessera_chain_speculative_sampling": (c_int, [T, T, T, T, T, T, T, c_int32, c_void_p]),
    # rope
    "tessera_apply_rope": (c_int, [T, T, T, T, T, T, P_ROPE, c_void_p, c_int]),
    "tessera_apply_rope_pos_ids": (c_int, [T, T, T, T, T, P_ROPE, c_void_p]),
    "tessera_apply_rope_with_cos_sin_cache": (
        c_int, [T, T, T, T, T, c_int64, T, c_int, c_void_p, c_int]),
    # page
    "tessera_get_batch_indices_positions": (c_int, [T, T, T, T, c_void_p]),
    "tessera_append_paged_kv_cache": (c_int, [T, T, T, T, P_KV, T, T, T, c_void_p, c_int]),
    # merges
    "tessera_merge_state": (c_int, [T, T, T, T, T, T, c_void_p]),
    "tessera_merge_state_in_place": (c_int, [T, T, T, T, T, c_void_p]),
    "tessera_merge_states": (c_int, [T, T, T, T, c_void_p]),
    # decode
    "tessera_single_decode_with_kv_cache": (c_int, [T, T, T, T, T, c_int, P_OPT, c_int, c_void_p]),
    "tessera_batch_decode_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_int,
                ctypes.POINTER(c_size_t)]),
    "tessera_batch_decode_create": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                ctypes.POINTER(c_void_p)]),
    "tessera_batch_decode_destroy": (None, [c_void_p]),
    "tessera_batch_decode_plan": (
        c_int, [c_void_p, P_I32, c_int64, P_I32, c_int64, c_int64, c_int, c_void_p]),
    "tessera_batch_decode_run": (c_int, [c_void_p, T, P_KV, T, T, T, T, T, P_OPT, c_void_p, c_int]),
    # MLA
    "tessera_batch_mla_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_int, c_int,
                ctypes.POINTER(c_size_t)]),
    "tessera_batch_mla_create": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                c_int, ctypes.POINTER(c_void_p)]),
    "tessera_batch_mla_destroy": (None, [c_void_p]),
    "tessera_batch_mla_plan": (
        c_int, [c_void_p, P_I32, c_int64, P_I32, c_int64, P_I32, c_int64, c_int, c_void_p]),
    "tessera_batch_mla_run": (
        c_int, [c_void_p, T, T, T, T, T, T, T, T, T, T, c_double, c_void_p, c_int]),
    # run() over a flat tensor list (_flat.py calls them with integer arguments)
    "tessera_batch_decode_run_flat": (c_int, [c_void_p, P_I64, c_int, P_OPT, c_void_p, c_int]),
    "tessera_batch_prefill_ragged_run_flat": (c_int, [c_void_p, P_I64, P_OPT, c_void_p, c_int]),
    "tessera_batch_prefill_paged_run_flat": (
        c_int, [c_void_p, P_I64, c_int, P_OPT, c_void_p, c_int]),
    # prefill
    "tessera_single_prefill_with_kv_cache": (c_int, [T, T, T, T, T, c_int, c_int, P_OPT, c_void_p]),
    "tessera_batch_prefill_ragged_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int, ctypes.POINTER(c_size_t)]),
    "tessera_batch_prefill_ragged_min_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int, ctypes.POINTER(c_size_t)]),
    "tessera_batch_prefill_ragged_min_workspace_size_with_head_dims": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_int,
                ctypes.POINTER(c_size_t)]),
    "tessera_batch_prefill_ragged_create": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                ctypes.POINTER(c_void_p)]),
    "tessera_batch_prefill_ragged_create_with_backend": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int, c_int,
                ctypes.POINTER(c_void_p)]),
    "tessera_batch_prefill_ragged_create_with_head_dims": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                c_int, ctypes.POINTER(c_void_p)]),
    "tessera_batch_prefill_ragged_destroy": (None, [c_void_p]),
    "tessera_batch_prefill_ragged_plan": (
        c_int, [c_void_p, P_I32, c_int64, P_I32, c_int64, c_int, c_void_p]),
    "tessera_batch_prefill_ragged_run": (
        c_int, [c_void_p, T, T, T, T, T, T, T, P_OPT, c_void_p, c_int]),
    "tessera_batch_prefill_paged_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_int,
                ctypes.POINTER(c_size_t)]),
    "tessera_batch_prefill_paged_min_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_int,
                ctypes.POINTER(c_size_t)]),
    "tessera_batch_prefill_paged_create": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                ctypes.POINTER(c_void_p)]),
    "tessera_batch_prefill_paged_create_with_backend": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                c_int, ctypes.POINTER(c_void_p)]),
    "tessera_batch_prefill_paged_destroy": (None, [c_void_p]),
    "tessera_batch_prefill_paged_plan": (
        c_int, [c_void_p, P_I32, c_int64, P_I32, c_int64, P_I32, c_int64, c_int, c_void_p]),
    "tessera_batch_prefill_paged_run": (
        c_int, [c_void_p, T, P_KV, T, T, T, T, T, T, P_OPT, c_void_p, c_int]),
    "tessera_block_sparse_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_int,
                ctypes.POINTER(c_size_t)]),
    "tessera_block_sparse_min_workspace_size": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_int,
                ctypes.POINTER(c_size_t)]),
    "tessera_block_sparse_create": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                ctypes.POINTER(c_void_p)]),
    "tessera_block_sparse_create_with_backend": (
        c_int, [c_int64, c_int64, c_int64, c_int64, c_int64, c_int64, c_void_p, c_size_t, c_int,
                c_int, ctypes.POINTER(c_void_p)]),
    "tessera_block_sparse_destroy": (None, [c_void_p]),
    "tessera_block_sparse_plan": (c_int, [c_void_p, P_I32, c_int64, P_I32, c_int64, c_int,
                                          c_void_p]),
    "tessera_block_sparse_run": (c_int, [c_void_p, T, T, T, T, T, T, T, P_OPT, c_void_p, c_int]),
    "tessera_prefill_backend_support_sm90": (
        c_int, [c_int32, c_int32, c_int32, c_int32, c_int32, c_int32, c_int64,
                ctypes.POINTER(c_int32), ctypes.POINTER(c_int32)]),
    # gemm
    "tessera_bmm_fp8": (c_int, [T, T, T, T, T, T, c_void_p]),
    "tessera_segment_gemm": (c_int, [T, T, T, c_int64, c_int, T, T, T, c_int, c_void_p, c_int]),
    # jit
    "tessera_jit_compile": (
        c_int, [ctypes.POINTER(JitSpec), ctypes.c_char_p, c_int, ctypes.c_char_p, c_size_t,
                ctypes.POINTER(c_int), ctypes.POINTER(c_int), ctypes.POINTER(c_size_t)]),
    "tessera_jit_variant_create": (
        c_int, [ctypes.POINTER(JitSpec), ctypes.c_char_p, ctypes.POINTER(c_void_p)]),
    "tessera_jit_variant_destroy": (None, [c_void_p]),
    "tessera_jit_variant_set_float": (c_int, [c_void_p, ctypes.c_char_p, ctypes.c_float]),
    "tessera_jit_variant_set_int32": (c_int, [c_void_p, ctypes.c_char_p, c_int32]),
    "tessera_jit_variant_set_pointer": (c_int, [c_void_p, ctypes.c_char_p, c_void_p]),
}


def _candidates():
    env = os.environ.get("TESSERA_LIBRARY")
    if env:
        yield pathlib.Path(env)
        return
    package = pathlib.Path(__file__).resolve().parent
    for directory in (package / "lib",):
        yield from sorted(directory.glob("libtessera.so*"))
    repo = package.parent.parent
    for build in ("build", "build-sm90a", ".gpu-build/lib"):
        candidate = repo / build / "libtessera.so"
        if candidate.exists():
            yield candidate
        yield from sorted((repo / build).glob("libtessera.so.*"))
    found = ctypes.util.find_library("tessera")
    if found:
        yield pathlib.Path(found)


_lock = threading.Lock()
_library = None


def _errcheck(status, function, arguments):
    if status != 0:
        message = _library.tessera_last_error().decode("utf-8", "replace")
        raise (TesseraArgumentError if status == 1 else TesseraError)(message)
    return status


def _check_cuda(lib: ctypes.CDLL) -> None:
    """One clear ImportError when torch's CUDA is not the library's, then the
    pip wheels' CUDA headers for the JIT (Tessera's own headers it finds
    beside itself: tessera/include in a wheel)."""
    import torch

    major = _cuda_paths.runtime_major(lib)
    if major == 0:
        return
    _cuda_paths.check_torch_cuda(major, torch.__version__, torch.version.cuda)
    _cuda_paths.point_jit_at_pip_headers(major)


def library() -> ctypes.CDLL:
    """The loaded libtessera (loaded and declared on first use)."""
    global _library
    if _library is not None:
        return _library
    with _lock:
        if _library is not None:
            return _library
        tried = []
        for path in _candidates():
            try:
                # ImportError (its CUDA runtime missing) is not a reason to
                # try the next candidate: it is the message the user needs.
                lib = _cuda_paths.load_with_pip_cuda(str(path))
            except OSError as error:
                tried.append(f"{path}: {error}")
                continue
            _check_cuda(lib)
            for name, (restype, argtypes) in _PROTOTYPES.items():
                function = getattr(lib, name, None)
                if function is None:
                    continue  # an older library: calling it raises below
                function.restype = restype
                function.argtypes = argtypes
                if restype is c_int and name not in ("tessera_version",):
                    function.errcheck = _errcheck
            _library = lib
            return lib
        raise ImportError(
            "tessera: libtessera not found (set TESSERA_LIBRARY to its path); tried: "
            + ("; ".join(tried) if tried else "nothing"))


_DTYPE_CODES = {"float16": 0, "bfloat16": 1, "float8_e4m3fn": 2, "float8_e5m2": 3}


def dtype_code(dtype):
    """The C ABI's code of a torch dtype or its name (c_api.h: 0 float16,
    1 bfloat16, 2 float8_e4m3fn, 3 float8_e5m2), or None for any other."""
    name = dtype if isinstance(dtype, str) else str(dtype).replace("torch.", "")
    return _DTYPE_CODES.get(name)


def call(name: str, *arguments):
    """Calls C function `name`; raises TesseraError with the library's message on failure."""
    function = getattr(library(), name, None)
    if function is None:
        raise TesseraError(f"tessera: this libtessera has no {name} (rebuild it)")
    return function(*arguments)


def version() -> str:
    v = library().tessera_version()
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
