"""LightGBM ranker trained with rankgrad's LambdaRank objective beside LightGBM's built-in one.

Synthetic query-document data (graded relevance 0..4 from a noisy function of the features);
prints test NDCG@10 and training time side by side, then trains on a query of 15,000
documents, which LightGBM's own objective refuses (it caps queries at 10,000 rows).
Run: python examples/demo_lightgbm.py   (with rankgrad[lightgbm] installed; in a checkout: make demo)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np

import rankgrad

W = np.random.default_rng(42).normal(size=20)  # the hidden relevance function's weights


def make_queries(n_queries, docs, seed=0):
    rng = np.random.default_rng(seed)
    n = n_queries * docs
    X = rng.normal(size=(n, len(W))).astype(np.float32)
    w = W
    r = np.tanh(X[:, :5] @ w[:5]) * 2 + X[:, 5:] @ w[5:] * 0.3 + rng.normal(scale=1.0, size=n)
    y = np.digitize(r, np.quantile(r, [0.5, 0.75, 0.9, 0.97])).astype(np.float64)
    return X, y, np.full(n_queries, docs, dtype=np.int64)


def ndcg_at(preds, labels, group, k=10):
    out, lo = [], 0
    disc = 1.0 / np.log2(np.arange(2, 2 + k))
    for m in group:
        s, y = preds[lo : lo + m], labels[lo : lo + m]
        lo += m
        top, ideal = y[np.argsort(-s, kind="stable")[:k]], np.sort(y)[::-1][:k]
        idcg = ((2.0**ideal - 1) * disc[: len(ideal)]).sum()
        out.append(((2.0**top - 1) * disc[: len(top)]).sum() / idcg if idcg > 0 else 0.0)
    return float(np.mean(out))


@contextlib.contextmanager
def _stderr_silenced():
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main():
    import lightgbm as lgb

    X, y, g = make_queries(1500, 150, seed=0)
    Xt, yt, gt = make_queries(300, 150, seed=1)
    train = lgb.Dataset(X, y, group=g, free_raw_data=False, params={"verbose": -1}).construct()
    rounds = 100
    print(
        f"train: {len(g)} queries x {g[0]} docs; test: {len(gt)} queries; {rounds} rounds, "
        f"num_leaves=31, learning_rate=0.1, lambdarank_truncation_level=30, 2 threads\n"
    )
    print(f"{'objective':<36}{'test NDCG@10':>14}{'train time (s)':>16}")
    base = dict(
        learning_rate=0.1,
        num_leaves=31,
        min_data_in_leaf=20,
        lambdarank_truncation_level=30,
        num_threads=2,
        verbose=-1,
        seed=1,
    )
    print(f"{'untrained (all scores equal)':<36}{ndcg_at(np.zeros(len(yt)), yt, gt):>14.4f}{'':>16}")
    for name, objective in [
        ("LightGBM built-in lambdarank", "lambdarank"),
        ("rankgrad.lightgbm.LambdaRankObjective", rankgrad.lightgbm.LambdaRankObjective(truncation_level=30)),
    ]:
        t = time.perf_counter()
        booster = lgb.train(dict(base, objective=objective), train, rounds)
        elapsed = time.perf_counter() - t
        print(f"{name:<36}{ndcg_at(booster.predict(Xt), yt, gt):>14.4f}{elapsed:>16.2f}")

    # One query of 15,000 documents: beyond LightGBM's own limit, fine for rankgrad.
    Xb, yb, gb = make_queries(1, 15_000, seed=2)
    big = lgb.Dataset(Xb, yb, group=gb, params={"verbose": -1})
    params = dict(base, num_leaves=15)
    try:
        with _stderr_silenced():  # LightGBM's C++ prints its Fatal line there
            lgb.train(dict(params, objective="lambdarank"), big, 5)
        builtin = "trained"
    except lgb.basic.LightGBMError as e:
        builtin = f"refused ({str(e).splitlines()[0][:70]})"
    t = time.perf_counter()
    booster = lgb.train(dict(params, objective=rankgrad.lightgbm.LambdaRankObjective()), big, 5)
    print(
        f"\nOne query of 15,000 documents: LightGBM built-in {builtin};\n"
        f"rankgrad objective trained 5 rounds in {time.perf_counter() - t:.2f} s "
        f"(NDCG@10 on it {ndcg_at(booster.predict(Xb), yb, gb):.3f})."
    )


if __name__ == "__main__":
    main()
