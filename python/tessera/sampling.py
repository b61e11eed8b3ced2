"""Sorting-free sampling (FlashInfer's ``flashinfer.sampling`` API) over libtessera.

Both of FlashInfer's signatures are served:

* 0.2: the caller passes ``uniform_samples`` (``[batch]`` or
  ``[num_rounds, batch]`` float32 uniforms) right after ``probs``; the
  filtered samplers return ``(samples, success)``.
* later: no uniforms; an optional ``torch.Generator`` draws them and only
  ``samples`` is returned (``indices`` maps outputs to rows of ``probs``).

A call is the 0.2 form when ``uniform_samples`` is given by keyword, or when
the first argument after ``probs`` is a floating tensor followed by the
filter parameters (see ``_is_legacy``).

Every row gets a sample from the exact filtered distribution: the kernel
runs ``num_rounds - 1`` rejection rounds and then finds the threshold
exactly, so ``success`` is False only for rows with no positive entry, or
with a NaN when ``check_nan`` (their sample is 0). ``deterministic`` is
accepted; every path is bitwise reproducible. Kept sets: top-k keeps the
entries with fewer than ``top_k`` entries strictly above them, top-p those
with less than ``top_p`` of the mass strictly above them (ties at a
threshold are kept together), min-p those ``>= min_p * max``.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from . import _checks, _lib
from ._ops import custom_op
from ._tensor import current_stream, dl, dl_or_none

# Uniform rows a Generator-form call draws for the rejection samplers
# (FlashInfer 0.2's tests used 32 rounds); the last one is the exact fallback's.
DEFAULT_ROUNDS = 32
_F32 = (torch.float32,)


def _check_probs(probs, name="probs") -> None:
    _checks.tensor(probs, name, ndim=2, dtypes=_F32)


def _check_uniforms(uniform_samples, probs) -> None:
    _checks.tensor(uniform_samples, "uniform_samples", ndim=(1, 2), dtypes=_F32)
    _checks.size(uniform_samples, -1, probs.shape[0], "uniform_samples",
                 "the batch size of probs")


def _check_param(arr, name, dtypes, probs) -> None:
    if arr is not None:
        _checks.tensor(arr, name, ndim=1, dtypes=dtypes)
        _checks.size(arr, 0, probs.shape[0], name, "the batch size of probs")


def _check_top_k(arr, value, probs) -> None:
    _check_param(arr, "top_k_arr", _checks.INT32, probs)
    if arr is None and value < 1:
        _checks.fail("top_k", "an integer >= 1", str(value))


def _check_top_p(arr, value, probs) -> None:
    _check_param(arr, "top_p_arr", _F32, probs)
    if arr is None and not 0.0 < value <= 1.0:
        _checks.fail("top_p", "a value in (0, 1]", str(value))


def _check_min_p(arr, value, probs) -> None:
    _check_param(arr, "min_p_arr", _F32, probs)
    if arr is None and not 0.0 <= value <= 1.0:
        _checks.fail("min_p", "a value in [0, 1]", str(value))


def _check_outputs(samples, success, probs) -> None:
    _checks.tensor(samples, "samples", ndim=1, dtypes=_checks.INT32)
    _checks.size(samples, 0, probs.shape[0], "samples", "the batch size of probs")
    _checks.tensor(success, "success", ndim=1, dtypes=(torch.bool,))
    _checks.size(success, 0, probs.shape[0], "success", "the batch size of probs")


def _check_sample(probs, uniform_samples, samples, success) -> None:
    _check_probs(probs)
    _check_uniforms(uniform_samples, probs)
    _check_outputs(samples, success, probs)


def _flags(deterministic, check_nan):
    return int(bool(deterministic)), int(bool(check_nan))


def _stream(probs):
    return current_stream(probs.device)


# ---- ops: each writes caller-allocated outputs; the fakes only check.


def _check_plain(probs, uniform_samples, samples, success, deterministic, check_nan):
    _check_sample(probs, uniform_samples, samples, success)


@custom_op("tessera::sampling_from_probs", mutates_args=("samples", "success"))
def _sampling_op(probs: torch.Tensor, uniform_samples: torch.Tensor, samples: torch.Tensor,
                 success: torch.Tensor, deterministic: bool, check_nan: bool) -> None:
    _check_plain(probs, uniform_samples, samples, success, deterministic, check_nan)
    _lib.call("tessera_sampling_from_probs", dl(probs), dl(uniform_samples), dl(samples),
              dl(success.view(torch.uint8)), *_flags(deterministic, check_nan), _stream(probs))


def _call_one_filter(symbol, probs, uniform_samples, param_arr, param, samples, success,
                     deterministic, check_nan):
    """The C call of a one-filter sampler: its per-request tensor or None, then the scalar."""
    _lib.call(symbol, dl(probs), dl(uniform_samples), dl_or_none(param_arr), param, dl(samples),
              dl(success.view(torch.uint8)), *_flags(deterministic, check_nan), _stream(probs))


def _check_top_p_op(probs, uniform_samples, top_p_arr, top_p, samples, success, deterministic,
                    check_nan):
    _check_sample(probs, uniform_samples, samples, success)
    _check_top_p(top_p_arr, top_p, probs)


@custom_op("tessera::top_p_sampling_from_probs", mutates_args=("samples", "success"))
def _top_p_op(probs: torch.Tensor, uniform_samples: torch.Tensor,
              top_p_arr: Optional[torch.Tensor], top_p: float, samples: torch.Tensor,
              success: torch.Tensor, deterministic: bool, check_nan: bool) -> None:
    _check_top_p_op(probs, uniform_samples, top_p_arr, top_p, samples, success, deterministic,
                    check_nan)
    _call_one_filter("tessera_top_p_sampling_from_probs", probs, uniform_samples, top_p_arr,
                     top_p, samples, success, deterministic, check_nan)


def _check_top_k_op(probs, uniform_samples, top_k_arr, top_k, samples, success, deterministic,
                    check_nan):
    _check_sample(probs, uniform_samples, samples, success)
    _check_top_k(top_k_arr, top_k, probs)


@custom_op("tessera::top_k_sampling_from_probs", mutates_args=("samples", "success"))
def _top_k_op(probs: torch.Tensor, uniform_samples: torch.Tensor,
              top_k_arr: Optional[torch.Tensor], top_k: int, samples: torch.Tensor,
              success: torch.Tensor, deterministic: bool, check_nan: bool) -> None:
    _check_top_k_op(probs, uniform_samples, top_k_arr, top_k, samples, success, deterministic,
                    check_nan)
    _call_one_filter("tessera_top_k_sampling_from_probs", probs, uniform_samples, top_k_arr,
                     top_k, samples, success, deterministic, check_nan)


def _check_min_p_op(probs, uniform_samples, min_p_arr, min_p, samples, success, deterministic,
                    check_nan):
    _check_sample(probs, uniform_samples, samples, success)
    _check_min_p(min_p_arr, min_p, probs)


@custom_op("tessera::min_p_sampling_from_probs", mutates_args=("samples", "success"))
def _min_p_op(probs: torch.Tensor, uniform_samples: torch.Tensor,
              min_p_arr: Optional[torch.Tensor], min_p: float, samples: torch.Tensor,
              success: torch.Tensor, deterministic: bool, check_nan: bool) -> None:
    _check_min_p_op(probs, uniform_samples, min_p_arr, min_p, samples, success, deterministic,
                    check_nan)
    _call_one_filter("tessera_min_p_sampling_from_probs", probs, uniform_samples, min_p_arr,
                     min_p, samples, success, deterministic, check_nan)


def _check_joint_op(probs, uniform_samples, top_k_arr, top_k, top_p_arr, top_p, samples,
                    success, deterministic, check_nan):
    _check_sample(probs, uniform_samples, samples, success)
    _check_top_k(top_k_arr, top_k, probs)
    _check_top_p(top_p_arr, top_p, probs)


@custom_op("tessera::top_k_top_p_sampling_from_probs", mutates_args=("samples", "success"))
def _joint_op(probs: torch.Tensor, uniform_samples: torch.Tensor,
              top_k_arr: Optional[torch.Tensor], top_k: int, top_p_arr: Optional[torch.Tensor],
              top_p: float, samples: torch.Tensor, success: torch.Tensor, deterministic: bool,
              check_nan: bool) -> None:
    _check_joint_op(probs, uniform_samples, top_k_arr, top_k, top_p_arr, top_p, samples, success,
                    deterministic, check_nan)
    _lib.call("tessera_top_k_top_p_sampling_from_probs", dl(probs), dl(uniform_samples),
              dl_or_none(top_k_arr), top_k, dl_or_none(top_p_arr), top_p, dl(samples),
              dl(success.view(torch.uint8)), *_flags(deterministic, check_nan), _stream(probs))


def _check_renorm(input, input_name, arr, value, out, top_p):
    _check_probs(input, input_name)
    _checks.like(out, "out", input, input_name)
    if top_p:
        _check_top_p(arr, value, input)
    else:
        _check_top_k(arr, int(value), input)


def _check_top_p_renorm(probs, top_p_arr, top_p, out):
    _check_renorm(probs, "probs", top_p_arr, top_p, out, True)


def _check_top_k_renorm(probs, top_k_arr, top_k, out):
    _check_renorm(probs, "probs", top_k_arr, top_k, out, False)


def _check_top_k_mask(logits, top_k_arr, top_k, out):
    _check_renorm(logits, "logits", top_k_arr, top_k, out, False)


@custom_op("tessera::top_p_renorm_probs", mutates_args=("out",))
def _top_p_renorm_op(probs: torch.Tensor, top_p_arr: Optional[torch.Tensor], top_p: float,
                     out: torch.Tensor) -> None:
    _check_top_p_renorm(probs, top_p_arr, top_p, out)
    _lib.call("tessera_top_p_renorm_probs", dl(probs), dl_or_none(top_p_arr), top_p, dl(out),
              _stream(probs))


@custom_op("tessera::top_k_renorm_probs", mutates_args=("out",))
def _top_k_renorm_op(probs: torch.Tensor, top_k_arr: Optional[torch.Tensor], top_k: int,
                     out: torch.Tensor) -> None:
    _check_top_k_renorm(probs, top_k_arr, top_k, out)
    _lib.call("tessera_top_k_renorm_probs", dl(probs), dl_or_none(top_k_arr), top_k, dl(out),
              _stream(probs))


@custom_op("tessera::top_k_mask_logits", mutates_args=("out",))
def _top_k_mask_op(logits: torch.Tensor, top_k_arr: Optional[torch.Tensor], top_k: int,
                   out: torch.Tensor) -> None:
    _check_top_k_mask(logits, top_k_arr, top_k, out)
    _lib.call("tessera_top_k_mask_logits", dl(logits), dl_or_none(top_k_arr), top_k, dl(out),
              _stream(logits))


def _check_speculative(draft_probs, draft_token_ids, uniform_samples, target_probs,
                       output_token_ids, accepted, emitted, deterministic):
    _checks.tensor(draft_probs, "draft_probs", ndim=3, dtypes=_F32)
    batch, n, vocab = draft_probs.shape
    _checks.tensor(draft_token_ids, "draft_token_ids", ndim=2, dtypes=_checks.INT32)
    _checks.size(draft_token_ids, 0, batch, "draft_token_ids", "the batch size of draft_probs")
    _checks.size(draft_token_ids, 1, n, "draft_token_ids", "num_speculate_tokens")
    _checks.tensor(uniform_samples, "uniform_samples", ndim=2, dtypes=_F32)
    _checks.size(uniform_samples, 1, n + 1, "uniform_samples", "num_speculate_tokens + 1")
    _checks.tensor(target_probs, "target_probs", ndim=3, dtypes=_F32)
    _checks.size(target_probs, 1, n + 1, "target_probs", "num_speculate_tokens + 1")
    _checks.size(target_probs, 2, vocab, "target_probs", "the vocabulary of draft_probs")
    _checks.tensor(output_token_ids, "output_token_ids", ndim=2, dtypes=_checks.INT32)
    for tensor, name in ((accepted, "output_accepted_token_num"),
                         (emitted, "output_emitted_token_num")):
        _checks.tensor(tensor, name, ndim=1, dtypes=_checks.INT32)
        _checks.size(tensor, 0, batch, name, "the batch size of draft_probs")


@custom_op("tessera::chain_speculative_sampling",
           mutates_args=("output_token_ids", "accepted", "emitted"))
def _speculative_op(draft_probs: torch.Tensor, draft_token_ids: torch.Tensor,
                    uniform_samples: torch.Tensor, target_probs: torch.Tensor,
                    output_token_ids: torch.Tensor, accepted: torch.Tensor,
                    emitted: torch.Tensor, deterministic: bool) -> None:
    _check_speculative(draft_probs, draft_token_ids, uniform_samples, target_probs,
                       output_token_ids, accepted, emitted, deterministic)
    _lib.call("tessera_chain_speculative_sampling", dl(draft_probs), dl(draft_token_ids),
              dl(uniform_samples), dl(target_probs), dl(output_token_ids), dl(accepted),
              dl(emitted), int(bool(deterministic)), _stream(draft_probs))


_sampling_op.register_fake(_check_plain)
_top_p_op.register_fake(_check_top_p_op)
_top_k_op.register_fake(_check_top_k_op)
_min_p_op.register_fake(_check_min_p_op)
_joint_op.register_fake(_check_joint_op)
_top_p_renorm_op.register_fake(_check_top_p_renorm)
_top_k_renorm_op.register_fake(_check_top_k_renorm)
_top_k_mask_op.register_fake(_check_top_k_mask)
_speculative_op.register_fake(_check_speculative)


# ---- argument plumbing shared by the public functions


def _is_legacy(args, kwargs, num_params: int, real_first: bool = True) -> bool:
    """FlashInfer 0.2's form: uniform_samples by keyword, or a floating tensor
    right after probs. The later form starts with the filter parameters (or
    indices, an integer tensor): a floating tensor there can only be a top_p /
    min_p array (real_first), told apart by what follows it (0.2: the
    parameter; later: indices or nothing)."""
    if "uniform_samples" in kwargs:
        return True
    if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
        return False
    if num_params == 0 or not real_first:
        return True
    if len(args) <= num_params:
        return False
    after = args[num_params]
    return after is not None and not (isinstance(after, torch.Tensor)
                                      and not after.is_floating_point())


def _bind(function: str, names, defaults, args, kwargs) -> dict:
    if len(args) > len(names):
        raise TypeError(f"{function}() takes at most {len(names) + 1} positional arguments")
    bound = dict(defaults)
    for name, value in zip(names, args):
        bound[name] = value
    for name, value in kwargs.items():
        if name not in names:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
        if name in dict(zip(names, args)):
            raise TypeError(f"{function}() got multiple values for argument {name!r}")
        bound[name] = value
    missing = [n for n in names if n not in bound]
    if missing:
        raise TypeError(f"{function}() missing required argument {missing[0]!r}")
    return bound


_LEGACY_OPTIONS = {"deterministic": True, "check_nan": False}
_LATER_OPTIONS = {"indices": None, "deterministic": True, "generator": None, "check_nan": False,
                  "seed": None, "offset": None}


def _call(function: str, params, args, kwargs, extra_defaults=None) -> tuple:
    """(legacy, bound arguments) for probs-first sampling functions."""
    extra = dict(extra_defaults or {})
    legacy = _is_legacy(args, kwargs, len(params), real_first=params[:1] != ["top_k"])
    if legacy:
        names = ["uniform_samples", *params, *extra, *_LEGACY_OPTIONS]
        defaults = {**extra, **_LEGACY_OPTIONS}
    else:
        names = [*params, "indices", *extra, *[n for n in _LATER_OPTIONS if n != "indices"]]
        defaults = {**extra, **_LATER_OPTIONS}
    return legacy, _bind(function, names, defaults, args, kwargs)


def _int_param(value, name: str):
    """(per-request int32 tensor or None, scalar) for top_k."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return value.to(torch.int32).contiguous(), 1
    return None, _checks.integer(value, name)


def _real_param(value, name: str, default: float):
    """(per-request float32 tensor or None, scalar) for top_p / min_p."""
    if isinstance(value, torch.Tensor) and value.dim() == 1:
        return value.to(torch.float32).contiguous(), default
    return None, _checks.real(value, name)


def _draw_uniforms(probs, rounds: int, generator) -> torch.Tensor:
    return torch.rand((rounds, probs.shape[0]), dtype=torch.float32, device=probs.device,
                      generator=generator)


def _prepare(bound, probs, rounds: int):
    """(rows to sample, uniforms) for either form; indices gather rows."""
    _checks.tensors(probs=probs)
    uniforms = bound.get("uniform_samples")
    if uniforms is None:
        if bound.get("seed") is not None or bound.get("offset") is not None:
            raise NotImplementedError("tessera.sampling: seed / offset are not supported; "
                                      "pass a torch.Generator")
        indices = bound.get("indices")
        if indices is not None:
            probs = probs.index_select(0, indices.long())
        if bound["check_nan"] and not _compiling() and bool(torch.isnan(probs).any()):
            raise ValueError("Input probs contains NaN.")
        uniforms = _draw_uniforms(probs, rounds, bound["generator"])
    _checks.tensors(uniform_samples=uniforms)
    return probs, uniforms


def _compiling() -> bool:
    return bool(getattr(torch.compiler, "is_compiling", lambda: False)())


def _outputs(probs):
    batch = probs.shape[0]
    return probs.new_empty((batch,), dtype=torch.int32), probs.new_empty((batch,), dtype=torch.bool)


def _result(legacy, bound, samples, success, returns_success=True):
    if legacy:
        return (samples, success) if returns_success else samples
    indices = bound.get("indices")
    return samples if indices is None else samples.to(indices.dtype)


# ---- public functions (FlashInfer's names; both signatures, module docstring)


def sampling_from_probs(probs: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    r"""Category sampling from probabilities.

    0.2 form: ``sampling_from_probs(probs, uniform_samples, deterministic=True,
    check_nan=False)``; later form: ``sampling_from_probs(probs, indices=None,
    deterministic=True, generator=None, check_nan=False)``.

    Parameters
    ----------
    probs : torch.Tensor
        ``[batch_size, vocab_size]`` float32 probabilities (rows need not sum to 1).
    uniform_samples : torch.Tensor
        ``[batch_size]`` (or ``[rounds, batch_size]``, first row used) float32 uniforms.

    Returns
    -------
    torch.Tensor
        ``samples``, ``[batch_size]`` int32 (the dtype of ``indices`` when given).
    """
    legacy, bound = _call("sampling_from_probs", [], args, kwargs)
    probs, uniforms = _prepare(bound, probs, 1)
    samples, success = _outputs(probs)
    torch.ops.tessera.sampling_from_probs(probs, uniforms, samples, success,
                                          bool(bound["deterministic"]), bool(bound["check_nan"]))
    return _result(legacy, bound, samples, success, returns_success=False)


def top_p_sampling_from_probs(probs: torch.Tensor, *args, **kwargs):
    r"""Top-p (nucleus) sampling from probabilities, without sorting.

    0.2 form: ``(probs, uniform_samples, top_p, deterministic=True,
    check_nan=False) -> (samples, success)``; later form: ``(probs, top_p,
    indices=None, deterministic=True, generator=None, check_nan=False) -> samples``.
    ``top_p``: a float in (0, 1] or a ``[batch_size]`` tensor.
    """
    legacy, bound = _call("top_p_sampling_from_probs", ["top_p"], args, kwargs)
    probs, uniforms = _prepare(bound, probs, DEFAULT_ROUNDS)
    top_p_arr, top_p = _real_param(bound["top_p"], "top_p", 1.0)
    samples, success = _outputs(probs)
    torch.ops.tessera.top_p_sampling_from_probs(probs, uniforms, top_p_arr, top_p, samples,
                                                success, bool(bound["deterministic"]),
                                                bool(bound["check_nan"]))
    return _result(legacy, bound, samples, success)


def top_k_sampling_from_probs(probs: torch.Tensor, *args, **kwargs):
    r"""Top-k sampling from probabilities, without sorting.

    0.2 form: ``(probs, uniform_samples, top_k, deterministic=True,
    check_nan=False) -> (samples, success)``; later form: ``(probs, top_k,
    indices=None, deterministic=True, generator=None, check_nan=False) -> samples``.
    ``top_k``: an int >= 1 or a ``[batch_size]`` tensor. Entries tied with the
    k-th largest are all kept.
    """
    legacy, bound = _call("top_k_sampling_from_probs", ["top_k"], args, kwargs)
    probs, uniforms = _prepare(bound, probs, DEFAULT_ROUNDS)
    top_k_arr, top_k = _int_param(bound["top_k"], "top_k")
    samples, success = _outputs(probs)
    torch.ops.tessera.top_k_sampling_from_probs(probs, uniforms, top_k_arr, top_k, samples,
                                                success, bool(bound["deterministic"]),
                                                bool(bound["check_nan"]))
    return _result(legacy, bound, samples, success)


def min_p_sampling_from_probs(probs: torch.Tensor, *args, **kwargs):
    r"""Min-p sampling: keeps the entries ``>= min_p * max(probs)``.

    0.2 form: ``(probs, uniform_samples, min_p, deterministic=True,
    check_nan=False) -> (samples, success)``; later form: ``(probs, min_p,
    indices=None, deterministic=True, generator=None, check_nan=False) -> samples``.
    """
    legacy, bound = _call("min_p_sampling_from_probs", ["min_p"], args, kwargs)
    probs, uniforms = _prepare(bound, probs, 1)
    min_p_arr, min_p = _real_param(bound["min_p"], "min_p", 0.0)
    samples, success = _outputs(probs)
    torch.ops.tessera.min_p_sampling_from_probs(probs, uniforms, min_p_arr, min_p, samples,
                                                success, bool(bound["deterministic"]),
                                                bool(bound["check_nan"]))
    return _result(legacy, bound, samples, success)


def _check_order(order) -> str:
    if order not in ("top_k_first", "joint"):
        _checks.fail("filter_apply_order", "'top_k_first' or 'joint'", repr(order))
    return order


def _top_k_top_p(probs, uniforms, bound, legacy):
    order = _check_order(bound["filter_apply_order"])
    top_k_arr, top_k = _int_param(bound["top_k"], "top_k")
    top_p_arr, top_p = _real_param(bound["top_p"], "top_p", 1.0)
    # top_k_first runs two ops: check both filters before the first runs.
    _check_probs(probs)
    _check_top_k(top_k_arr, top_k, probs)
    _check_top_p(top_p_arr, top_p, probs)
    samples, success = _outputs(probs)
    flags = (bool(bound["deterministic"]), bool(bound["check_nan"]))
    if order == "joint":
        torch.ops.tessera.top_k_top_p_sampling_from_probs(probs, uniforms, top_k_arr, top_k,
                                                          top_p_arr, top_p, samples, success,
                                                          *flags)
    else:  # top-p over the top-k renormalised distribution
        renormed = probs
        if top_k_arr is not None or top_k < probs.shape[1]:  # else top-k keeps every entry
            renormed = torch.empty_like(probs)
            torch.ops.tessera.top_k_renorm_probs(probs, top_k_arr, top_k, renormed)
        torch.ops.tessera.top_p_sampling_from_probs(renormed, uniforms, top_p_arr, top_p,
                                                    samples, success, *flags)
    return _result(legacy, bound, samples, success)


def top_k_top_p_sampling_from_probs(probs: torch.Tensor, *args, **kwargs):
    r"""Top-k and top-p sampling from probabilities.

    0.2 form: ``(probs, uniform_samples, top_k, top_p,
    filter_apply_order="top_k_first", deterministic=True, check_nan=False) ->
    (samples, success)``; later form: ``(probs, top_k, top_p, indices=None,
    filter_apply_order="top_k_first", deterministic=True, generator=None,
    check_nan=False) -> samples``. ``"top_k_first"``: top-p over the top-k
    renormalised distribution; ``"joint"``: entries both filters keep.
    """
    legacy, bound = _call("top_k_top_p_sampling_from_probs", ["top_k", "top_p"], args, kwargs,
                          {"filter_apply_order": "top_k_first"})
    probs, uniforms = _prepare(bound, probs, DEFAULT_ROUNDS)
    return _top_k_top_p(probs, uniforms, bound, legacy)


def top_k_top_p_sampling_from_logits(logits: torch.Tensor, *args, **kwargs):
    r"""Top-k and top-p sampling from pre-softmax logits (signatures as
    :func:`top_k_top_p_sampling_from_probs`). ``"top_k_first"`` masks the
    logits to the top k before the softmax; ``"joint"`` filters the softmax."""
    legacy, bound = _call("top_k_top_p_sampling_from_logits", ["top_k", "top_p"], args, kwargs,
                          {"filter_apply_order": "top_k_first"})
    _checks.tensor(logits, "logits", ndim=2, dtypes=_F32)
    order = _check_order(bound["filter_apply_order"])
    if order == "top_k_first":
        logits = top_k_mask_logits(logits, bound["top_k"])
        bound = dict(bound, top_k=logits.shape[1])
    probs = torch.softmax(logits, dim=-1)
    probs, uniforms = _prepare(bound, probs, DEFAULT_ROUNDS)
    return _top_k_top_p(probs, uniforms, bound, legacy)


def top_p_renorm_probs(probs: torch.Tensor, top_p: Union[torch.Tensor, float]) -> torch.Tensor:
    r"""Probabilities kept by top-p, renormalised to sum to 1; the rest 0."""
    _checks.tensors(probs=probs)
    top_p_arr, value = _real_param(top_p, "top_p", 1.0)
    out = torch.empty_like(probs)
    torch.ops.tessera.top_p_renorm_probs(probs, top_p_arr, value, out)
    return out


def top_k_renorm_probs(probs: torch.Tensor, top_k: Union[torch.Tensor, int]) -> torch.Tensor:
    r"""Probabilities kept by top-k, renormalised to sum to 1; the rest 0."""
    _checks.tensors(probs=probs)
    top_k_arr, value = _int_param(top_k, "top_k")
    out = torch.empty_like(probs)
    torch.ops.tessera.top_k_renorm_probs(probs, top_k_arr, value, out)
    return out


def top_k_mask_logits(logits: torch.Tensor, top_k: Union[torch.Tensor, int]) -> torch.Tensor:
    r"""Logits kept by top-k unchanged; the rest ``-inf``."""
    _checks.tensors(logits=logits)
    top_k_arr, value = _int_param(top_k, "top_k")
    out = torch.empty_like(logits)
    torch.ops.tessera.top_k_mask_logits(logits, top_k_arr, value, out)
    return out


def chain_speculative_sampling(draft_probs: torch.Tensor, draft_token_ids: torch.Tensor,
                               *args, **kwargs):
    r"""Chain speculative sampling: verify each request's chain of draft tokens
    against the target probabilities, emit the accepted prefix and one more
    token (from ``max(target - draft, 0)`` at the first rejection, or the
    target's last row when all are accepted).

    0.2 form: ``(draft_probs, draft_token_ids, uniform_samples, target_probs,
    maybe_output_accepted_token_num=None, maybe_output_emitted_token_num=None,
    deterministic=True)``; later form: ``(draft_probs, draft_token_ids,
    target_probs, maybe_output_accepted_token_num=None,
    maybe_output_emitted_draft_token_num=None, deterministic=True,
    generator=None)``. ``uniform_samples``: ``[batch, n + 1]`` float32.

    Returns
    -------
    (output_token_ids, output_accepted_token_num, output_emitted_token_num)
        ``[batch, n + 1]`` int32 (-1 past the emitted tokens), and the two
        ``[batch]`` int32 counters, added to the given tensors when passed
        (as FlashInfer): drafts that would pass their test on their own, and
        drafts emitted.
    """
    legacy = "uniform_samples" in kwargs or (
        bool(args) and isinstance(args[0], torch.Tensor) and args[0].dim() == 2)
    if legacy:
        names = ["uniform_samples", "target_probs", "maybe_output_accepted_token_num",
                 "maybe_output_emitted_token_num", "deterministic"]
    else:
        names = ["target_probs", "maybe_output_accepted_token_num",
                 "maybe_output_emitted_draft_token_num", "deterministic", "generator", "seed",
                 "offset"]
    bound = _bind("chain_speculative_sampling", names,
                  {"deterministic": True, "generator": None, "seed": None, "offset": None,
                   "maybe_output_accepted_token_num": None,
                   "maybe_output_emitted_token_num": None,
                   "maybe_output_emitted_draft_token_num": None}, args, kwargs)
    _checks.tensors(draft_probs=draft_probs, draft_token_ids=draft_token_ids,
                    target_probs=bound["target_probs"])
    target_probs = bound["target_probs"]
    batch, n = draft_probs.shape[0], draft_probs.shape[1] if draft_probs.dim() == 3 else 0
    uniforms = bound.get("uniform_samples")
    if uniforms is None:
        if bound["seed"] is not None or bound["offset"] is not None:
            raise NotImplementedError("tessera.sampling: seed / offset are not supported; "
                                      "pass a torch.Generator")
        uniforms = torch.rand((batch, n + 1), dtype=torch.float32, device=draft_probs.device,
                              generator=bound["generator"])
    _checks.tensors(uniform_samples=uniforms)
    accepted = bound["maybe_output_accepted_token_num"]
    emitted = bound.get("maybe_output_emitted_token_num")
    if emitted is None:
        emitted = bound.get("maybe_output_emitted_draft_token_num")
    if accepted is None:
        accepted = draft_probs.new_zeros((batch,), dtype=torch.int32)
    if emitted is None:
        emitted = draft_probs.new_zeros((batch,), dtype=torch.int32)
    output_token_ids = draft_probs.new_empty((batch, n + 1), dtype=torch.int32)
    torch.ops.tessera.chain_speculative_sampling(draft_probs, draft_token_ids, uniforms,
                                                 target_probs, output_token_ids, accepted,
                                                 emitted, bool(bound["deterministic"]))
    return output_token_ids, accepted, emitted


__all__ = [
    "sampling_from_probs", "top_p_sampling_from_probs", "top_k_sampling_from_probs",
    "min_p_sampling_from_probs", "top_k_top_p_sampling_from_probs",
    "top_k_top_p_sampling_from_logits", "top_p_renorm_probs", "top_k_renorm_probs",
    "top_k_mask_logits", "chain_speculative_sampling",
]
