"""XE-NDCG (LightGBM's `rank_xendcg`) as LightGBM and XGBoost objectives.

Gradients against an independent numpy transcription of `RankXENDCG::GetGradientsForOneQuery`
with the same gammas (random lists with one item, all-zero labels, ties, weights); the seeded
gammas against a numpy transcription of LightGBM's generator; on LightGBM's example data, 50
rounds with seeds 0, 1, 2 against the built-in with `objective_seed` 0, 1, 2 (mean test
NDCG@10 within 0.01, and the predictions themselves); the same bits on 1 and 2 threads.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rankgrad
from gbdt_data import PARAMS, load, ndcg_at, needs_data
from rankgrad.lightgbm import XENDCGObjective, xendcg_gradients

lgb = pytest.importorskip("lightgbm")


def reference_list(s, y, gam):
    """`GetGradientsForOneQuery` for one list, in plain numpy."""
    m = len(s)
    if m <= 1:
        return np.zeros(m), np.zeros(m)
    e = np.exp(s - s.max())
    rho = e / e.sum()
    # The formula's sums over j != i, taken literally: `1 - rho` and `total - own` would
    # cancel when one item holds almost all of the softmax mass.
    others = ~np.eye(m, dtype=bool)
    one_minus = (others * e).sum(1) / e.sum()
    phi = 2.0 ** y.astype(int) - gam
    q = phi / max(np.float64(np.float32(1e-15)), phi.sum())
    t1 = rho - q
    c1 = t1 / one_minus
    t2 = rho * (others * c1).sum(1)
    c2 = t2 / one_minus
    t3 = rho * (others * c2).sum(1)
    return t1 + t2 + t3, rho * one_minus


def reference(preds, labels, group, gammas, weights=None):
    grad, hess, lo = [], [], 0
    for m in group:
        g, h = reference_list(preds[lo : lo + m], labels[lo : lo + m], gammas[lo : lo + m])
        grad.append(g)
        hess.append(h)
        lo += m
    grad, hess = np.concatenate(grad), np.concatenate(hess)
    if weights is not None:
        grad, hess = grad * weights, hess * weights
    return grad, hess


def lightgbm_gammas(seed, group, rounds):
    """LightGBM's `Random(seed + q).NextFloat()` draws for the lists of `group`, round `rounds`
    (0-based): each round draws one gamma per item of every list with at least 2 items."""
    out = []
    for q, m in enumerate(group):
        x = (seed + q) % 2**32
        vals = []
        for _ in range((rounds + 1) * m if m > 1 else 0):
            x = (214013 * x + 2531011) % 2**32
            vals.append(np.float32((x >> 16) & 0x7FFF) / np.float32(32768.0))
        out.extend(vals[-m:] if m > 1 else [0.0] * m)
    return np.asarray(out, dtype=np.float64)


def random_lists(rng, sizes, max_label=4):
    n = int(np.sum(sizes))
    preds = np.round(rng.normal(size=n) * 4) / 4  # ties
    labels = rng.integers(0, max_label + 1, n).astype(np.float64)
    return preds, labels


def test_gradients_match_numpy_transcription():
    rng = np.random.default_rng(0)
    sizes = np.array([1, 2, 7, 3, 50, 1, 12, 4])
    preds, labels = random_lists(rng, sizes)
    labels[3:10] = 0  # an all-zero list
    gammas = rng.random(preds.size)
    weights = rng.uniform(0.2, 3.0, preds.size)
    for w in (None, weights):
        got = xendcg_gradients(preds, labels, sizes, gammas=gammas, weights=w)
        want = reference(preds, labels, sizes, gammas, w)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-13)
    assert np.all(got[0][:1] == 0) and np.abs(got[0]).max() > 0.05
    # float32 labels and an int list: the same numbers
    got32 = xendcg_gradients(preds, labels.astype(np.float32), list(sizes), gammas=gammas)
    np.testing.assert_allclose(got32[0], reference(preds, labels, sizes, gammas)[0], rtol=1e-10, atol=1e-13)


@settings(max_examples=60, deadline=None)
@example(sizes=[2], seed=6, scale=5.0)  # one item holds almost all of the softmax mass
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=8),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.01, 1.0, 5.0]),
)
def test_gradients_match_transcription_hypothesis(sizes, seed, scale):
    rng = np.random.default_rng(seed)
    preds, labels = random_lists(rng, sizes, max_label=int(rng.integers(0, 5)))
    preds = preds * scale
    gammas = rng.random(preds.size)
    got = xendcg_gradients(preds, labels, sizes, gammas=gammas)
    want = reference(preds, labels, sizes, gammas)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12)


def test_seeded_gammas_are_lightgbms_and_advance_per_round():
    rng = np.random.default_rng(1)
    sizes = np.array([3, 1, 8, 2])
    preds, labels = random_lists(rng, sizes)
    obj = XENDCGObjective(seed=5)
    for r in range(3):
        got = obj(labels, preds, None, sizes)
        want = xendcg_gradients(preds, labels, sizes, gammas=lightgbm_gammas(5, sizes, r))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    # another label array is another run (LGBMRanker's form): the streams restart
    again = obj(labels.copy(), preds, None, sizes)
    want = xendcg_gradients(preds, labels, sizes, gammas=lightgbm_gammas(5, sizes, 0))
    np.testing.assert_array_equal(again[0], want[0])
    assert not np.array_equal(lightgbm_gammas(5, sizes, 0), lightgbm_gammas(6, sizes, 0))


def test_same_bits_on_one_and_two_threads():
    rng = np.random.default_rng(2)
    sizes = rng.integers(1, 80, 400)
    preds, labels = random_lists(rng, sizes)
    before = rankgrad.get_num_threads()
    out = []
    try:
        for threads in (1, 2):
            rankgrad.set_num_threads(threads)
            obj = XENDCGObjective(seed=3)
            out.append([obj(labels, preds, None, sizes) for _ in range(3)])
    finally:
        rankgrad.set_num_threads(before)
    for (g1, h1), (g2, h2) in zip(*out):
        assert g1.tobytes() == g2.tobytes() and h1.tobytes() == h2.tobytes()


def test_dominant_item_is_finite():
    # softmax puts 1 - 1e-17 on the first item: LightGBM's formula divides by 1 - rho = 0 there.
    preds = np.array([40.0, 0.0, -3.0, 900.0, 0.0])
    labels = np.array([0.0, 2.0, 1.0, 1.0, 0.0])
    grad, hess = xendcg_gradients(preds, labels, [3, 2], gammas=np.full(5, 0.5))
    assert np.isfinite(grad).all() and np.isfinite(hess).all()
    assert grad[0] > 0.5 and grad[1] < 0 and grad[2] < 0


def exact_reference_list(s, y, gam):
    """`reference_list` with exact rational arithmetic after the softmax: `q = phi / S` with
    `S = sum(2^y) - sum(gamma)` exact (LightGBM's floor 1e-15 when |S| < 1e-15), then t1, t2, t3
    from the float64 rho and 1 - rho, exactly, rounded once at the end."""
    from fractions import Fraction as F

    m = len(s)
    if m <= 1:
        return np.zeros(m), np.zeros(m)
    e = np.exp(s - s.max())
    others = ~np.eye(m, dtype=bool)
    rho = [F(v) for v in e / e.sum()]
    one_minus = [F(v) for v in (others * e).sum(1) / e.sum()]
    phi = [F(2 ** int(a)) - F(g) for a, g in zip(y, gam)]
    total = sum(phi)
    eps = F(float(np.float32(1e-15)))
    q = [p / (total if abs(total) >= eps else eps) for p in phi]
    t1 = [r - v for r, v in zip(rho, q)]
    c1 = [t / o for t, o in zip(t1, one_minus)]
    t2 = [rho[i] * (sum(c1) - c1[i]) for i in range(m)]
    c2 = [t / o for t, o in zip(t2, one_minus)]
    t3 = [rho[i] * (sum(c2) - c2[i]) for i in range(m)]
    grad = np.array([float(a + b + c) for a, b, c in zip(t1, t2, t3)])
    return grad, np.array([float(r * o) for r, o in zip(rho, one_minus)])


HUGE_GAMMAS = {
    "all 1e300": ([0.0, 1.0, 2.0], [1e300] * 3),
    "all -1e300": ([0.0, 1.0, 2.0], [-1e300] * 3),
    "all near -max": ([3.0, 0.0, 1.0, 0.0], [-1.7e308] * 4),
    "all max": ([3.0, 0.0], [np.finfo(np.float64).max] * 2),
    "mixed signs cancelling": ([0.0, 1.0, 2.0], [1e300, -1e300, 0.0]),
    "mixed signs": ([2.0, 0.0, 1.0, 4.0], [-1e300, 3.0, 1e299, 0.5]),
    "sum(phi) = 0": ([0.0, 0.0], [1.5, 0.5]),
    "sum(phi) = 2^-30": ([0.0, 1.0], [1.5, 1.5 - 2.0**-30]),
    "sum(phi) = -3": ([1.0, 0.0, 0.0], [2.0, 2.5, 1.5]),
}


@pytest.mark.parametrize("case", list(HUGE_GAMMAS))
def test_any_finite_gammas_give_exact_targets(case):
    labels, gammas = (np.array(v, dtype=np.float64) for v in HUGE_GAMMAS[case])
    m = labels.size
    preds = np.linspace(0.6, -0.4, m) ** 3  # no ties
    # twice: alone, and as the second list after an ordinary one (lists are independent)
    rng = np.random.default_rng(3)
    p0, y0 = random_lists(rng, [5])
    g0 = rng.random(5)
    grad, hess = xendcg_gradients(
        np.r_[p0, preds],
        np.r_[y0, labels],
        [5, m],
        gammas=np.r_[g0, gammas],
        weights=np.r_[np.ones(5), np.full(m, 2.0)],
    )
    want_g, want_h = exact_reference_list(preds, labels, gammas)
    assert np.isfinite(grad).all() and np.isfinite(want_g).all()
    scale = max(1.0, np.abs(want_g).max())  # float64 can only be that close, in absolute terms
    np.testing.assert_allclose(grad[5:], 2.0 * want_g, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(hess[5:], 2.0 * want_h, rtol=1e-12)
    np.testing.assert_allclose(grad[:5], reference(p0, y0, [5], g0)[0], rtol=1e-10, atol=1e-13)
    if case.startswith("all "):
        # phi and sum(phi) overflow or change sign, yet q is the limit 1/m: as if all phi were equal
        flat = xendcg_gradients(preds, np.zeros(m), [m], gammas=np.zeros(m))[0]
        np.testing.assert_allclose(grad[5:], 2.0 * flat, rtol=1e-12, atol=1e-15)


def test_gammas_whose_gradients_overflow_raise():
    # sum(2^y) = 13 = sum(gamma): S = 0 is floored at 1e-15 and |q| ~ 1e315 is no float64
    preds, labels = np.array([0.3, -1.0, 0.5]), np.array([0.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"gammas.*group 1.*overflow"):
        xendcg_gradients(
            np.r_[0.0, 1.0, preds],
            np.r_[0.0, 1.0, labels],
            [2, 3],
            gammas=np.r_[0.5, 0.5, 1e300, -1e300, 13.0],
        )


def test_bad_input():
    preds, labels, sizes = np.zeros(4), np.array([0.0, 1.0, 2.0, 0.0]), [2, 2]
    gam = np.zeros(4)
    with pytest.raises(ValueError, match=r"preds.*list 1"):
        xendcg_gradients(np.array([0, 1, np.nan, 0.0]), labels, sizes, gammas=gam)
    with pytest.raises(ValueError, match="labels"):
        xendcg_gradients(preds, np.array([0, 1.5, 0, 0]), sizes, gammas=gam)
    with pytest.raises(ValueError, match="labels"):
        xendcg_gradients(preds, np.array([0, -1.0, 0, 0]), sizes, gammas=gam)
    with pytest.raises(ValueError, match="labels"):
        xendcg_gradients(preds, labels[:3], sizes, gammas=gam)
    with pytest.raises(ValueError, match="group"):
        xendcg_gradients(preds, labels, [2, 3], gammas=gam)
    with pytest.raises(ValueError, match="group"):
        XENDCGObjective()(labels, preds, None, None)
    with pytest.raises(ValueError, match="gammas"):
        xendcg_gradients(preds, labels, sizes, gammas=np.zeros(3))
    with pytest.raises(ValueError, match="gammas"):
        xendcg_gradients(preds, labels, sizes, gammas=np.array([0, np.inf, 0, 0]))
    with pytest.raises(ValueError, match="weights"):
        xendcg_gradients(preds, labels, sizes, gammas=gam, weights=np.array([1, -1.0, 1, 1]))
    with pytest.raises(TypeError, match="preds"):
        xendcg_gradients(np.array(["a"] * 4), labels, sizes, gammas=gam)
    with pytest.raises(TypeError, match="seed"):
        XENDCGObjective(seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        XENDCGObjective(seed=2**40)
    # an error leaves the streams where they were
    obj = XENDCGObjective(seed=0)
    with pytest.raises(ValueError, match="preds"):
        obj(labels, np.array([0, 1, np.nan, 0.0]), None, sizes)
    got = obj(labels, preds, None, sizes)
    want = xendcg_gradients(preds, labels, sizes, gammas=lightgbm_gammas(0, sizes, 0))
    np.testing.assert_array_equal(got[0], want[0])


def test_copy_and_pickle():
    obj = XENDCGObjective(seed=9)
    for other in (copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
        assert other.seed == 9 and repr(other) == "XENDCGObjective(seed=9)"


@needs_data
def test_fifty_rounds_match_lightgbm_builtin():
    X, y, g, Xt, yt, gt = load()
    ours, builtin = [], []
    for seed in (0, 1, 2):
        b = lgb.train(
            dict(PARAMS, objective="rank_xendcg", objective_seed=seed), lgb.Dataset(X, y, group=g), 50
        )
        o = lgb.train(dict(PARAMS, objective=XENDCGObjective(seed)), lgb.Dataset(X, y, group=g), 50)
        pb, po = b.predict(Xt), o.predict(Xt)
        np.testing.assert_allclose(po, pb, rtol=0, atol=1e-5)  # the same gammas as objective_seed
        builtin.append(ndcg_at(pb, yt, gt))
        ours.append(ndcg_at(po, yt, gt))
    assert abs(np.mean(ours) - np.mean(builtin)) < 0.01, (ours, builtin)
    assert np.mean(ours) > ndcg_at(np.zeros(len(yt)), yt, gt) + 0.05


@needs_data
def test_lgbm_ranker_learns():
    pytest.importorskip("sklearn")
    X, y, g, Xt, yt, gt = load()
    ranker = lgb.LGBMRanker(objective=XENDCGObjective(1), n_estimators=10, n_jobs=2, verbose=-1)
    ranker.fit(X, y, group=g)
    assert ndcg_at(ranker.predict(Xt), yt, gt) > ndcg_at(np.zeros(len(yt)), yt, gt) + 0.05


def test_xgboost_twin_groups_and_weights():
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(4)
    sizes = np.array([4, 1, 6, 3])
    n = int(sizes.sum())
    preds, labels = random_lists(rng, sizes)
    qw = np.array([1.0, 2.0, 0.5, 3.0], dtype=np.float32)
    d = xgb.DMatrix(rng.normal(size=(n, 2)), label=labels, group=sizes, weight=qw)
    obj = rankgrad.xgboost.XENDCGObjective(seed=4)
    for r in range(2):
        got = obj(preds.astype(np.float32), d)
        gam = lightgbm_gammas(4, sizes, r)
        # XGBoost's ranking convention: group weights normalised to mean 1 over the groups
        qw_norm = qw.astype(np.float64) * (qw.size / qw.astype(np.float64).sum())
        want = reference(
            preds.astype(np.float32).astype(np.float64), labels, sizes, gam, np.repeat(qw_norm, sizes)
        )
        np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="group"):
        obj(preds, xgb.DMatrix(rng.normal(size=(n, 2)), label=labels))


@needs_data
def test_xgboost_train_learns():
    xgb = pytest.importorskip("xgboost")
    X, y, g, Xt, yt, gt = load()
    params = dict(tree_method="hist", max_depth=5, eta=0.3, nthread=2, disable_default_eval_metric=1)
    dtrain = xgb.DMatrix(X, label=y, group=g)
    booster = xgb.train(params, dtrain, num_boost_round=10, obj=rankgrad.xgboost.XENDCGObjective(0))
    preds = booster.predict(xgb.DMatrix(Xt), output_margin=True)
    assert ndcg_at(preds, yt, gt) > ndcg_at(np.zeros(len(yt)), yt, gt) + 0.05
