"""The compiled bindings (`rankgrad._core`) at their edges: arguments of any size, dtypes and
layouts numpy allows, errors that name the argument, `out` untouched on error. Each case is
also run through the public numpy API. References are plain numpy transcriptions."""

import numpy as np
import pytest

import rankgrad
from rankgrad import _core


def ndcg_reference(s, y, k=None):
    """NDCG@k of each row, 2^y - 1 gains, ties by input position."""
    out = []
    for si, yi in zip(np.atleast_2d(s), np.atleast_2d(y)):
        g = 2.0 ** np.maximum(yi, 0) - 1
        kk = len(si) if k is None else min(k, len(si))
        disc = 1 / np.log2(np.arange(kk) + 2)
        dcg = (g[np.argsort(-si, kind="stable")][:kk] * disc).sum()
        idcg = (np.sort(g)[::-1][:kk] * disc).sum()
        out.append(dcg / idcg if idcg > 0 else 0.0)
    return np.array(out)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 9))
    y = rng.integers(0, 4, size=(3, 9)).astype(np.float64)
    return s, y


@pytest.fixture
def ragged():
    rng = np.random.default_rng(1)
    p = rng.normal(size=12)
    y = rng.integers(0, 4, size=12).astype(np.float64)
    return p, y, np.array([5, 7], dtype=np.int64)


def core_gradients(p, y, g, sigma=1.0, trunc=30, weights=None, out=None):
    return _core.lambdarank_gradients(p, y, g, sigma, trunc, True, None, weights, "ndcg", out)


# -- counts of any size ---------------------------------------------------------------------


def test_huge_k_means_the_whole_list(batch):
    s, y = batch
    want = ndcg_reference(s, y)
    for k in (10**30, 2**64, np.int64(2**62)):
        v, _ = _core.ranking_metric("ndcg", s, y, None, k)
        np.testing.assert_allclose(v, want, rtol=1e-13)
        np.testing.assert_allclose(rankgrad.ndcg(s, y, k=k), want, rtol=1e-13)
    np.testing.assert_allclose(_core.ranking_metric("ndcg", s, y, None, 3)[0], ndcg_reference(s, y, 3))


@pytest.mark.parametrize(
    "k, exc", [(0, ValueError), (-(10**30), ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_bad_k_names_k(batch, k, exc):
    s, y = batch
    with pytest.raises(exc, match="k"):
        _core.ranking_metric("ndcg", s, y, None, k)
    with pytest.raises(exc, match="k"):
        _core.ranking_metric_ragged("ndcg", s.ravel(), y.ravel(), np.array([27]), k)
    if exc is ValueError:  # (the public API raises ValueError for a float k)
        with pytest.raises(exc, match="k"):
            rankgrad.ndcg(s, y, k=k)


def test_huge_truncation_means_every_pair(ragged):
    p, y, g = ragged
    want = core_gradients(p, y, g, trunc=12)
    for t in (2**64, 10**30):
        for got in (
            core_gradients(p, y, g, trunc=t),
            rankgrad.lambdarank_gradients(p, y, g, truncation_level=t),
        ):
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    s2, y2 = p.reshape(2, 6), y.reshape(2, 6)
    a = _core.lambdarank_loss(s2, y2, None, 1.0, 2**64, True, None, "ndcg", True)
    b = _core.lambdarank_loss(s2, y2, None, 1.0, None, True, None, "ndcg", True)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="truncation_level"):
        core_gradients(p, y, g, trunc=0)
    with pytest.raises(TypeError, match="truncation_level"):
        core_gradients(p, y, g, trunc=2.5)


# -- dtypes and layouts ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.int64])
def test_core_rejects_other_dtypes_naming_the_argument(batch, ragged, dtype):
    s, y = batch
    with pytest.raises(TypeError, match=r"scores must be a 2-D numpy array of float32 or float64, got .*"):
        _core.ranking_metric("ndcg", s.astype(dtype), y.astype(dtype), None, None)
    p, yr, g = ragged
    with pytest.raises(TypeError, match="preds"):
        core_gradients(p.astype(dtype), yr, g)
    if dtype is np.float16:
        with pytest.raises(TypeError, match=r"astype\(numpy.float32\)"):
            _core.ranknet_loss(s.astype(dtype), y.astype(dtype), None, 1.0, False)


def test_public_api_computes_half_in_float32_and_longdouble_in_float64(batch):
    s, y = batch
    half = rankgrad.ndcg(s.astype(np.float16), y)
    assert half.dtype == np.float16  # computed in float32, returned in the input dtype
    np.testing.assert_allclose(half, ndcg_reference(s.astype(np.float16).astype(np.float64), y), rtol=1e-3)
    ld = rankgrad.ndcg(s.astype(np.longdouble), y.astype(np.longdouble))
    np.testing.assert_allclose(np.asarray(ld, dtype=np.float64), ndcg_reference(s, y), rtol=1e-13)


def test_big_endian_and_negative_strides_are_copied(batch, ragged):
    s, y = batch
    want = _core.ranking_metric("ndcg", s, y, None, None)[0]
    be = _core.ranking_metric("ndcg", s.astype(">f8"), y.astype(">f8"), None, None)[0]
    np.testing.assert_array_equal(be, want)
    flipped = _core.ranking_metric("ndcg", s[:, ::-1], y[:, ::-1], None, None)[0]
    np.testing.assert_array_equal(flipped, ndcg_reference(s[:, ::-1], y[:, ::-1]))
    np.testing.assert_array_equal(rankgrad.ndcg(s.astype(">f8"), y), want)
    p, yr, g = ragged
    want = core_gradients(p, yr, g)
    got = core_gradients(p.astype(">f8"), yr.astype(">f4"), g.astype(">i8"))
    np.testing.assert_array_equal(got[0], want[0])
    rev = core_gradients(p[::-1], yr[::-1], g[::-1])
    ref = core_gradients(p[::-1].copy(), yr[::-1].copy(), g[::-1].copy())
    np.testing.assert_array_equal(rev[0], ref[0])
    r = _core.approx_ranks(s.astype(">f4"), None, 1.0)
    np.testing.assert_array_equal(r, _core.approx_ranks(s.astype(np.float32), None, 1.0))


def test_group_of_any_integer_dtype(ragged):
    p, y, g = ragged
    want = core_gradients(p, y, g)
    for dt in (np.uint64, np.int32, np.uint8):
        np.testing.assert_array_equal(core_gradients(p, y, g.astype(dt))[0], want[0])
    v = _core.ranking_metric_ragged("ndcg", p, y, g.astype(np.uint32), None)[0]
    np.testing.assert_allclose(
        v, ndcg_reference(p[:5], y[:5]).tolist() + ndcg_reference(p[5:], y[5:]).tolist()
    )


def test_uint64_group_above_int64_names_group(ragged):
    p, y, _ = ragged
    huge = np.array([2**63 + 5, 3], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"group: size of list 0 \(9223372036854775813\) is too large"):
        _core.ranking_metric_ragged("ndcg", p, y, huge, None)
    with pytest.raises(ValueError, match="group"):
        core_gradients(p, y, huge)
    with pytest.raises(ValueError, match="group"):
        rankgrad.lambdarank_gradients(p, y, huge)
    with pytest.raises(TypeError, match="group"):
        core_gradients(p, y, np.array([5.0, 7.0]))


# -- scales --------------------------------------------------------------------------------


def test_scales_out_of_range_name_the_argument(batch, ragged):
    s, y = batch
    p, yr, g = ragged
    with pytest.raises(ValueError, match="sigma"):
        core_gradients(p, yr, g, sigma=1e200)
    with pytest.raises(ValueError, match="sigma"):
        _core.lambdarank_loss(s, y, None, 1e200, None, True, None, "ndcg", True)
    with pytest.raises(ValueError, match="sigma"):
        _core.ranknet_loss(s.astype(np.float32), y.astype(np.float32), None, 1e39, True)
    with pytest.raises(ValueError, match="temperature"):
        _core.approx_ranks(s.astype(np.float32), None, 1e-40)
    with pytest.raises(ValueError, match="temperature"):
        _core.approx_loss("ndcg", s.astype(np.float32), y.astype(np.float32), None, 1e-40, True)
    grad, hess = core_gradients(p, yr, g, sigma=1e150)
    assert np.isfinite(grad).all() and np.isfinite(hess).all()


def test_gain_cap_is_exported():
    assert _core.GAIN_CAP == 1000.0
    s = np.zeros((1, 2))
    _core.ranking_metric("ndcg", s, np.array([[_core.GAIN_CAP, 0.0]]), None, None)
    with pytest.raises(ValueError, match="targets"):
        _core.ranking_metric("ndcg", s, np.array([[np.nextafter(_core.GAIN_CAP, 2e3), 0.0]]), None, None)


# -- out= -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        dict(p=np.r_[np.zeros(11), np.nan]),
        dict(y=np.r_[np.zeros(11), 0.5]),
        dict(y=np.r_[np.zeros(11), 31.0]),
        dict(weights=np.r_[np.ones(11), -1.0]),
        dict(sigma=1e200),
        dict(g=np.array([5, 8])),
    ],
)
def test_out_is_untouched_when_it_raises(ragged, change):
    p, y, g = ragged
    args = dict(p=p, y=y, g=g, sigma=1.0, weights=None) | change
    out = (np.full(12, 7.0), np.full(12, 7.0))
    with pytest.raises(ValueError):
        core_gradients(args["p"], args["y"], args["g"], sigma=args["sigma"], weights=args["weights"], out=out)
    assert (out[0] == 7.0).all() and (out[1] == 7.0).all()
    with pytest.raises(ValueError):
        rankgrad.lambdarank_gradients(
            args["p"], args["y"], args["g"], sigma=args["sigma"], weights=args["weights"], out=out
        )
    assert (out[0] == 7.0).all() and (out[1] == 7.0).all()
    # and filled when nothing is wrong
    got = rankgrad.lambdarank_gradients(p, y, g, out=out)
    assert got[0] is out[0]
    np.testing.assert_array_equal(out[0], core_gradients(p, y, g)[0])


# -- finite results from finite input ---------------------------------------------------------


@pytest.mark.parametrize("dtype, big", [(np.float32, 3e38), (np.float64, 1e308)])
def test_ranknet_tie_with_an_overflowing_gap_is_finite(dtype, big):
    s = np.array([[big, -big, 0.0, 1.0]], dtype=dtype)
    y = np.array([[1.0, 1.0, 0.0, 2.0]], dtype=dtype)
    loss, valid, grad = _core.ranknet_loss(s, y, None, 1.0, True)
    # Pairs y_i > y_j: two misordered by ~big (loss ~big each), three others; mean over 5.
    assert valid[0] and np.isfinite(loss[0]) and np.isfinite(grad).all()
    np.testing.assert_allclose(loss[0], 2 * (big / 5), rtol=1e-6)
    # lambda_ij = -1 for the two misordered pairs (1 over 2, 3 over 0), -1/(1 + e) for 3 over 2,
    # 0 for the two ordered far apart; the tie (0, 1) contributes nothing.
    b = 1 / (1 + np.e)
    np.testing.assert_allclose(grad[0], np.array([1, -1, 1 + b, -1 - b]) / 5, rtol=1e-6)


def test_lambdarank_loss_at_the_float64_extremes_is_finite():
    s = np.array([[1e308, -1e308, 0.0, 1.0, 1.0]])
    y = np.array([[0.0, 2.0, 1.0, 0.0, 3.0]])
    for norm in (True, False):
        loss, valid, grad = _core.lambdarank_loss(s, y, None, 1.0, None, norm, None, "ndcg", True)
        assert valid[0] and np.isfinite(grad).all() and not np.isnan(loss[0])
        assert np.isfinite(loss[0]) or not norm
