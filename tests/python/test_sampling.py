"""tessera.sampling: draws against the exact float64 filtered distributions
(GPU), and the fakes, both FlashInfer signatures, tracing and argument errors
(CPU)."""

import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import tessera
from tessera import _lib, sampling

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DRAWS = 16384
BATCH = 4096   # draws per call: aliases of one row (stride 0)
BUCKETS = 256  # token % BUCKETS: a per-token distance at 128k would be noise


# ---- float64 reference (kept sets as tessera/api/sampling.h states them)


def _above(values):
    """Per entry: count and mass of the entries strictly above it (rows)."""
    ascending, _ = torch.sort(values, dim=-1)
    cumulative = torch.cumsum(ascending, dim=-1)
    right = torch.searchsorted(ascending, values.contiguous(), right=True)
    vocab = values.shape[-1]
    mass_le = torch.where(right > 0, cumulative.gather(-1, (right - 1).clamp(min=0)),
                          torch.zeros_like(values))
    return vocab - right, cumulative[..., -1:] - mass_le


def kept(probs, top_k=None, top_p=None, min_p=None, top_k_first=False):
    p = probs.double().clamp(min=0)
    alive = p > 0
    if min_p is not None:
        bound = (torch.as_tensor(min_p, dtype=torch.float32, device=p.device)
                 * probs.float().amax(-1)).double()
        alive &= p >= bound.reshape(-1, 1)

    def keep(alive, k, top):
        live = torch.where(alive, p, torch.zeros_like(p))
        count, mass = _above(live)
        ok = count == 0
        k_ok = (torch.ones_like(alive) if k is None
                else count < torch.as_tensor(k, device=p.device).reshape(-1, 1))
        if top is None:
            p_ok = torch.ones_like(alive)
        else:
            limit = torch.as_tensor(top, dtype=torch.float64, device=p.device).reshape(-1, 1)
            p_ok = (mass < limit * live.sum(-1, keepdim=True)) | (limit >= 1)
        return alive & (ok | (k_ok & p_ok))

    if top_k_first:
        return keep(keep(alive, top_k, None), None, top_p)
    return keep(alive, top_k, top_p)


def filtered(probs, **filters):
    mask = kept(probs, **filters)
    p = torch.where(mask, probs.double(), torch.zeros((), dtype=torch.float64,
                                                      device=probs.device))
    return p / p.sum(-1, keepdim=True)


def row(vocab, scale, generator=None):
    logits = torch.randn(vocab, generator=generator, device="cuda") * scale
    return torch.softmax(logits, dim=-1)


def loose(filters):
    """The filter with top_p 1e-4 wider: float32 vs float64 sums at the edge."""
    out = dict(filters)
    if out.get("top_p") is not None:
        out["top_p"] = min(1.0, out["top_p"] + 1e-4)
    return out


def expect_matches(probs_row, tokens, **filters):
    vocab = probs_row.shape[0]
    allowed = kept(probs_row[None], **loose(filters))[0]
    assert bool(((tokens >= 0) & (tokens < vocab)).all())
    assert bool(allowed[tokens.long()].all()), "a draw outside the kept set"
    exact = filtered(probs_row[None], **filters)[0]
    buckets = min(BUCKETS, vocab)
    q = torch.zeros(buckets, dtype=torch.float64, device=exact.device)
    q.index_add_(0, torch.arange(vocab, device=exact.device) % buckets, exact)
    counts = torch.bincount(tokens.long() % buckets, minlength=buckets).double()
    n = tokens.numel()
    distance = 0.5 * (q - counts / n).abs().sum().item()
    noise = 0.5 * torch.sqrt(2 * q * (1 - q) / (math.pi * n)).sum().item()
    # As the gtest: 2x the expected multinomial distance, + 0.005.
    assert distance < 2 * noise + 0.005, (distance, noise)


SAMPLERS = {
    "plain": (lambda p, g: sampling.sampling_from_probs(p, generator=g), {}),
    "top_k=1": (lambda p, g: sampling.top_k_sampling_from_probs(p, 1, generator=g),
                {"top_k": 1}),
    "top_k=20": (lambda p, g: sampling.top_k_sampling_from_probs(p, 20, generator=g),
                 {"top_k": 20}),
    "top_p=0.5": (lambda p, g: sampling.top_p_sampling_from_probs(p, 0.5, generator=g),
                  {"top_p": 0.5}),
    "top_p=1": (lambda p, g: sampling.top_p_sampling_from_probs(p, 1.0, generator=g),
                {"top_p": 1.0}),
    "min_p=0": (lambda p, g: sampling.min_p_sampling_from_probs(p, 0.0, generator=g),
                {"min_p": 0.0}),
    "min_p=0.1": (lambda p, g: sampling.min_p_sampling_from_probs(p, 0.1, generator=g),
                  {"min_p": 0.1}),
    "joint": (lambda p, g: sampling.top_k_top_p_sampling_from_probs(
        p, 50, 0.7, filter_apply_order="joint", generator=g), {"top_k": 50, "top_p": 0.7}),
    "top_k_first": (lambda p, g: sampling.top_k_top_p_sampling_from_probs(
        p, 50, 0.7, generator=g), {"top_k": 50, "top_p": 0.7, "top_k_first": True}),
}


def draw(function, probs_row, generator, draws=DRAWS):
    out = []
    for start in range(0, draws, BATCH):
        batch = min(BATCH, draws - start)
        out.append(function(probs_row.expand(batch, -1), generator))
    return torch.cat(out)


# ---- GPU


@needs_gpu
@pytest.mark.parametrize("vocab", [111, 32000, 128256])
@pytest.mark.parametrize("scale", [3.0, 0.1], ids=["peaked", "flat"])
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_draws_follow_the_exact_filtered_distribution(vocab, scale, name):
    generator = torch.Generator("cuda").manual_seed(vocab + int(scale * 10))
    probs_row = row(vocab, scale, generator)
    function, filters = SAMPLERS[name]
    expect_matches(probs_row, draw(function, probs_row, generator), **filters)


@needs_gpu
def test_legacy_signature_returns_samples_and_success():
    probs = torch.softmax(torch.randn(64, 1000, device="cuda"), -1)
    uniforms = torch.rand(32, 64, device="cuda")
    samples, success = sampling.top_p_sampling_from_probs(probs, uniforms, 0.9)
    assert samples.dtype == torch.int32 and success.dtype == torch.bool
    assert bool(success.all())
    assert bool(kept(probs, top_p=0.9 + 1e-4).gather(1, samples.long()[:, None]).all())
    samples, success = sampling.top_k_top_p_sampling_from_probs(probs, uniforms, 5, 0.9)
    assert bool(kept(probs, top_k=5, top_p=0.9 + 1e-4, top_k_first=True)
                .gather(1, samples.long()[:, None]).all())
    plain = sampling.sampling_from_probs(probs, uniforms[0])
    assert plain.shape == (64,) and plain.dtype == torch.int32


@needs_gpu
def test_same_generator_state_gives_identical_samples():
    probs = torch.softmax(torch.randn(256, 128256, device="cuda") * 2, -1)
    runs = [sampling.top_k_top_p_sampling_from_probs(
        probs, 100, 0.8, generator=torch.Generator("cuda").manual_seed(7)) for _ in range(3)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@needs_gpu
def test_per_request_parameters_apply_to_their_own_rows():
    probs = torch.softmax(torch.randn(128, 5000, device="cuda") * 2, -1)
    top_k = torch.randint(1, 200, (128,), device="cuda", dtype=torch.int32)
    top_p = torch.rand(128, device="cuda") * 0.95 + 0.05
    for _ in range(10):
        samples = sampling.top_k_top_p_sampling_from_probs(probs, top_k, top_p,
                                                           filter_apply_order="joint")
        allowed = kept(probs, top_k=top_k, top_p=(top_p.double() + 1e-4).clamp(max=1))
        assert bool(allowed.gather(1, samples.long()[:, None]).all())


@needs_gpu
def test_nan_rows_raise_or_are_flagged():
    probs = torch.softmax(torch.randn(8, 1024, device="cuda"), -1)
    probs[3, 17] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sampling.top_p_sampling_from_probs(probs, 0.9, check_nan=True)
    samples, success = sampling.top_p_sampling_from_probs(
        probs, torch.rand(32, 8, device="cuda"), 0.9, check_nan=True)
    assert success.tolist() == [True, True, True, False, True, True, True, True]
    assert bool(((samples >= 0) & (samples < 1024)).all())


@needs_gpu
@pytest.mark.parametrize("vocab", [111, 32000, 128256])
def test_renorm_matches_reference(vocab):
    probs = torch.softmax(torch.randn(16, vocab, device="cuda") * 2, -1)
    torch.testing.assert_close(sampling.top_p_renorm_probs(probs, 0.6).double(),
                               filtered(probs, top_p=0.6), atol=1e-9, rtol=1e-5)
    torch.testing.assert_close(sampling.top_k_renorm_probs(probs, 37).double(),
                               filtered(probs, top_k=37), atol=1e-9, rtol=1e-5)


@needs_gpu
@pytest.mark.parametrize("vocab", [111, 32000, 128256])
def test_top_k_mask_logits_matches_reference(vocab):
    logits = torch.randn(8, vocab, device="cuda") * 4
    masked = sampling.top_k_mask_logits(logits, 20)
    # Shifted positive in float64: the same order (and ties) as the logits.
    keep = kept(logits.double() - logits.double().amin(-1, keepdim=True) + 1, top_k=20)
    expected = torch.where(keep, logits, torch.full_like(logits, -math.inf))
    assert torch.equal(masked, expected)


@needs_gpu
@pytest.mark.parametrize("order", ["top_k_first", "joint"])
def test_logits_sampling_stays_in_the_kept_set(order):
    logits = torch.randn(512, 32000, device="cuda") * 3
    samples = sampling.top_k_top_p_sampling_from_logits(logits, 40, 0.8, filter_apply_order=order)
    allowed = kept(torch.softmax(logits, -1), top_k=40, top_p=0.8 + 1e-4,
                   top_k_first=order == "top_k_first")
    assert bool(allowed.gather(1, samples.long()[:, None]).all())


# ---- CPU (fakes, signatures, tracing, errors)


def fake_probs(batch=4, vocab=128256):
    return torch.empty(batch, vocab, dtype=torch.float32, device="cuda")


def test_fakes_give_output_shapes_in_both_signatures():
    with FakeTensorMode():
        probs = fake_probs()
        uniforms = torch.empty(32, 4, device="cuda")
        assert sampling.sampling_from_probs(probs).shape == (4,)
        assert sampling.sampling_from_probs(probs, uniforms[0]).dtype == torch.int32
        for later, legacy in (
                (lambda: sampling.top_p_sampling_from_probs(probs, 0.9),
                 lambda: sampling.top_p_sampling_from_probs(probs, uniforms, 0.9)),
                (lambda: sampling.top_k_sampling_from_probs(probs, 10),
                 lambda: sampling.top_k_sampling_from_probs(probs, uniforms, 10)),
                (lambda: sampling.min_p_sampling_from_probs(probs, 0.1),
                 lambda: sampling.min_p_sampling_from_probs(probs, uniforms, 0.1)),
                (lambda: sampling.top_k_top_p_sampling_from_probs(probs, 10, 0.9),
                 lambda: sampling.top_k_top_p_sampling_from_probs(probs, uniforms, 10, 0.9))):
            samples = later()
            assert samples.shape == (4,) and samples.dtype == torch.int32
            samples, success = legacy()
            assert samples.shape == (4,) and success.dtype == torch.bool
        assert sampling.top_p_renorm_probs(probs, 0.5).shape == probs.shape
        assert sampling.top_k_renorm_probs(probs, 5).shape == probs.shape
        assert sampling.top_k_mask_logits(probs, 5).shape == probs.shape
        indices = torch.zeros(6, dtype=torch.int64, device="cuda")
        assert sampling.sampling_from_probs(probs, indices).dtype == torch.int64


def test_legacy_form_is_told_by_the_argument_after_probs():
    u = torch.empty(32, 4)
    k = torch.empty(4, dtype=torch.int32)
    p = torch.empty(4)
    assert sampling._is_legacy((u, 0.5), {}, 1)
    assert sampling._is_legacy((u, p), {}, 1)
    assert sampling._is_legacy((u, k), {}, 1, real_first=False)  # 0.2 top_k array
    assert sampling._is_legacy((u, 3, 0.5), {}, 2, real_first=False)
    assert sampling._is_legacy((), {"uniform_samples": u}, 1)
    assert not sampling._is_legacy((0.5,), {}, 1)
    assert not sampling._is_legacy((p,), {}, 1)
    assert not sampling._is_legacy((p, k), {}, 1)  # top_p tensor, then indices
    assert not sampling._is_legacy((k, p), {}, 2, real_first=False)
    assert not sampling._is_legacy((k.long(),), {}, 0)  # indices


def test_reexported_at_top_level_as_flashinfer_does():
    for name in sampling.__all__:
        assert getattr(tessera, name) is getattr(sampling, name)


def test_fullgraph_compile_traces_the_ops():
    captured = []

    def capture(graph_module, example_inputs):
        captured.extend(node.target for node in graph_module.graph.nodes
                        if node.op == "call_function")
        return graph_module.forward

    def step(probs, uniforms):
        renormed = sampling.top_k_renorm_probs(probs, 20)
        return sampling.top_p_sampling_from_probs(renormed, uniforms, 0.9)

    with FakeTensorMode():
        probs, uniforms = fake_probs(8, 1000), torch.empty(32, 8, device="cuda")
    torch._dynamo.reset()
    samples, success = torch.compile(step, fullgraph=True, backend=capture)(probs, uniforms)
    assert samples.shape == (8,)
    assert torch.ops.tessera.top_k_renorm_probs in captured
    assert torch.ops.tessera.top_p_sampling_from_probs in captured


def test_ops_declare_their_written_tensors():
    schema = str(torch.ops.tessera.top_p_sampling_from_probs.default._schema)
    assert "Tensor(a4!) samples" in schema and "Tensor(a5!) success" in schema
    assert "Tensor(a3!) out" in str(torch.ops.tessera.top_k_mask_logits.default._schema)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_probabilities_not_float32_are_rejected_by_name(dtype):
    probs = torch.rand(4, 100, dtype=dtype)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'probs'.*float32"):
        sampling.top_k_sampling_from_probs(probs, 3)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'probs'.*float32"):
        sampling.top_p_renorm_probs(probs, 0.5)


def test_wrong_ranks_are_rejected_by_name():
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'probs'.*2 dimensions"):
        sampling.sampling_from_probs(torch.rand(100))
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'uniform_samples'"):
        sampling.top_p_sampling_from_probs(torch.rand(4, 100), torch.rand(1, 32, 4), 0.5)


@pytest.mark.parametrize("top_k", [0, -1])
def test_top_k_below_one_is_rejected(top_k):
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'top_k'"):
        sampling.top_k_sampling_from_probs(torch.rand(4, 100), top_k)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'top_k'"):
        sampling.top_k_mask_logits(torch.rand(4, 100), top_k)


@pytest.mark.parametrize("top_p", [0.0, -0.5, 1.5])
def test_top_p_outside_zero_one_is_rejected(top_p):
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'top_p'"):
        sampling.top_p_sampling_from_probs(torch.rand(4, 100), top_p)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'top_p'"):
        sampling.top_p_renorm_probs(torch.rand(4, 100), top_p)


def test_parameter_tensors_of_wrong_length_are_rejected():
    probs = torch.rand(4, 100)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'top_k_arr'"):
        sampling.top_k_sampling_from_probs(probs, torch.ones(3, dtype=torch.int32))
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'top_p_arr'"):
        sampling.top_k_top_p_sampling_from_probs(probs, 5, torch.full((5,), 0.5))


def test_unknown_filter_order_is_rejected():
    with pytest.raises(_lib.TesseraArgumentError, match="filter_apply_order"):
        sampling.top_k_top_p_sampling_from_probs(torch.rand(4, 100), 5, 0.5,
                                                 filter_apply_order="top_p_first")


def test_cpu_tensors_are_rejected_by_the_library():
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'probs'.*CUDA"):
        sampling.top_p_sampling_from_probs(torch.rand(4, 100), 0.5)


# ---- chain speculative sampling


@needs_gpu
def test_speculative_counts_follow_the_acceptance_rule():
    batch, n, vocab = 256, 4, 1000
    draft = torch.softmax(torch.randn(batch, n, vocab, device="cuda"), -1)
    target = torch.softmax(torch.randn(batch, n + 1, vocab, device="cuda"), -1)
    ids = torch.multinomial(draft.reshape(-1, vocab), 1).reshape(batch, n).int()
    uniforms = torch.rand(batch, n + 1, device="cuda")
    start = torch.full((batch,), 7, dtype=torch.int32, device="cuda")
    out, accepted, emitted = sampling.chain_speculative_sampling(
        draft, ids, uniforms, target, start.clone(), start.clone())
    q = draft.gather(-1, ids.long()[..., None])[..., 0]
    p = target[:, :n].gather(-1, ids.long()[..., None])[..., 0]
    accept = uniforms[:, :n] * q < p  # float32, as the kernel
    first = torch.where(accept.all(-1), n, (~accept).int().argmax(-1))
    assert torch.equal(accepted, 7 + accept.sum(-1).int())
    assert torch.equal(emitted, 7 + first.int())
    slots = torch.arange(n + 1, device="cuda")[None]
    prefix = torch.cat([ids, torch.zeros(batch, 1, dtype=torch.int32, device="cuda")], -1)
    assert torch.equal(torch.where(slots < first[:, None], out, prefix), prefix)
    assert bool((out[slots > first[:, None]] == -1).all())


@needs_gpu
def test_speculative_first_token_follows_the_target():
    batch, vocab = 16384, 111
    q = torch.softmax(torch.randn(vocab, device="cuda") * 1.5, -1)
    p = torch.softmax(torch.randn(vocab, device="cuda") * 1.5, -1)
    draft = q.expand(batch, 1, vocab).contiguous()
    target = torch.stack([p, q]).expand(batch, 2, vocab).contiguous()
    ids = torch.multinomial(q, batch, replacement=True).int()[:, None]
    out, _, _ = sampling.chain_speculative_sampling(draft, ids, target)  # later form
    counts = torch.bincount(out[:, 0].long(), minlength=vocab).double()
    exact = p.double()
    distance = 0.5 * (exact - counts / batch).abs().sum().item()
    noise = 0.5 * torch.sqrt(2 * exact * (1 - exact) / (math.pi * batch)).sum().item()
    assert distance < 2 * noise + 0.005, (distance, noise)


def test_speculative_fakes_and_errors():
    with FakeTensorMode():
        draft = torch.empty(4, 3, 1000, device="cuda")
        target = torch.empty(4, 4, 1000, device="cuda")
        ids = torch.empty(4, 3, dtype=torch.int32, device="cuda")
        out, accepted, emitted = sampling.chain_speculative_sampling(draft, ids, target)
        assert out.shape == (4, 4) and accepted.shape == (4,) and emitted.dtype == torch.int32
        out, _, _ = sampling.chain_speculative_sampling(
            draft, ids, torch.empty(4, 4, device="cuda"), target)
        assert out.shape == (4, 4)
    with pytest.raises(_lib.TesseraArgumentError, match="argument 'target_probs'"):
        sampling.chain_speculative_sampling(torch.rand(4, 3, 100),
                                            torch.zeros(4, 3, dtype=torch.int32),
                                            torch.rand(4, 3, 100))
