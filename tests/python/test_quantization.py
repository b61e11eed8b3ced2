"""tessera.packbits / tessera.segment_packbits (FlashInfer's
flashinfer.quantization) against a pure-Python reference; CPU, plus the same
on CUDA where there is a GPU."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera
from tessera import TesseraArgumentError, quantization
from tessera.quantization import packbits, segment_packbits

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def reference_packbits(bits, bitorder):
    """bits: a list of 0/1. numpy.packbits' semantics, in plain Python."""
    out = []
    for start in range(0, len(bits), 8):
        byte = 0
        for k, bit in enumerate(bits[start:start + 8]):
            if bit:
                byte |= 1 << (k if bitorder == "little" else 7 - k)
        out.append(byte)
    return out


def reference_segment_packbits(bits, indptr, bitorder):
    out, new_indptr = [], [0]
    for a, b in zip(indptr[:-1], indptr[1:]):
        out += reference_packbits(bits[a:b], bitorder)
        new_indptr.append(len(out))
    return out, new_indptr


def random_bits(n, seed):
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.5)


def test_flashinfer_docstring_examples():
    x = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1], dtype=torch.bool)
    assert list(map(bin, packbits(x).tolist())) == ["0b10110011"]  # default "big", as FlashInfer
    x = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1], dtype=torch.bool)
    y, new_indptr = segment_packbits(x, torch.tensor([0, 4, 7, 11]), bitorder="big")
    assert list(map(bin, y.tolist())) == ["0b10110000", "0b100000", "0b11010000"]
    assert new_indptr.tolist() == [0, 1, 2, 3] and new_indptr.dtype == torch.int32


def test_exported_at_the_top_level_as_flashinfer():
    assert tessera.packbits is packbits and tessera.segment_packbits is segment_packbits


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 16, 61, 1000])
@pytest.mark.parametrize("bitorder", ["little", "big"])
def test_packbits_matches_reference(n, bitorder):
    x = random_bits(n, n)
    y = packbits(x, bitorder=bitorder)
    assert y.dtype == torch.uint8 and y.shape == ((n + 7) // 8,)
    assert y.tolist() == reference_packbits(x.tolist(), bitorder)


def test_packbits_little_puts_element_8n_plus_k_at_bit_k_of_byte_n():
    x = torch.zeros(20, dtype=torch.bool)
    x[11] = True  # byte 1, bit 3
    assert packbits(x, bitorder="little").tolist() == [0, 8, 0]


def test_packbits_takes_nonzero_as_one():
    x = torch.tensor([0, 2, 0, 1, 255, 0, 0, 0, 3], dtype=torch.uint8)
    assert packbits(x, "little").tolist() == packbits(x != 0, "little").tolist() == [0b11010, 1]
    assert packbits(x.float(), "little").tolist() == [0b11010, 1]


@pytest.mark.parametrize("lengths", [[], [0], [5], [8, 8], [3, 0, 13, 0, 0, 8, 1], [0, 0],
                                     [17, 64, 1, 9, 200]])
@pytest.mark.parametrize("bitorder", ["little", "big"])
def test_segment_packbits_matches_reference(lengths, bitorder):
    indptr = [0]
    for n in lengths:
        indptr.append(indptr[-1] + n)
    x = random_bits(indptr[-1], len(lengths))
    y, new_indptr = segment_packbits(x, torch.tensor(indptr, dtype=torch.int32), bitorder)
    want, want_indptr = reference_segment_packbits(x.tolist(), indptr, bitorder)
    assert y.dtype == torch.uint8 and y.tolist() == want
    assert new_indptr.dtype == torch.int32 and new_indptr.tolist() == want_indptr


def test_segment_packbits_over_several_chunks(monkeypatch):
    monkeypatch.setattr(quantization, "_CHUNK_BYTES", 3)
    indptr = [0, 5, 5, 30, 31, 64, 100]
    x = random_bits(100, 7)
    y, _ = segment_packbits(x, torch.tensor(indptr), "little")
    assert y.tolist() == reference_segment_packbits(x.tolist(), indptr, "little")[0]


def test_segment_packbits_indptr_may_start_past_zero_and_be_a_list():
    x = random_bits(40, 3)
    y, new_indptr = segment_packbits(x, [4, 10, 30], "little")
    assert y.tolist() == reference_segment_packbits(x.tolist(), [4, 10, 30], "little")[0]
    assert new_indptr.tolist() == [0, 1, 4]


def test_bitorder_is_checked():
    x = torch.ones(8, dtype=torch.bool)
    with pytest.raises(ValueError, match="bitorder"):
        packbits(x, bitorder="LITTLE")
    with pytest.raises(ValueError, match="bitorder"):
        segment_packbits(x, torch.tensor([0, 8]), bitorder="middle")


def test_arguments_are_checked():
    with pytest.raises(TesseraArgumentError, match="'x'.*1-D"):
        packbits(torch.ones(2, 8, dtype=torch.bool))
    with pytest.raises(TesseraArgumentError, match="'x'.*1-D"):
        segment_packbits(torch.ones(2, 8, dtype=torch.bool), torch.tensor([0, 16]))
    with pytest.raises(TesseraArgumentError, match="'indptr'"):
        segment_packbits(torch.ones(8, dtype=torch.bool), torch.tensor([0, 5, 3]))
    with pytest.raises(TesseraArgumentError, match="'indptr'"):
        segment_packbits(torch.ones(8, dtype=torch.bool), torch.tensor([], dtype=torch.int32))
    with pytest.raises(TesseraArgumentError, match="'x'.*indptr"):
        segment_packbits(torch.ones(8, dtype=torch.bool), torch.tensor([0, 9]))


def test_packbits_under_fake_tensors_keeps_the_device():
    with FakeTensorMode():
        x = torch.empty(61, dtype=torch.bool, device="cuda")
        y = packbits(x, "little")
        assert y.shape == (8,) and y.dtype == torch.uint8 and y.device.type == "cuda"


def test_packbits_traces_into_one_graph():
    captured = []

    def capture(graph_module, example_inputs):
        captured.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    x = random_bits(37, 5)
    y = torch.compile(lambda t: packbits(t, "little"), fullgraph=True, backend=capture)(x)
    assert len(captured) == 1
    assert y.tolist() == reference_packbits(x.tolist(), "little")


@gpu
def test_cuda_matches_cpu():
    indptr = torch.tensor([0, 13, 13, 77, 78, 300], dtype=torch.int32)
    x = random_bits(300, 9)
    y_cpu, i_cpu = segment_packbits(x, indptr, "little")
    y, i = segment_packbits(x.cuda(), indptr.cuda(), "little")
    assert y.is_cuda and i.is_cuda
    assert torch.equal(y.cpu(), y_cpu) and torch.equal(i.cpu(), i_cpu)
    assert torch.equal(packbits(x.cuda(), "little").cpu(), packbits(x, "little"))
