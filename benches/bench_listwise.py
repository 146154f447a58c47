"""lambda_loss (weighting "ndcg2pp") forward+backward, float32: the Rust path, the torch-native
path (`backend="torch"`, blocks of rows) and allRank's formulation (every pair at once in
`[B, N, N]` tensors, autograd for the backward, transcribed below). Time (median) and peak
extra memory of each, every case in a fresh process.

allRank's formulation at 16 x 4000 needs ~1 GiB per `[B, N, N]` float32 temporary and more
than a dozen of them; on a small shared machine it is run on a slice of the lists
(`--allrank-max-lists`) and its time and memory are scaled to the full batch (both grow
linearly in B); the table says so.

Writes benches/results/listwise.md and benches/results/listwise.png.
    PYTHONPATH=python python benches/bench_listwise.py [--sizes 64x1000,16x4000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _rss import peak_rss, reset_peak_rss

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("rust", "torch", "allrank")
SIZES = ((64, 1000), (16, 4000))


def allrank_lambda_loss(y_pred, y_true, k=None, sigma=1.0, mu=10.0, eps=1e-10):
    """allRank's lambdaLoss with its ndcgLoss2++ weighting (reduction "sum", binary log), as
    that library writes it: `[B, N, N]` pair tensors, eps clamps, autograd for the backward."""
    import torch

    n = y_pred.shape[1]
    pad = y_true == -1
    y_pred = y_pred.masked_fill(pad, -math.inf)
    y_true = y_true.masked_fill(pad, -math.inf)
    pred_sorted, order = y_pred.sort(descending=True, dim=-1)
    ideal, _ = y_true.sort(descending=True, dim=-1)
    t_by_pred = torch.gather(y_true, 1, order)
    diffs = t_by_pred[:, :, None] - t_by_pred[:, None, :]
    pairs = torch.isfinite(diffs) & (diffs > 0)
    at_k = torch.zeros(n, n, dtype=torch.bool, device=y_pred.device)
    at_k[:k, :k] = True
    t_by_pred, ideal = t_by_pred.clamp(min=0.0), ideal.clamp(min=0.0)
    d = torch.log2(1.0 + torch.arange(1, n + 1, device=y_pred.device, dtype=y_pred.dtype))[None, :]
    max_dcg = ((torch.pow(2, ideal) - 1) / d)[:, :k].sum(-1).clamp(min=eps)
    g = (torch.pow(2, t_by_pred) - 1) / max_dcg[:, None]
    pos = torch.arange(1, n + 1, device=y_pred.device)
    delta = (pos[:, None] - pos[None, :]).abs()
    nd2 = (1.0 / d[0, (delta - 1).clamp(min=0)] - 1.0 / d[0, delta.clamp(max=n - 1)]).abs()
    nd2.fill_diagonal_(0)
    gdiff = (g[:, :, None] - g[:, None, :]).abs()
    weights = mu * (nd2[None] * gdiff) + (1.0 / d[:, :, None] - 1.0 / d[:, None, :]).abs() * gdiff
    sdiff = (pred_sorted[:, :, None] - pred_sorted[:, None, :]).clamp(min=-1e8, max=1e8)
    probas = (torch.sigmoid(sigma * sdiff).clamp(min=eps) ** weights).clamp(min=eps)
    return -torch.log2(probas)[pairs & at_k].sum()


def run_case(method: str, b: int, n: int, run_b: int, budget_s: float) -> dict:
    """One (method, size) in this process: peak extra memory of the first call, then timings.
    `run_b` < b lists are computed (allRank at large sizes) and the results scaled by b / run_b."""
    import torch

    from rankgrad.listwise import lambda_loss

    torch.manual_seed(0)

    def make(b, n):
        s = torch.randn(b, n, requires_grad=True)
        y = torch.randint(0, 5, (b, n)).float()
        return s, y

    def step(s, y):
        if method == "allrank":
            loss = allrank_lambda_loss(s, y)
        else:
            loss = lambda_loss(s, y, reduction="sum", backend=method)
        loss.backward()
        return loss

    step(*make(4, 16))  # load libraries, start thread pools
    s, y = make(run_b, n)
    base = reset_peak_rss()
    t0 = time.perf_counter()
    step(s, y)
    times = [time.perf_counter() - t0]  # slow cases: this one timing only
    peak = peak_rss() - base
    t_end = time.perf_counter() + budget_s
    while time.perf_counter() + times[-1] < t_end and len(times) < 20:
        s.grad = None
        t0 = time.perf_counter()
        step(s, y)
        times.append(time.perf_counter() - t0)
    scale = b / run_b
    return {
        "method": method,
        "b": b,
        "n": n,
        "run_b": run_b,
        "seconds": statistics.median(times) * scale,
        "peak_bytes": max(peak, 0) * scale,
        "input_bytes": 2 * b * n * 4,
        "reps": len(times),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=None, help="e.g. 64x1000,16x4000")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--allrank-max-lists", type=int, default=None, help="default: as many as fit 4 GiB")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per case")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.case:
        method, b, n, run_b = args.case.split(":")
        print(json.dumps(run_case(method, int(b), int(n), int(run_b), args.budget)))
        return
    sizes = (
        SIZES if args.sizes is None else tuple(tuple(map(int, s.split("x"))) for s in args.sizes.split(","))
    )
    rows = []
    for b, n in sizes:
        for method in args.methods.split(","):
            run_b = b
            if method == "allrank":
                # ~60 bytes per pair (autograd keeps a dozen or so [B, N, N] float32 temporaries)
                fit = max(1, int(4 * 2**30 // (60 * n * n)))
                run_b = min(b, args.allrank_max_lists or fit)
            case = f"{method}:{b}:{n}:{run_b}"
            cmd = [sys.executable, __file__, "--budget", str(args.budget), "--case", case]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            note = f" (run on {run_b} lists, scaled)" if run_b < b else ""
            print(
                f"{method:>8} {b:>4}x{n:<6} {row['seconds'] * 1e3:10.1f} ms  "
                f"{row['seconds'] / (b * n * n) * 1e9:7.3f} ns/pair  "
                f"peak {row['peak_bytes'] / 2**20:9.1f} MiB{note}",
                flush=True,
            )
    write_results(rows, Path(args.out))


def write_results(rows, out: Path) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    by = {(r["method"], r["b"], r["n"]): r for r in rows}
    sizes = sorted({(r["b"], r["n"]) for r in rows}, key=lambda x: x[0] * x[1] * x[1])
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    host = platform.processor() or platform.machine()
    lines = [
        f"# lambda_loss (ndcg2pp), forward + backward, float32, cpu ({host}, {os.cpu_count()} cores, "
        f"torch {torch.__version__})",
        "",
        "| B x N | method | time (ms) | ns / pair | peak extra memory (MiB) | memory / inputs | speed-up vs allRank |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for b, n in sizes:
        base = by.get(("allrank", b, n))
        for m in methods:
            r = by.get((m, b, n))
            if r is None:
                continue
            speed = f"{base['seconds'] / r['seconds']:.1f}x" if base else "-"
            star = " *" if r["run_b"] < b else ""
            lines.append(
                f"| {b} x {n} | {m}{star} | {r['seconds'] * 1e3:.1f} | {r['seconds'] / (b * n * n) * 1e9:.3f} | "
                f"{r['peak_bytes'] / 2**20:.1f} | {r['peak_bytes'] / r['input_bytes']:.1f}x | {speed} |"
            )
    lines += [
        "",
        "Inputs: scores and targets, `[B, N]` float32 each, targets in 0..4, no padding; "
        '`reduction="sum"`. Peak extra memory: growth of the process\'s peak RSS during the '
        "first call, each case in a fresh process. rust: the fused Rust kernel; torch: the "
        'torch-native twin (`backend="torch"`, meant for CUDA); allrank: allRank\'s `lambdaLoss` '
        "formulation. `*`: run on a slice of the lists (to spare a shared machine's memory), time "
        "and memory scaled linearly to the full batch.",
        "",
        f"Load average while writing this table: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(a shared machine: absolute times are inflated, the methods ran under the same load).",
    ]
    (out / "listwise.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        xs = [i + k * width for i in range(len(sizes))]
        t = [by[(m, b, n)]["seconds"] * 1e3 if (m, b, n) in by else 0 for b, n in sizes]
        mem = [max(by[(m, b, n)]["peak_bytes"] / 2**20, 0.01) if (m, b, n) in by else 0 for b, n in sizes]
        axes[0].bar(xs, t, width, label=m)
        axes[1].bar(xs, mem, width, label=m)
    for ax, title in zip(axes, ("time per step (ms, log)", "peak extra memory (MiB, log)")):
        ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(sizes))])
        ax.set_xticklabels([f"{b}x{n}" for b, n in sizes])
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend()
    fig.suptitle("lambda_loss (ndcg2pp) forward+backward, float32, cpu")
    fig.tight_layout()
    fig.savefig(out / "listwise.png", dpi=110)
    print(f"wrote {out / 'listwise.md'} and {out / 'listwise.png'}")


if __name__ == "__main__":
    main()
