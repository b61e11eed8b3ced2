"""JIT-compiled attention variants from a C++ source string (tessera::jit,
docs/jit.md): the variant struct specialises a decode or prefill kernel,
compiled in-process with NVRTC (no nvcc needed) and cached in memory and on
disk ($TESSERA_CACHE_DIR).

    spec = tessera.jit.VariantSpec("Biased", source, kernel="batch_decode",
                                   params=[("bias", "float")])
    tessera.jit.compile(spec)               # optional warm-up; needs no GPU
    variant = tessera.jit.Variant(spec)     # loads it on the current GPU
    variant.set("bias", 0.5)
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace, jit_args=variant)

FlashInfer's jit_args is a list describing a module to generate; Tessera's
wrappers take the loaded Variant instead (same argument name).
"""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Sequence, Tuple

import torch

from . import _lib

_KERNELS = {"batch_decode": 0, "single_decode": 0, "single_prefill": 1,
            "batch_prefill_ragged": 2, "batch_prefill_paged": 3}
_PARAM_TYPES = {"float": 0, "int32": 1, "float*": 2, "int32*": 3}


def _dtype_code(dtype, name: str) -> int:
    code = _lib.dtype_code(dtype)
    if code is not None:
        return code
    raise _lib.TesseraArgumentError(
        f"tessera: argument '{name}': expected float16, bfloat16, float8_e4m3fn or float8_e5m2, "
        f"got {dtype}")


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """A variant: the struct `name` defined in `source`, for `kernel` (batch_decode
    (also used by single decode), single_prefill, batch_prefill_ragged,
    batch_prefill_paged), with extra parameters (name, "float" | "int32" |
    "float*" | "int32*") that the source reads as extra(p).<name>. use_softmax
    must equal the struct's kUseSoftmax (False: e.g. sigmoid attention, whose
    split partials are summed)."""

    name: str
    source: str
    kernel: str = "batch_decode"
    q_dtype: object = torch.bfloat16
    kv_dtype: object = None  # None: q_dtype
    head_dim: int = 128
    params: Sequence[Tuple[str, str]] = ()
    use_softmax: bool = True
    custom_mask: bool = False  # prefill: the kernel reads the call's custom mask

    def _c(self):
        """The TesseraJitSpec (and the objects its pointers need alive)."""
        if self.kernel not in _KERNELS:
            raise _lib.TesseraArgumentError(
                f"tessera: argument 'kernel': expected one of {sorted(_KERNELS)}, "
                f"got {self.kernel!r}")
        params = (_lib.JitParam * max(len(self.params), 1))()
        keep = []
        for i, (name, kind) in enumerate(self.params):
            if kind not in _PARAM_TYPES:
                raise _lib.TesseraArgumentError(
                    f"tessera: argument '{name}': expected a type in {sorted(_PARAM_TYPES)}, "
                    f"got {kind!r}")
            encoded = name.encode()
            keep.append(encoded)
            params[i].name = encoded
            params[i].type = _PARAM_TYPES[kind]
        spec = _lib.JitSpec()
        spec.name = self.name.encode()
        spec.source = self.source.encode()
        spec.kernel = _KERNELS[self.kernel]
        spec.q_dtype = _dtype_code(self.q_dtype, "q_dtype")
        spec.kv_dtype = _dtype_code(self.kv_dtype if self.kv_dtype is not None else self.q_dtype,
                                    "kv_dtype")
        spec.head_dim = int(self.head_dim)
        spec.params = params
        spec.num_params = len(self.params)
        spec.without_softmax = 0 if self.use_softmax else 1
        spec.custom_mask = 1 if self.custom_mask else 0
        return spec, (params, keep)


@dataclasses.dataclass(frozen=True)
class CompiledInfo:
    key: str          # the cache key (hash of source, kernel, dtypes, arch, versions)
    from_disk: bool
    from_memory: bool
    cubin_bytes: int


def compile(spec: VariantSpec, arch: str = "sm_90a", use_disk_cache: bool = True) -> CompiledInfo:
    """Compiles the variant's kernel for `arch` (or finds it in a cache). Needs
    no GPU; a compile error raises TesseraError with NVRTC's log."""
    c_spec, keep = spec._c()
    key = ctypes.create_string_buffer(129)
    from_disk, from_memory, size = ctypes.c_int(), ctypes.c_int(), ctypes.c_size_t()
    _lib.call("tessera_jit_compile", ctypes.byref(c_spec), arch.encode(), int(use_disk_cache), key,
              len(key), ctypes.byref(from_disk), ctypes.byref(from_memory), ctypes.byref(size))
    del keep
    return CompiledInfo(key.value.decode(), bool(from_disk.value), bool(from_memory.value),
                        size.value)


class Variant:
    """A variant compiled for and loaded on the current GPU; pass it as
    jit_args to a wrapper (or jit_variant to single_decode_with_kv_cache).
    Tensor parameters keep their tensor alive here."""

    def __init__(self, spec: VariantSpec):
        self.spec = spec
        c_spec, keep = spec._c()
        handle = ctypes.c_void_p()
        _lib.call("tessera_jit_variant_create", ctypes.byref(c_spec), None, ctypes.byref(handle))
        del keep
        self.handle = handle.value
        self._tensors = {}
        self._types = dict(spec.params)

    def set(self, name: str, value) -> "Variant":
        """Sets extra parameter `name`: a Python number for float / int32, a
        CUDA tensor (float32 / int32) for the pointer types."""
        kind = self._types.get(name)
        if kind is None:
            raise _lib.TesseraArgumentError(
                f"tessera: argument '{name}': expected one of the spec's parameters "
                f"{sorted(self._types)}, got an unknown name")
        encoded = name.encode()
        if kind == "float":
            _lib.call("tessera_jit_variant_set_float", self.handle, encoded, float(value))
        elif kind == "int32":
            _lib.call("tessera_jit_variant_set_int32", self.handle, encoded, int(value))
        else:
            want = torch.float32 if kind == "float*" else torch.int32
            if not isinstance(value, torch.Tensor) or value.dtype != want or not value.is_cuda:
                raise _lib.TesseraArgumentError(
                    f"tessera: argument '{name}': expected a CUDA {want} tensor, got {value!r:.60}")
            self._tensors[name] = value
            _lib.call("tessera_jit_variant_set_pointer", self.handle, encoded, value.data_ptr())
        return self

    def __del__(self):
        handle = getattr(self, "handle", None)
        if handle:
            try:
                _lib.library().tessera_jit_variant_destroy(handle)
            except Exception:  # interpreter shutdown
                pass
