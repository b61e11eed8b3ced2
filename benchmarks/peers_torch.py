#!/usr/bin/env python3
"""Times the PyTorch peers of every tessera_bench measurement, same shapes.

Reads tessera_bench's output (stdin or a file), and for every `result` line
whose kernel has a peer here, builds the same shape from the case string and
times the peer the same way (warm-up, L2 flushed before each run, CUDA events,
median). Prints `peer,<kernel>,"<case>",<peer>,<metric>,<value>` lines.

Peers: torch.compile of the same op (norms, RoPE, activation), advanced
indexing (index_put) for the paged-KV append, SDPA / flex for attention,
the absorbed math in torch (eager, compiled, SDPA) for MLA, for the GEMMs
torch._grouped_mm (where the installed torch has it), a Python loop of
torch.matmul, one dense GEMM of the same FLOPs (the ceiling of a MoE shape)
and torch._scaled_mm per batch (bmm_fp8), and for the sampling rows the
torch pipeline a serving engine runs (sort + cumsum + mask + multinomial),
eager and under torch.compile. Token dims are marked dynamic so
one compile serves the whole sweep.
"""
import csv
import statistics
import sys

import torch
import torch.nn.functional as F

WARMUP = 5
WARMUP_MS = 50.0      # warm-up also lasts this long (bench_harness.h: BenchConfig::warmup_ms)
ITERS = 50            # samples of single, L2-flushed calls
STREAMED_SAMPLES = 15  # samples of back-to-back calls (working set > 2x L2)
CALLS_PER_SAMPLE = 10
EPS = 1e-6


def parse_case(case):
    out = {}
    for item in case.split(","):
        key, value = item.split("=")
        out[key] = value
    return out


class Timer:
    """Times exactly as tessera_bench does (benchmarks/bench_harness.h)."""

    def __init__(self):
        self.l2 = torch.cuda.get_device_properties(0).L2_cache_size
        self.flush = torch.empty(2 * self.l2, dtype=torch.uint8, device="cuda")

    def median_us(self, fn, working_set_bytes):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(WARMUP):
            fn()
        stop.record()
        stop.synchronize()
        ms_per_call = max(1e-3, start.elapsed_time(stop) / WARMUP)
        for _ in range(int(min(WARMUP_MS / ms_per_call, 20000))):
            fn()
        torch.cuda.synchronize()
        samples = []
        if working_set_bytes > 2 * self.l2:
            for _ in range(STREAMED_SAMPLES):
                start = torch.cuda.Event(enable_timing=True)
                stop = torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(CALLS_PER_SAMPLE):
                    fn()
                stop.record()
                stop.synchronize()
                samples.append(start.elapsed_time(stop) * 1e3 / CALLS_PER_SAMPLE)
            return statistics.median(samples)
        for i in range(ITERS):
            self.flush.fill_(i & 0xFF)
            start = torch.cuda.Event(enable_timing=True)
            stop = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            samples.append(start.elapsed_time(stop) * 1e3)
        return statistics.median(samples)


def rmsnorm_ref(x, w):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS) * w.float()).to(x.dtype)


def fused_add_rmsnorm_ref(x, r, w):
    s = x.float() + r.float()
    out = (s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + EPS) * w.float()).to(x.dtype)
    return out, s.to(r.dtype)


def silu_and_mul_ref(x):
    d = x.shape[-1] // 2
    return (F.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)


def rope_neox(x, cos, sin):
    half = x.shape[-1] // 2
    x1 = x[..., :half].float()
    x2 = x[..., half:].float()
    c = cos[:, None, :]
    s = sin[:, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


def rope_pos_ids_ref(q, k, pos, inv_freq):
    angles = pos.float()[:, None] * inv_freq[None, :]
    cos, sin = torch.cos(angles), torch.sin(angles)
    return rope_neox(q, cos, sin), rope_neox(k, cos, sin)


def rope_cache_ref(q, k, pos, cache):
    rows = cache[pos]
    half = rows.shape[-1] // 2
    return rope_neox(q, rows[:, :half], rows[:, half:]), rope_neox(k, rows[:, :half], rows[:, half:])


COMPILED = {}


def compiled(name, fn, dynamic=None):
    if name not in COMPILED:
        COMPILED[name] = torch.compile(fn, dynamic=dynamic)
    return COMPILED[name]


def dyn(t):
    torch._dynamo.mark_dynamic(t, 0)
    return t


def random_tensor(dtype, *shape):
    return torch.rand(*shape, device="cuda", dtype=dtype) * 2 - 1


def bf16(*shape):
    return random_tensor(torch.bfloat16, *shape)


def measure(timer, kernel, case):
    # bench_python.py's rows (py_<kernel>) have the same peers as tessera_bench's.
    if kernel.startswith("py_"):
        kernel = kernel[len("py_"):]
    if kernel.endswith("_jit"):
        # A JIT build of a built-in variant beside the AOT kernel (same case).
        aot = VALUES.get((kernel[:-len("_jit")], case))
        metric = next(iter(METRICS.get((kernel, case), {"GB/s"})))
        return [("tessera_aot", metric, aot)] if aot is not None else []
    if kernel == "cascade_decode":
        # The peer is Tessera's own batch decode over the concatenated page
        # tables, timed in the same run (bench_cascade.cpp): ratio = speedup.
        plain = VALUES.get(("cascade_decode_plain", case))
        return [("tessera_decode", "us", plain)] if plain is not None else []
    p = parse_case(case)
    if kernel == "batch_decode":
        return decode_peers(timer, p)
    if kernel == "mla_decode":
        return mla_peers(timer, p)
    if kernel == "mla_decode_fa2":
        return []  # the portable kernel's rows share the mla_decode row's peers (same case)
    if kernel == "segment_gemm":
        return segment_gemm_peers(timer, p)
    if kernel == "bmm_fp8":
        return bmm_fp8_peers(timer, p)
    # Prefill rows of either back end (suffix "_fa3": the Hopper kernels;
    # "_fp8": an fp8 paged cache) share the dense peers of their shape,
    # measured once (prefill_peers caches them).
    fa3 = kernel.endswith("_fa3")
    base = kernel[:-len("_fa3")] if fa3 else kernel
    if base in ("single_prefill", "batch_prefill_ragged"):
        rows = list(prefill_peers(timer, p))
        fa2 = VALUES.get((base, case)) if fa3 else None
        if fa2 is not None:
            rows.append(("tessera_fa2", "TFLOP/s", fa2))
        return rows
    if base in ("batch_prefill_paged", "batch_prefill_paged_fp8"):
        # The SDPA peers see dense data: the same rows as the ragged case, plus
        # the ratio to Tessera's own dense kernel (same back end) on this shape.
        rows = list(prefill_peers(timer, p))
        dense_case = ",".join(x for x in case.split(",") if not x.startswith("page="))
        dense = VALUES.get(("batch_prefill_ragged_fa3" if fa3 else "batch_prefill_ragged",
                            dense_case))
        if dense is not None:
            rows.append(("tessera_ragged", "TFLOP/s", dense))
        return rows
    if kernel in SAMPLING_PEERS:
        return sampling_peers(timer, kernel, p)
    if "T" not in p:
        return []  # no peer for this measurement (plan time, graph replay)
    T = int(p["T"])
    if kernel in ("rmsnorm", "fused_add_rmsnorm"):
        H = int(p["H"])
        x, r, w = dyn(bf16(T, H)), dyn(bf16(T, H)), bf16(H)
        if kernel == "rmsnorm":
            fn = compiled(kernel, rmsnorm_ref)
            nbytes = 2 * T * H * 2 + H * 2
            us = timer.median_us(lambda: fn(x, w), nbytes)
            return [("torch_compile", "GB/s", nbytes / (us * 1e3))]
        fn = compiled(kernel, fused_add_rmsnorm_ref)
        nbytes = 4 * T * H * 2 + H * 2
        us = timer.median_us(lambda: fn(x, r, w), nbytes)
        return [("torch_compile", "GB/s", nbytes / (us * 1e3))]
    if kernel == "silu_and_mul":
        D = int(p["D"])
        x = dyn(bf16(T, 2 * D))
        fn = compiled(kernel, silu_and_mul_ref)
        nbytes = 3 * T * D * 2
        us = timer.median_us(lambda: fn(x), nbytes)
        return [("torch_compile", "GB/s", nbytes / (us * 1e3))]
    if kernel in ("apply_rope_pos_ids", "apply_rope_with_cos_sin_cache"):
        Hq, Hk, D = int(p["Hq"]), int(p["Hk"]), int(p["D"])
        q, k = dyn(bf16(T, Hq, D)), dyn(bf16(T, Hk, D))
        qk_bytes = 2 * T * (Hq + Hk) * D * 2 + 4 * T
        if kernel == "apply_rope_pos_ids":
            pos = dyn(torch.randint(0, 32768, (T,), device="cuda", dtype=torch.int32))
            inv_freq = 1.0 / (5e5 ** (torch.arange(0, D, 2, device="cuda").float() / D))
            fn = compiled(kernel, rope_pos_ids_ref)
            us = timer.median_us(lambda: fn(q, k, pos, inv_freq), qk_bytes)
            return [("torch_compile", "GB/s", qk_bytes / (us * 1e3))]
        pos = dyn(torch.randint(0, 32768, (T,), device="cuda", dtype=torch.int64))
        cache = torch.rand(32768, D, device="cuda", dtype=torch.float32)
        fn = compiled(kernel, rope_cache_ref)
        nbytes = qk_bytes + 4 * T * D
        us = timer.median_us(lambda: fn(q, k, pos, cache), nbytes)
        return [("torch_compile", "GB/s", nbytes / (us * 1e3))]
    if kernel == "append_paged_kv_cache":
        B, Hk, D, page = int(p["B"]), int(p["Hk"]), int(p["D"]), int(p["page"])
        per_request = T // B
        seq_len = 100 + per_request
        pages_per_request = (seq_len + page - 1) // page
        num_pages = B * pages_per_request
        perm = torch.randperm(num_pages, device="cuda", generator=None).int()
        batch = torch.arange(B, device="cuda").repeat_interleave(per_request)
        pos = (100 + torch.arange(per_request, device="cuda")).repeat(B)
        page_idx = perm[batch * pages_per_request + pos // page].long()
        slot = (pos % page).long()
        cache = torch.empty(num_pages, 2, page, Hk, D, device="cuda", dtype=torch.bfloat16)
        key, value = bf16(T, Hk, D), bf16(T, Hk, D)

        def index_put():
            cache[page_idx, 0, slot] = key
            cache[page_idx, 1, slot] = value

        nbytes = 4 * T * Hk * D * 2 + 8 * T
        us = timer.median_us(index_put, nbytes)
        rows = [("torch", "GB/s", nbytes / (us * 1e3))]
        if "us" in METRICS.get((kernel, case), ()):
            rows.append(("torch", "us", us))
        return rows
    return []


def uneven_lengths(tokens, segments):
    """bench_gemm.cu's routing: shares proportional to 1 / (i + 1), floor,
    the remainder to segment 0."""
    total_weight = sum(1.0 / (i + 1) for i in range(segments))
    lengths = [int(tokens / (i + 1) / total_weight) for i in range(segments)]
    lengths[0] += tokens - sum(lengths)
    return lengths


def segment_gemm_peers(timer, p):
    """The same segments (bench_gemm.cu) through torch: torch._grouped_mm
    where present, a loop of torch.matmul, and for MoE one dense GEMM of
    equal FLOPs (the shape's ceiling). Metric as the row's (MoE TFLOP/s,
    LoRA GB/s of weights + x + y)."""
    if p["kind"] == "moe":
        lengths = uneven_lengths(int(p["T"]), int(p["E"]))
        d_in, d_out = int(p["d_in"]), int(p["d_out"])
        metric = "TFLOP/s"
    else:
        segments, rank, d = int(p["S"]), int(p["r"]), int(p["d"])
        lengths = [int(p["rows"])] * segments
        d_in, d_out = (d, rank) if p["kind"] == "lora_shrink" else (rank, d)
        metric = "GB/s"
    rows_total = sum(lengths)
    x = bf16(rows_total, d_in)
    weights = bf16(len(lengths), d_out, d_in)  # column-major, as tessera_bench
    flops = 2.0 * rows_total * d_in * d_out
    nbytes = 2.0 * (weights.numel() + x.numel() + rows_total * d_out)

    def value(us):
        return flops / (us * 1e6) if metric == "TFLOP/s" else nbytes / (us * 1e3)

    rows = []
    offsets = torch.tensor(lengths, device="cuda").cumsum(0).to(torch.int32)
    grouped = getattr(torch, "_grouped_mm", None)
    if grouped is not None:
        try:
            w_t = weights.transpose(-2, -1)  # [E, d_in, d_out], d_in contiguous
            fn = lambda: grouped(x, w_t, offs=offsets)
            fn()
            rows.append(("torch_grouped_mm", metric, value(timer.median_us(fn, nbytes))))
        except Exception as error:
            print(f"# torch._grouped_mm failed for {p}: {error}", file=sys.stderr)
    bounds = [0]
    for length in lengths:
        bounds.append(bounds[-1] + length)

    def loop():
        for i in range(len(lengths)):
            if bounds[i + 1] > bounds[i]:
                torch.matmul(x[bounds[i]:bounds[i + 1]], weights[i].t())

    rows.append(("torch_loop", metric, value(timer.median_us(loop, nbytes))))
    if p["kind"] == "moe":
        dense_w = bf16(d_out, d_in)
        fn = lambda: torch.matmul(x, dense_w.t())
        dense_bytes = 2.0 * (dense_w.numel() + x.numel() + rows_total * d_out)
        rows.append(("cublas_dense", metric, flops / (timer.median_us(fn, dense_bytes) * 1e6)))
    del x, weights
    torch.cuda.empty_cache()
    return rows


def bmm_fp8_peers(timer, p):
    """torch._scaled_mm on each batch (fast accumulation, as cuBLASLt runs
    for bmm_fp8), same shapes and scales."""
    b, m, n, k = (int(p[key]) for key in ("b", "m", "n", "k"))
    a = bf16(b, m, k).to(torch.float8_e4m3fn)
    w = bf16(b, n, k).to(torch.float8_e4m3fn)
    scale_a = torch.tensor(0.5, device="cuda")
    scale_b = torch.tensor(0.25, device="cuda")

    def run():
        for i in range(b):
            torch._scaled_mm(a[i], w[i].t(), scale_a=scale_a, scale_b=scale_b,
                             out_dtype=torch.bfloat16, use_fast_accum=True)

    nbytes = a.numel() + w.numel() + 2.0 * b * m * n
    us = timer.median_us(run, nbytes)
    return [("torch_scaled_mm", "TFLOP/s", 2.0 * b * m * n * k / (us * 1e6))]


# ---- sampling peers (benchmarks/bench_sampling.cu: same constants)
SAMPLING_TOP_K, SAMPLING_TOP_P, SAMPLING_MIN_P = 50, 0.9, 0.05


def sorted_filter_sample(probs, top_k, top_p):
    """The engine pipeline: sort, cumsum, mask the tail, multinomial, map back."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    if top_p is not None:
        mass_above = sorted_probs.cumsum(-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(
            mass_above > top_p * probs.sum(-1, keepdim=True), 0)
    if top_k is not None:
        sorted_probs[:, top_k:] = 0
    choice = torch.multinomial(sorted_probs, 1)
    return order.gather(-1, choice).squeeze(-1)


def min_p_sample(probs, min_p):
    bound = min_p * probs.amax(-1, keepdim=True)
    return torch.multinomial(probs.masked_fill(probs < bound, 0), 1).squeeze(-1)


def top_p_renorm_ref(probs, top_p):
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_above = sorted_probs.cumsum(-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_above > top_p, 0)
    kept = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return kept / kept.sum(-1, keepdim=True)


def top_k_mask_ref(logits, top_k):
    threshold = logits.topk(top_k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))


SAMPLING_PEERS = {
    "sampling_from_probs": lambda probs: torch.multinomial(probs, 1),
    "top_k_sampling": lambda probs: sorted_filter_sample(probs, SAMPLING_TOP_K, None),
    "top_p_sampling": lambda probs: sorted_filter_sample(probs, None, SAMPLING_TOP_P),
    "min_p_sampling": lambda probs: min_p_sample(probs, SAMPLING_MIN_P),
    "top_k_top_p_sampling": lambda probs: sorted_filter_sample(probs, SAMPLING_TOP_K,
                                                               SAMPLING_TOP_P),
    "top_p_renorm_probs": lambda probs: top_p_renorm_ref(probs, SAMPLING_TOP_P),
    "top_k_mask_logits": lambda probs: top_k_mask_ref(probs, SAMPLING_TOP_K),
}


def sampling_peers(timer, kernel, p):
    """Eager torch and torch.compile of the engine pipeline, same shape and
    byte count as the tessera row (probs read once; renorm / mask also write)."""
    B, V = int(p["B"]), int(p["V"])
    probs = torch.softmax(torch.randn(B, V, device="cuda") * 3, dim=-1)
    writes = kernel in ("top_p_renorm_probs", "top_k_mask_logits")
    nbytes = (8.0 if writes else 4.0) * B * V + (0 if writes else 4.0 * 32 * B + 5.0 * B)
    fn = SAMPLING_PEERS[kernel]
    us = timer.median_us(lambda: fn(probs), nbytes)
    rows = [("torch", "us", us), ("torch", "GB/s", nbytes / (us * 1e3))]
    # One static compile per shape: inductor's dynamic-shape recompile of the
    # sorted top-p pipeline failed on torch 2.11 (B=32 / 128), which took the
    # eager row down with it.
    try:
        fast = compiled(f"sampling_{kernel}_{B}x{V}", fn, dynamic=False)
        us = timer.median_us(lambda: fast(probs), nbytes)
        rows += [("torch_compile", "us", us), ("torch_compile", "GB/s", nbytes / (us * 1e3))]
    except Exception as error:  # noqa: BLE001 - a compiler failure is reported, not fatal
        print(f"# torch.compile peer for {kernel} {B}x{V} failed: {error}", file=sys.stderr)
    return rows


DECODE_CACHE = {}


def decode_peers(timer, p):
    """cuDNN and flash SDPA on the same batch in dense layout (GQA, q_len 1).

    The paged layout does not matter to them, so page 16 and page 1 rows share
    one measurement per (B, L)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, L, Hq, Hk, D = (int(p[k]) for k in ("B", "L", "Hq", "Hk", "D"))
    key = (B, L, Hq, Hk, D)
    if key in DECODE_CACHE:
        return DECODE_CACHE[key]
    q = bf16(B, Hq, 1, D)
    k = bf16(B, Hk, L, D)
    v = bf16(B, Hk, L, D)
    kv_bytes = 2 * B * L * Hk * D * 2
    rows = []
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                fn()
                us = timer.median_us(fn, kv_bytes)
            rows.append((name, "GB/s", kv_bytes / (us * 1e3)))
        except Exception as error:  # a backend that refuses the shape is reported
            print(f"# {name} SDPA failed for {key}: {error}", file=sys.stderr)
    del q, k, v
    torch.cuda.empty_cache()
    DECODE_CACHE[key] = rows
    return rows


def prefill_peers(timer, p):
    """flash, cuDNN SDPA and flex_attention on the same dense batch (B
    requests of qo_len = kv_len = L), TFLOP/s counted as tessera_bench does.
    Cached per shape: the ragged and paged rows share one measurement."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    B, L, Hq, Hk, D = (int(p[k]) for k in ("B", "L", "Hq", "Hk", "D"))
    causal = p["causal"] == "1"
    dtype = torch.float16 if p.get("dtype") == "fp16" else torch.bfloat16
    key = (B, L, Hq, Hk, D, causal, dtype)
    if key in PREFILL_CACHE:
        return PREFILL_CACHE[key]
    gqa = Hq != Hk
    q, k, v = (random_tensor(dtype, B, H, L, D) for H in (Hq, Hk, Hk))
    pairs = L * (L + 1) / 2 if causal else L * L
    flops = 4 * D * Hq * pairs * B
    nbytes = 4 * B * L * Hq * D * 2
    rows = []
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                            enable_gqa=gqa)
                fn()
                us = timer.median_us(fn, nbytes)
            rows.append((name, "TFLOP/s", flops / (us * 1e6)))
        except Exception as error:
            print(f"# {name} SDPA failed for {p}: {error}", file=sys.stderr)
    try:
        mask = None
        if causal:
            mask = create_block_mask(lambda b, h, qi, ki: qi >= ki, None, None, L, L)
        flex = compiled("flex_attention", flex_attention)
        fn = lambda: flex(q, k, v, block_mask=mask, enable_gqa=gqa)
        fn()
        us = timer.median_us(fn, nbytes)
        rows.append(("flex_attention", "TFLOP/s", flops / (us * 1e6)))
    except Exception as error:
        print(f"# flex_attention failed for {p}: {error}", file=sys.stderr)
    del q, k, v
    torch.cuda.empty_cache()
    PREFILL_CACHE[key] = rows
    return rows


def mla_peers(timer, p):
    """MLA after the absorption (docs/mla.md) in PyTorch on a dense latent
    cache [B, L, 576] (unpaged, so favoured): bmm, float32 softmax, bmm
    (eager and torch.compile), and SDPA with the latent as K and its first
    512 values as V where a backend takes those head sizes. Both of the
    row's metrics, counted as tessera_bench counts them (bench_mla.cu)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    B, L, H, qo = (int(p[k]) for k in ("B", "L", "H", "qo"))
    causal = qo > 1
    rows_per = qo * H
    q = bf16(B, rows_per, 576) * 0.1          # rows token-major: token i, head h
    latent = bf16(B, L, 576)
    scale = 1.0 / 192 ** 0.5
    token = torch.arange(rows_per, device="cuda") // H
    visible = torch.arange(L, device="cuda")[None, :] <= (L - qo + token)[:, None]

    def absorbed(q, latent):
        logits = torch.bmm(q, latent.transpose(1, 2)).float() * scale
        if causal:
            logits = logits.masked_fill(~visible, float("-inf"))
        return torch.bmm(torch.softmax(logits, dim=-1).to(latent.dtype), latent[..., :512])

    pairs = sum(H * ((L - qo + i + 1) if causal else L) for i in range(qo))
    flops = 2.0 * B * pairs * (576 + 512)
    nbytes = 2.0 * B * L * 576 + 2.0 * B * rows_per * (576 + 512)
    rows = []

    def add(name, fn):
        fn()
        us = timer.median_us(fn, nbytes)
        rows.append((name, "GB/s", nbytes / (us * 1e3)))
        rows.append((name, "TFLOP/s", flops / (us * 1e6)))

    add("torch", lambda: absorbed(q, latent))
    try:
        fn = compiled("mla_absorbed", absorbed)
        add("torch_compile", lambda: fn(q, latent))
    except Exception as error:
        print(f"# torch.compile MLA failed for {p}: {error}", file=sys.stderr)
    q4, k4, v4 = q[:, None], latent[:, None], latent[:, None, :, :512]
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("flash", SDPBackend.FLASH_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                mask = visible[None, None] if causal else None
                add(name, lambda: F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask,
                                                                 scale=scale))
        except Exception as error:  # a backend that refuses E 576 / Ev 512 is reported
            print(f"# {name} SDPA failed for MLA {p}: {error}", file=sys.stderr)
    del q, latent
    torch.cuda.empty_cache()
    return rows


PREFILL_CACHE = {}
VALUES = {}
METRICS = {}


def main():
    source = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    results = []
    for row in csv.reader(source):
        if row and row[0] == "result":
            _, kernel, case, metric, value = row
            VALUES[(kernel, case)] = float(value)
            METRICS.setdefault((kernel, case), set()).add(metric)
            if (kernel, case) not in [(k, c) for k, c in results]:
                results.append((kernel, case))
    timer = Timer()
    for kernel, case in results:
        try:
            rows = measure(timer, kernel, case)
        except Exception as error:  # a peer that fails is reported, not fatal
            print(f"# peer for {kernel} {case} failed: {error}", file=sys.stderr)
            continue
        for peer, metric, value in rows:
            print(f'peer,{kernel},"{case}",{peer},{metric},{value:.4f}', flush=True)


if __name__ == "__main__":
    main()
