"""Registration of Tessera's torch ops (torch.ops.tessera.*).

A drop-in for torch.library.custom_op that registers through a
torch.library.Library instead: custom_op's Python mutation handling cost
~85 us per call of an op with mutates_args (measured on torch 2.15, a no-op
body), more than a decode kernel at small batch; a schema with the mutations
annotated (Tensor(a!)) gives the dispatcher the same information at ~1.5 us.
The schema is inferred from the function's annotations as custom_op does, so
torch.compile sees the same op. The kernel is registered for CPU and CUDA
tensors alike: libtessera itself rejects a non-CUDA tensor, naming it.
"""

from __future__ import annotations

import torch

_LIBRARY = torch.library.Library("tessera", "DEF")


class _Op:
    def __init__(self, name: str, fn):
        self.name = name
        self._fn = fn

    def register_fake(self, fake):
        torch.library.register_fake(f"tessera::{self.name}", fake, lib=_LIBRARY)
        return fake

    def __call__(self, *args, **kwargs):
        return getattr(torch.ops.tessera, self.name)(*args, **kwargs)


def custom_op(qualname: str, mutates_args=(), device_types=None):
    """@custom_op("tessera::name", mutates_args=(...)) over a function with
    torch.library.custom_op's annotations; device_types is accepted for
    compatibility (both CPU and CUDA are registered)."""
    del device_types
    namespace, name = qualname.split("::")
    if namespace != "tessera":
        raise ValueError(f"tessera: op {qualname!r} outside the tessera namespace")

    def register(fn):
        schema = torch.library.infer_schema(fn, mutates_args=mutates_args)
        _LIBRARY.define(name + schema)
        for key in ("CPU", "CUDA"):
            _LIBRARY.impl(name, fn, key)
        return _Op(name, fn)

    return register
