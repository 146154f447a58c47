"""RankNet forward + backward: rankgrad's Rust kernel, its torch-native twin, and a naive
[B, N, N] autograd expression. Also the exact metrics. Writes benches/results/ranknet.md and
benches/results/ranknet.png.

    PYTHONPATH=python python benches/bench_ranknet.py [--quick]
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import rankgrad

RESULTS = Path(__file__).resolve().parent / "results"


def naive(s, y, sigma=1.0):
    pair = y[:, :, None] > y[:, None, :]
    x = sigma * (s[:, :, None] - s[:, None, :])
    per = (torch.nn.functional.softplus(-x) * pair).sum((1, 2)) / pair.sum((1, 2)).clamp(min=1)
    return per.mean()


def timed(fn, repeat):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def step(loss_fn, s, y):
    def run():
        x = s.detach().requires_grad_()
        loss_fn(x, y).backward()

    return run


def main(quick: bool) -> None:
    torch.manual_seed(0)
    sizes = [(64, 32), (64, 128), (16, 512)] if quick else [(256, 32), (256, 128), (64, 512), (16, 2048)]
    repeat = 2 if quick else 5
    rows = []
    for dtype in (torch.float32, torch.float64):
        for b, n in sizes:
            s = torch.randn(b, n, dtype=dtype)
            y = torch.randint(0, 5, (b, n)).to(dtype)
            t_rust = timed(step(lambda a, c: rankgrad.ranknet_loss(a, c, backend="rust"), s, y), repeat)
            t_torch = timed(step(lambda a, c: rankgrad.ranknet_loss(a, c, backend="torch"), s, y), repeat)
            t_naive = timed(step(naive, s, y), repeat) if b * n * n <= 2**24 else float("nan")
            rows.append((str(dtype).split(".")[-1], b, n, t_rust, t_torch, t_naive))
            print(
                f"{rows[-1][0]:8s} B={b:4d} N={n:5d}  rust {t_rust * 1e3:8.2f} ms  torch-native {t_torch * 1e3:8.2f} ms  "
                f"naive autograd {t_naive * 1e3:8.2f} ms",
                flush=True,
            )
    s = np.random.default_rng(0).normal(size=(2048, 200))
    y = np.random.default_rng(1).integers(0, 5, size=(2048, 200)).astype(np.float64)
    t_ndcg = timed(lambda: rankgrad.ndcg(s, y, k=10), repeat)
    t_ndcg_t = timed(
        lambda: rankgrad.ndcg(torch.from_numpy(s), torch.from_numpy(y), k=10, backend="torch"), repeat
    )
    t_mrr = timed(lambda: rankgrad.mrr(s, y), repeat)
    print(
        f"ndcg@10 [2048, 200]: rust {t_ndcg * 1e3:.2f} ms, torch {t_ndcg_t * 1e3:.2f} ms; mrr rust {t_mrr * 1e3:.2f} ms"
    )

    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# RankNet forward + backward (best of runs)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"rankgrad threads {rankgrad.get_num_threads()}, torch threads {torch.get_num_threads()}.",
        "",
        "| dtype | B | N | rust (ms) | torch-native (ms) | naive [B,N,N] autograd (ms) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {d} | {b} | {n} | {r * 1e3:.2f} | {t * 1e3:.2f} | {v * 1e3:.2f} |" for d, b, n, r, t, v in rows
    ]
    lines += [
        "",
        f"Exact metrics on [2048, 200] float64: ndcg@10 rust {t_ndcg * 1e3:.2f} ms, "
        f"torch {t_ndcg_t * 1e3:.2f} ms; mrr rust {t_mrr * 1e3:.2f} ms.",
        "",
    ]
    (RESULTS / "ranknet.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{d[5:]} {b}x{n}" for d, b, n, *_ in rows]
        xs = np.arange(len(rows))
        for i, (name, col) in enumerate([("rust", 3), ("torch-native", 4), ("naive autograd", 5)]):
            ax.bar(xs + (i - 1) * 0.27, [r[col] * 1e3 for r in rows], 0.27, label=name)
        ax.set_xticks(xs, labels, rotation=30, ha="right")
        ax.set_yscale("log")
        ax.set_ylabel("ms (forward + backward)")
        ax.set_title("RankNet loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "ranknet.png", dpi=100)
    except ImportError:
        pass
    print(f"wrote {RESULTS / 'ranknet.md'}")


if __name__ == "__main__":
    main("--quick" in sys.argv)
