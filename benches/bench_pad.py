"""rankgrad.pad (flat rows with query ids -> padded [B, N]) against the same in vectorised numpy
(`np.unique` for the lists in order of first appearance, a stable `argsort` for each row's slot).
Rows of float64 values in shuffled, non-contiguous queries (ids drawn from 0..1e9), 100 rows per
query on average. Median of 7 calls after a warm-up. Writes benches/results/pad.md and .png.

    PYTHONPATH=python python benches/bench_pad.py [--quick]
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import rankgrad

RESULTS = Path(__file__).resolve().parent / "results"


def numpy_pad(values: np.ndarray, qid: np.ndarray) -> np.ndarray:
    """The padded batch in plain numpy: lists in order of first appearance, rows in order."""
    ids, first, inverse, counts = np.unique(qid, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(ids.size)
    lst = rank[inverse.reshape(-1)]
    by_list = np.argsort(lst, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    pos = np.empty(qid.size, np.int64)
    pos[by_list] = np.arange(qid.size) - starts[lst[by_list]]
    out = np.zeros((ids.size, counts.max()), values.dtype)
    out[lst, pos] = values
    return out


def median_ms(fn, repeat: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main(quick: bool) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for n in (10**4, 10**5) if quick else (10**4, 10**5, 10**6, 10**7):
        q = n // 100
        qid = rng.permutation(np.repeat(rng.choice(10**9, q, replace=False), 100))
        values = rng.random(n)
        padded, _ = rankgrad.pad(values, qid=qid)
        np.testing.assert_array_equal(padded, numpy_pad(values, qid))  # the same batch
        t_rg = median_ms(lambda: rankgrad.pad(values, qid=qid))
        t_np = median_ms(lambda: numpy_pad(values, qid))
        rows.append((n, q, t_rg, t_np))
        print(
            f"n={n:>9,} queries={q:>7,}  rankgrad.pad {t_rg:9.2f} ms  numpy {t_np:9.2f} ms  {t_np / t_rg:5.1f}x"
        )

    RESULTS.mkdir(exist_ok=True)
    host = f"{platform.machine()}, {os.cpu_count()} cores, {rankgrad.get_num_threads()} threads"
    lines = [
        f"# rankgrad.pad vs numpy, float64 values, shuffled query ids ({host})",
        "",
        "| rows | queries | rankgrad.pad (ms) | numpy unique + argsort (ms) | speed-up |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {n:,} | {q:,} | {a:.2f} | {b:.2f} | {b / a:.1f}x |" for n, q, a, b in rows],
        "",
        "Median of 7 calls after a warm-up; both give the same batch (asserted).",
    ]
    (RESULTS / "pad.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r[0] for r in rows], [r[2] for r in rows], marker="o", label="rankgrad.pad")
    ax.plot([r[0] for r in rows], [r[3] for r in rows], marker="o", label="numpy unique + argsort")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows")
    ax.set_ylabel("ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("pad: flat rows with query ids to [B, N]")
    fig.tight_layout()
    fig.savefig(RESULTS / "pad.png", dpi=110)
    print(f"wrote {RESULTS / 'pad.md'} and {RESULTS / 'pad.png'}")


if __name__ == "__main__":
    main("--quick" in sys.argv)
