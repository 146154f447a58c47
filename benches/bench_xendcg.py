"""XE-NDCG gradients per boosting round: rankgrad vs LightGBM's built-in `rank_xendcg` vs numpy.

Synthetic data, 400,000 rows in two shapes (4,000 queries x 100 documents, 400 x 1,000), 20
features, graded labels 0..4.
(a) the gradient computation per round:
    - LightGBM built-in: (training time with objective="rank_xendcg") minus (training time with
      a custom objective returning precomputed arrays), same data and params, divided by rounds;
      the custom objective's own overhead is in the subtracted time, so this slightly
      understates LightGBM's cost;
    - rankgrad: one call of `rankgrad.lightgbm.XENDCGObjective` (gammas drawn as LightGBM does);
    - numpy: the same objective written per query in numpy (below), gammas given;
(b) LightGBM's total training time with rankgrad's objective vs with its built-in one.
Everything on one thread, timed in CPU seconds of the process (`time.process_time`), so that a
busy shared machine (other processes waiting for the cores) inflates the numbers less than wall
time would; OpenMP threads wait passively. Writes benches/results/xendcg.{md,json,png}.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before lightgbm loads its OpenMP runtime
import platform
import time
from pathlib import Path

import numpy as np

import rankgrad

SHAPES = ((4000, 100), (400, 1000))
F = 20
ROUNDS = 10
REPEATS = 3
THREADS = 1
OUT = Path(__file__).resolve().parent / "results"


def make_data(q, m, seed=0):
    rng = np.random.default_rng(seed)
    n = q * m
    X = rng.normal(size=(n, F)).astype(np.float32)
    r = X @ rng.normal(size=F) + rng.normal(scale=2.0, size=n)
    labels = np.digitize(r, np.quantile(r, [0.5, 0.75, 0.9, 0.97])).astype(np.float64)  # 0..4
    return X, labels, np.full(q, m, dtype=np.int64)


def numpy_xendcg(preds, labels, group, gammas):
    """`RankXENDCG::GetGradientsForOneQuery` in numpy, vectorised within each query."""
    grad, hess = np.zeros(len(preds)), np.zeros(len(preds))
    lo = 0
    for m in group:
        sl = slice(lo, lo + m)
        lo += m
        if m <= 1:
            continue
        s = preds[sl]
        e = np.exp(s - s.max())
        rho = e / e.sum()
        phi = 2.0 ** labels[sl] - gammas[sl]
        t1 = rho - phi / max(phi.sum(), 1e-15)
        c1 = t1 / (1 - rho)
        t2 = rho * (c1.sum() - c1)
        c2 = t2 / (1 - rho)
        grad[sl] = t1 + t2 + rho * (c2.sum() - c2)
        hess[sl] = rho * (1 - rho)
    return grad, hess


def best_of(fn, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times), times


def main():
    import lightgbm as lgb

    rankgrad.set_num_threads(THREADS)
    results = {
        "features": F,
        "rounds": ROUNDS,
        "threads": THREADS,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "lightgbm": lgb.__version__,
        "by_shape": {},
    }
    base = dict(
        learning_rate=0.1,
        num_leaves=31,
        min_data_in_leaf=20,
        num_threads=THREADS,
        force_col_wise=True,
        verbose=-1,
        seed=1,
    )
    for q, m in SHAPES:
        X, labels, group = make_data(q, m)
        n = len(labels)
        rng = np.random.default_rng(1)
        preds = rng.normal(size=n)
        gammas = rng.random(n)
        dataset = lgb.Dataset(X, labels, group=group, free_raw_data=False, params={"verbose": -1}).construct()
        obj = rankgrad.lightgbm.XENDCGObjective(seed=0)
        ours = lambda: obj(labels, preds, None, group)  # noqa: E731
        ours()  # warm-up
        t_rg, _ = best_of(ours, 30)
        rankgrad.set_num_threads(2)
        t_rg2, _ = best_of(ours, 10)  # CPU time summed over both threads
        rankgrad.set_num_threads(THREADS)
        t_np, _ = best_of(lambda: numpy_xendcg(preds, labels, group, gammas), 1)
        got = rankgrad.lightgbm.xendcg_gradients(preds, labels, group, gammas=gammas)
        np.testing.assert_allclose(
            numpy_xendcg(preds, labels, group, gammas)[0], got[0], rtol=1e-9, atol=1e-12
        )

        fixed = rankgrad.lightgbm.XENDCGObjective(0)(labels, np.zeros(n), None, group)

        def precomputed(_preds, _ds, fixed=fixed):
            return fixed

        def train(objective):
            return lgb.train(dict(base, objective=objective, objective_seed=0), dataset, ROUNDS)

        train("rank_xendcg")  # warm-up
        t_builtin, all_builtin = best_of(lambda: train("rank_xendcg"))
        t_fixed, all_fixed = best_of(lambda: train(precomputed))
        t_ours, all_ours = best_of(lambda: train(rankgrad.lightgbm.XENDCGObjective(0)))
        lgb_grad = max(t_builtin - t_fixed, 0.0) / ROUNDS
        results["by_shape"][f"{q}x{m}"] = {
            "queries": q,
            "docs_per_query": m,
            "lightgbm_gradient_s_per_round": lgb_grad,
            "rankgrad_gradient_s_per_round": t_rg,
            "rankgrad_gradient_2_threads_cpu_s_per_round": t_rg2,
            "numpy_gradient_s_per_round": t_np,
            "train_builtin_s": t_builtin,
            "train_rankgrad_s": t_ours,
            "train_precomputed_s": t_fixed,
            "train_runs_s": {"builtin": all_builtin, "rankgrad": all_ours, "precomputed": all_fixed},
        }
        print(
            f"{q}x{m}: LightGBM {lgb_grad * 1e3:.1f} ms/round, rankgrad {t_rg * 1e3:.1f} ms "
            f"({t_rg2 * 1e3:.1f} ms CPU on 2 threads), numpy {t_np * 1e3:.0f} ms; training {ROUNDS} rounds: "
            f"built-in {t_builtin:.2f} s, rankgrad {t_ours:.2f} s, precomputed {t_fixed:.2f} s",
            flush=True,
        )
    write(results)


def write(results):
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "xendcg.json").write_text(json.dumps(results, indent=2))
    r = results["by_shape"]
    lines = [
        "# XE-NDCG gradients per boosting round",
        "",
        f"400,000 rows, graded labels 0..4, {results['threads']} thread, {results['cores']}-core shared machine, "
        f"LightGBM {results['lightgbm']}. CPU time of the process (`time.process_time`), best of "
        f"{REPEATS} runs of {results['rounds']} rounds. "
        'LightGBM\'s gradient time = training with `objective="rank_xendcg"` minus training with a '
        "custom objective returning precomputed arrays (so it is a difference of two noisy numbers); "
        "rankgrad = one call of `XENDCGObjective` (fresh output arrays, gammas drawn as LightGBM "
        "does). One run on a shared machine: timings are noisy.",
        "",
        "| queries x docs | LightGBM C++ (ms/round) | rankgrad (ms/round) | rankgrad, 2 threads (CPU ms, summed) | numpy (ms/round) | rankgrad vs LightGBM |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, v in r.items():
        lines.append(
            f"| {k} | {v['lightgbm_gradient_s_per_round'] * 1e3:.1f} | {v['rankgrad_gradient_s_per_round'] * 1e3:.1f} "
            f"| {v['rankgrad_gradient_2_threads_cpu_s_per_round'] * 1e3:.1f} "
            f"| {v['numpy_gradient_s_per_round'] * 1e3:.0f} "
            f"| {v['lightgbm_gradient_s_per_round'] / v['rankgrad_gradient_s_per_round']:.1f}x |"
        )
    lines += [
        "",
        f"LightGBM total training time, {results['rounds']} rounds:",
        "",
        "| queries x docs | built-in rank_xendcg (s) | rankgrad objective (s) | precomputed arrays (s) |",
        "|---|---:|---:|---:|",
    ]
    for k, v in r.items():
        lines.append(
            f"| {k} | {v['train_builtin_s']:.2f} | {v['train_rankgrad_s']:.2f} | {v['train_precomputed_s']:.2f} |"
        )
    (OUT / "xendcg.md").write_text("\n".join(lines) + "\n")
    plot(results)
    print(f"wrote {OUT / 'xendcg.md'}")


def plot(results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = results["by_shape"]
    ks = list(r)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(ks))
    width = 0.27
    series = [
        ("LightGBM C++", "lightgbm_gradient_s_per_round"),
        ("rankgrad", "rankgrad_gradient_s_per_round"),
        ("numpy", "numpy_gradient_s_per_round"),
    ]
    for i, (name, key) in enumerate(series):
        ax1.bar(x + (i - 1) * width, [max(r[k][key], 1e-5) * 1e3 for k in ks], width, label=name)
    ax1.set_yscale("log")
    ax1.set_xticks(x, ks)
    ax1.set_ylabel("gradient CPU time per round (ms, log)")
    ax1.set_title("XE-NDCG, 400,000 rows")
    ax1.legend()
    for i, (name, key) in enumerate(
        [("built-in", "train_builtin_s"), ("rankgrad objective", "train_rankgrad_s")]
    ):
        ax2.bar(x + (i - 0.5) * 0.35, [r[k][key] for k in ks], 0.35, label=name)
    ax2.set_xticks(x, ks)
    ax2.set_ylabel(f"LightGBM training, {results['rounds']} rounds (CPU s)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(OUT / "xendcg.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
