"""Eager vs torch.compile: one training step of a small ranker (a 2-layer MLP scoring every
item of a padded batch, `approx_ndcg_loss`, AdamW) on CPU, for both of rankgrad's backends.
Writes benches/results/compile.md and benches/results/compile.png.

    PYTHONPATH=python OMP_WAIT_POLICY=passive python benches/bench_compile.py [--quick]

OMP_WAIT_POLICY=passive keeps OpenMP's spinning threads from distorting timings on a small
machine; the script sets it for itself when it is unset.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import rankgrad

RESULTS = Path(__file__).resolve().parent / "results"
B, N, D = 64, 100, 32


def make_step(backend: str, compile_with: str | None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(D, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss_of(x, y, m):
        s = model(x).squeeze(-1)
        return rankgrad.approx_ndcg_loss(s, y, mask=m, backend=backend)

    if compile_with is not None:
        loss_of = torch.compile(loss_of, fullgraph=True, backend=compile_with)

    def step(x, y, m):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(x, y, m)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def median_ms(step, batch, steps: int) -> float:
    for _ in range(5):  # warm-up (compiles on the first call)
        step(*batch)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step(*batch)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main(quick: bool) -> None:
    g = torch.Generator().manual_seed(1)
    batch = (
        torch.randn(B, N, D, generator=g),
        torch.randint(0, 5, (B, N), generator=g).float(),
        torch.rand(B, N, generator=g) > 0.1,
    )
    steps = 20 if quick else 200
    rows = []
    for backend in ("rust", "torch"):
        eager = make_step(backend, None)
        losses = {"eager": eager(*batch)}
        row = {"backend": backend, "eager": median_ms(eager, batch, steps)}
        for name in ("aot_eager", "inductor"):
            step = make_step(backend, name)
            losses[name] = step(*batch)
            row[name] = median_ms(step, batch, steps)
        # the first step of a fresh model gives the same loss eager and compiled
        for name in ("aot_eager", "inductor"):
            torch.testing.assert_close(losses[name], losses["eager"], rtol=1e-5, atol=1e-6)
        rows.append(row)
        print(row, flush=True)

    RESULTS.mkdir(exist_ok=True)
    lines = [
        "# Eager vs torch.compile: one training step of a small ranker (CPU)",
        "",
        f"B={B} lists x N={N} items, D={D} features, MLP {D}-64-1, approx_ndcg_loss, AdamW; "
        f"median of {steps} steps after 5 warm-up steps; torch {torch.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} logical CPUs, rankgrad threads "
        f"{rankgrad.get_num_threads()}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}. "
        "`torch.compile(fullgraph=True)` wraps the model and the loss (AOTAutograd compiles "
        "their backward too); the optimizer step runs eagerly.",
        "",
        "| loss backend | eager | compile (aot_eager) | compile (inductor) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['eager']:.2f} ms | {r['aot_eager']:.2f} ms "
            f"({r['eager'] / r['aot_eager']:.2f}x) | {r['inductor']:.2f} ms "
            f"({r['eager'] / r['inductor']:.2f}x) |"
        )
    (RESULTS / "compile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    modes = ("eager", "aot_eager", "inductor")
    width = 0.38
    for i, r in enumerate(rows):
        ax.bar([j + i * width for j in range(3)], [r[m] for m in modes], width, label=f"{r['backend']} loss")
    ax.set_xticks([j + width / 2 for j in range(3)], modes)
    ax.set_ylabel("ms per training step (median)")
    ax.set_title(f"small ranker step, B={B}, N={N}, CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "compile.png", dpi=100)


if __name__ == "__main__":
    main("--quick" in sys.argv)
