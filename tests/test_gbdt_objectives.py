"""rankgrad's LambdaRank objective in LightGBM and XGBoost.

On LightGBM's lambdarank example data (`<repo>/../shared/data`, skipped when absent): one
boosting round equals LightGBM's built-in `lambdarank` (whose only difference is a sigmoid
lookup table), 30 rounds reach the same test NDCG@10 within 0.01, and LGBMRanker and
xgboost.train learn with the objectives.

`rankgrad.xgboost.LambdaRankObjective` against XGBoost's own `rank:ndcg` (hist, XGBoost's
defaults otherwise), on that data and on synthetic queries of 1 to 79 rows: margins after one
round to 1e-6, after 30 rounds to 1e-5 (real) / 2e-5 (synthetic), with k = 32 (the default),
5 and 10, with and without group weights, gains 2^y - 1 and y; rank:ndcg's own gradients and
hessians read back leaf by leaf from exact trees; from_params as the installed XGBoost reads
its switches (XGBoost 2.0, 2.1 and >= 3.0 differ there).
"""

from __future__ import annotations

import inspect
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rankgrad
from gbdt_data import PARAMS, load, ndcg_at, needs_data
from rankgrad import lambdarank_gradients

lgb = pytest.importorskip("lightgbm")


@pytest.fixture(scope="module")
def data():
    return load()


def train_both(data, rounds, k, **extra):
    X, y, g, Xt, _, _ = data
    params = dict(PARAMS, lambdarank_truncation_level=k, **extra)
    builtin = lgb.train(dict(params, objective="lambdarank"), lgb.Dataset(X, y, group=g), rounds)
    obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=k, sigma=params.get("sigmoid", 1.0))
    ours = lgb.train(dict(params, objective=obj), lgb.Dataset(X, y, group=g), rounds)
    return builtin.predict(Xt), ours.predict(Xt)


@needs_data
@pytest.mark.parametrize("k, extra", [(30, {}), (5, {}), (10, {"sigmoid": 2.0, "num_leaves": 7})])
def test_one_round_equals_lightgbm_builtin(data, k, extra):
    builtin, ours = train_both(data, 1, k, **extra)
    assert np.abs(builtin).max() > 1e-3
    np.testing.assert_allclose(ours, builtin, rtol=0, atol=1e-6)


@needs_data
def test_thirty_rounds_reach_builtin_ndcg(data):
    *_, yt, gt = data
    builtin, ours = train_both(data, 30, 30)
    a, b = ndcg_at(builtin, yt, gt), ndcg_at(ours, yt, gt)
    assert abs(a - b) < 0.01, (a, b)
    assert b > ndcg_at(np.zeros_like(ours), yt, gt) + 0.05


@needs_data
def test_lgbm_ranker_learns(data):
    X, y, g, Xt, yt, gt = data
    obj = rankgrad.lightgbm.LambdaRankObjective()
    assert len(inspect.signature(obj).parameters) == 4  # LGBMRanker passes (y, preds, weight, group)
    pytest.importorskip("sklearn")  # LGBMRanker needs scikit-learn (installed by the Makefile)
    ranker = lgb.LGBMRanker(
        objective=obj, n_estimators=15, num_leaves=15, learning_rate=0.1, n_jobs=2, verbose=-1, random_state=1
    )
    ranker.fit(X, y, group=g)
    preds = ranker.predict(Xt)
    assert ndcg_at(preds, yt, gt) > ndcg_at(np.zeros(len(yt)), yt, gt) + 0.05


def test_lightgbm_objective_both_call_forms():
    rng = np.random.default_rng(0)
    g = np.array([5, 9, 1, 7])
    y = rng.integers(0, 4, size=g.sum()).astype(np.float64)
    w = rng.uniform(0.5, 2, size=g.sum())
    preds = rng.normal(size=g.sum())
    ds = lgb.Dataset(rng.normal(size=(g.sum(), 3)), y, group=g, weight=w, free_raw_data=False).construct()
    obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=4, sigma=0.7, norm=False)
    want = lambdarank_gradients(preds, y, g, weights=w, truncation_level=4, sigma=0.7, norm=False)
    # copies: the objective reuses its output arrays from call to call
    for got in [tuple(a.copy() for a in obj(preds, ds)), tuple(a.copy() for a in obj(y, preds, w, g))]:
        assert got[0].dtype == np.float64 and got[0].shape == preds.shape
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)  # the Dataset keeps float32 weights
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    with pytest.raises(ValueError, match="group"):
        obj(y, preds, None, None)
    with pytest.raises(ValueError, match="group"):
        obj(preds, lgb.Dataset(np.zeros((3, 1)), np.zeros(3)).construct())
    with pytest.raises(ValueError, match="sigma"):
        rankgrad.lightgbm.LambdaRankObjective(sigma=-1)


def test_objectives_copy_and_pickle():
    import copy
    import pickle

    rng = np.random.default_rng(4)
    g = np.array([6, 4])
    y = rng.integers(0, 3, size=10).astype(np.float64)
    preds = rng.normal(size=10)
    for cls in (rankgrad.lightgbm.LambdaRankObjective, rankgrad.xgboost.LambdaRankObjective):
        obj = cls(truncation_level=3, sigma=0.5, label_gain=[0, 1, 5])
        if cls is rankgrad.lightgbm.LambdaRankObjective:
            first = obj(y, preds, None, g)
        else:
            first = None
        for other in (copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
            assert other.options["truncation_level"] == 3 and other.sigma == 0.5
            np.testing.assert_array_equal(other.label_gain, [0.0, 1.0, 5.0])
            if first is not None:
                again = other(y, preds, None, g)
                np.testing.assert_array_equal(again[0], first[0])
        assert "truncation_level=3" in repr(obj)


def test_adapters_import_gbdt_libraries_lazily():
    code = (
        "import sys, rankgrad; obj = rankgrad.lightgbm.LambdaRankObjective(); "
        "rankgrad.xgboost.LambdaRankObjective(); "
        "assert 'lightgbm' not in sys.modules and 'xgboost' not in sys.modules, sorted(sys.modules)"
    )
    # the directory rankgrad was imported from: python/ in the source tree, site-packages when installed
    where = Path(rankgrad.__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=where, env={"PYTHONPATH": str(where), "PATH": ""}
    )


# ------------------------------------------------------------------------------------------------
# XGBoost: rankgrad.xgboost.LambdaRankObjective against XGBoost's own rank:ndcg


def xgb_version():
    xgb = pytest.importorskip("xgboost")
    return tuple(int(v) for v in re.match(r"(\d+)\.(\d+)", xgb.__version__).groups())


def ranking_lists(seed, queries=60, max_size=80):
    """Query sizes 1 .. max_size (many above XGBoost's k = 32), 5 features, labels 0 .. 4, and
    one weight per query."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_size, queries)
    n = int(sizes.sum())
    X = rng.normal(size=(n, 5))
    y = np.clip(np.round(X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n) * 0.7 + 1), 0, 4)
    return X, y, sizes, rng.uniform(0.2, 3.0, queries).astype(np.float32)


def train_rank_ndcg_both(X, y, g, rounds, params, weight=None):
    """XGBoost's rank:ndcg and rankgrad's objective made from the same params (tree_method
    left at XGBoost's default, hist): the two boosters."""
    xgb = pytest.importorskip("xgboost")
    params = dict(nthread=2, **params)
    builtin = xgb.train(
        dict(params, objective="rank:ndcg"), xgb.DMatrix(X, label=y, group=g, weight=weight), rounds
    )
    obj = rankgrad.xgboost.LambdaRankObjective.from_params(params)
    plain = {k: v for k, v in params.items() if not k.startswith(("lambdarank_", "ndcg_"))}
    ours = xgb.train(
        dict(plain, base_score=0.0), xgb.DMatrix(X, label=y, group=g, weight=weight), rounds, obj=obj
    )
    return builtin, ours


def margins(xgb, booster, X):
    return booster.predict(xgb.DMatrix(X), output_margin=True).astype(np.float64)


XGB_CASES = {
    "defaults": ({}, False),
    "k=5": ({"lambdarank_num_pair_per_sample": 5}, False),
    "group weights": ({}, True),
    "k=10, group weights, depth 4": ({"lambdarank_num_pair_per_sample": 10, "max_depth": 4}, True),
    "gain y": ({"ndcg_exp_gain": False}, False),
}


@pytest.mark.parametrize("case", list(XGB_CASES))
def test_xgboost_one_round_equals_rank_ndcg_synthetic(case):
    xgb = pytest.importorskip("xgboost")
    params, weighted = XGB_CASES[case]
    X, y, g, qw = ranking_lists(1)
    if case == "gain y":
        y = np.round(np.abs(X[:, 0] + X[:, 2]), 2)  # real-valued labels: gain = label
    builtin, ours = train_rank_ndcg_both(X, y, g, 1, params, qw if weighted else None)
    want, got = margins(xgb, builtin, X), margins(xgb, ours, X)
    assert np.abs(want).max() > 0.05
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@needs_data
@pytest.mark.parametrize("case", ["defaults", "k=5", "group weights"])
def test_xgboost_one_round_equals_rank_ndcg(data, case):
    xgb = pytest.importorskip("xgboost")
    X, y, g, Xt, _, _ = data
    params, weighted = XGB_CASES[case]
    qw = np.random.default_rng(2).uniform(0.2, 3.0, g.size).astype(np.float32) if weighted else None
    builtin, ours = train_rank_ndcg_both(X, y, g, 1, params, qw)
    want, got = margins(xgb, builtin, Xt), margins(xgb, ours, Xt)
    assert np.abs(want).max() > 0.05
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@needs_data
def test_xgboost_thirty_rounds_equal_rank_ndcg(data):
    # XGBoost accumulates float32 gradients, rankgrad float64: 30 rounds agree to 1e-5 (measured
    # 7e-7 on margins up to 3.4 with XGBoost 3.2), and rank the test queries alike
    xgb = pytest.importorskip("xgboost")
    X, y, g, Xt, yt, gt = data
    builtin, ours = train_rank_ndcg_both(X, y, g, 30, {})
    want, got = margins(xgb, builtin, Xt), margins(xgb, ours, Xt)
    assert np.abs(want).max() > 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert ndcg_at(got, yt, gt) == pytest.approx(ndcg_at(want, yt, gt), abs=1e-6)


@pytest.mark.parametrize("case", ["group weights", "k=10, group weights, depth 4"])
def test_xgboost_thirty_rounds_equal_rank_ndcg_synthetic(case):
    xgb = pytest.importorskip("xgboost")
    params, weighted = XGB_CASES[case]
    X, y, g, qw = ranking_lists(3)
    builtin, ours = train_rank_ndcg_both(X, y, g, 30, params, qw if weighted else None)
    want, got = margins(xgb, builtin, X), margins(xgb, ours, X)
    assert np.abs(want).max() > 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)  # measured: 1.2e-6 with 3.2


def leaf_sums(booster, dtrain, tree):
    """Per leaf of tree `tree`: (leaf ids of the rows, sum of grad, sum of hess) as XGBoost saw
    them. With reg_lambda = 0 a leaf's weight is -G / H, and its sum_hessian is H."""
    import json

    model = json.loads(booster.save_raw(raw_format="json"))
    t = model["learner"]["gradient_booster"]["model"]["trees"][tree]
    H = np.asarray(t["sum_hessian"], dtype=np.float64)
    G = -np.asarray(t["base_weights"], dtype=np.float64) * H
    leaves = booster.predict(dtrain, pred_leaf=True).astype(np.int64)[:, tree]
    return leaves, G, H


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("k", [None, 5])
def test_xgboost_gradients_equal_rank_ndcg_leaf_by_leaf(weighted, k):
    """rank:ndcg's own gradients, read back from a booster: one exact tree per round with a
    feature that tells every row apart, reg_lambda = 0 and eta = 1, so each leaf holds its rows'
    sum of hess (`sum_hessian`) and -sum(grad)/sum(hess) (`base_weights`). Rounds 1 (equal
    scores) and 2 (scores from round 1, the normalisations at work)."""
    xgb = pytest.importorskip("xgboost")
    import json

    X, y, g, qw = ranking_lists(5, queries=30)
    X = np.c_[np.arange(len(y), dtype=np.float64), X]
    weight = qw if weighted else None
    d = xgb.DMatrix(X, label=y, group=g, weight=weight)
    params = dict(tree_method="exact", max_depth=12, reg_lambda=0.0, min_child_weight=0.0, eta=1.0, nthread=2)
    if k is not None:
        params["lambdarank_num_pair_per_sample"] = k
    builtin = xgb.train(dict(params, objective="rank:ndcg"), d, 2)
    base = json.loads(builtin.save_config())["learner"]["learner_model_param"]["base_score"]
    preds = np.full(len(y), float(base.strip("[]")), dtype=np.float32)
    obj = rankgrad.xgboost.LambdaRankObjective(truncation_level=32 if k is None else k)
    for tree in (0, 1):
        grad, hess = (a.copy() for a in obj(preds, d))
        leaves, G, H = leaf_sums(builtin, d, tree)
        assert np.unique(leaves).size > 100  # many small leaves: a row-level comparison
        ours_g = np.bincount(leaves, weights=grad, minlength=H.size)
        ours_h = np.bincount(leaves, weights=hess, minlength=H.size)
        at = np.unique(leaves)
        np.testing.assert_allclose(ours_h[at], H[at], rtol=0, atol=1e-6 * H[at].max())
        np.testing.assert_allclose(ours_g[at], G[at], rtol=0, atol=1e-6 * np.abs(G[at]).max())
        assert H[0] == pytest.approx(hess.sum(), rel=1e-6)  # the root: every row
        preds = builtin.predict(d, output_margin=True, iteration_range=(0, tree + 1))


def test_xgboost_norm_false_is_both_normalisations_off():
    if xgb_version() < (3, 0):
        pytest.skip("lambdarank_score_normalization needs XGBoost >= 3.0 (2.x always normalises by score)")
    xgb = pytest.importorskip("xgboost")
    X, y, g, qw = ranking_lists(7)
    off = {"lambdarank_normalization": False, "lambdarank_score_normalization": "false"}
    assert rankgrad.xgboost.LambdaRankObjective.from_params(off).norm is False
    first = None
    for rounds, atol in ((1, 1e-6), (10, 1e-5)):
        builtin, ours = train_rank_ndcg_both(X, y, g, rounds, off, qw)
        want, got = margins(xgb, builtin, X), margins(xgb, ours, X)
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
        first = want if first is None else first
    # the normalisations change the model, so the comparison above means something
    normalised, _ = train_rank_ndcg_both(X, y, g, 1, {}, qw)
    assert np.abs(margins(xgb, normalised, X) - first).max() > 0.01


def test_xgboost_from_params():
    version = xgb_version()
    obj = rankgrad.xgboost.LambdaRankObjective.from_params({"objective": "rank:ndcg", "eta": 0.3})
    assert (obj.truncation_level, obj.norm, obj.ndcg_exp_gain, obj.sigma) == (32, True, True, 1.0)
    obj = rankgrad.xgboost.LambdaRankObjective.from_params(
        {"lambdarank_num_pair_per_sample": "7", "ndcg_exp_gain": "false", "lambdarank_pair_method": "topk"}
    )
    assert (obj.truncation_level, obj.ndcg_exp_gain) == (7, False)
    with pytest.raises(ValueError, match="lambdarank_pair_method"):
        rankgrad.xgboost.LambdaRankObjective.from_params({"lambdarank_pair_method": "mean"})
    with pytest.raises(ValueError, match="lambdarank_unbiased"):
        rankgrad.xgboost.LambdaRankObjective.from_params({"lambdarank_unbiased": True})
    with pytest.raises(ValueError, match="objective"):
        rankgrad.xgboost.LambdaRankObjective.from_params({"objective": "rank:map"})
    with pytest.raises(ValueError, match="ndcg_exp_gain"):
        rankgrad.xgboost.LambdaRankObjective.from_params({"ndcg_exp_gain": "maybe"})
    both_off = {"lambdarank_normalization": 0, "lambdarank_score_normalization": 0}
    only_sum = {"lambdarank_normalization": False}
    if version >= (3, 0):  # both switches
        assert rankgrad.xgboost.LambdaRankObjective.from_params(both_off).norm is False
        with pytest.raises(ValueError, match="lambdarank_normalization=False"):
            rankgrad.xgboost.LambdaRankObjective.from_params(only_sum)
    elif version >= (2, 1):  # lambdarank_normalization only; the score normalisation always on
        with pytest.raises(ValueError, match="lambdarank_normalization=False"):
            rankgrad.xgboost.LambdaRankObjective.from_params(both_off)
    else:  # 2.0: neither switch exists, XGBoost ignores both and normalises
        assert rankgrad.xgboost.LambdaRankObjective.from_params(both_off).norm is True


def test_xgboost_objective_groups_weights_and_gains():
    """The call itself: rankgrad.lambdarank_gradients with XGBoost's conventions (k = 32, the
    hessian doubled, group weights normalised to mean 1, gains 2^y - 1 or y)."""
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(1)
    g = np.array([4, 40, 3])
    n = g.sum()
    y = rng.integers(0, 3, size=n).astype(np.float32)
    preds = rng.normal(size=n).astype(np.float32)
    X = rng.normal(size=(n, 2))
    obj = rankgrad.xgboost.LambdaRankObjective()
    got = tuple(a.copy() for a in obj(preds, xgb.DMatrix(X, label=y, group=g)))
    want = lambdarank_gradients(preds, y, g, truncation_level=32)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], 2 * want[1])
    assert not np.array_equal(got[0], lambdarank_gradients(preds, y, g, truncation_level=30)[0])
    # one weight per group, normalised to mean 1 over the groups
    qw = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    got = tuple(a.copy() for a in obj(preds, xgb.DMatrix(X, label=y, group=g, weight=qw)))
    w = np.repeat([1.0, 2.0, 0.5], g) * (3 / 3.5)
    want = lambdarank_gradients(preds, y, g, truncation_level=32, weights=w)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], 2 * want[1], rtol=1e-12)
    # one weight per row (rank:ndcg refuses them): row by row, normalised to mean 1 over the rows
    rw = rng.uniform(0.5, 2.0, n).astype(np.float32)
    got = tuple(a.copy() for a in obj(preds, xgb.DMatrix(X, label=y, group=g, weight=rw)))
    want = lambdarank_gradients(
        preds, y, g, truncation_level=32, weights=rw.astype(np.float64) * (n / rw.astype(np.float64).sum())
    )
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    # gains y (ndcg_exp_gain=False): integer labels are the table 0, 1, 2; real labels work too
    lin = rankgrad.xgboost.LambdaRankObjective(ndcg_exp_gain=False, truncation_level=5)
    got = lin(preds, xgb.DMatrix(X, label=y, group=g))[0].copy()
    want = lambdarank_gradients(preds, y, g, truncation_level=5, label_gain=[0.0, 1.0, 2.0])[0]
    np.testing.assert_array_equal(got, want)
    got = lin(preds, xgb.DMatrix(X, label=y * 0.37, group=g))[0].copy()
    want = lambdarank_gradients(preds, y, g, truncation_level=5, label_gain=[0.0, 0.37, 0.74])[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)  # (float32 labels: 0.37 * y rounded)
    with pytest.raises(ValueError, match="group"):
        obj(preds, xgb.DMatrix(X, label=y))
    with pytest.raises(ValueError, match="weights"):
        obj(preds, xgb.DMatrix(X, label=y, group=g, weight=np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match="label_gain"):
        rankgrad.xgboost.LambdaRankObjective(ndcg_exp_gain=False, label_gain=[0, 1, 3])
    copied = pickle.loads(pickle.dumps(lin))
    assert copied.ndcg_exp_gain is False and "ndcg_exp_gain=False" in repr(copied)
    np.testing.assert_array_equal(copied(preds, xgb.DMatrix(X, label=y * 0.37, group=g))[0], got)


@needs_data
def test_xgboost_train_learns(data):
    xgb = pytest.importorskip("xgboost")
    X, y, g, Xt, yt, gt = data
    dtrain = xgb.DMatrix(X, label=y, group=g)
    params = dict(
        tree_method="hist",
        max_depth=5,
        eta=0.3,
        min_child_weight=0.01,
        nthread=2,
        disable_default_eval_metric=1,
    )
    booster = xgb.train(params, dtrain, num_boost_round=15, obj=rankgrad.xgboost.LambdaRankObjective())
    preds = booster.predict(xgb.DMatrix(Xt), output_margin=True)
    assert ndcg_at(preds, yt, gt) > ndcg_at(np.zeros(len(yt)), yt, gt) + 0.05


# ------------------------------------------------------------------------------------------------
# Metric objects: names apart from the libraries' own, AP / recall / precision


def synthetic_ranking(seed=0, queries=40):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 30, queries)
    n = int(sizes.sum())
    X = rng.normal(size=(n, 5))
    y = np.clip(np.round(X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n) * 0.7 + 1), 0, 4)
    return X, y, sizes


def test_metric_names_stay_apart_from_lightgbm_builtin():
    X, y, g = synthetic_ranking(0)
    Xv, yv, gv = synthetic_ranking(1)
    metric = rankgrad.lightgbm.NDCGMetric(10)
    assert metric.name == "rankgrad_ndcg@10"
    train_set = lgb.Dataset(X, y, group=g)
    valid = lgb.Dataset(Xv, yv, group=gv, reference=train_set)
    record = {}
    params = dict(PARAMS, objective="lambdarank", metric="ndcg", eval_at=[10], min_data_in_leaf=5)
    booster = lgb.train(
        params, train_set, 6, valid_sets=[valid], feval=metric, callbacks=[lgb.record_evaluation(record)]
    )
    series = record["valid_0"]
    assert set(series) == {"ndcg@10", "rankgrad_ndcg@10"}
    assert len(series["ndcg@10"]) == len(series["rankgrad_ndcg@10"]) == 6
    for i in range(6):
        p = booster.predict(Xv, num_iteration=i + 1)
        assert series["rankgrad_ndcg@10"][i] == pytest.approx(ndcg_at(p, yv, gv), rel=1e-12)
        # LightGBM's own ndcg@10 (queries without relevance score 1) in its own series
        assert series["ndcg@10"][i] == pytest.approx(
            rankgrad.lightgbm.NDCGMetric(10, empty=1.0).evaluate(p, yv, gv), abs=1e-6
        )
    assert series["ndcg@10"][-1] > series["ndcg@10"][0]


def test_metric_names_stay_apart_in_lgbm_ranker_and_xgboost():
    pytest.importorskip("sklearn")
    X, y, g = synthetic_ranking(2)
    Xv, yv, gv = synthetic_ranking(3)
    ranker = lgb.LGBMRanker(n_estimators=4, min_child_samples=5, n_jobs=2, verbose=-1)
    metrics = [rankgrad.lightgbm.NDCGMetric(5), rankgrad.lightgbm.MRRMetric(5)]
    ranker.fit(X, y, group=g, eval_set=[(Xv, yv)], eval_group=[gv], eval_at=[5], eval_metric=metrics)
    res = ranker.evals_result_["valid_0"]
    assert {"ndcg@5", "rankgrad_ndcg@5", "rankgrad_mrr@5"} <= set(res)
    assert all(len(v) == 4 for v in res.values())
    p = ranker.predict(Xv)
    assert res["rankgrad_ndcg@5"][-1] == pytest.approx(ndcg_at(p, yv, gv, k=5), rel=1e-12)
    # every query has a relevant item, so LightGBM's series and ours agree value for value
    np.testing.assert_allclose(res["rankgrad_ndcg@5"], res["ndcg@5"], rtol=1e-9)
    assert res["rankgrad_mrr@5"] != res["rankgrad_ndcg@5"]

    xgb = pytest.importorskip("xgboost")
    dtrain = xgb.DMatrix(X, label=y, group=g)
    dvalid = xgb.DMatrix(Xv, label=yv, group=gv)
    record = {}
    params = dict(objective="rank:ndcg", eval_metric="ndcg@5", nthread=2, max_depth=3)
    xgb.train(
        params,
        dtrain,
        3,
        evals=[(dvalid, "valid")],
        custom_metric=rankgrad.xgboost.NDCGMetric(5),
        evals_result=record,
        verbose_eval=False,
    )
    assert set(record["valid"]) == {"ndcg@5", "rankgrad_ndcg@5"}
    assert all(len(v) == 3 for v in record["valid"].values())


def test_metric_object_names():
    from rankgrad.lightgbm import AveragePrecisionMetric, MRRMetric, PrecisionMetric, RecallMetric

    got = [m.name for m in (AveragePrecisionMetric(10), RecallMetric(5), PrecisionMetric(None), MRRMetric(3))]
    assert got == ["rankgrad_map@10", "rankgrad_recall@5", "rankgrad_precision", "rankgrad_mrr@3"]
    assert RecallMetric(5, name="r5").name == RecallMetric(5, name="r5").__name__ == "r5"
    assert rankgrad.xgboost.PrecisionMetric is PrecisionMetric
    with pytest.raises(ValueError, match="metric"):
        rankgrad.lightgbm.RankingMetric("map")
    with pytest.raises(TypeError, match="name"):
        RecallMetric(5, name=3)


def _core_supports(metric):
    try:
        rankgrad._core.ranking_metric_ragged(
            metric, np.zeros(1), np.ones(1), np.ones(1, np.int64), None, True
        )
    except ValueError:
        return False
    return True


def reference_metric(metric, preds, labels, sizes, k):
    """trec_eval's conventions: relevant = label > 0, ties in input order; AP@k divided by the
    list's number of relevant items, P@k by k (k=None: the list's length). (values, valid)."""
    values, valid, lo = [], [], 0
    for m in sizes:
        s, y = preds[lo : lo + m], labels[lo : lo + m]
        lo += m
        rel = y[np.argsort(-s, kind="stable")] > 0
        cut = m if k is None else k
        top = rel[:cut]
        total = rel.sum()
        valid.append(total > 0)
        if total == 0:
            values.append(0.0)
        elif metric == "average_precision":
            hits = np.cumsum(top)
            values.append(float((hits / np.arange(1, top.size + 1))[top].sum() / total))
        elif metric == "recall":
            values.append(float(top.sum() / total))
        else:
            values.append(float(top.sum() / cut))
    return np.array(values), np.array(valid)


@pytest.mark.parametrize("metric", ["average_precision", "recall", "precision"])
def test_ap_recall_precision_metric_objects(metric):
    if not _core_supports(metric):
        pytest.skip(f"rankgrad._core has no {metric!r} ragged metric yet (the rust helper's kernels)")
    from rankgrad.gbdt import RankingMetric, ragged_metric

    rng = np.random.default_rng(7)
    sizes = np.array([1, 5, 12, 3, 30, 8, 2])
    n = int(sizes.sum())
    preds = np.round(rng.normal(size=n) * 2) / 2  # ties
    labels = rng.integers(0, 3, n).astype(np.float64) * (rng.random(n) < 0.5)
    labels[1:6] = 0  # a list with no relevant item
    for k in (None, 1, 3, 10, 50):
        values, valid = ragged_metric(metric, preds, labels, sizes, k)
        want, want_valid = reference_metric(metric, preds, labels, sizes, k)
        np.testing.assert_allclose(values, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(valid, want_valid)
        m = RankingMetric(metric, k)
        assert m.evaluate(preds, labels, sizes) == pytest.approx(want.mean(), rel=1e-12)
        assert m.evaluate(preds, labels, sizes, weight=np.arange(1, 8)) == pytest.approx(
            np.average(want, weights=np.arange(1, 8)), rel=1e-12
        )
        _, value, higher = m(preds, lgb.Dataset(np.zeros((n, 1)), labels, group=sizes).construct())
        assert higher and value == pytest.approx(want.mean(), rel=1e-12)
