"""approx_ndcg_loss forward+backward, float32: exact pair sums vs fast summation (SPEC 3,
`method=`), on the Rust kernels and on the torch-native twin, against the broadcast formula as
Lightning IR and allRank write it (`sigmoid(s[:, None] - s[..., None])`, summed, autograd).
Time (median) and peak extra memory of each case, every case in a fresh process.

Sections (all measured in one run):
- sizes: the batch shapes of the issue's targets (256x100, 64x1000, 16x4000, 1x30,000 Rust;
  1x20,000 and 16x100,000 torch);
- scaling: one list, N = 100 .. 1,000,000, every engine while it stays affordable (the log-log plot);
- threads: 1x1,000,000 fast at 1 and 2 threads;
- hvp: a Hessian-vector product (double backward) against the gradient, 64x1000.
- omp: 64x1000 exact / auto / fast again under torch's default OpenMP wait policy (every other case
  runs with OMP_WAIT_POLICY=passive).

Writes benches/results/approx.md and benches/results/approx.png.
    PYTHONPATH=python python benches/bench_approx.py [--device cuda] [--quick]
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
# engine -> (backend, method); "broadcast" is the [B, N, N] formula
ENGINES = {
    "exact": ("rust", "exact"),
    "auto": ("rust", "auto"),
    "fast": ("rust", "fast"),
    "torch-exact": ("torch", "exact"),
    "torch-fast": ("torch", "fast"),
    "broadcast": (None, None),
}
SIZES = [
    ((256, 100), ("exact", "auto", "fast", "torch-exact", "torch-fast", "broadcast")),
    ((64, 1000), ("exact", "auto", "fast", "torch-exact", "torch-fast", "broadcast")),
    ((16, 4000), ("exact", "auto", "fast", "torch-exact", "torch-fast", "broadcast")),
    ((1, 30_000), ("exact", "fast")),
    ((1, 20_000), ("torch-exact", "torch-fast")),
    ((16, 100_000), ("fast", "torch-fast")),
]
SCALING_N = [100, 300, 1000, 3000, 10_000, 30_000, 100_000, 300_000, 1_000_000]
# the largest N each engine runs at in the scaling sweep (O(N^2) time or memory beyond)
SCALING_MAX = {
    "exact": 30_000,
    "fast": 1_000_000,
    "torch-exact": 10_000,
    "torch-fast": 1_000_000,
    "broadcast": 4000,
}


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


def run_case(case: dict) -> dict:
    """One case in this process: peak extra memory of the first call, then timings."""
    import torch

    import rankgrad

    engine, b, n, device = case["engine"], case["b"], case["n"], case["device"]
    if case.get("threads"):
        rankgrad.set_num_threads(case["threads"])
        torch.set_num_threads(case["threads"])
    backend, method = ENGINES[engine]
    hvp = case.get("what") == "hvp"
    torch.manual_seed(0)

    def make(b, n):
        s = torch.randn(b, n, device=device, requires_grad=True)
        y = torch.randint(0, 5, (b, n), device=device).float()
        return s, y

    def loss_of(s, y):
        if engine == "broadcast":
            return broadcast_approx_ndcg(s, y)
        return rankgrad.approx_ndcg_loss(s, y, method=method, backend=backend if device == "cpu" else "auto")

    v = None

    def step(s, y):
        loss = loss_of(s, y)
        if not hvp:
            loss.backward()
            return loss
        (g,) = torch.autograd.grad(loss, s, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), s)
        return h

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    v = torch.randn(4, 16, device=device)
    step(*make(4, 16))  # load libraries, start thread pools
    s, y = make(b, n)
    v = torch.randn(b, n, device=device)
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = reset_peak_rss()
    step(s, y)
    sync()
    peak = (torch.cuda.max_memory_allocated() - base) if device == "cuda" else (peak_rss() - base)
    times = []
    t_end = time.perf_counter() + case.get("budget", 2.0)
    while len(times) < case.get("min_reps", 3) or (time.perf_counter() < t_end and len(times) < 50):
        s.grad = None
        sync()
        t0 = time.perf_counter()
        step(s, y)
        sync()
        times.append(time.perf_counter() - t0)
    return {
        **case,
        "seconds": statistics.median(times),
        "peak_bytes": max(peak, 0),
        "score_bytes": s.numel() * s.element_size(),
        "reps": len(times),
    }


def measure(case: dict) -> dict:
    env = dict(os.environ)
    if case.get("omp") == "default":
        env.pop("OMP_WAIT_POLICY", None)
    else:  # torch's OpenMP threads sleep when idle instead of spinning against rankgrad's pool
        env["OMP_WAIT_POLICY"] = "passive"
    out = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{row['section']:>8} {row['engine']:>12} {row['b']:>4}x{row['n']:<8} threads={row.get('threads') or '-'} "
        f"{row.get('what', 'step'):>4} {row['seconds'] * 1e3:11.2f} ms  peak {row['peak_bytes'] / 2**20:9.1f} MiB",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer, smaller cases (a smoke run)")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    dev = args.device
    cap = 10_000 if args.quick else None
    rows = []

    def keep(engine: str, n: int) -> bool:
        return (dev == "cpu" or not ENGINES[engine][0] == "rust") and (cap is None or n <= cap)

    for (b, n), engines in SIZES:
        for e in engines:
            if keep(e, n):
                rows.append(measure({"section": "sizes", "engine": e, "b": b, "n": n, "device": dev}))
    for n in SCALING_N:
        for e in ("exact", "fast", "torch-exact", "torch-fast", "broadcast"):
            if n <= SCALING_MAX[e] and keep(e, n):
                case = {"section": "scaling", "engine": e, "b": 1, "n": n, "device": dev, "min_reps": 1}
                rows.append(measure(case))
    if dev == "cpu":
        n = 100_000 if args.quick else 1_000_000
        for threads in (1, 2):
            case = {"section": "threads", "engine": "fast", "b": 1, "n": n, "device": dev, "threads": threads}
            rows.append(measure(case))
    for e in (
        ("exact", "auto", "torch-exact", "torch-fast") if dev == "cpu" else ("torch-exact", "torch-fast")
    ):
        for what in ("step", "hvp"):
            rows.append(
                measure({"section": "hvp", "engine": e, "b": 64, "n": 1000, "device": dev, "what": what})
            )
    if dev == "cpu":  # the same 64 x 1000 cases under torch's default OpenMP wait policy
        for e in ("exact", "auto", "fast"):
            rows.append(
                measure({"section": "omp", "engine": e, "b": 64, "n": 1000, "device": dev, "omp": "default"})
            )
    write_results(rows, Path(args.out), dev)


def _host(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def write_results(rows, out: Path, device: str) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    tag = "approx" if device == "cpu" else f"approx_{device}"
    sec = lambda name: [r for r in rows if r["section"] == name]  # noqa: E731
    ms = lambda r: f"{r['seconds'] * 1e3:,.2f}"  # noqa: E731
    lines = [
        f"# approx_ndcg_loss, forward + backward, float32, {device} ({_host(device)}, torch {torch.__version__})",
        "",
        "Engines: `exact` / `auto` / `fast` are the Rust kernels with that `method`; `torch-exact` / "
        '`torch-fast` the torch-native twin (`backend="torch"`); `broadcast` the `[B, N, N]` formula '
        "with autograd.",
        "",
        "## Batch shapes",
        "",
        "| B x N | engine | time (ms) | vs exact | vs broadcast | peak extra memory (MiB) | memory / scores |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    sizes = sec("sizes")
    by = {(r["engine"], r["b"], r["n"]): r for r in sizes}
    for r in sizes:
        exact_engine = "torch-exact" if r["engine"].startswith("torch") else "exact"
        ref = by.get((exact_engine, r["b"], r["n"]))
        bc = by.get(("broadcast", r["b"], r["n"]))
        vs_exact = f"{ref['seconds'] / r['seconds']:.1f}x" if ref and ref is not r else "-"
        vs_bc = f"{bc['seconds'] / r['seconds']:.1f}x" if bc and bc is not r else "-"
        lines.append(
            f"| {r['b']} x {r['n']} | {r['engine']} | {ms(r)} | {vs_exact} | {vs_bc} | "
            f"{r['peak_bytes'] / 2**20:.1f} | {r['peak_bytes'] / r['score_bytes']:.1f}x |"
        )
    lines += [
        "",
        "## One list of N items (the plot)",
        "",
        "| N | " + " | ".join(e for e in ("exact", "fast", "torch-exact", "torch-fast", "broadcast")) + " |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    scaling = sec("scaling")
    for n in sorted({r["n"] for r in scaling}):
        cells = []
        for e in ("exact", "fast", "torch-exact", "torch-fast", "broadcast"):
            r = next((r for r in scaling if r["n"] == n and r["engine"] == e), None)
            cells.append(f"{ms(r)} ms" if r else "-")
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    threads = sec("threads")
    if threads:
        t = {r["threads"]: r for r in threads}
        lines += [
            "",
            f"## One list of {threads[0]['n']:,} items, fast, by threads",
            "",
            "| threads | time (ms) |",
            "|---:|---:|",
            *[f"| {k} | {ms(t[k])} |" for k in sorted(t)],
        ]
        if 1 in t and 2 in t:
            lines.append(f"\n2 threads vs 1: **{t[1]['seconds'] / t[2]['seconds']:.2f}x** faster.")
    hvp = sec("hvp")
    if hvp:
        lines += [
            "",
            "## Hessian-vector product vs gradient, 64 x 1000",
            "",
            "| engine | loss + gradient (ms) | loss + gradient + HVP (ms) | HVP step / gradient step |",
            "|---|---:|---:|---:|",
        ]
        for e in dict.fromkeys(r["engine"] for r in hvp):
            st = next(r for r in hvp if r["engine"] == e and r["what"] == "step")
            hv = next(r for r in hvp if r["engine"] == e and r["what"] == "hvp")
            lines.append(f"| {e} | {ms(st)} | {ms(hv)} | {hv['seconds'] / st['seconds']:.2f}x |")
    omp = sec("omp")
    if omp:
        passive = {r["engine"]: r for r in sizes if (r["b"], r["n"]) == (64, 1000)}
        lines += [
            "",
            "## 64 x 1000 with PyTorch's default OpenMP wait policy",
            "",
            "| engine | OMP_WAIT_POLICY=passive (ms) | default (ms) |",
            "|---|---:|---:|",
            *[
                f"| {r['engine']} | {ms(passive[r['engine']]) if r['engine'] in passive else '-'} | {ms(r)} |"
                for r in omp
            ],
            "",
            "Every other case runs with `OMP_WAIT_POLICY=passive`: by default torch's OpenMP threads "
            "spin for a while after each parallel op and take the cores rankgrad's pool needs, which "
            "inflates short kernel calls on a 2-core machine.",
        ]
    lines += [
        "",
        "Peak extra memory: growth of the process's peak RSS (CPU) or of torch's peak allocation "
        "(CUDA) during the first call, measured in a fresh process per case; `memory / scores` "
        "divides it by the bytes of the float32 scores.",
    ]
    (out / f"{tag}.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for e in ("exact", "fast", "torch-exact", "torch-fast", "broadcast"):
        pts = sorted((r["n"], r["seconds"]) for r in scaling if r["engine"] == e)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] * 1e3 for p in pts], marker="o", label=e)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the list (N)")
    ax.set_ylabel("forward + backward (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"approx_ndcg_loss, one list, float32, {device}")
    fig.tight_layout()
    fig.savefig(out / f"{tag}.png", dpi=110)
    print(f"wrote {out / (tag + '.md')} and {out / (tag + '.png')}")


if __name__ == "__main__":
    main()
