"""Gated activations (FlashInfer's ``flashinfer.activation`` API) over libtessera.

``input[..., 2 * d]`` holds the halves ``(x, y)``; the result ``[..., d]`` is
``act(x) * y``, computed in float32. Each public function allocates ``out``
when not given and calls one ``tessera::`` torch custom op that writes it;
the op's fake and real kernel run the same checks (_check_gated).

``enable_pdl`` is accepted for FlashInfer compatibility and ignored.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _checks, _lib
from ._tensor import current_stream, dl
from ._ops import custom_op


def _check_gated(input, out) -> None:
    """input [..., 2 d] fp16/bf16 and out [..., d] of its dtype."""
    _checks.tensor(input, "input", ndim=(1, 8), dtypes=_checks.HALF)
    if input.shape[-1] % 2 != 0:
        _checks.fail("input", "an even last dim (the x and gate halves)",
                     _checks.describe(input))
    _checks.tensor(out, "out", ndim=input.dim())
    _checks.same_dtype(out, "out", input, "input")
    expected = (*input.shape[:-1], input.shape[-1] // 2)
    if tuple(out.shape) != expected:
        _checks.fail("out", f"shape {expected} (input's, last dim halved)",
                     _checks.describe(out))


@custom_op("tessera::silu_and_mul", mutates_args=("out",), device_types="cuda")
def _silu_and_mul(input: torch.Tensor, out: torch.Tensor) -> None:
    _check_gated(input, out)
    _lib.call("tessera_silu_and_mul", dl(input), dl(out), current_stream(input.device))


@custom_op("tessera::gelu_and_mul", mutates_args=("out",), device_types="cuda")
def _gelu_and_mul(input: torch.Tensor, out: torch.Tensor) -> None:
    _check_gated(input, out)
    _lib.call("tessera_gelu_and_mul", dl(input), dl(out), current_stream(input.device))


@custom_op("tessera::gelu_tanh_and_mul", mutates_args=("out",),
                         device_types="cuda")
def _gelu_tanh_and_mul(input: torch.Tensor, out: torch.Tensor) -> None:
    _check_gated(input, out)
    _lib.call("tessera_gelu_tanh_and_mul", dl(input), dl(out), current_stream(input.device))


# The ops only write `out`: the fakes check the arguments and compute nothing.
_silu_and_mul.register_fake(_check_gated)
_gelu_and_mul.register_fake(_check_gated)
_gelu_tanh_and_mul.register_fake(_check_gated)


def _out_for(input: torch.Tensor, out: Optional[torch.Tensor]) -> torch.Tensor:
    _checks.tensor(input, "input", ndim=(1, 8))
    if out is not None:
        return _checks.tensor(out, "out")
    return input.new_empty((*input.shape[:-1], input.shape[-1] // 2))


def silu_and_mul(input: torch.Tensor, out: Optional[torch.Tensor] = None,
                 enable_pdl: Optional[bool] = None) -> torch.Tensor:
    r"""``out = silu(x) * y`` with ``x, y = input.chunk(2, -1)``; ``silu(x) = x * sigmoid(x)``.

    Parameters
    ----------
    input : torch.Tensor
        ``[..., 2 * d]``, fp16 or bf16, CUDA; last dim contiguous, leading dims
        evenly strided.
    out : Optional[torch.Tensor]
        ``[..., d]``, same dtype; allocated when None.
    enable_pdl : Optional[bool]
        Accepted for FlashInfer compatibility; ignored.

    Returns
    -------
    torch.Tensor
        ``out``, ``[..., d]``.
    """
    out = _out_for(input, out)
    torch.ops.tessera.silu_and_mul(input, out)
    return out


def gelu_and_mul(input: torch.Tensor, out: Optional[torch.Tensor] = None,
                 enable_pdl: Optional[bool] = None) -> torch.Tensor:
    r"""``out = gelu(x) * y`` with the exact (erf) GELU. Arguments as :func:`silu_and_mul`."""
    out = _out_for(input, out)
    torch.ops.tessera.gelu_and_mul(input, out)
    return out


def gelu_tanh_and_mul(input: torch.Tensor, out: Optional[torch.Tensor] = None,
                      enable_pdl: Optional[bool] = None) -> torch.Tensor:
    r"""``out = gelu_tanh(x) * y`` with the tanh-approximated GELU. Arguments as
    :func:`silu_and_mul`."""
    out = _out_for(input, out)
    torch.ops.tessera.gelu_tanh_and_mul(input, out)
    return out
