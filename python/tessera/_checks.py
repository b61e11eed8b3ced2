"""Argument checks shared by the public functions and the ops' real and fake
kernels.

Why Python checks at all, when libtessera checks every argument: a fake
kernel (torch.compile, torch.export, FakeTensorMode) never reaches the
library, so without them a wrongly shaped call traces cleanly and fails only
when it runs on a GPU; and a None or a list where a tensor belongs breaks in
Python (AttributeError, "not enough values to unpack") before the library
could name it. Each op's check function runs in its fake kernel and in its
real kernel before the library call, so tracing and eager runs reject the
same calls. The library stays the authority: it checks what these do not
(devices, strides, alignment, limits that depend on the plan or the kernel
build), so these are the structural subset (types, ranks, dtypes, sizes
that must agree between arguments), and the messages have the library's
form: "tessera: argument 'NAME': expected ..., got ...".
"""

from __future__ import annotations

import math
import operator

import torch

from ._lib import TesseraArgumentError

HALF = (torch.float16, torch.bfloat16)
FP8 = tuple(d for d in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None))
            if d is not None)
# K/V storage: 16-bit like q, or fp8 (which fp8 a kernel takes is the library's call).
KV = HALF + FP8
INT32 = (torch.int32,)
POSITIONS = (torch.int32, torch.int64)


def fail(name: str, expected: str, got: str):
    raise TesseraArgumentError(f"tessera: argument '{name}': expected {expected}, got {got}")


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def describe(x) -> str:
    """What a value is, for a message: a tensor's shape and dtype, else its type."""
    if isinstance(x, torch.Tensor):
        return f"a {x.dim()}-D {_dtype_name(x.dtype)} tensor of shape {tuple(x.shape)}"
    return "None" if x is None else type(x).__name__


def tensor(x, name: str, ndim=None, dtypes=None) -> torch.Tensor:
    """x itself if it is a tensor of `ndim` dimensions (an int, or a (low,
    high) range) and one of `dtypes`; else TesseraArgumentError naming it."""
    # These run on every eager call (decode run() among them): the common
    # case is one comparison per property, the message only on failure.
    if not isinstance(x, torch.Tensor):
        fail(name, "a torch.Tensor", describe(x))
    if ndim is not None:
        if isinstance(ndim, int):
            if x.dim() != ndim:
                fail(name, f"{ndim} dimensions", describe(x))
        elif not ndim[0] <= x.dim() <= ndim[1]:
            fail(name, f"{ndim[0]} to {ndim[1]} dimensions", describe(x))
    if dtypes is not None and x.dtype not in dtypes:
        fail(name, "dtype " + " or ".join(_dtype_name(d) for d in dtypes), describe(x))
    return x


def tensors(**named) -> None:
    """Each is a tensor. Public functions call this before dispatching an op:
    torch's dispatcher rejects a None for a Tensor argument without naming
    it, and the op's own check runs after the dispatcher."""
    for name, x in named.items():
        if not isinstance(x, torch.Tensor):
            fail(name, "a torch.Tensor", describe(x))


def optional_tensor(x, name: str, ndim=None, dtypes=None):
    return None if x is None else tensor(x, name, ndim, dtypes)


def integer(x, name: str, minimum=None) -> int:
    """x as an int (Python, numpy or torch integer scalars; not bool, not a
    float), at least `minimum`."""
    if isinstance(x, bool) or x is None:
        fail(name, "an integer", describe(x))
    if isinstance(x, torch.Tensor):
        if x.numel() != 1 or x.dtype.is_floating_point or x.dtype == torch.bool:
            fail(name, "an integer", describe(x))
        x = int(x)
    try:
        value = operator.index(x)
    except TypeError:
        fail(name, "an integer", f"{x!r} ({type(x).__name__})")
    if minimum is not None and value < minimum:
        fail(name, f"an integer >= {minimum}", str(value))
    return value


def real(x, name: str, positive: bool = False) -> float:
    """x as a finite float (> 0 with positive=True)."""
    if isinstance(x, (bool, str, bytes)) or x is None:
        fail(name, "a number", describe(x))
    try:
        value = float(x)
    except (TypeError, ValueError):
        fail(name, "a number", f"{x!r} ({type(x).__name__})")
    if not math.isfinite(value) or (positive and value <= 0):
        fail(name, "a finite number > 0" if positive else "a finite number", str(value))
    return value


def optional_real(x, name: str, default: float = 0.0) -> float:
    """A float option (sm_scale, logits_soft_cap, rope_theta...): `default`
    for None, else a finite number (0 means the library's default)."""
    return default if x is None else real(x, name)


def size(x: torch.Tensor, dim: int, expected, name: str, what: str) -> None:
    """x.shape[dim] == expected (what: where expected comes from)."""
    if x.shape[dim] != expected:
        fail(name, f"size {expected} in dim {dim % x.dim()} ({what})", describe(x))


def same_dtype(x: torch.Tensor, name: str, like: torch.Tensor, like_name: str) -> None:
    if x.dtype != like.dtype:
        fail(name, f"dtype {_dtype_name(like.dtype)} (as {like_name})", describe(x))


def same_shape(x: torch.Tensor, name: str, like: torch.Tensor, like_name: str) -> None:
    if x.shape != like.shape:
        fail(name, f"shape {tuple(like.shape)} (as {like_name})", describe(x))


def like(x, name: str, like_tensor: torch.Tensor, like_name: str) -> torch.Tensor:
    """A tensor of like_tensor's shape and dtype (an output, or a second input)."""
    if (not isinstance(x, torch.Tensor) or x.dtype != like_tensor.dtype
            or x.shape != like_tensor.shape):
        tensor(x, name)
        same_dtype(x, name, like_tensor, like_name)
        same_shape(x, name, like_tensor, like_name)
    return x


def lse(x, name: str, shape: tuple) -> None:
    """An optional float32 lse output of `shape`."""
    if x is None or (isinstance(x, torch.Tensor) and x.dtype == torch.float32
                     and x.shape == shape):
        return
    tensor(x, name, ndim=len(shape), dtypes=(torch.float32,))
    if tuple(x.shape) != tuple(shape):
        fail(name, f"shape {tuple(shape)}", describe(x))


def heads_divide(num_qo_heads, num_kv_heads, kv_name: str) -> None:
    """GQA: every KV head serves the same number of query heads."""
    if num_kv_heads < 1 or num_qo_heads % num_kv_heads != 0:
        fail(kv_name, f"a number of KV heads dividing num_qo_heads {num_qo_heads}",
             f"{num_kv_heads}")


def kv_dtype(x: torch.Tensor, name: str, q: torch.Tensor) -> None:
    """K/V storage: q's dtype, or fp8."""
    if x.dtype != q.dtype and x.dtype not in FP8:
        fail(name, f"dtype {_dtype_name(q.dtype)} (as q) or an fp8 dtype", describe(x))


def index_arrays(**arrays) -> None:
    """1-D int32 index tensors (page tables, indptr arrays)."""
    for name, x in arrays.items():
        if not isinstance(x, torch.Tensor) or x.dtype != torch.int32 or x.dim() != 1:
            tensor(x, name, ndim=1, dtypes=INT32)


def alibi_slopes(x, num_qo_heads) -> None:
    if x is None:
        return
    tensor(x, "alibi_slopes", ndim=1, dtypes=(torch.float32,))
    size(x, 0, num_qo_heads, "alibi_slopes", "num_qo_heads")


def paged_cache(k_cache, v_cache, kv_layout: int, q: torch.Tensor, name: str = "paged_kv_cache"):
    """A paged cache as the run ops take it (one [pages, 2, ...] tensor, or k
    and v [pages, ...]) against q [rows, num_qo_heads, head_dim]: returns
    (num_kv_heads, page_size)."""
    if v_cache is None:
        tensor(k_cache, name, ndim=5, dtypes=KV)
        shape = k_cache.shape
        if shape[1] != 2:
            size(k_cache, 1, 2, name, "K and V of each page")
        block = shape[2:]
    else:
        tensor(k_cache, name + "[0]", ndim=4, dtypes=KV)
        like(v_cache, name + "[1]", k_cache, name + "[0]")
        block = k_cache.shape[1:]
    if k_cache.dtype != q.dtype:
        kv_dtype(k_cache, name, q)
    # NHD: [page_size, heads, dim]; HND: [heads, page_size, dim].
    page_size, num_kv_heads = (block[0], block[1]) if kv_layout == 0 else (block[1], block[0])
    if block[2] != q.shape[-1]:
        fail(name, f"head_dim {q.shape[-1]} (as q) in its last dim", describe(k_cache))
    heads_divide(q.shape[-2], num_kv_heads, name)
    return num_kv_heads, page_size
