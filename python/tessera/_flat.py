"""The eager fast path of the wrappers' run(): one ctypes call per run() into
a *_run_flat entry point (c_api.h), with no torch op dispatch and no
DLTensor structs built per call.

Why: run() is called once per layer and step, and its host time adds up
(issue 24: <= 10 us a call). Through the torch op, a decode run() cost ~30 us
of Python on the 2-core build machine before libtessera was reached: the
op's dispatch, the Python checks, and six DLTensors packed per call
(benchmarks/results/logs/cpu_host_overhead_decode_run_5bbb2f3.txt).

How: each plan() makes a FlatRun that holds one int64 array in the layout
the *_run_flat functions read (data pointers, then one descriptor per tensor:
[ndim, dtype, device, shape, strides]), with the plan's own tensors (index
arrays) written once and the AttentionOptions struct built once. A run()
writes its tensors' descriptors into the array only when they differ from
the last call's (the signature: ranks, dtypes, devices, shapes, strides),
and it runs the op's Python checks exactly then, so a bad argument is still
named by the same message before libtessera sees it (libtessera checks
everything, every call, as through the DLTensor entry points). The same
signature as a checked call passes those checks by construction: they read
nothing else of the tensors. Per call: the signature, the data pointers,
the stream, one ctypes call.

When: only in plain eager mode (eager()): not while torch.compile / export
traces (the op, with its fake kernel, is what a graph records), not under a
torch dispatch or function mode (FakeTensorMode, make_fx, a user's mode see
the op), and only for plain torch.Tensor arguments (no subclasses: fake and
functional tensors take the op). CUDA-graph capture is plain eager: the
library sees the capturing stream and does what it does through the op.
A FlatRun belongs to one wrapper and is not thread-safe (neither is the
wrapper's plan state).
"""

from __future__ import annotations

import ctypes
import struct

import torch

from . import _lib
from ._tensor import _dtype_codes

_Tensor = torch.Tensor
_ABSENT = (-1,)
_dtype_words = None  # torch dtype -> DLDataType code | bits << 8 | lanes << 16


def _words():
    global _dtype_words
    if _dtype_words is None:
        _dtype_words = {dtype: code | bits << 8 | 1 << 16
                        for dtype, (code, bits) in _dtype_codes().items()}
    return _dtype_words


def _device_word(t) -> int:
    device = t.get_device()  # the CUDA index, -1 off CUDA
    if device >= 0:
        return device
    return -2 if t.is_pinned() else -1


def descriptor(t) -> tuple:
    """A tensor's descriptor words (c_api.h), or (-1,) for None. An unknown
    dtype gets word 0 (the checks or the library name it)."""
    if t is None:
        return _ABSENT
    return (t.dim(), _words().get(t.dtype, 0), _device_word(t), *t.shape, *t.stride())


# ---- when the fast path may run

_is_compiling = torch.compiler.is_compiling
_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled


def eager() -> bool:
    """Plain eager mode: no trace, no dispatch or function mode. torch.compile
    reads is_compiling() as True while it traces, so the rest never runs
    there."""
    return not (_is_compiling() or _dispatch_modes() or _function_modes())


def plain(*tensors) -> bool:
    """Each is None or exactly a torch.Tensor (not a subclass)."""
    for t in tensors:
        if t is not None and type(t) is not _Tensor:
            return False
    return True


# ---- streams

try:
    _raw_stream = torch._C._cuda_getCurrentRawStream  # what inductor's generated code calls
except AttributeError:  # a CPU-only torch build
    _raw_stream = None


def stream_of(device: int):
    """torch's current cudaStream_t on CUDA device `device` (None off CUDA)."""
    if device < 0:
        return None
    if _raw_stream is not None:
        return _raw_stream(device)
    return torch.cuda.current_stream(device).cuda_stream


# ---- one plan's run() calls


_functions = {}  # (library, name) -> the fast function object


def _flat_function(name: str, takes_layout: bool):
    """The C function `name` with pointer-sized integer arguments (no ctypes
    object conversions per call), errors raised as _lib.call's are."""
    library = _lib.library()
    cached = _functions.get((id(library), name))
    if cached is not None and cached[0] is library:
        return cached[1]
    function = getattr(library, name, None)
    if function is None:
        raise _lib.TesseraError(f"tessera: this libtessera has no {name} (rebuild it)")
    # A second function object over the same symbol: the prototype in
    # _lib._PROTOTYPES stays as it is for other callers.
    fast = type(function)(ctypes.cast(function, ctypes.c_void_p).value)
    fast.restype = ctypes.c_int
    fast.argtypes = ([ctypes.c_void_p, ctypes.c_void_p]
                     + ([ctypes.c_int] if takes_layout else [])
                     + [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int])
    fast.errcheck = _lib._errcheck
    _functions[(id(library), name)] = (library, fast)
    return fast


class FlatRun:
    """A plan's run() calls through C function `name` (a *_run_flat).

    fixed: the plan's tensors, first in the function's tensor order (index
    arrays; they stay the same until the next plan). variable: how many
    tensors each call passes after them (q first). check(*variable): the
    op's Python checks of a call's tensors (raises naming an argument).
    layout: the kv layout int for the paged entry points, None for ragged.
    options(key): the AttentionOptions struct of a call's scales (kept alive
    here; key is the scales as given, usually all None).
    """

    _GROW_WORDS = 256

    def __init__(self, name: str, handle: int, fixed: tuple, variable: int, check, layout=None):
        _words()  # the dtype table __call__ reads
        self._count = len(fixed) + variable
        self._pointer_offset = 8 * len(fixed)
        self._pointers = struct.Struct(f"<{variable}q")
        self._fixed_words = tuple(w for t in fixed for w in descriptor(t))
        self._fixed_pointers = tuple(t.data_ptr() for t in fixed)
        self._check = check
        self._function = _flat_function(name, layout is not None)
        self._handle = handle
        self._layout = () if layout is None else (layout,)
        self._signature = None
        self._buffer = None
        self._args = None
        self.options = {}  # scales key -> (AttentionOptions, its address)

    def _adopt(self, signature: list, tensors: tuple) -> None:
        """A call whose tensors differ from the last one's: the Python checks,
        then their descriptors into the array."""
        self._check(*tensors)
        words = self._fixed_words + tuple(w for t in tensors for w in descriptor(t))
        needed = self._count + len(words)
        if self._buffer is None or len(self._buffer) < needed:
            self._buffer = (ctypes.c_int64 * (needed + self._GROW_WORDS))()
            self._buffer[:len(self._fixed_pointers)] = self._fixed_pointers
            self._args = (self._handle, ctypes.addressof(self._buffer)) + self._layout
        self._buffer[self._count:needed] = words
        # Host memory, plain or pinned, reads get_device() -1 but has two
        # descriptors: such a call is never taken as known (the library
        # rejects it anyway, naming the tensor).
        host = any(entry is not None and entry[3] < 0 for entry in signature)
        self._signature = None if host and not self.cache_host_signatures else signature

    # Stub measurements (benchmarks/host_time.py --stub) set this so CPU
    # tensors take the path CUDA tensors do.
    cache_host_signatures = False

    def __call__(self, tensors: tuple, options: int) -> None:
        """Runs the plan for `tensors` (the variable ones, q first; None for an
        absent optional one) with the AttentionOptions at address `options`."""
        signature = [None if t is None else (t.shape, t.stride(), t.dtype, t.get_device())
                     for t in tensors]
        if signature != self._signature:
            self._adopt(signature, tensors)
        self._pointers.pack_into(self._buffer, self._pointer_offset,
                                 *[0 if t is None else t.data_ptr() for t in tensors])
        self._function(*self._args, options, stream_of(signature[0][3]), 0)


def options_entry(struct_) -> tuple:
    """(struct, address) for FlatRun.options: the address is what the call
    passes; the struct keeps the memory (and its DLTensors) alive."""
    return struct_, ctypes.addressof(struct_)
