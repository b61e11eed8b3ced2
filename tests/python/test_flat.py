"""The wrappers' eager run() fast path (tessera/_flat.py) on the CPU: the C
calls are recorded instead of made, and each must pass libtessera exactly
what the op path (what torch.compile records) passes: the same tensors
(pointers, shapes, strides, dtypes, devices) and the same AttentionOptions.
Also: the Python checks still name a bad argument after good calls, and
tracing takes the op, not the fast path."""

import ctypes

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera
from tessera import _flat, _lib
from tessera._lib import TesseraArgumentError

HALF = dict(dtype=torch.float16)
OPTION_FIELDS = ("sm_scale", "logits_soft_cap", "window_left", "pos_encoding_mode", "rope_scale",
                 "rope_theta", "k_scale", "v_scale", "jit_variant", "prefill_backend")
TENSOR_COUNTS = {"tessera_batch_decode_run_flat": 8, "tessera_batch_prefill_paged_run_flat": 9,
                 "tessera_batch_prefill_ragged_run_flat": 7}


def read_flat(address: int, count: int) -> list:
    """A flat tensor list (c_api.h) as (data, device, dtype, shape, strides)
    per tensor, None for an absent one."""
    def word(i):
        return ctypes.c_int64.from_address(address + 8 * i).value

    tensors, at = [], count
    for i in range(count):
        ndim = word(at)
        if ndim < 0:
            tensors.append(None)
            at += 1
            continue
        dtype, device = word(at + 1), word(at + 2)
        shape = tuple(word(at + 3 + d) for d in range(ndim))
        strides = tuple(word(at + 3 + ndim + d) for d in range(ndim))
        device = (2, device) if device >= 0 else (3 if device == -2 else 1, 0)
        tensors.append((word(i), device, (dtype & 0xff, dtype >> 8 & 0xff, dtype >> 16), shape,
                        strides))
        at += 3 + 2 * ndim
    return tensors


def read_dl(pointer) -> tuple:
    """The same view of a DLTensor (the op path's argument), None for NULL."""
    if pointer is None or (isinstance(pointer, ctypes._Pointer) and not pointer):
        return None
    t = pointer.contents if isinstance(pointer, ctypes._Pointer) else pointer
    return (t.data, (t.device.device_type, t.device.device_id),
            (t.dtype.code, t.dtype.bits, t.dtype.lanes), tuple(t.shape[:t.ndim]),
            tuple(t.strides[:t.ndim]))


def options_fields(options) -> dict:
    fields = {name: getattr(options, name) for name in OPTION_FIELDS}
    fields["alibi_slopes"] = read_dl(options.alibi_slopes) if options.alibi_slopes else None
    fields["custom_mask"] = read_dl(options.custom_mask) if options.custom_mask else None
    return fields


@pytest.fixture
def library(monkeypatch):
    """Records both paths' C calls: (name, arguments) from _lib.call (plans,
    the op path) and (name, tensors, options fields, layout) from the fast
    path. Plan objects are address 1."""
    from tessera.decode import BatchDecodeWithPagedKVCacheWrapper
    from tessera.prefill import _PlanHandle

    calls, flat_calls = [], []
    monkeypatch.setattr(_lib, "call", lambda name, *arguments: calls.append((name, arguments)))
    monkeypatch.setattr(_PlanHandle, "ensure", lambda self, shape, needed, names: 1)
    monkeypatch.setattr(BatchDecodeWithPagedKVCacheWrapper, "_ensure_handle",
                        lambda self, *arguments: setattr(self, "_handle", 1))

    def flat_function(name, takes_layout):
        def call(handle, tensors, *rest):
            layout = rest[0] if takes_layout else None
            options = _lib.AttentionOptions.from_address(rest[-3])
            flat_calls.append((name, handle, read_flat(tensors, TENSOR_COUNTS[name]),
                               options_fields(options), layout))
            return 0
        return call

    monkeypatch.setattr(_flat, "_flat_function", flat_function)
    yield calls, flat_calls


def op_path_call(monkeypatch, calls, run):
    """run() through the op: the recorded arguments of its C call."""
    with monkeypatch.context() as m:
        m.setattr(_flat, "eager", lambda: False)
        calls.clear()
        result = run()
    name, arguments = calls[-1]
    return name, arguments, result


def decode_wrapper(**plan_options):
    wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8))
    wrapper.plan([0, 1, 3], [0, 2, 1], [4, 16], 8, 2, 64, 16, non_blocking=False,
                 **plan_options)
    return wrapper


@pytest.mark.parametrize("scales", [{}, dict(q_scale=0.5, k_scale=2.0, v_scale=0.25)])
@pytest.mark.parametrize("separate", [False, True])
def test_decode_fast_path_passes_what_the_op_passes(monkeypatch, library, scales, separate):
    calls, flat_calls = library
    wrapper = decode_wrapper(logits_soft_cap=30.0, window_left=7)
    q = torch.randn(2, 8, 64, **HALF)
    cache = torch.randn(3, 2, 16, 2, 64, **HALF)
    kv = (cache[:, 0], cache[:, 1]) if separate else cache
    try:
        out = torch.empty_like(q)
        _, arguments, _ = op_path_call(monkeypatch, calls,
                                       lambda: wrapper.run(q, kv, out=out, return_lse=True,
                                                           **scales))
        wrapper.run(q, kv, out=out, return_lse=True, **scales)
    finally:
        wrapper._handle = None  # address 1 is no plan object to destroy
    name, handle, tensors, options, layout = flat_calls[-1]
    assert name == "tessera_batch_decode_run_flat" and handle == 1 and layout == 0
    cache_struct = arguments[2]
    want = [read_dl(arguments[3]), read_dl(arguments[4]), read_dl(arguments[5]),
            read_dl(arguments[1]), read_dl(cache_struct.first), read_dl(cache_struct.v_data),
            read_dl(arguments[6])]
    assert tensors[:7] == want
    assert tensors[6][0] == out.data_ptr()
    assert tensors[7][3] == (2, 8) and tensors[7][2] == (2, 32, 1)  # a new float32 lse
    assert options == options_fields(arguments[8])


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_prefill_fast_paths_pass_what_the_ops_pass(monkeypatch, library, layout):
    from tessera.jit import Variant
    calls, flat_calls = library
    variant = object.__new__(Variant)  # the handle is all run() reads
    variant.handle = 0x1234
    slopes = torch.rand(8)
    q = torch.randn(4, 8, 64, **HALF)
    try:
        paged = tessera.BatchPrefillWithPagedKVCacheWrapper(torch.empty(8, dtype=torch.uint8),
                                                           layout, jit_args=variant)
        paged.plan([0, 4], [0, 1], [0], [4], 8, 2, 64, 16, causal=True, non_blocking=False,
                   custom_mask=torch.ones(16, dtype=torch.bool))
        cache = torch.randn((1, 2, 16, 2, 64) if layout == "NHD" else (1, 2, 2, 16, 64), **HALF)
        _, arguments, _ = op_path_call(monkeypatch, calls,
                                       lambda: paged.run(q, cache, q_scale=0.5, k_scale=3.0))
        paged.run(q, cache, q_scale=0.5, k_scale=3.0)
        name, handle, tensors, options, kv_layout = flat_calls[-1]
        assert name == "tessera_batch_prefill_paged_run_flat" and handle == 1
        assert kv_layout == (0 if layout == "NHD" else 1)
        cache_struct = arguments[2]
        want = [read_dl(arguments[i]) for i in (3, 4, 5, 6, 1)] + [
            read_dl(cache_struct.first), read_dl(cache_struct.v_data), read_dl(arguments[7])]
        assert tensors[:7] == want[:7]
        assert tensors[7][1:] == want[7][1:] and tensors[8] is None  # a new out, no lse
        assert options == options_fields(arguments[9])
        assert options["jit_variant"] == 0x1234 and options["custom_mask"] is not None

        ragged = tessera.BatchPrefillWithRaggedKVCacheWrapper(torch.empty(8, dtype=torch.uint8),
                                                             layout)
        ragged.plan([0, 4], [0, 6], 8, 2, 64, pos_encoding_mode="ALIBI", alibi_slopes=slopes,
                    non_blocking=False)
        kv = torch.randn(6, 2, 64, **HALF) if layout == "NHD" else torch.randn(2, 6, 64, **HALF)
        _, arguments, _ = op_path_call(monkeypatch, calls,
                                       lambda: ragged.run(q, kv, kv, return_lse=True))
        ragged.run(q, kv, kv, return_lse=True)
        name, handle, tensors, options, _ = flat_calls[-1]
        assert name == "tessera_batch_prefill_ragged_run_flat"
        want = [read_dl(arguments[i]) for i in (4, 5, 1, 2, 3, 6, 7)]
        # out and lse are new tensors in each call: equal but for their pointers.
        assert tensors[:5] == want[:5]
        assert [t[1:] for t in tensors[5:]] == [t[1:] for t in want[5:]]
        assert options == options_fields(arguments[8])
        assert options["alibi_slopes"][0] == slopes.data_ptr()
    finally:
        variant.handle = None


def test_known_shapes_skip_the_checks_and_new_ones_are_checked(monkeypatch, library):
    from tessera import decode
    _, flat_calls = library
    checked = []
    check = decode._check_batch_decode_run
    monkeypatch.setattr(decode, "_check_batch_decode_run",
                        lambda *a, **k: checked.append(1) or check(*a, **k))
    monkeypatch.setattr(_flat.FlatRun, "cache_host_signatures", True)  # CPU tensors as CUDA's
    wrapper = decode_wrapper()
    q, cache = torch.randn(2, 8, 64, **HALF), torch.randn(3, 2, 16, 2, 64, **HALF)
    try:
        for _ in range(3):
            wrapper.run(q, cache)
        assert len(checked) == 1 and len(flat_calls) == 3
        with pytest.raises(TesseraArgumentError, match="argument 'out'"):
            wrapper.run(q, cache, out=torch.empty(2, 8, 32, **HALF))
        with pytest.raises(TesseraArgumentError, match="argument 'lse'"):
            wrapper.run(q, cache, lse=torch.empty(2, 7), return_lse=True)
        with pytest.raises(TesseraArgumentError, match="argument 'q'"):
            wrapper.run(q.float(), cache)
        assert len(flat_calls) == 3  # none of them reached the library
        wrapper.run(q, cache)
        assert len(flat_calls) == 4
        # A new plan starts over.
        wrapper.plan([0, 1, 3], [0, 2, 1], [4, 16], 8, 2, 64, 16, non_blocking=False)
        checked.clear()
        wrapper.run(q, cache)
        assert len(checked) == 1
    finally:
        wrapper._handle = None


def test_host_tensors_are_checked_every_call(monkeypatch, library):
    # Plain and pinned host memory share get_device() -1 but not a descriptor,
    # so such a call is never taken as known (the library rejects it anyway).
    from tessera import decode
    checked = []
    check = decode._check_batch_decode_run
    monkeypatch.setattr(decode, "_check_batch_decode_run",
                        lambda *a, **k: checked.append(1) or check(*a, **k))
    wrapper = decode_wrapper()
    q, cache = torch.randn(2, 8, 64, **HALF), torch.randn(3, 2, 16, 2, 64, **HALF)
    try:
        wrapper.run(q, cache)
        wrapper.run(q, cache)
    finally:
        wrapper._handle = None
    assert len(checked) == 2


def test_tracing_records_the_op_not_the_fast_path(library):
    calls, flat_calls = library
    wrapper = decode_wrapper()
    cache = torch.randn(3, 2, 16, 2, 64, **HALF)
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm.forward

    try:
        q = torch.randn(2, 8, 64, **HALF)
        compiled = torch.compile(lambda q: wrapper.run(q * 2, cache) + 1, fullgraph=True,
                                 backend=capture)
        compiled(q)
        with FakeTensorMode(allow_non_fake_inputs=True):
            out = wrapper.run(torch.empty(2, 8, 64, **HALF), torch.empty(3, 2, 16, 2, 64, **HALF))
            assert out.shape == (2, 8, 64)
    finally:
        wrapper._handle = None
    assert any("tessera.batch_decode_run" in g for g in graphs)
    assert flat_calls == []
    assert [name for name, _ in calls].count("tessera_batch_decode_run") == 1  # the compiled run


# ---- plan(): the index arrays moved to the GPU in one copy (_plan_args.on_device_many)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@gpu
@pytest.mark.parametrize("non_blocking", [True, False])
def test_host_index_arrays_move_in_one_copy(non_blocking):
    from tessera._plan_args import on_device_many
    device = torch.device("cuda")
    indptr = torch.tensor([0, 3, 5], dtype=torch.int32)
    indices = torch.arange(5, dtype=torch.int64)  # converted, as on_device does
    on_gpu = torch.tensor([7, 9], dtype=torch.int32, device=device)
    moved = on_device_many([(indptr, None, "a"), (indices.tolist(), None, "b"),
                            (on_gpu, None, "c")], device, non_blocking)
    torch.cuda.synchronize()
    assert [t.tolist() for t in moved] == [[0, 3, 5], [0, 1, 2, 3, 4], [7, 9]]
    assert all(t.is_cuda and t.dtype == torch.int32 for t in moved)
    assert moved[1].data_ptr() == moved[0].data_ptr() + 4 * 3  # views of one copy
    assert moved[2] is on_gpu
    # CUDA-graph buffers get the values in place, from the one pinned buffer.
    buffers = [torch.full((4,), -1, dtype=torch.int32, device=device) for _ in range(2)]
    out = on_device_many([(indptr, buffers[0], "a"), ([4, 2], buffers[1], "b")], device,
                         non_blocking)
    torch.cuda.synchronize()
    assert out[0] is buffers[0] and out[1] is buffers[1]
    assert buffers[0].tolist() == [0, 3, 5, -1] and buffers[1].tolist() == [4, 2, -1, -1]
    with pytest.raises(TesseraArgumentError, match="argument 'b'.*at most 4 entries"):
        on_device_many([(indptr, buffers[0], "a"), (list(range(5)), buffers[1], "b")], device,
                       non_blocking)


@gpu
@pytest.mark.parametrize("non_blocking", [True, False])
def test_arrays_without_a_buffer_reach_the_gpu_beside_buffered_ones(non_blocking):
    # Some buffers given (e.g. the decode wrapper's without use_cuda_graph):
    # the arrays without one must come back on the GPU, not as host views.
    from tessera._plan_args import on_device_many
    device = torch.device("cuda")
    buffer = torch.full((4,), -1, dtype=torch.int32, device=device)
    out = on_device_many([([0, 3, 5], buffer, "a"), ([4, 2], None, "b")], device, non_blocking)
    torch.cuda.synchronize()
    assert out[0] is buffer and buffer.tolist() == [0, 3, 5, -1]
    assert out[1].is_cuda and out[1].tolist() == [4, 2]
