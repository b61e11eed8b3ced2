"""RMSNorm family (FlashInfer's ``flashinfer.norm`` API) over libtessera.

Each public function allocates its outputs and calls one ``tessera::`` torch
custom op that writes them (out-parameter style), so torch.compile traces the
call as a single opaque op with a shape-only fake. Argument checks (dtype,
device, shapes, strides, eps) happen once, in the library.

``enable_pdl`` is accepted for FlashInfer compatibility and ignored: the
library decides launch attributes itself.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _checks, _lib
from ._tensor import current_stream, dl
from ._ops import custom_op


def _check_norm(input, weight, eps, out=None, residual=None) -> None:
    """What the library checks first, for the fakes and eager calls alike."""
    _checks.tensor(input, "input", ndim=2, dtypes=_checks.HALF)
    _checks.tensor(weight, "weight", ndim=1)
    _checks.same_dtype(weight, "weight", input, "input")
    _checks.size(weight, 0, input.shape[-1], "weight", "the hidden size of input")
    if out is not None:
        _checks.like(out, "out", input, "input")
    if residual is not None:
        _checks.like(residual, "residual", input, "input")
    _checks.real(eps, "eps", positive=True)


def _check_rmsnorm(input, weight, out, eps) -> None:
    _check_norm(input, weight, eps, out=out)


def _check_fused_add_rmsnorm(input, residual, weight, eps) -> None:
    _check_norm(input, weight, eps, residual=residual)


@custom_op("tessera::rmsnorm", mutates_args=("out",), device_types="cuda")
def _rmsnorm(input: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, eps: float) -> None:
    _check_rmsnorm(input, weight, out, eps)
    _lib.call("tessera_rmsnorm", dl(input), dl(weight), dl(out), eps,
              current_stream(input.device))


@custom_op("tessera::fused_add_rmsnorm", mutates_args=("input", "residual"),
                         device_types="cuda")
def _fused_add_rmsnorm(input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float) -> None:
    _check_fused_add_rmsnorm(input, residual, weight, eps)
    _lib.call("tessera_fused_add_rmsnorm", dl(input), dl(residual), dl(weight), eps,
              current_stream(input.device))


@custom_op("tessera::gemma_rmsnorm", mutates_args=("out",), device_types="cuda")
def _gemma_rmsnorm(input: torch.Tensor, weight: torch.Tensor, out: torch.Tensor,
                   eps: float) -> None:
    _check_rmsnorm(input, weight, out, eps)
    _lib.call("tessera_gemma_rmsnorm", dl(input), dl(weight), dl(out), eps,
              current_stream(input.device))


@custom_op("tessera::gemma_fused_add_rmsnorm", mutates_args=("input", "residual"),
                         device_types="cuda")
def _gemma_fused_add_rmsnorm(input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                             eps: float) -> None:
    _check_fused_add_rmsnorm(input, residual, weight, eps)
    _lib.call("tessera_gemma_fused_add_rmsnorm", dl(input), dl(residual), dl(weight), eps,
              current_stream(input.device))


# The ops only write tensors the caller allocated: their fakes check the
# arguments and compute nothing.
_rmsnorm.register_fake(_check_rmsnorm)
_fused_add_rmsnorm.register_fake(_check_fused_add_rmsnorm)
_gemma_rmsnorm.register_fake(_check_rmsnorm)
_gemma_fused_add_rmsnorm.register_fake(_check_fused_add_rmsnorm)


def rmsnorm(input: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
            out: Optional[torch.Tensor] = None,
            enable_pdl: Optional[bool] = None) -> torch.Tensor:
    r"""Root mean square normalization: ``out = input / sqrt(mean(input^2) + eps) * weight``.

    Parameters
    ----------
    input : torch.Tensor
        ``[batch_size, hidden_size]``, fp16 or bf16, CUDA; rows may be strided, the last
        dim must be contiguous.
    weight : torch.Tensor
        ``[hidden_size]``, same dtype.
    eps : float
        Added to the mean square; must be > 0.
    out : Optional[torch.Tensor]
        ``[batch_size, hidden_size]`` output, same dtype; allocated when None.
    enable_pdl : Optional[bool]
        Accepted for FlashInfer compatibility; ignored.

    Returns
    -------
    torch.Tensor
        ``out``.
    """
    if out is None:
        out = torch.empty_like(_checks.tensor(input, "input"))
    _checks.tensors(weight=weight, out=out)
    torch.ops.tessera.rmsnorm(input, weight, out, eps)
    return out


def fused_add_rmsnorm(input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                      eps: float = 1e-6, enable_pdl: Optional[bool] = None) -> None:
    r"""In place: ``residual += input``, then ``input = rmsnorm(residual) * weight``.

    The sum is kept in float32 and normalised from float32 (not from its rounded
    16-bit copy in ``residual``).

    Parameters
    ----------
    input : torch.Tensor
        ``[batch_size, hidden_size]``, fp16 or bf16, CUDA; overwritten with the result.
    residual : torch.Tensor
        ``[batch_size, hidden_size]``, same dtype, memory disjoint from ``input``;
        overwritten with ``residual + input``.
    weight : torch.Tensor
        ``[hidden_size]``, same dtype.
    eps : float
        Added to the mean square; must be > 0.
    enable_pdl : Optional[bool]
        Accepted for FlashInfer compatibility; ignored.
    """
    _checks.tensors(input=input, residual=residual, weight=weight)
    torch.ops.tessera.fused_add_rmsnorm(input, residual, weight, eps)


def gemma_rmsnorm(input: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
                  out: Optional[torch.Tensor] = None,
                  enable_pdl: Optional[bool] = None) -> torch.Tensor:
    r"""Gemma-style RMSNorm: ``out = input / sqrt(mean(input^2) + eps) * (1 + weight)``.

    Shapes, dtypes and arguments as :func:`rmsnorm`.
    """
    if out is None:
        out = torch.empty_like(_checks.tensor(input, "input"))
    _checks.tensors(weight=weight, out=out)
    torch.ops.tessera.gemma_rmsnorm(input, weight, out, eps)
    return out


def gemma_fused_add_rmsnorm(input: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                            eps: float = 1e-6, enable_pdl: Optional[bool] = None) -> None:
    r"""In place: ``residual += input``, then ``input = rmsnorm(residual) * (1 + weight)``.

    Shapes, dtypes and arguments as :func:`fused_add_rmsnorm`.
    """
    _checks.tensors(input=input, residual=residual, weight=weight)
    torch.ops.tessera.gemma_fused_add_rmsnorm(input, residual, weight, eps)
