"""LightGBM's lambdarank example data for the GBDT tests (not a test module).

`<repo>/../shared/data` by default; RANKGRAD_TEST_DATA points elsewhere. Tests that need it
skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("RANKGRAD_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FILES = ("rank.train", "rank.test", "rank.train.query", "rank.test.query")
needs_data = pytest.mark.skipif(
    not all((DATA / f).exists() for f in FILES),
    reason=f"LightGBM's lambdarank example data not found in {DATA}",
)

# Deterministic LightGBM settings shared by the parity tests.
PARAMS = dict(
    learning_rate=0.1,
    num_leaves=31,
    min_data_in_leaf=20,
    deterministic=True,
    force_col_wise=True,
    num_threads=2,
    verbose=-1,
    seed=7,
)


def load_svmlight(path: Path, n_features: int = 301):
    """Dense features `[n, n_features]` and labels `[n]` from an svmlight file."""
    labels, rows = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        labels.append(float(parts[0]))
        rows.append([(int(k), float(v)) for k, v in (p.split(":") for p in parts[1:] if ":" in p)])
    X = np.zeros((len(rows), n_features))
    for i, row in enumerate(rows):
        for k, v in row:
            X[i, k] = v
    return X, np.asarray(labels)


def load():
    X, y = load_svmlight(DATA / "rank.train")
    Xt, yt = load_svmlight(DATA / "rank.test")
    g = np.loadtxt(DATA / "rank.train.query", dtype=np.int64)
    gt = np.loadtxt(DATA / "rank.test.query", dtype=np.int64)
    return X, y, g, Xt, yt, gt


def ndcg_at(preds, labels, group, k=10):
    """Mean NDCG@k, gains 2^y - 1, ties in input order, queries without relevance score 0."""
    out, lo = [], 0
    disc = 1.0 / np.log2(np.arange(2, 2 + k))
    for m in group:
        s, y = preds[lo : lo + m], labels[lo : lo + m]
        lo += m
        top = y[np.argsort(-s, kind="stable")[:k]]
        ideal = np.sort(y)[::-1][:k]
        idcg = ((2.0**ideal - 1) * disc[: len(ideal)]).sum()
        out.append(((2.0**top - 1) * disc[: len(top)]).sum() / idcg if idcg > 0 else 0.0)
    return float(np.mean(out))


def cascade_clicks(X, y, group, baseline_feature=34, pstop=0.2, seed=10):
    """LightGBM's position-bias test data: each query displayed in the order of one feature, a
    user scanning it top-down clicks with a probability rising with the true label (0.4 ... 0.9)
    and stops after each item with probability `pstop`. Returns (clicks [n], positions [n])."""
    rng = np.random.default_rng(seed)
    pclick = np.array([0.4, 0.6, 0.7, 0.8, 0.9])
    clicks = np.zeros(len(y))
    pos = np.zeros(len(y), dtype=np.int64)
    lo = 0
    for m in group:
        order = lo + np.argsort(-X[lo : lo + m, baseline_feature], kind="stable")
        pos[order] = np.arange(m)
        stop = rng.random(m) < pstop
        looked = np.concatenate([[True], np.cumprod(~stop[:-1]).astype(bool)])
        clicks[order] = (rng.random(m) < pclick[y[order].astype(int)]) & looked
        lo += m
    return clicks, pos
