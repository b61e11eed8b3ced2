#!/usr/bin/env python3
"""Merges tessera_bench and peer measurements into benchmarks/results/<gpu>.csv
and .md (DESIGN.md's format), and draws the GB/s-over-T plots.

usage: report.py BENCH_LOG PEER_LOG COMMIT RESULTS_DIR

ratio_vs_peer is Tessera's speed relative to the peer (>1: Tessera faster):
tessera/peer for throughput metrics, peer/tessera for `us`. ceiling is the
copy bandwidth measured in the same run; ratio_vs_ceiling is given for GB/s
rows only. Rerunning replaces rows with the same kernel, case, metric, peer.
"""
import csv
import os
import sys

COLUMNS = ["kernel", "case", "metric", "tessera", "peer", "peer_value", "ratio_vs_peer",
           "ceiling", "ratio_vs_ceiling", "commit"]


def read_rows(path, tag):
    with open(path) as f:
        return [row for row in csv.reader(f) if row and row[0] == tag]


def gpu_slug(bench_log):
    with open(bench_log) as f:
        for row in csv.reader(f):
            if row and row[0] == "device":
                name = row[1].lower()
                for slug in ("h200", "h100", "a100", "l40s"):
                    if slug in name:
                        return slug, row[1]
                return name.replace(" ", "_"), row[1]
    return "unknown", "unknown"


def build_rows(bench_log, peer_log, commit):
    ceiling = float(read_rows(bench_log, "ceiling")[0][3])
    peers = {}
    for _, kernel, case, peer, metric, value in read_rows(peer_log, "peer") if peer_log else []:
        peers.setdefault((kernel, case, metric), []).append((peer, float(value)))
    rows = []
    for _, kernel, case, metric, value in read_rows(bench_log, "result"):
        tessera = float(value)
        vs_ceiling = f"{tessera / ceiling:.3f}" if metric == "GB/s" else ""
        for peer, peer_value in peers.get((kernel, case, metric), [("none", None)]):
            if peer_value is None:
                ratio = ""
            elif metric == "us":
                ratio = f"{peer_value / tessera:.3f}"
            else:
                ratio = f"{tessera / peer_value:.3f}"
            rows.append({
                "kernel": kernel, "case": case, "metric": metric, "tessera": f"{tessera:.2f}",
                "peer": peer, "peer_value": "" if peer_value is None else f"{peer_value:.2f}",
                "ratio_vs_peer": ratio, "ceiling": f"{ceiling:.1f}",
                "ratio_vs_ceiling": vs_ceiling, "commit": commit,
            })
    return rows, ceiling


def merge(csv_path, new_rows):
    key = lambda r: (r["kernel"], r["case"], r["metric"], r["peer"])
    old = []
    if os.path.exists(csv_path):
        with open(csv_path) as f:
            old = list(csv.DictReader(f))
    replaced = {key(r) for r in new_rows}
    merged = [r for r in old if key(r) not in replaced] + new_rows
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(merged)
    return merged


def write_markdown(md_path, rows, device_name, ceiling):
    lines = [f"# Tessera benchmarks on {device_name}", "",
             f"Copy ceiling of the latest run: {ceiling:.0f} GB/s (bytes read + written).",
             "ratio_vs_peer > 1 means Tessera is faster. Produced by scripts/gpu_check.sh.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(r[c] for c in COLUMNS) + " |")
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(rows, out_png, kernels, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing, no plot", file=sys.stderr)
        return
    if not any(r["kernel"] == kernel for _, kernel, _ in kernels for r in rows):
        return  # a partial run (one benchmark family) keeps the other plots
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label_prefix, kernel, filt in kernels:
        series = {}
        for r in rows:
            if r["kernel"] != kernel or r["metric"] != "GB/s" or not filt(r["case"]):
                continue
            t = int(dict(kv.split("=") for kv in r["case"].split(","))["T"])
            series.setdefault("tessera", {})[t] = float(r["tessera"])
            if r["peer"] != "none":
                series.setdefault(r["peer"], {})[t] = float(r["peer_value"])
        for who, points in series.items():
            xs = sorted(points)
            label = f"{label_prefix} ({who})"
            ax.plot(xs, [points[x] for x in xs], marker="o", label=label)
    ceiling = float(rows[0]["ceiling"]) if rows else 0
    ax.axhline(ceiling, color="gray", linestyle="--", label="copy ceiling")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens T")
    ax.set_ylabel("GB/s")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


def grouped_bars(series, shapes, out_png, ylabel, title, width_inches, ceiling=None):
    """One bar per series per shape; series maps a label to {shape: value}."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if not shapes:
        return
    fig, ax = plt.subplots(figsize=(width_inches, 4.5))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [j + i * width for j in range(len(shapes))]
        ax.bar(xs, [values.get(sh, 0) for sh in shapes], width, label=name)
    if ceiling is not None:
        ax.axhline(ceiling, color="gray", linestyle="--", label="copy ceiling")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))])
    ax.set_xticklabels(shapes, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


def plot_decode(rows, out_png, title):
    """Grouped bars: GB/s of KV read per (B, L) for Tessera page 16 / page 1,
    the CUDA-core kernel at page 16, and each peer (dense layout)."""
    series = {}
    shapes = []
    for r in rows:
        if r["kernel"] not in ("batch_decode", "batch_decode_cuda_cores") or r["metric"] != "GB/s":
            continue
        p = dict(kv.split("=") for kv in r["case"].split(","))
        shape = f'B={p["B"]}\nL={p["L"]}'
        if shape not in shapes:
            shapes.append(shape)
        name = (f'tessera page {p["page"]}' if r["kernel"] == "batch_decode"
                else f'tessera CUDA cores page {p["page"]}')
        series.setdefault(name, {})[shape] = float(r["tessera"])
        if r["peer"] != "none":
            series.setdefault(f'{r["peer"]} (dense)', {})[shape] = float(r["peer_value"])
    ceiling = float(rows[0]["ceiling"]) if rows else None
    grouped_bars(series, shapes, out_png, "GB/s of KV read", title, 9, ceiling)


def plot_prefill(rows, out_png, title):
    """FlashInfer 0.2's prefill figure: causal TFLOP/s per (B, L), Tessera's
    two back ends (FA2, and FA3 where the GPU runs it) dense (ragged) beside
    vector-sparse (page 1), with the dense peers (flash / cuDNN SDPA,
    flex_attention) on the same shapes."""
    names = {"batch_prefill_ragged": "FA2 dense (ragged)",
             "batch_prefill_paged": "FA2 vector-sparse (page 1)",
             "batch_prefill_ragged_fa3": "FA3 dense (ragged)",
             "batch_prefill_paged_fa3": "FA3 vector-sparse (page 1)"}
    series = {f"tessera {name}": {} for name in names.values()}
    shapes = []
    for r in rows:
        if r["kernel"] not in names:
            continue
        p = dict(kv.split("=") for kv in r["case"].split(","))
        if p["causal"] != "1" or p["D"] != "128" or p.get("page", "1") != "1":
            continue
        if p["Hk"] != p["Hq"] or p.get("dtype", "bf16") != "bf16":
            continue  # the GQA and fp16 rows: the table has them
        shape = f'B={p["B"]}\nL={p["L"]}'
        if shape not in shapes:
            shapes.append(shape)
        series[f'tessera {names[r["kernel"]]}'][shape] = float(r["tessera"])
        if r["kernel"] == "batch_prefill_ragged" and r["peer"] in ("flash", "cudnn", "flex_attention"):
            series.setdefault(f'{r["peer"]} (dense)', {})[shape] = float(r["peer_value"])
    series = {name: values for name, values in series.items() if values}
    grouped_bars(series, shapes, out_png, "TFLOP/s (causal)", title, 13)


def main():
    bench_log, peer_log, commit, results_dir = sys.argv[1:5]
    slug, device_name = gpu_slug(bench_log)
    new_rows, ceiling = build_rows(bench_log, peer_log if os.path.exists(peer_log) else None, commit)
    os.makedirs(results_dir, exist_ok=True)
    merged = merge(os.path.join(results_dir, f"{slug}.csv"), new_rows)
    write_markdown(os.path.join(results_dir, f"{slug}.md"), merged, device_name, ceiling)
    plot(new_rows, os.path.join(results_dir, f"{slug}_norm.png"),
         [("rmsnorm", "rmsnorm", lambda c: True),
          ("fused_add_rmsnorm", "fused_add_rmsnorm", lambda c: True)],
         f"RMSNorm, H=4096 bf16 ({device_name})")
    plot(new_rows, os.path.join(results_dir, f"{slug}_append.png"),
         [("page 16", "append_paged_kv_cache", lambda c: "page=16," in c),
          ("page 1", "append_paged_kv_cache", lambda c: "page=1," in c)],
         f"Paged KV append, 8 heads x 128 bf16 ({device_name})")
    plot_decode(new_rows, os.path.join(results_dir, f"{slug}_decode.png"),
                f"Batch decode, 32/8 heads x 128 bf16 ({device_name})")
    plot_prefill(new_rows, os.path.join(results_dir, f"{slug}_prefill.png"),
                 f"Batch prefill, causal, 32 heads x 128 bf16 ({device_name})")
    width = max(len(r["kernel"]) for r in new_rows)
    for r in new_rows:
        print(f'{r["kernel"]:<{width}} {r["case"]:<58} {r["tessera"]:>9} {r["metric"]:<5} '
              f'{r["peer"]:<13} {r["peer_value"]:>9} x{r["ratio_vs_peer"] or "-":<6} '
              f'ceil {r["ratio_vs_ceiling"] or "-"}')


if __name__ == "__main__":
    main()
