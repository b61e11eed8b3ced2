#!/usr/bin/env python3
"""Benchmarks of the Python package (python/tessera) on the GPU: the same
kernels as tessera_bench, called through the FlashInfer-style Python API, and
the Python overhead per call of plan() and run().

Prints tessera_bench's line format (device / ceiling / result lines, kernel
names prefixed py_), so peers_torch.py times the same shapes' PyTorch peers
and report.py merges both into benchmarks/results/<gpu>.csv:

    python3 benchmarks/bench_python.py > py.log
    python3 benchmarks/peers_torch.py py.log > py_peers.log
    python3 benchmarks/report.py py.log py_peers.log <commit> benchmarks/results
"""

import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tessera  # noqa: E402
from tessera import norm, prefill, rope  # noqa: E402
from peers_torch import Timer  # noqa: E402

HQ, HK, D = 32, 8, 128
OVERHEAD_CALLS = 200


def emit(kernel, case, metric, value):
    print(f'result,py_{kernel},"{case}",{metric},{value:.4f}', flush=True)


def copy_ceiling(timer):
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    us = timer.median_us(lambda: b.copy_(a), 2 * n)
    return 2 * n / (us * 1e3)


def paged_cache_tables(batch, kv_len, page_size):
    """(num_pages, indptr, shuffled indices, last_page_len) of `batch`
    requests of kv_len tokens (host int32, as plan() prefers)."""
    pages_per_request = (kv_len + page_size - 1) // page_size
    num_pages = batch * pages_per_request
    indices = torch.randperm(num_pages, generator=torch.Generator().manual_seed(7)).to(torch.int32)
    indptr = torch.arange(batch + 1, dtype=torch.int32) * pages_per_request
    last = torch.full((batch,), kv_len - (pages_per_request - 1) * page_size, dtype=torch.int32)
    return num_pages, indptr, indices, last


def paged_cache(batch, kv_len, page_size):
    num_pages, indptr, indices, last = paged_cache_tables(batch, kv_len, page_size)
    cache = torch.randn(num_pages, 2, page_size, HK, D, dtype=torch.bfloat16, device="cuda")
    return cache, indptr, indices, last


def decode_case(batch, kv_len, page_size):
    return f"B={batch},L={kv_len},page={page_size},Hq={HQ},Hk={HK},D={D},dtype=bf16"


def bench_decode(timer, workspace):
    for page_size in (16, 1):
        for batch, kv_len in ((16, 8192), (64, 4096), (256, 1024), (1, 32768)):
            cache, indptr, indices, last = paged_cache(batch, kv_len, page_size)
            wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace)
            wrapper.plan(indptr, indices, last, HQ, HK, D, page_size)
            q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
            out = torch.empty_like(q)
            kv_bytes = 2 * batch * kv_len * HK * D * 2
            us = timer.median_us(lambda: wrapper.run(q, cache, out=out), kv_bytes)
            emit("batch_decode", decode_case(batch, kv_len, page_size), "GB/s", kv_bytes / (us * 1e3))
            cache = None
            torch.cuda.empty_cache()


def bench_prefill(timer, workspace):
    """Causal paged prefill with tessera_bench's shapes and case names (32
    q and KV heads, FlashInfer 0.2's published setup)."""
    heads = 32
    for page_size in (16, 1):
        for batch, length in ((1, 16384), (4, 4096), (16, 1024)):
            num_pages = batch * ((length + page_size - 1) // page_size)
            cache = torch.randn(num_pages, 2, page_size, heads, D, dtype=torch.bfloat16,
                                device="cuda")
            _, kv_indptr, indices, last = paged_cache_tables(batch, length, page_size)
            qo_indptr = torch.arange(batch + 1, dtype=torch.int32) * length
            wrapper = prefill.BatchPrefillWithPagedKVCacheWrapper(workspace)
            wrapper.plan(qo_indptr, kv_indptr, indices, last, heads, heads, D, page_size,
                         causal=True)
            q = torch.randn(batch * length, heads, D, dtype=torch.bfloat16, device="cuda")
            flops = 4 * D * heads * batch * length * (length + 1) / 2
            us = timer.median_us(lambda: wrapper.run(q, cache), 4 * q.numel() * 2)
            case = (f"B={batch},L={length},Hq={heads},Hk={heads},D={D},causal=1,"
                    f"page={page_size},dtype=bf16")
            emit("batch_prefill_paged", case, "TFLOP/s", flops / (us * 1e6))
            cache = None
            torch.cuda.empty_cache()


def bench_small_ops(timer):
    for tokens in (1024, 16384):
        hidden = 4096
        x = torch.randn(tokens, hidden, dtype=torch.bfloat16, device="cuda")
        w = torch.randn(hidden, dtype=torch.bfloat16, device="cuda")
        nbytes = 2 * x.numel() * 2
        us = timer.median_us(lambda: norm.rmsnorm(x, w), nbytes)
        emit("rmsnorm", f"T={tokens},H={hidden},dtype=bf16", "GB/s", nbytes / (us * 1e3))
        q = torch.randn(tokens, HQ, D, dtype=torch.bfloat16, device="cuda")
        k = torch.randn(tokens, HK, D, dtype=torch.bfloat16, device="cuda")
        pos = (torch.arange(tokens, dtype=torch.int32, device="cuda") * 7) % 32768
        nbytes = 2 * (q.numel() + k.numel()) * 2 + 4 * tokens
        us = timer.median_us(lambda: rope.apply_rope_pos_ids(q, k, pos, rope_theta=5e5), nbytes)
        emit("apply_rope_pos_ids", f"T={tokens},Hq={HQ},Hk={HK},D={D},dtype=bf16,style=neox",
             "GB/s", nbytes / (us * 1e3))


def bench_overhead(workspace):
    """Host microseconds per call when the GPU is not the limit: tiny KV, many
    calls queued, host time only (the queue never drains while timing)."""
    for batch in (1, 256):
        cache, indptr, indices, last = paged_cache(batch, 16, 16)
        wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace)
        q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device="cuda")
        out = torch.empty_like(q)
        wrapper.plan(indptr, indices, last, HQ, HK, D, 16)
        for _ in range(10):
            wrapper.run(q, cache, out=out)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(OVERHEAD_CALLS):
            wrapper.plan(indptr, indices, last, HQ, HK, D, 16)
        plan_us = (time.perf_counter() - start) * 1e6 / OVERHEAD_CALLS
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(OVERHEAD_CALLS):
            wrapper.run(q, cache, out=out)
        run_us = (time.perf_counter() - start) * 1e6 / OVERHEAD_CALLS
        torch.cuda.synchronize()
        case = f"B={batch},L=16,page=16,Hq={HQ},Hk={HK},D={D},dtype=bf16"
        emit("batch_decode_plan_host", case, "us", plan_us)
        emit("batch_decode_run_host", case, "us", run_us)


def main():
    if not torch.cuda.is_available():
        print("bench_python: needs a CUDA GPU", file=sys.stderr)
        return 2
    props = torch.cuda.get_device_properties(0)
    print(f'device,"{props.name}",sms={props.multi_processor_count},l2_bytes={props.L2_cache_size}')
    timer = Timer()
    print(f"ceiling,copy,GB/s,{copy_ceiling(timer):.1f}", flush=True)
    workspace = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    bench_overhead(workspace)
    bench_decode(timer, workspace)
    bench_small_ops(timer)
    bench_prefill(timer, workspace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
