#!/usr/bin/env python3
"""Host time per call of the attention wrappers' plan() and run() through the
Python package (issue 24: run() <= 10 us, plan() <= 30 us at batch 256).

Rows (tessera_bench's line format, so report.py can merge them):
py_decode_run_host, py_prefill_run_host, py_decode_plan_host and
py_prefill_plan_host at batch 1, 64 and 256, each the median of per-call
time.perf_counter_ns samples (N calls after a warm-up).

Two modes:
- GPU (the default where torch has one): everything real, libtessera and CUDA
  tensors; run() rows use tiny KV (16 tokens) so the kernels never hold the
  host back (the queue is drained between samples of 50 calls, outside the
  timing). This is the figure the issue's goals are about.
- --stub (the default without a GPU): every C function is one no-op C
  function called through ctypes with the library's own prototype (argument
  conversion and errcheck included), the tensors live on the CPU and the plan
  objects are faked. What remains is the Python side of each call, ctypes
  included: no libtessera work (tessera_plan_bench times the C++ planner), no
  CUDA calls (stream lookup, pinned copies), and dl() of a CPU tensor also
  asks is_pinned(), which a CUDA tensor skips.

    python3 benchmarks/host_time.py [--stub] [--calls N] [--only ROW] > host.log

--profile runs each row's timed calls under cProfile and writes, before its
result line on stderr, the 25 functions with the most time of their own
(torch ops, ctypes calls and CUDA API calls show as builtins): where a
plan() or run() spends its host time. Its figures carry the profiler's
overhead; take the rows from a run without it.
"""

import argparse
import cProfile
import ctypes
import pathlib
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
import tessera  # noqa: E402
from tessera import _lib, prefill  # noqa: E402

try:
    from tessera import _flat  # noqa: E402
except ImportError:  # a checkout from before the fast path (the "before" figures)
    _flat = None

HQ, HK, D, PAGE = 32, 8, 128, 16
BATCHES = (1, 64, 256)
RUN_KV_LEN = 16      # run() rows: one page per request, kernels shorter than the host work
PLAN_KV_LEN = 1024   # decode plan() rows: 64 pages per request
SYNC_EVERY = 50


def emit(kernel, case, value):
    print(f'result,{kernel},"{case}",us,{value:.4f}', flush=True)


PROFILE = False  # --profile


def median_us(call, calls, warmup, sync):
    for _ in range(warmup):
        call()
    sync()
    samples = []
    clock = time.perf_counter_ns
    profiler = cProfile.Profile() if PROFILE else None
    if profiler is not None:
        profiler.enable()
    for i in range(calls):
        start = clock()
        call()
        samples.append(clock() - start)
        if i % SYNC_EVERY == SYNC_EVERY - 1:
            sync()
    sync()
    if profiler is not None:
        profiler.disable()
        print(f"## profile of {calls} calls (the next result row)", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return statistics.median(samples) / 1e3


# ---- stub mode


def install_stub_library():
    """Every C function of _lib._PROTOTYPES as a ctypes function over one
    compiled `return 0` (extra arguments are harmless in the x86-64 and
    AArch64 C calling conventions), with the real prototype and errcheck."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("host_time --stub: needs a C compiler (cc) for the no-op function")
    directory = pathlib.Path(tempfile.mkdtemp(prefix="tessera_host_time_"))
    (directory / "stub.c").write_text("int tessera_host_time_stub(void) { return 0; }\n")
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(directory / "stub.so"),
                    str(directory / "stub.c")], check=True)
    stub = ctypes.CDLL(str(directory / "stub.so"))

    class StubLibrary:
        pass

    library = StubLibrary()
    for name, (restype, argtypes) in _lib._PROTOTYPES.items():
        function = stub._FuncPtr(("tessera_host_time_stub", stub))
        function.restype = restype
        function.argtypes = argtypes
        if restype is ctypes.c_int and name != "tessera_version":
            function.errcheck = _lib._errcheck
        setattr(library, name, function)
    _lib._library = library
    if _flat is not None:  # CPU tensors' calls taken as known, as CUDA tensors' are
        _flat.FlatRun.cache_host_signatures = True


def fake_plan_object(wrapper, batch, total_qo=None):
    """Stub mode: the plan object a real plan() would make (its address is
    never dereferenced: every C function is the no-op)."""
    if isinstance(wrapper, tessera.BatchDecodeWithPagedKVCacheWrapper):
        key = (HQ, HK, D, PAGE, wrapper._float_workspace.device.index)
        wrapper._handle = 1
        wrapper._handle_key = (key, batch)
        return
    handle = wrapper._handle
    handle.address = 1
    handle._shape = (HQ, HK, D, PAGE)
    handle.bounds = (batch, total_qo)


# ---- shapes


def decode_tables(batch, kv_len):
    pages_per_request = (kv_len + PAGE - 1) // PAGE
    num_pages = batch * pages_per_request
    indices = torch.randperm(num_pages, generator=torch.Generator().manual_seed(7))
    indptr = torch.arange(batch + 1, dtype=torch.int32) * pages_per_request
    last = torch.full((batch,), kv_len - (pages_per_request - 1) * PAGE, dtype=torch.int32)
    return num_pages, indptr, indices.to(torch.int32), last


def mixed_prefill_tables(batch):
    """tessera_bench's batch_prefill_plan_host batch (its first `batch`
    requests' distribution): query lengths 1..512, KV = query + 0..3583
    tokens, page 16 (a seeded Python generator, not the C++ one)."""
    rng = random.Random(5)
    qo, kv, last = [0], [0], []
    for _ in range(batch):
        q = 1 + rng.randrange(512)
        k = q + rng.randrange(3584)
        pages = (k + PAGE - 1) // PAGE
        qo.append(qo[-1] + q)
        kv.append(kv[-1] + pages)
        last.append(k - (pages - 1) * PAGE)
    indices = torch.randperm(kv[-1], generator=torch.Generator().manual_seed(7)).to(torch.int32)
    return (torch.tensor(qo, dtype=torch.int32), torch.tensor(kv, dtype=torch.int32), indices,
            torch.tensor(last, dtype=torch.int32))


def short_prefill_tables(batch, qo_len, kv_len):
    pages = (kv_len + PAGE - 1) // PAGE
    qo = torch.arange(batch + 1, dtype=torch.int32) * qo_len
    kv = torch.arange(batch + 1, dtype=torch.int32) * pages
    indices = torch.arange(batch * pages, dtype=torch.int32)
    last = torch.full((batch,), kv_len - (pages - 1) * PAGE, dtype=torch.int32)
    return qo, kv, indices, last


# ---- rows


def decode_rows(args, device, workspace, sync):
    for batch in BATCHES:
        case = f"B={batch},L={PLAN_KV_LEN},page={PAGE},Hq={HQ},Hk={HK},D={D}{args.tag}"
        if args.wants("py_decode_plan_host"):
            _, indptr, indices, last = decode_tables(batch, PLAN_KV_LEN)
            wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace)
            if args.stub:
                fake_plan_object(wrapper, batch)
            emit("py_decode_plan_host", case, median_us(
                lambda: wrapper.plan(indptr, indices, last, HQ, HK, D, PAGE), args.calls,
                args.warmup, sync))
        if args.wants("py_decode_run_host"):
            num_pages, indptr, indices, last = decode_tables(batch, RUN_KV_LEN)
            cache = torch.randn(num_pages, 2, PAGE, HK, D, dtype=torch.bfloat16, device=device)
            q = torch.randn(batch, HQ, D, dtype=torch.bfloat16, device=device)
            out = torch.empty_like(q)
            wrapper = tessera.BatchDecodeWithPagedKVCacheWrapper(workspace)
            if args.stub:
                fake_plan_object(wrapper, batch)
            wrapper.plan(indptr, indices, last, HQ, HK, D, PAGE)
            case = f"B={batch},L={RUN_KV_LEN},page={PAGE},Hq={HQ},Hk={HK},D={D}{args.tag}"
            emit("py_decode_run_host", case, median_us(
                lambda: wrapper.run(q, cache, out=out), args.calls, args.warmup, sync))


def prefill_rows(args, device, workspace, sync):
    for batch in BATCHES:
        if args.wants("py_prefill_plan_host"):
            qo, kv, indices, last = mixed_prefill_tables(batch)
            wrapper = prefill.BatchPrefillWithPagedKVCacheWrapper(workspace)
            if args.stub:
                fake_plan_object(wrapper, batch, int(qo[-1]))
            case = f"B={batch},Hq={HQ},Hk={HK},D={D},page={PAGE},causal=1,mixed{args.tag}"
            emit("py_prefill_plan_host", case, median_us(
                lambda: wrapper.plan(qo, kv, indices, last, HQ, HK, D, PAGE, causal=True),
                args.calls, args.warmup, sync))
        if args.wants("py_prefill_run_host"):
            qo_len = 16
            qo, kv, indices, last = short_prefill_tables(batch, qo_len, RUN_KV_LEN)
            cache = torch.randn(int(kv[-1]), 2, PAGE, HK, D, dtype=torch.bfloat16, device=device)
            q = torch.randn(batch * qo_len, HQ, D, dtype=torch.bfloat16, device=device)
            out = torch.empty_like(q)
            wrapper = prefill.BatchPrefillWithPagedKVCacheWrapper(workspace)
            if args.stub:
                fake_plan_object(wrapper, batch, int(qo[-1]))
            wrapper.plan(qo, kv, indices, last, HQ, HK, D, PAGE, causal=True)
            case = (f"B={batch},qo={qo_len},L={RUN_KV_LEN},page={PAGE},Hq={HQ},Hk={HK},D={D},"
                    f"causal=1{args.tag}")
            emit("py_prefill_run_host", case, median_us(
                lambda: wrapper.run(q, cache, out=out), args.calls, args.warmup, sync))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stub", action="store_true",
                        help="no-op C functions and CPU tensors (the default without a GPU)")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--only", action="append", default=[],
                        help="a row name to run (repeatable; default all)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each row's timed calls (stderr; see above)")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    args.stub = args.stub or not torch.cuda.is_available()
    args.wants = lambda row: not args.only or row in args.only
    args.tag = ",c_call=stub" if args.stub else ""
    if args.stub:
        install_stub_library()
        device, sync = torch.device("cpu"), lambda: None
        print('device,"cpu (stub: no-op C functions)",sms=0,l2_bytes=0')
    else:
        device, sync = torch.device("cuda"), torch.cuda.synchronize
        props = torch.cuda.get_device_properties(0)
        print(f'device,"{props.name}",sms={props.multi_processor_count},'
              f'l2_bytes={props.L2_cache_size}')
    print("ceiling,none,us,0", flush=True)
    workspace = torch.empty(256 << 20, dtype=torch.uint8, device=device)
    decode_rows(args, device, workspace, sync)
    prefill_rows(args, device, workspace, sync)
    return 0


if __name__ == "__main__":
    sys.exit(main())
