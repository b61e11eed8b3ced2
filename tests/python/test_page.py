"""tessera.page: batch indices/positions and paged-KV appends against a torch
reference (GPU), and their fakes, tracing and argument errors (CPU)."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from tessera import _lib, page
from tessera._plan_args import paged_kv_struct
from tessera._tensor import dl

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

NUM_KV_HEADS, HEAD_DIM = 2, 64
# Three requests: lengths after the append, and tokens appended (one appends none).
SEQ_LENS = [5, 2, 37]
APPEND_LENS = [3, 0, 17]


def append_indptr():
    indptr = [0]
    for n in APPEND_LENS:
        indptr.append(indptr[-1] + n)
    return indptr


def reference_indices_positions():
    batch_indices, positions = [], []
    for b, (seq_len, n) in enumerate(zip(SEQ_LENS, APPEND_LENS)):
        batch_indices += [b] * n
        positions += list(range(seq_len - n, seq_len))
    return batch_indices, positions


def int32_cuda(values):
    return torch.tensor(values, dtype=torch.int32, device="cuda")


class PageTable:
    """Pages for SEQ_LENS at page_size, drawn at random from a larger pool so
    that some pages belong to no request."""

    def __init__(self, page_size):
        pages_per_request = [(n + page_size - 1) // page_size for n in SEQ_LENS]
        self.num_pages = sum(pages_per_request) + 3
        order = torch.randperm(self.num_pages).tolist()
        self.indptr = [0]
        for count in pages_per_request:
            self.indptr.append(self.indptr[-1] + count)
        self.indices = order[:self.indptr[-1]]
        self.last_page_len = [n - (count - 1) * page_size
                              for n, count in zip(SEQ_LENS, pages_per_request)]


def page_shape(num_pages, page_size, layout):
    if layout == "NHD":
        return (num_pages, page_size, NUM_KV_HEADS, HEAD_DIM)
    return (num_pages, NUM_KV_HEADS, page_size, HEAD_DIM)


def make_cache(storage, num_pages, page_size, layout, dtype):
    """(the argument to pass, the K pages, the V pages); K/V pages are views
    into what is passed, so they show what the append wrote."""
    shape = page_shape(num_pages, page_size, layout)
    if storage == "combined":
        kv = torch.randn(shape[0], 2, *shape[1:], dtype=dtype, device="cuda")
        return kv, kv[:, 0], kv[:, 1]
    if storage == "separate":
        k, v = (torch.randn(shape, dtype=dtype, device="cuda") for _ in range(2))
        return (k, v), k, v
    # "split_views": K and V as strided views of one combined buffer.
    kv = torch.randn(shape[0], 2, *shape[1:], dtype=dtype, device="cuda")
    return (kv[:, 0], kv[:, 1]), kv[:, 0], kv[:, 1]


# ---- GPU


@needs_gpu
def test_get_batch_indices_positions_matches_reference():
    indptr = append_indptr()
    batch_indices, positions = page.get_batch_indices_positions(
        int32_cuda(indptr), int32_cuda(SEQ_LENS), indptr[-1])
    expected_batch, expected_positions = reference_indices_positions()
    assert batch_indices.dtype == positions.dtype == torch.int32
    assert batch_indices.device.type == positions.device.type == "cuda"
    assert batch_indices.tolist() == expected_batch
    assert positions.tolist() == expected_positions


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("page_size", [1, 16])
@pytest.mark.parametrize("storage", ["combined", "separate", "split_views"])
def test_append_writes_exactly_the_appended_slots(dtype, layout, page_size, storage):
    table = PageTable(page_size)
    cache_arg, k_pages, v_pages = make_cache(storage, table.num_pages, page_size, layout, dtype)
    expected_k, expected_v = k_pages.clone(), v_pages.clone()
    nnz = sum(APPEND_LENS)
    key = torch.randn(nnz, NUM_KV_HEADS, HEAD_DIM, dtype=dtype, device="cuda")
    value = torch.randn(nnz, NUM_KV_HEADS, HEAD_DIM, dtype=dtype, device="cuda")
    batch_indices, positions = reference_indices_positions()
    for i, (b, position) in enumerate(zip(batch_indices, positions)):
        page_index = table.indices[table.indptr[b] + position // page_size]
        slot = position % page_size
        if layout == "NHD":
            expected_k[page_index, slot], expected_v[page_index, slot] = key[i], value[i]
        else:
            expected_k[page_index, :, slot], expected_v[page_index, :, slot] = key[i], value[i]

    result = page.append_paged_kv_cache(
        key, value, int32_cuda(batch_indices), int32_cuda(positions), cache_arg,
        int32_cuda(table.indices), int32_cuda(table.indptr), int32_cuda(table.last_page_len),
        kv_layout=layout)
    assert result is None
    # Whole-cache equality: every appended slot holds its token, every other
    # slot (other positions, unused pages) is untouched.
    assert torch.equal(k_pages, expected_k)
    assert torch.equal(v_pages, expected_v)


@needs_gpu
def test_compiled_append_matches_eager():
    page_size, layout = 16, "NHD"
    table = PageTable(page_size)
    indptr = append_indptr()
    nnz = indptr[-1]
    key = torch.randn(nnz, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16, device="cuda")
    value = torch.randn_like(key)
    index_args = (int32_cuda(table.indices), int32_cuda(table.indptr),
                  int32_cuda(table.last_page_len))

    def step(kv_cache, append_indptr, seq_lens):
        batch_indices, positions = page.get_batch_indices_positions(append_indptr, seq_lens, nnz)
        page.append_paged_kv_cache(key, value, batch_indices, positions, kv_cache, *index_args,
                                   kv_layout=layout)
        return kv_cache

    kv = torch.randn(table.num_pages, 2, page_size, NUM_KV_HEADS, HEAD_DIM,
                     dtype=torch.float16, device="cuda")
    eager = step(kv.clone(), int32_cuda(indptr), int32_cuda(SEQ_LENS))
    compiled = torch.compile(step, fullgraph=True)(kv.clone(), int32_cuda(indptr),
                                                   int32_cuda(SEQ_LENS))
    assert torch.equal(compiled, eager)


# ---- CPU (fakes, tracing, errors)


def fake_append_args(layout="NHD", separate=False):
    """Fake CUDA arguments for append_paged_kv_cache; call inside FakeTensorMode."""
    key = torch.empty(5, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16, device="cuda")
    index = torch.empty(5, dtype=torch.int32, device="cuda")
    shape = page_shape(4, 16, layout)
    if separate:
        cache = tuple(torch.empty(shape, dtype=torch.float16, device="cuda") for _ in range(2))
    else:
        cache = torch.empty(shape[0], 2, *shape[1:], dtype=torch.float16, device="cuda")
    kv_indices = torch.empty(2, dtype=torch.int32, device="cuda")
    kv_indptr = torch.empty(3, dtype=torch.int32, device="cuda")
    kv_last_page_len = torch.empty(2, dtype=torch.int32, device="cuda")
    return key, key, index, index, cache, kv_indices, kv_indptr, kv_last_page_len


def test_fake_batch_indices_positions_are_int32_of_nnz():
    with FakeTensorMode():
        indptr = torch.empty(4, dtype=torch.int32, device="cuda")
        seq_lens = torch.empty(3, dtype=torch.int32, device="cuda")
        batch_indices, positions = page.get_batch_indices_positions(indptr, seq_lens, 20)
        for t in (batch_indices, positions):
            assert t.shape == (20,) and t.dtype == torch.int32 and t.device.type == "cuda"


@pytest.mark.parametrize("layout", ["NHD", "HND"])
@pytest.mark.parametrize("separate", [False, True])
def test_fake_append_returns_none(layout, separate):
    with FakeTensorMode():
        args = fake_append_args(layout, separate)
        assert page.append_paged_kv_cache(*args, kv_layout=layout) is None


def test_fullgraph_compile_traces_the_ops():
    captured = []

    def capture(graph_module, example_inputs):
        captured.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "call_function")
        return graph_module.forward

    def step(append_indptr, seq_lens, key, value, cache, kv_indices, kv_indptr, kv_last_page_len):
        batch_indices, positions = page.get_batch_indices_positions(append_indptr, seq_lens, 5)
        page.append_paged_kv_cache(key, value, batch_indices, positions, cache, kv_indices,
                                   kv_indptr, kv_last_page_len, kv_layout="HND")
        return positions

    with FakeTensorMode():
        key, value, _, _, cache, kv_indices, kv_indptr, kv_last_page_len = fake_append_args(
            "HND", separate=True)
        append_indptr = torch.empty(3, dtype=torch.int32, device="cuda")
        seq_lens = torch.empty(2, dtype=torch.int32, device="cuda")
    torch._dynamo.reset()
    positions = torch.compile(step, fullgraph=True, backend=capture)(
        append_indptr, seq_lens, key, value, cache, kv_indices, kv_indptr, kv_last_page_len)
    assert positions.shape == (5,)
    assert torch.ops.tessera.get_batch_indices_positions in captured
    assert torch.ops.tessera.append_paged_kv_cache in captured


def test_append_op_declares_the_cache_written():
    schema = str(torch.ops.tessera.append_paged_kv_cache.default._schema)
    assert "Tensor(a4!) kv_cache, Tensor(a5!)? v_cache" in schema


def test_unknown_kv_layout_is_rejected_before_dispatch():
    # CPU tensors: the layout check runs before the op reaches the dispatcher.
    key = torch.empty(1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    index = torch.zeros(1, dtype=torch.int32)
    cache = torch.empty(1, 2, 1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    with pytest.raises(ValueError, match="kv_layout.*'NHD' or 'HND'.*'NDH'"):
        page.append_paged_kv_cache(key, key, index, index, cache, index, index, index,
                                   kv_layout="NDH")


def test_cache_sequence_must_be_a_pair():
    key = torch.empty(1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    index = torch.zeros(1, dtype=torch.int32)
    cache = torch.empty(1, 1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    with pytest.raises(ValueError, match="paged_kv_cache.*pair"):
        page.append_paged_kv_cache(key, key, index, index, (cache, cache, cache), index, index,
                                   index)


def test_library_rejects_cpu_append_key_by_name():
    key = torch.randn(1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    index = torch.zeros(1, dtype=torch.int32)
    cache = paged_kv_struct(torch.empty(1, 2, 1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16),
                            None, 0)  # NHD
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'append_key'.*CUDA"):
        _lib.call("tessera_append_paged_kv_cache", dl(key), dl(key), dl(index), dl(index),
                  cache, dl(index), dl(torch.zeros(2, dtype=torch.int32)), dl(index), None, 0)


def test_library_rejects_bad_layout_code_by_name():
    key = torch.randn(1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16)
    index = torch.zeros(1, dtype=torch.int32)
    cache = paged_kv_struct(torch.empty(1, 2, 1, NUM_KV_HEADS, HEAD_DIM, dtype=torch.float16),
                            None, 0)  # NHD
    cache.layout = 7
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'kv_layout'"):
        _lib.call("tessera_append_paged_kv_cache", dl(key), dl(key), dl(index), dl(index),
                  cache, dl(index), dl(torch.zeros(2, dtype=torch.int32)), dl(index), None, 0)


def test_library_rejects_cpu_append_indptr_by_name():
    indptr = torch.tensor([0, 2], dtype=torch.int32)
    out = torch.empty(2, dtype=torch.int32)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'append_indptr'.*CUDA"):
        _lib.call("tessera_get_batch_indices_positions", dl(indptr),
                  dl(torch.tensor([2], dtype=torch.int32)), dl(out), dl(out.clone()), None)
