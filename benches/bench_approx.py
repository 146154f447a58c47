"""approx_ndcg_loss forward+backward, float32: the Rust path, the chunked torch-native path and
the broadcast formula as Lightning IR and allRank write it (`sigmoid(s[:, None] - s[..., None])`,
summed). Time (median) and peak extra memory of each, every case in a fresh process.

Writes benches/results/approx.md and benches/results/approx.png.
    PYTHONPATH=python python benches/bench_approx.py [--device cuda] [--sizes 64x1000,16x16384]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _rss import peak_rss, reset_peak_rss

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("rust", "torch", "broadcast")
CPU_SIZES = ((256, 100), (64, 1000), (16, 4000))


def broadcast_approx_ndcg(s, y, temperature=1.0):
    """The usual formula: every pair at once in a [B, N, N] tensor, autograd for the backward."""
    import torch

    n = s.shape[-1]
    diff = s[:, None, :] - s[:, :, None]  # s_j - s_i
    off_diag = 1.0 - torch.eye(n, dtype=s.dtype, device=s.device)
    r = 1.0 + (torch.sigmoid(diff / temperature) * off_diag).sum(-1)
    g = torch.exp2(y) - 1
    disc = 1.0 / torch.log2(torch.arange(n, dtype=s.dtype, device=s.device) + 2.0)
    idcg = (g.sort(-1, descending=True).values * disc).sum(-1)
    dcg = (g / torch.log2(1 + r)).sum(-1)
    return (1 - dcg / idcg).mean()


def run_case(method: str, b: int, n: int, device: str) -> dict:
    """One (method, size) in this process: peak extra memory of the first call, then timings."""
    import torch

    import rankgrad

    torch.manual_seed(0)

    def make(b, n):
        s = torch.randn(b, n, device=device, requires_grad=True)
        y = torch.randint(0, 5, (b, n), device=device).float()
        return s, y

    def step(s, y):
        if method == "broadcast":
            loss = broadcast_approx_ndcg(s, y)
        else:
            loss = rankgrad.approx_ndcg_loss(s, y, backend="torch" if method == "torch" else "auto")
        loss.backward()
        return loss

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    step(*make(4, 16))  # load libraries, start thread pools
    s, y = make(b, n)
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = reset_peak_rss()
    step(s, y)
    sync()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = peak_rss() - base
    times = []
    t_end = time.perf_counter() + 2.0
    while len(times) < 3 or (time.perf_counter() < t_end and len(times) < 50):
        s.grad = None
        sync()
        t0 = time.perf_counter()
        step(s, y)
        sync()
        times.append(time.perf_counter() - t0)
    input_bytes = 2 * s.numel() * s.element_size()
    return {
        "method": method,
        "b": b,
        "n": n,
        "device": device,
        "seconds": statistics.median(times),
        "peak_bytes": max(peak, 0),
        "input_bytes": input_bytes,
        "reps": len(times),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default=None, help="e.g. 64x1000,16x16384")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.case:
        method, b, n = args.case.split(":")
        print(json.dumps(run_case(method, int(b), int(n), args.device)))
        return
    sizes = (
        CPU_SIZES
        if args.sizes is None
        else tuple(tuple(map(int, s.split("x"))) for s in args.sizes.split(","))
    )
    methods = [m for m in args.methods.split(",") if not (m == "rust" and args.device != "cpu")]
    rows = []
    for b, n in sizes:
        for method in methods:
            out = subprocess.run(
                [sys.executable, __file__, "--device", args.device, "--case", f"{method}:{b}:{n}"],
                capture_output=True,
                text=True,
                check=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{method:>9} {b:>4}x{n:<6} {row['seconds'] * 1e3:10.2f} ms  "
                f"{row['seconds'] / (b * n * n) * 1e9:7.3f} ns/pair  "
                f"peak {row['peak_bytes'] / 2**20:9.1f} MiB",
                flush=True,
            )
    write_results(rows, Path(args.out), args.device)


def write_results(rows, out: Path, device: str) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    tag = "approx" if device == "cpu" else f"approx_{device}"
    by = {(r["method"], r["b"], r["n"]): r for r in rows}
    sizes = sorted({(r["b"], r["n"]) for r in rows}, key=lambda x: x[0] * x[1] * x[1])
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    host = platform.processor() or platform.machine()
    if device == "cuda":
        host = torch.cuda.get_device_name()
    lines = [
        f"# approx_ndcg_loss, forward + backward, float32, {device} ({host}, {os.cpu_count()} cores, "
        f"torch {torch.__version__})",
        "",
        "| B x N | method | time (ms) | ns / pair | peak extra memory (MiB) | memory / inputs | speed-up vs broadcast |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for b, n in sizes:
        base = by.get(("broadcast", b, n))
        for m in methods:
            r = by.get((m, b, n))
            if r is None:
                continue
            speed = f"{base['seconds'] / r['seconds']:.1f}x" if base else "-"
            lines.append(
                f"| {b} x {n} | {m} | {r['seconds'] * 1e3:.2f} | {r['seconds'] / (b * n * n) * 1e9:.3f} | "
                f"{r['peak_bytes'] / 2**20:.1f} | {r['peak_bytes'] / r['input_bytes']:.1f}x | {speed} |"
            )
    lines += [
        "",
        "Inputs: scores and targets, `[B, N]` float32 each. Peak extra memory: "
        "growth of the process's peak RSS (CPU) or of torch's peak allocation (CUDA) during "
        "the first call, measured in a fresh process per case.",
    ]
    (out / f"{tag}.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        xs = [i + k * width for i in range(len(sizes))]
        t = [by[(m, b, n)]["seconds"] * 1e3 if (m, b, n) in by else 0 for b, n in sizes]
        mem = [by[(m, b, n)]["peak_bytes"] / 2**20 if (m, b, n) in by else 0 for b, n in sizes]
        axes[0].bar(xs, t, width, label=m)
        axes[1].bar(xs, mem, width, label=m)
    for ax, title in zip(axes, ("time per step (ms, log)", "peak extra memory (MiB, log)")):
        ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(sizes))])
        ax.set_xticklabels([f"{b}x{n}" for b, n in sizes])
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend()
    fig.suptitle(f"approx_ndcg_loss forward+backward, float32, {device}")
    fig.tight_layout()
    fig.savefig(out / f"{tag}.png", dpi=110)
    print(f"wrote {out / (tag + '.md')} and {out / (tag + '.png')}")


if __name__ == "__main__":
    main()
