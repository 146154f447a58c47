"""LambdaRank gradients per boosting round: rankgrad vs LightGBM's built-in C++ objective vs numpy.

Synthetic data: 2,000 queries x 200 documents, 20 features, graded labels 0..4.
(a) the gradient computation per round:
    - LightGBM built-in: (training time with objective="lambdarank") minus (training time with a
      custom objective returning precomputed arrays), same data and params, divided by rounds;
      the custom objective's own overhead (a Python call and LightGBM's copy of the arrays) is
      in the subtracted time, so this slightly understates LightGBM's cost;
    - rankgrad: `rankgrad.lambdarank_gradients` on that data;
    - numpy: the same objective as users write it today (vectorised per query, below);
(b) LightGBM's total training time with rankgrad's objective vs with its built-in one;
(c) the torch criterion `lambdarank_loss` (64 lists x 1000 float32 scores, every pair, forward +
    backward on the Rust path) against `lambdarank_gradients` on the same pairs, and against the
    same criterion of an older build given with `--old PYTHON_DIR` (a build of another commit,
    e.g. `git archive main | tar -x -C /tmp/old` built with maturin; it runs in a subprocess,
    alternating with this build).
Writes benches/results/lambdarank.{md,json,png}. Runs in about three minutes.

    python benches/bench_lambdarank.py [--old /tmp/old/python --old-label "main@abc1234"]
    python benches/bench_lambdarank.py --update-loss [--old ...]  # (c) only, into the results
    python benches/bench_lambdarank.py --loss-only      # (c) of this build alone, printed as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import rankgrad

Q, M, F = 2000, 200, 20
TRUNCATIONS = (30, 200)
ROUNDS = 10
REPEATS = 3
THREADS = 2
OUT = Path(__file__).resolve().parent / "results"
LOSS_B, LOSS_N = 64, 1000  # (c): lists x items, every pair: B * N (N - 1) / 2 pairs


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    n = Q * M
    X = rng.normal(size=(n, F)).astype(np.float32)
    w = rng.normal(size=F)
    r = X @ w + rng.normal(scale=2.0, size=n)
    labels = np.digitize(r, np.quantile(r, [0.5, 0.75, 0.9, 0.97])).astype(np.float64)  # 0..4
    return X, labels, np.full(Q, M, dtype=np.int64)


def numpy_lambdarank(preds, labels, group, sigma=1.0, k=30, norm=True):
    """LightGBM's lambdarank objective in numpy, vectorised within each query."""
    from scipy.special import expit

    grad, hess = np.zeros(len(preds)), np.zeros(len(preds))
    lo = 0
    for m in group:
        s, y = preds[lo : lo + m], labels[lo : lo + m]
        order = np.argsort(-s, kind="stable")
        ss, ys = s[order], y[order]
        gs = 2.0**ys - 1.0
        disc = 1.0 / np.log2(np.arange(m) + 2.0)
        ideal = np.sort(gs)[::-1][:k]
        max_dcg = (ideal * disc[: len(ideal)]).sum()
        kk = min(k, m - 1)
        if max_dcg <= 0 or kk < 1:
            lo += m
            continue
        i, j = np.arange(kk)[:, None], np.arange(m)[None, :]
        pair = (j > i) & (ys[:kk, None] != ys[None, :])
        hi = ys[:kk, None] > ys[None, :]
        diff = ss[:kk, None] - ss[None, :]
        ds = np.where(hi, diff, -diff)
        delta = np.abs(gs[:kk, None] - gs[None, :]) * np.abs(disc[:kk, None] - disc[None, :]) / max_dcg
        if norm and ss[0] != ss[-1]:
            delta = delta / (0.01 + np.abs(ds))
        rho = expit(-sigma * ds)
        lam = np.where(pair, -sigma * delta * rho, 0.0)
        hes = np.where(pair, sigma * sigma * delta * rho * (1.0 - rho), 0.0)
        signed = np.where(hi, lam, -lam)  # added to the item at i, taken from the item at j
        g_sorted = -signed.sum(0)
        g_sorted[:kk] += signed.sum(1)
        h_sorted = hes.sum(0)
        h_sorted[:kk] += hes.sum(1)
        total = -2.0 * lam.sum()
        factor = np.log2(1.0 + total) / total if norm and total > 0 else 1.0
        grad[lo + order] = g_sorted * factor
        hess[lo + order] = h_sorted * factor
        lo += m
    return grad, hess


def best_of(fn, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


def loss_timing(repeats=10):
    """(c) on this process's rankgrad: best-of-`repeats` seconds of the torch criterion's forward
    + backward (reduction="sum", the Rust path) and of `lambdarank_gradients` on the same pairs
    (truncation_level=N, the same norm), each after a warm-up."""
    import torch

    rankgrad.set_num_threads(THREADS)
    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    s = torch.tensor(rng.normal(size=(LOSS_B, LOSS_N)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 5, size=(LOSS_B, LOSS_N)), dtype=torch.float32)
    preds, labels = s.numpy().ravel().astype(np.float64), y.numpy().ravel().astype(np.float64)
    group = np.full(LOSS_B, LOSS_N)

    def loss():
        x = s.clone().requires_grad_(True)
        rankgrad.lambdarank_loss(x, y, reduction="sum").backward()
        return x.grad

    def grads():
        return rankgrad.lambdarank_gradients(preds, labels, group, truncation_level=LOSS_N, norm=False)

    # the criterion's gradient is the lambdas (SPEC 4): check it on the timed inputs
    np.testing.assert_allclose(loss().numpy().ravel(), grads()[0], rtol=2e-5, atol=1e-7)
    t_loss, _ = best_of(loss, repeats)
    t_grad, _ = best_of(grads, repeats)
    return {"loss_fwd_bwd_s": t_loss, "gradients_s": t_grad}


def loss_section(old=None, old_label=None, rounds=3):
    """(c), alternating this build and `old` (a subprocess with PYTHONPATH=old) `rounds` times;
    the best of each."""
    pairs = LOSS_B * LOSS_N * (LOSS_N - 1) // 2
    new, prev = [], []
    for _ in range(rounds):
        new.append(loss_timing())
        if old is not None:
            env = dict(os.environ, PYTHONPATH=str(old))
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--loss-only"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                cwd="/",
            )
            prev.append(json.loads(out.stdout.strip().splitlines()[-1]))
    res = {
        "load_average_at_start": os.getloadavg()[0],
        "lists": LOSS_B,
        "items": LOSS_N,
        "pairs": pairs,
        "threads": THREADS,
        "loss_fwd_bwd_s": min(r["loss_fwd_bwd_s"] for r in new),
        "gradients_s": min(r["gradients_s"] for r in new),
    }
    res["loss_ns_per_pair"] = res["loss_fwd_bwd_s"] / pairs * 1e9
    res["gradients_ns_per_pair"] = res["gradients_s"] / pairs * 1e9
    res["loss_vs_gradients"] = res["loss_fwd_bwd_s"] / res["gradients_s"]
    if prev:
        res["old_label"] = old_label or str(old)
        res["old_loss_fwd_bwd_s"] = min(r["loss_fwd_bwd_s"] for r in prev)
        res["old_gradients_s"] = min(r["gradients_s"] for r in prev)
        res["speedup_vs_old"] = res["old_loss_fwd_bwd_s"] / res["loss_fwd_bwd_s"]
    text = (
        f"lambdarank_loss {LOSS_B}x{LOSS_N} float32 fwd+bwd: {res['loss_fwd_bwd_s'] * 1e3:.1f} ms "
        f"({res['loss_ns_per_pair']:.2f} ns/pair); lambdarank_gradients, same pairs: "
        f"{res['gradients_s'] * 1e3:.1f} ms ({res['loss_vs_gradients']:.2f}x)"
    )
    if prev:
        text += f"; {res['old_label']}: {res['old_loss_fwd_bwd_s'] * 1e3:.1f} ms ({res['speedup_vs_old']:.1f}x faster now)"
    print(text, flush=True)
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="the python/ folder of an older build, for (c)")
    parser.add_argument("--old-label", help="how to name the older build in the results")
    parser.add_argument("--loss-only", action="store_true", help="(c) of this build only, as JSON")
    parser.add_argument(
        "--update-loss", action="store_true", help="run (c) only and replace it in the recorded results"
    )
    args = parser.parse_args()
    if args.loss_only:
        print(json.dumps(loss_timing()))
        return
    if args.update_loss:
        results = json.loads((OUT / "lambdarank.json").read_text())
        results["loss"] = dict(loss_section(args.old, args.old_label), separate_run=True)
        write(results)
        return
    import lightgbm as lgb

    rankgrad.set_num_threads(THREADS)
    X, labels, group = make_data()
    n = len(labels)
    rng = np.random.default_rng(1)
    preds = rng.normal(size=n)  # distinct scores: the sort's worst case
    dataset = lgb.Dataset(X, labels, group=group, free_raw_data=False, params={"verbose": -1}).construct()
    base = dict(
        learning_rate=0.1,
        num_leaves=31,
        min_data_in_leaf=20,
        num_threads=THREADS,
        force_col_wise=True,
        verbose=-1,
        seed=1,
    )

    results = {
        "queries": Q,
        "docs_per_query": M,
        "features": F,
        "rounds": ROUNDS,
        "threads": THREADS,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "by_truncation": {},
    }
    for k in TRUNCATIONS:
        params = dict(base, lambdarank_truncation_level=k)
        fixed = rankgrad.lambdarank_gradients(np.zeros(n), labels, group, truncation_level=k)

        def precomputed(_preds, _ds, fixed=fixed):
            return fixed

        # As the LightGBM / XGBoost adapters call it: into output arrays reused round to round.
        out = (np.empty(n), np.empty(n))
        ours = lambda: rankgrad.lambdarank_gradients(preds, labels, group, truncation_level=k, out=out)  # noqa: E731
        ours()  # warm-up
        t_rg, _ = best_of(ours, 30)
        t_fresh, _ = best_of(
            lambda: rankgrad.lambdarank_gradients(preds, labels, group, truncation_level=k), 30
        )
        rankgrad.set_num_threads(1)
        t_rg1, _ = best_of(ours, 10)
        rankgrad.set_num_threads(THREADS)
        obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=k)
        train = lambda objective: lgb.train(dict(params, objective=objective), dataset, ROUNDS)  # noqa: E731
        train("lambdarank")  # warm-up
        t_builtin, all_builtin = best_of(lambda: train("lambdarank"))
        t_fixed, all_fixed = best_of(lambda: train(precomputed))
        t_ours, all_ours = best_of(lambda: train(obj))

        t_np, _ = best_of(lambda: numpy_lambdarank(preds, labels, group, k=k), 1)
        # The numpy version is the same objective: check it.
        want = rankgrad.lambdarank_gradients(preds, labels, group, truncation_level=k)
        got = numpy_lambdarank(preds[: 5 * M], labels[: 5 * M], group[:5], k=k)
        np.testing.assert_allclose(got[0], want[0][: 5 * M], rtol=1e-9, atol=1e-12)

        lgb_grad = max(t_builtin - t_fixed, 0.0) / ROUNDS
        results["by_truncation"][k] = {
            "lightgbm_gradient_s_per_round": lgb_grad,
            "rankgrad_gradient_s_per_round": t_rg,
            "rankgrad_gradient_1_thread_s_per_round": t_rg1,
            "rankgrad_gradient_fresh_arrays_s_per_round": t_fresh,
            "numpy_gradient_s_per_round": t_np,
            "speedup_vs_lightgbm": lgb_grad / t_rg if t_rg > 0 else float("inf"),
            "speedup_vs_numpy": t_np / t_rg,
            "train_builtin_s": t_builtin,
            "train_rankgrad_s": t_ours,
            "train_precomputed_s": t_fixed,
            "train_runs_s": {"builtin": all_builtin, "rankgrad": all_ours, "precomputed": all_fixed},
        }
        print(
            f"truncation {k}: LightGBM {lgb_grad * 1e3:.1f} ms/round, rankgrad {t_rg * 1e3:.1f} ms "
            f"({t_rg1 * 1e3:.1f} ms on 1 thread, {t_fresh * 1e3:.1f} ms into fresh arrays), "
            f"numpy {t_np * 1e3:.0f} ms; training {ROUNDS} rounds: "
            f"built-in {t_builtin:.2f} s, rankgrad {t_ours:.2f} s, precomputed {t_fixed:.2f} s",
            flush=True,
        )
    results["loss"] = loss_section(args.old, args.old_label)
    write(results)


def write(results):
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lambdarank.json").write_text(json.dumps(results, indent=2))
    r = results["by_truncation"]
    lines = [
        "# LambdaRank gradients per boosting round",
        "",
        f"{results['queries']:,} queries x {results['docs_per_query']} documents "
        f"({results['queries'] * results['docs_per_query']:,} rows), graded labels 0..4, "
        f"{results['threads']} threads, {results['cores']}-core machine. Best of {REPEATS} runs of "
        f"{results['rounds']} rounds. LightGBM's gradient time = training with "
        '`objective="lambdarank"` minus training with a custom objective returning precomputed '
        "arrays. rankgrad writes into output arrays reused from round to round, as its LightGBM and "
        "XGBoost adapters do (into freshly allocated arrays: last column). One run: timings on a "
        "busy machine are noisy"
        + (
            f" (1-minute load average {results['load_average_at_start']:.1f} at the start of this run)."
            if "load_average_at_start" in results
            else "."
        ),
        "",
        "| truncation | LightGBM C++ (ms/round) | rankgrad (ms/round) | rankgrad, 1 thread | numpy (ms/round) "
        "| rankgrad vs LightGBM | rankgrad vs numpy | rankgrad, fresh arrays |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, v in r.items():
        lines.append(
            f"| {k} | {v['lightgbm_gradient_s_per_round'] * 1e3:.1f} | {v['rankgrad_gradient_s_per_round'] * 1e3:.1f} "
            f"| {v['rankgrad_gradient_1_thread_s_per_round'] * 1e3:.1f} | {v['numpy_gradient_s_per_round'] * 1e3:.0f} "
            f"| {v['speedup_vs_lightgbm']:.1f}x | {v['speedup_vs_numpy']:.0f}x "
            f"| {v['rankgrad_gradient_fresh_arrays_s_per_round'] * 1e3:.1f} |"
        )
    lines += [
        "",
        f"LightGBM total training time, {results['rounds']} rounds:",
        "",
        "| truncation | built-in lambdarank (s) | rankgrad objective (s) | precomputed arrays (s) |",
        "|---:|---:|---:|---:|",
    ]
    for k, v in r.items():
        lines.append(
            f"| {k} | {v['train_builtin_s']:.2f} | {v['train_rankgrad_s']:.2f} | {v['train_precomputed_s']:.2f} |"
        )
    loss = results.get("loss")
    if loss:
        lines += [
            "",
            f"The torch criterion `lambdarank_loss`: {loss['lists']} lists x {loss['items']} float32 "
            f'scores, every pair ({loss["pairs"]:,} pairs), `reduction="sum"`, forward + backward on '
            f"the Rust path, {loss['threads']} threads, best of 3 x 10 runs; `lambdarank_gradients` on "
            "the same pairs (`truncation_level=1000`, the same `norm`). The loss runs on the gradients' "
            "row kernel (one more log-sigmoid per pair, vectorised)."
            + (
                f" Measured in a separate run from the tables above (1-minute load average "
                f"{loss['load_average_at_start']:.1f} at its start)."
                if loss.get("separate_run")
                else ""
            ),
            "",
            "| | forward + backward (ms) | ns / pair |",
            "|---|---:|---:|",
        ]
        if "old_loss_fwd_bwd_s" in loss:
            lines.append(
                f"| `lambdarank_loss`, before: a build of {loss['old_label']} | "
                f"{loss['old_loss_fwd_bwd_s'] * 1e3:.1f} | {loss['old_loss_fwd_bwd_s'] / loss['pairs'] * 1e9:.2f} |"
            )
        lines.append(
            f"| `lambdarank_loss`, this build | {loss['loss_fwd_bwd_s'] * 1e3:.1f} | {loss['loss_ns_per_pair']:.2f} |"
        )
        lines.append(
            f"| `lambdarank_gradients`, same pairs | {loss['gradients_s'] * 1e3:.1f} | "
            f"{loss['gradients_ns_per_pair']:.2f} |"
        )
        lines.append("")
        speed = (
            f"{loss['speedup_vs_old']:.1f}x faster than before (the old time measured in the same run, "
            f"alternating with this build); "
            if "speedup_vs_old" in loss
            else ""
        )
        lines.append(f"The loss: {speed}{loss['loss_vs_gradients']:.2f}x the gradients' time.")
    (OUT / "lambdarank.md").write_text("\n".join(lines) + "\n")
    plot(results)
    print(f"wrote {OUT / 'lambdarank.md'}")


def plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = results["by_truncation"]
    ks = list(r)
    loss = results.get("loss")
    fig, axes = plt.subplots(1, 3 if loss else 2, figsize=(15 if loss else 10, 4))
    ax1, ax2 = axes[0], axes[1]
    x = np.arange(len(ks))
    width = 0.27
    series = [
        ("LightGBM C++", "lightgbm_gradient_s_per_round"),
        ("rankgrad", "rankgrad_gradient_s_per_round"),
        ("numpy", "numpy_gradient_s_per_round"),
    ]
    for i, (name, key) in enumerate(series):
        ax1.bar(x + (i - 1) * width, [r[k][key] * 1e3 for k in ks], width, label=name)
    ax1.set_yscale("log")
    ax1.set_xticks(x, [f"truncation {k}" for k in ks])
    ax1.set_ylabel("gradient time per round (ms, log)")
    ax1.set_title(f"{results['queries']} queries x {results['docs_per_query']} docs")
    ax1.legend()
    for i, (name, key) in enumerate(
        [("built-in", "train_builtin_s"), ("rankgrad objective", "train_rankgrad_s")]
    ):
        ax2.bar(x + (i - 0.5) * 0.35, [r[k][key] for k in ks], 0.35, label=name)
    ax2.set_xticks(x, [f"truncation {k}" for k in ks])
    ax2.set_ylabel(f"LightGBM training, {results['rounds']} rounds (s)")
    ax2.legend()
    if loss:
        names, vals = [], []
        if "old_loss_fwd_bwd_s" in loss:
            names.append(f"loss, before\n({loss['old_label']})")
            vals.append(loss["old_loss_fwd_bwd_s"] * 1e3)
        names += ["loss, now", "gradients,\nsame pairs"]
        vals += [loss["loss_fwd_bwd_s"] * 1e3, loss["gradients_s"] * 1e3]
        axes[2].bar(range(len(vals)), vals, color=["tab:gray", "tab:blue", "tab:orange"][-len(vals) :])
        axes[2].set_xticks(range(len(vals)), names)
        axes[2].set_ylabel("ms (forward + backward)")
        axes[2].set_title(f"lambdarank_loss, {loss['lists']} x {loss['items']} float32")
    fig.tight_layout()
    fig.savefig(OUT / "lambdarank.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
