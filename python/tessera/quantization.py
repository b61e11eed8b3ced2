"""Bit packing (FlashInfer's ``flashinfer.quantization``: ``packbits``,
``segment_packbits``), in torch operations: CPU and CUDA tensors alike, no
libtessera call.

The prefill custom masks are these functions' output with
``bitorder="little"`` (element 8n + k is bit k of byte n), one segment per
request (prefill.py). The default bit order is FlashInfer's and numpy's,
``"big"`` (element 8n + k is bit 7 - k of byte n).

``packbits`` has a static output shape, so torch.compile traces it;
``segment_packbits`` reads its output size from ``indptr`` (a sync on CUDA),
which FlashInfer also documents as unsupported under torch.compile.
"""

from __future__ import annotations

from typing import Tuple

import torch

from ._lib import TesseraArgumentError

_BITORDERS = ("big", "little")
_CHUNK_BYTES = 1 << 20  # segment_packbits: output bytes per step (bounds its temporaries)


def _check_bitorder(bitorder: str) -> None:
    if bitorder not in _BITORDERS:
        raise ValueError(f"tessera: argument 'bitorder': expected 'big' or 'little', "
                         f"got {bitorder!r}")


def _pack_rows(bits: torch.Tensor, bitorder: str) -> torch.Tensor:
    """uint8 [n, 8] of 0/1 -> uint8 [n], column k at bit k ("little") or 7 - k.
    Shifts of the columns, no factory call: fake tensors and torch.compile
    trace it without a device."""
    y = None
    for k in range(8):
        column = bits[:, k] << (k if bitorder == "little" else 7 - k)
        y = column if y is None else y | column
    return y


def _as_bits(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TesseraArgumentError(f"tessera: argument '{name}': expected a torch.Tensor, "
                                   f"got {type(x).__name__}")
    if x.dim() != 1:
        raise TesseraArgumentError(f"tessera: argument '{name}': expected a 1-D tensor, got "
                                   f"{x.dim()} dimensions (flatten it: x.view(-1))")
    return x if x.dtype == torch.bool else x != 0


def packbits(x: torch.Tensor, bitorder: str = "big") -> torch.Tensor:
    """Packs a 1-D binary-valued tensor into uint8 (numpy.packbits' semantics).

    x: 1-D, bool or any dtype (nonzero is 1). Returns uint8 [(x.numel() + 7)
    // 8] on x's device; the last byte's unused bits are 0. bitorder "little":
    element 8n + k is bit k of byte n (the order of FlashInfer's and Tessera's
    packed custom masks); "big" (the default, as FlashInfer's and numpy's):
    bit 7 - k.
    """
    _check_bitorder(bitorder)
    bits = _as_bits(x, "x")
    n = bits.shape[0]
    padded = (n + 7) // 8 * 8
    b = bits.to(torch.uint8)
    if padded != n:
        b = torch.nn.functional.pad(b, (0, padded - n))
    return _pack_rows(b.view(-1, 8), bitorder)


def segment_packbits(x: torch.Tensor, indptr: torch.Tensor,
                     bitorder: str = "big") -> Tuple[torch.Tensor, torch.Tensor]:
    """Packs each segment x[indptr[i] : indptr[i + 1]] separately (byte
    aligned), as packbits.

    Returns (y, new_indptr): y uint8 [new_indptr[-1]] on x's device, segment i
    in y[new_indptr[i] : new_indptr[i + 1]], and new_indptr int32 [len(indptr)]
    on indptr's device, new_indptr[i + 1] - new_indptr[i] = (indptr[i + 1] -
    indptr[i] + 7) // 8 (new_indptr[0] = 0). Empty segments take no byte.
    """
    _check_bitorder(bitorder)
    bits = _as_bits(x, "x")
    if not isinstance(indptr, torch.Tensor):
        indptr = torch.tensor(list(indptr), dtype=torch.int64)
    if indptr.dim() != 1 or indptr.numel() < 1:
        raise TesseraArgumentError(
            "tessera: argument 'indptr': expected a 1-D tensor of batch_size + 1 >= 1 offsets, "
            f"got shape {tuple(indptr.shape)}")
    starts = indptr.to(device="cpu", dtype=torch.int64)  # the sizes below are host values
    seglen = starts[1:] - starts[:-1]
    if bool((seglen < 0).any()) or int(starts[0]) < 0:
        raise TesseraArgumentError(
            f"tessera: argument 'indptr': expected non-decreasing offsets >= 0, got "
            f"{starts.tolist()}")
    if int(starts[-1]) > bits.shape[0]:
        raise TesseraArgumentError(
            f"tessera: argument 'x': expected at least indptr[-1] = {int(starts[-1])} elements, "
            f"got {bits.shape[0]}")
    new_starts = torch.zeros_like(starts)
    new_starts[1:] = torch.cumsum((seglen + 7) // 8, 0)
    new_indptr = new_starts.to(device=indptr.device, dtype=torch.int32)
    total = int(new_starts[-1])
    device = bits.device
    y = torch.empty(total, dtype=torch.uint8, device=device)
    if total == 0:
        return y, new_indptr
    # Output byte k of segment s (k in [new_starts[s], new_starts[s + 1]))
    # holds elements src = starts[s] + 8 (k - new_starts[s]) + 0..7, those
    # below starts[s + 1].
    seg_begin, seg_end, new_begin = (t.to(device) for t in (starts[:-1], starts[1:],
                                                            new_starts[:-1]))
    bounds = new_starts[1:].to(device)
    lanes = torch.arange(8, device=device, dtype=torch.int64)
    for k0 in range(0, total, _CHUNK_BYTES):
        k = torch.arange(k0, min(k0 + _CHUNK_BYTES, total), device=device, dtype=torch.int64)
        s = torch.searchsorted(bounds, k, right=True)  # the segment of each byte
        src = (seg_begin[s] + 8 * (k - new_begin[s]))[:, None] + lanes  # [bytes, 8]
        valid = src < seg_end[s][:, None]
        taken = bits[src.clamp_(max=bits.shape[0] - 1)] & valid
        y[k0:k0 + k.numel()] = _pack_rows(taken.to(torch.uint8), bitorder)
    return y, new_indptr


__all__ = ["packbits", "segment_packbits"]
