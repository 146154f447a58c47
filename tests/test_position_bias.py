"""Position-debiased LambdaRank (LightGBM >= 4.1's `Dataset(position=...)`) as a rankgrad objective.

On LightGBM's example data with clicks from a cascade model over a fixed display order (as
LightGBM's own test makes them): predictions after 5 rounds equal the built-in objective's
(round 1 proves nothing: the factors start at 0), 50 rounds reach the same test NDCG@10; the
bias-factor update is checked against a plain transcription of `UpdatePositionBiasFactors`.
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

import rankgrad
from gbdt_data import PARAMS, cascade_clicks, load, ndcg_at, needs_data
from rankgrad import lambdarank_gradients

lgb = pytest.importorskip("lightgbm")
if "position" not in inspect.signature(lgb.Dataset).parameters:
    pytest.skip("Dataset(position=...) needs LightGBM >= 4.1", allow_module_level=True)


@pytest.fixture(scope="module")
def clicks_data():
    X, y, g, Xt, yt, gt = load()
    clicks, pos = cascade_clicks(X, y, g)
    return X, clicks, pos, g, Xt, yt, gt


def train(X, labels, g, pos, rounds, objective, reg):
    params = dict(PARAMS, objective=objective, lambdarank_position_bias_regularization=reg)
    return lgb.train(params, lgb.Dataset(X, labels, group=g, position=pos), rounds)


@needs_data
@pytest.mark.parametrize("reg", [0.0, 0.5])
def test_five_rounds_equal_lightgbm_builtin(clicks_data, reg):
    X, clicks, pos, g, Xt, *_ = clicks_data
    builtin = train(X, clicks, g, pos, 5, "lambdarank", reg).predict(Xt)
    obj = rankgrad.lightgbm.LambdaRankObjective(position_bias_regularization=reg)
    ours = train(X, clicks, g, pos, 5, obj, reg).predict(Xt)
    unbiased = train(X, clicks, g, None, 5, "lambdarank", reg).predict(Xt)
    assert np.abs(builtin - unbiased).max() > 0.3  # positions matter by round 5
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-3)
    assert obj.position_ids_.tolist() == sorted(set(pos.tolist()))
    assert obj.position_biases_.dtype == np.float32 and np.abs(obj.position_biases_).max() > 0.01


@needs_data
def test_fifty_rounds_reach_builtin_ndcg(clicks_data):
    X, clicks, pos, g, Xt, yt, gt = clicks_data
    builtin = train(X, clicks, g, pos, 50, "lambdarank", 0.0).predict(Xt)
    obj = rankgrad.lightgbm.LambdaRankObjective()
    ours = train(X, clicks, g, pos, 50, obj, 0.0).predict(Xt)
    a, b = ndcg_at(builtin, yt, gt), ndcg_at(ours, yt, gt)
    assert abs(a - b) < 0.01, (a, b)
    # Clicks carry little of the true labels, so NDCG alone is a weak check: the models agree too.
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-2)


@needs_data
def test_lgbm_ranker_takes_positions(clicks_data):
    pytest.importorskip("sklearn")
    X, clicks, pos, g, Xt, *_ = clicks_data
    builtin = train(X, clicks, g, pos, 5, "lambdarank", 0.0).predict(Xt)
    obj = rankgrad.lightgbm.LambdaRankObjective(positions=pos, learning_rate=PARAMS["learning_rate"])
    params = {k: v for k, v in PARAMS.items() if k not in ("num_threads", "seed", "min_data_in_leaf")}
    ranker = lgb.LGBMRanker(
        objective=obj, n_estimators=5, n_jobs=2, random_state=7, min_child_samples=20, **params
    )
    ranker.fit(X, clicks, group=g)
    np.testing.assert_allclose(ranker.predict(Xt), builtin, rtol=0, atol=1e-3)
    assert np.abs(obj.position_biases_).max() > 0.01


def reference_update(b, grad, hess, pos_ids, reg, lr):
    """`UpdatePositionBiasFactors`, one position at a time."""
    out = b.astype(np.float64).copy()
    for p in range(b.size):
        at = pos_ids == p
        d1 = -grad[at].astype(np.float32).astype(np.float64).sum() - b[p] * reg * at.sum()
        d2 = -hess[at].astype(np.float32).astype(np.float64).sum() - reg * at.sum()
        out[p] += lr * d1 / (abs(d2) + 0.001)
    return out.astype(np.float32)


@pytest.mark.parametrize("reg, lr", [(0.0, 0.1), (0.7, 0.05)])
def test_factor_update_and_adjusted_scores(reg, lr):
    rng = np.random.default_rng(3)
    g = np.array([6, 1, 9, 4])
    n = int(g.sum())
    y = rng.integers(0, 2, n).astype(np.float64)
    w = rng.uniform(0.5, 2.0, n)
    pos = np.concatenate([rng.permutation(m) + 2 for m in g])  # positions 2..10, not from 0
    ds = lgb.Dataset(rng.normal(size=(n, 2)), y, group=g, weight=w, position=pos, free_raw_data=False)
    ds = ds.construct()
    obj = rankgrad.lightgbm.LambdaRankObjective(position_bias_regularization=reg, learning_rate=lr)
    # A constructed Dataset reports LightGBM's own position ids (0.. in order of first appearance).
    seen = ds.get_position()
    assert len(set(zip(seen.tolist(), pos.tolist()))) == np.unique(pos).size  # a relabelling
    ids = np.searchsorted(np.unique(seen), seen)
    b = np.zeros(np.unique(pos).size, dtype=np.float32)
    for _ in range(3):
        preds = rng.normal(size=n)
        grad, hess = (a.copy() for a in obj(preds, ds))
        adjusted = preds + b[ids].astype(np.float64)
        want = lambdarank_gradients(adjusted, y, g, weights=w.astype(np.float32))
        np.testing.assert_allclose(grad, want[0], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(hess, want[1], rtol=1e-6, atol=1e-12)
        b = reference_update(b, want[0], want[1], ids, reg, lr)
        np.testing.assert_allclose(obj.position_biases_, b, rtol=1e-5, atol=1e-7)
    assert np.abs(b).max() > 1e-3
    # Another Dataset is another run: the factors start again from zero.
    other = lgb.Dataset(np.zeros((n, 1)), y, group=g, position=pos).construct()
    preds = rng.normal(size=n)
    got = obj(preds, other)[0].copy()
    np.testing.assert_allclose(got, lambdarank_gradients(preds, y, g)[0], rtol=1e-12)


def test_no_positions_is_plain_lambdarank_and_bad_input():
    rng = np.random.default_rng(5)
    g = np.array([5, 7])
    y = rng.integers(0, 3, 12).astype(np.float64)
    preds = rng.normal(size=12)
    obj = rankgrad.lightgbm.LambdaRankObjective(position_bias_regularization=1.0)
    got = obj(y, preds, None, g)[0].copy()
    np.testing.assert_array_equal(got, lambdarank_gradients(preds, y, g)[0])
    with pytest.raises(AttributeError, match="position_biases_"):
        _ = obj.position_biases_
    with pytest.raises(ValueError, match="position_bias_regularization"):
        rankgrad.lightgbm.LambdaRankObjective(position_bias_regularization=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        rankgrad.lightgbm.LambdaRankObjective(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="positions"):
        rankgrad.lightgbm.LambdaRankObjective(positions=np.arange(5))(y, preds, None, g)
    with pytest.raises(TypeError, match="positions"):
        rankgrad.lightgbm.LambdaRankObjective(positions=np.full(12, 0.5))(y, preds, None, g)
    # LGBMRanker form with positions: a new label array is a new run.
    obj = rankgrad.lightgbm.LambdaRankObjective(positions=np.tile(np.arange(6), 2))
    obj(y, preds, None, g)
    first = obj.position_biases_
    obj(y, preds, None, g)
    assert not np.array_equal(obj.position_biases_, first)  # same run: the factors moved on
    moved = obj.position_biases_
    copied = pickle.loads(pickle.dumps(obj))
    np.testing.assert_array_equal(copied.position_biases_, moved)
    obj(y.copy(), preds, None, g)
    np.testing.assert_array_equal(obj.position_biases_, first)  # new run: from zero again


def test_overflowing_factors_raise_naming_the_learning_rate():
    # lr * d1 / (|d2| + 0.001) past float32's range: without the check the factors became inf
    # (and every later lambda NaN) silently.
    rng = np.random.default_rng(8)
    g = np.array([6, 5])
    y = rng.integers(0, 3, 11).astype(np.float64)
    preds = rng.normal(size=11)
    pos = np.concatenate([np.arange(m) for m in g])
    obj = rankgrad.lightgbm.LambdaRankObjective(positions=pos, learning_rate=1e300)
    with pytest.raises(ValueError, match=r"learning_rate=1e\+300"):
        obj(y, preds, None, g)
    np.testing.assert_array_equal(obj.position_biases_, 0.0)  # left as they were
    # the same step with a sane learning rate is finite
    ok = rankgrad.lightgbm.LambdaRankObjective(positions=pos, learning_rate=0.1)
    ok(y, preds, None, g)
    assert np.isfinite(ok.position_biases_).all() and np.abs(ok.position_biases_).max() > 0
