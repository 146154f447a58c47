"""LambdaRank: `lambdarank_gradients` and `lambdarank_loss` against a plain-Python reference of
SPEC section 4 (float64), the two loss backends against each other, and bad input."""

from __future__ import annotations

import math
import time
from decimal import Decimal, localcontext

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import expit

import rankgrad
from rankgrad import lambdarank_gradients, lambdarank_loss
from rankgrad.lambdarank import _native as lr_mod

DEFAULT_GAIN = [2.0**i - 1.0 for i in range(31)]


# ------------------------------------------------------------------------------------------------
# The reference: SPEC section 4 written out, one list at a time, plain Python floats.


def _rho(z):
    """1 / (1 + exp(z)) without overflow."""
    if z > 0:
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


def _softplus(z):
    """log(1 + exp(z)) without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def ref_list(s, y, *, sigma=1.0, k=30, norm=True, gain=None, metric="ndcg"):
    """(grad, hess, loss, valid) of one list; `k=None` means every pair."""
    n = len(s)
    s = [float(v) for v in s]
    y = [float(v) for v in y]
    k = n if k is None else k
    G = (lambda v: gain[int(v)]) if gain is not None else (lambda v: 2.0 ** max(v, 0.0) - 1.0)
    disc = lambda p: 1.0 / math.log2(2.0 + p)  # noqa: E731
    order = sorted(range(n), key=lambda i: -s[i])  # stable
    ideal = sorted(range(n), key=lambda i: -y[i])
    max_dcg = sum(G(y[i]) * disc(p) for p, i in enumerate(ideal[:k]))
    inv = 1.0 / max_dcg if max_dcg > 0 else 0.0

    def rr(ordering):
        for p, i in enumerate(ordering):
            if y[i] > 0:
                return 1.0 / (p + 1.0)
        return 0.0

    grad, hess = [0.0] * n, [0.0] * n
    total, loss = 0.0, 0.0
    best, worst = (s[order[0]], s[order[-1]]) if n else (0.0, 0.0)
    for i in range(min(n - 1, k)):
        for j in range(i + 1, n):
            a, b = order[i], order[j]
            if y[a] == y[b]:
                continue
            (h, ph), (l, pl) = ((a, i), (b, j)) if y[a] > y[b] else ((b, j), (a, i))
            ds = s[h] - s[l]
            if metric == "ndcg":
                delta = (G(y[h]) - G(y[l])) * abs(disc(ph) - disc(pl)) * inv
            else:
                swapped = list(order)
                swapped[i], swapped[j] = swapped[j], swapped[i]
                delta = abs(rr(swapped) - rr(order))
            if norm and best != worst:
                delta /= 0.01 + abs(ds)
            rho = _rho(sigma * ds)
            lam = -sigma * delta * rho
            # rho * (1 - rho), with 1 - rho = _rho(-sigma ds) so that nothing cancels
            hes = sigma * sigma * delta * rho * _rho(-sigma * ds)
            grad[h] += lam
            grad[l] -= lam
            hess[h] += hes
            hess[l] += hes
            total -= 2.0 * lam
            loss += delta * _softplus(-sigma * ds)
    if norm and total > 0:
        # LightGBM's log2(1 + S) / S, computed accurately also where 1 + S rounds to 1
        f = math.log1p(total) / (total * math.log(2.0))
        grad = [v * f for v in grad]
        hess = [v * f for v in hess]
        loss *= f
    nrel = sum(v > 0 for v in y)
    valid = n >= 2 and len(set(y)) > 1 and (max_dcg > 0 if metric == "ndcg" else 0 < nrel < n)
    return grad, hess, loss, valid


def ref_ragged(preds, labels, group, weights=None, **opts):
    grad, hess = np.zeros(len(preds)), np.zeros(len(preds))
    lo = 0
    for m in group:
        g, h, _, _ = ref_list(preds[lo : lo + m], labels[lo : lo + m], **opts)
        grad[lo : lo + m], hess[lo : lo + m] = g, h
        lo += m
    if weights is not None:
        grad, hess = grad * weights, hess * weights
    return grad, hess


def assert_close(got, want, rel=1e-9):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(np.abs(want).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(got, want, rtol=rel, atol=rel * scale)


def random_ragged(rng, sizes, levels=5, grid=4.0):
    """Scores on a coarse grid (many ties); list 3 all tied, list 4 a single label."""
    n = sum(sizes)
    preds = np.round(rng.normal(size=n) * grid) / grid
    labels = rng.integers(0, levels, size=n).astype(np.float64)
    lo = np.cumsum([0] + list(sizes))
    if len(sizes) > 4:
        preds[lo[3] : lo[4]] = 0.25
        labels[lo[4] : lo[5]] = 2.0
    return preds, labels, np.asarray(sizes)


SIZES = [1, 2, 7, 12, 5, 40, 3, 64, 9]


# ------------------------------------------------------------------------------------------------
# lambdarank_gradients


@pytest.mark.parametrize("metric", ["ndcg", "mrr"])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("k", [1, 3, 10, 30, 1000])
def test_gradients_match_reference(metric, norm, k):
    rng = np.random.default_rng(k * 7 + norm * 3 + (metric == "mrr"))
    preds, labels, group = random_ragged(rng, SIZES)
    for sigma, gain, weighted in [
        (1.0, None, False),
        (0.4, [0.0, 0.5, 4.0, 2.0, 10.0], True),
        (2.5, None, True),
    ]:
        w = rng.uniform(0, 2, size=len(preds)) if weighted else None
        opts = dict(sigma=sigma, truncation_level=k, norm=norm, label_gain=gain, metric=metric)
        grad, hess = lambdarank_gradients(preds, labels, group, weights=w, **opts)
        assert grad.dtype == np.float64 and hess.dtype == np.float64
        rg, rh = ref_ragged(
            preds, labels, group, w, sigma=sigma, k=k, norm=norm, gain=gain or DEFAULT_GAIN, metric=metric
        )
        assert_close(grad, rg)
        assert_close(hess, rh)
        assert np.any(grad != 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(1, 25), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    levels=st.integers(1, 6),
    grid=st.sampled_from([1.0, 2.0, 1000.0]),
    sigma=st.floats(0.05, 5.0),
    k=st.integers(1, 40),
    norm=st.booleans(),
    metric=st.sampled_from(["ndcg", "mrr"]),
)
def test_gradients_hypothesis(sizes, seed, levels, grid, sigma, k, norm, metric):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    preds = np.round(rng.normal(size=n) * 3 * grid) / grid
    labels = rng.integers(0, levels, size=n).astype(np.float32)
    grad, hess = lambdarank_gradients(
        preds, labels, sizes, sigma=sigma, truncation_level=k, norm=norm, metric=metric
    )
    rg, rh = ref_ragged(preds, labels, sizes, sigma=sigma, k=k, norm=norm, gain=DEFAULT_GAIN, metric=metric)
    assert_close(grad, rg)
    assert_close(hess, rh)


def test_mrr_delta_definition_by_hand():
    # Score order: positions 0..3 hold labels [0, 0, 1, 1]; f = 2, f2 = 3.
    preds = np.array([4.0, 3.0, 2.0, 1.0])
    labels = np.array([0.0, 0.0, 1.0, 1.0])
    # With norm off and sigma -> the deltas come out of grad directly: grad_h = -sigma delta rho.
    grad, _ = lambdarank_gradients(preds, labels, [4], norm=False, metric="mrr", sigma=1.0)
    rho = lambda ds: 1 / (1 + math.exp(ds))  # noqa: E731
    # pair (0, 2): i=0 < f, j relevant: delta = 1/1 - 1/3; (0, 3): same; (1, 2), (1, 3): 1/2 - 1/3;
    # rows i = f = 2 has no irrelevant item below; the relevant items never pair with each other.
    d0, d1 = 1 - 1 / 3, 1 / 2 - 1 / 3
    want2 = -(d0 * rho(2.0 - 4.0) + d1 * rho(2.0 - 3.0))
    want3 = -(d0 * rho(1.0 - 4.0) + d1 * rho(1.0 - 3.0))
    assert grad[2] == pytest.approx(want2, rel=1e-12)
    assert grad[3] == pytest.approx(want3, rel=1e-12)
    # Relevant item first: only pairs (f=0, j) with j irrelevant move it down to min(j, f2).
    preds = np.array([3.0, 2.0, 1.0, 0.0])
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    grad, _ = lambdarank_gradients(preds, labels, [4], norm=False, metric="mrr")
    # (0, 1): 1 - 1/2; (0, 3): first relevant becomes min(3, f2=2) -> 1 - 1/3; row 1 > f: nothing
    want0 = -((1 - 1 / 2) * rho(1.0) + (1 - 1 / 3) * rho(3.0))
    assert grad[0] == pytest.approx(want0, rel=1e-12)
    assert grad[2] == 0.0


def test_degenerate_lists_are_zero():
    preds = np.array([1.0, 0.5, 0.5, 0.5, 2.0, 1.0, 3.0])
    labels = np.array([3, 1, 1, 1, 0, 0, 2], dtype=np.float64)
    grad, hess = lambdarank_gradients(preds, labels, [1, 3, 2, 1])
    # a single row; one label only; all-zero labels; a single row
    assert np.all(grad == 0) and np.all(hess == 0)
    # all scores tied: norm's 1/(0.01+|ds|) is skipped, still finite
    grad, hess = lambdarank_gradients(np.zeros(4), np.array([0.0, 1, 2, 0]), [4])
    rg, rh = ref_ragged(np.zeros(4), [0.0, 1, 2, 0], [4], gain=DEFAULT_GAIN)
    assert_close(grad, rg)
    assert_close(hess, rh)


def test_label_gain_and_dtypes():
    rng = np.random.default_rng(3)
    preds, labels, group = random_ragged(rng, [6, 9, 4])
    want = lambdarank_gradients(preds, labels, group)
    for p, y, g in [
        (preds.astype(np.float32), labels.astype(np.int64), group.astype(np.int32)),
        (preds, labels.astype(np.float32), group.astype(np.uint64)),
        (list(preds), list(labels), list(group)),
        (torch.tensor(preds), torch.tensor(labels), torch.tensor(group)),
    ]:
        got = lambdarank_gradients(p, y, g)
        tol = 1e-5 if np.asarray(p).dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got[0], want[0], rtol=tol, atol=tol)
    gain = [0.0, 1.0, 2.0, 3.0, 4.0]
    grad, hess = lambdarank_gradients(preds, labels, group, label_gain=gain)
    rg, rh = ref_ragged(preds, labels, group, gain=gain)
    assert_close(grad, rg)
    assert_close(hess, rh)


def test_inputs_are_not_modified_and_threads_do_not_matter():
    rng = np.random.default_rng(11)
    sizes = [int(v) for v in rng.integers(1, 300, size=40)] + [3000]
    preds, labels, group = random_ragged(rng, sizes)
    w = rng.uniform(size=len(preds))
    copies = [a.copy() for a in (preds, labels, group, w)]
    try:
        rankgrad.set_num_threads(1)
        one = lambdarank_gradients(preds, labels, group, weights=w, truncation_level=200)
        rankgrad.set_num_threads(2)
        two = lambdarank_gradients(preds, labels, group, weights=w, truncation_level=200)
    finally:
        rankgrad.set_num_threads(None)  # back to the default pool
    assert one[0].tobytes() == two[0].tobytes() and one[1].tobytes() == two[1].tobytes()
    for a, c in zip((preds, labels, group, w), copies):
        np.testing.assert_array_equal(a, c)


def test_out_buffers():
    rng = np.random.default_rng(6)
    preds, labels, group = random_ragged(rng, [5, 9, 30])
    want = lambdarank_gradients(preds, labels, group)
    out = (np.full(len(preds), np.nan), np.full(len(preds), np.nan))
    got = lambdarank_gradients(preds, labels, group, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    n = len(preds)
    with pytest.raises(ValueError, match="out"):
        lambdarank_gradients(preds, labels, group, out=(np.empty(n - 1), np.empty(n)))
    with pytest.raises(TypeError, match="out"):
        lambdarank_gradients(preds, labels, group, out=(np.empty(n, dtype=np.float32), np.empty(n)))
    with pytest.raises(TypeError, match="out"):
        lambdarank_gradients(preds, labels, group, out=(np.empty(2 * n)[::2], np.empty(n)))
    with pytest.raises(ValueError, match="share memory"):
        lambdarank_gradients(preds, labels, group, out=(preds, np.empty(n)))
    buf = np.empty(n)
    with pytest.raises(ValueError, match="share memory"):
        lambdarank_gradients(preds, labels, group, out=(buf, buf))


def _numpy_rows_reference(preds, labels, k):
    """An independent vectorised reference for one long list (NDCG, norm on, sigma 1):
    the SPEC's loops with j vectorised, for the first k positions."""
    order = np.argsort(-preds, kind="stable")
    s, y = preds[order], labels[order]
    n = len(s)
    g = 2.0**y - 1
    d = 1.0 / np.log2(np.arange(n) + 2.0)
    ideal = np.sort(g)[::-1][:k]
    inv = 1.0 / (ideal * d[:k]).sum()
    grad, hess = np.zeros(n), np.zeros(n)
    total = 0.0
    for i in range(min(k, n - 1)):
        j = np.arange(i + 1, n)
        hi = y[i] > y[j]
        ds = np.where(hi, s[i] - s[j], s[j] - s[i])
        delta = np.abs(g[i] - g[j]) * (d[i] - d[j]) * inv / (0.01 + np.abs(ds))
        delta[y[j] == y[i]] = 0.0
        rho, rho_c = expit(-ds), expit(ds)  # 1 / (1 + exp(ds)) and 1 - that
        lam = -delta * rho
        hes = delta * rho * rho_c
        sign = np.where(hi, 1.0, -1.0)
        grad[i] += (sign * lam).sum()
        grad[j] -= sign * lam
        hess[i] += hes.sum()
        hess[j] += hes
        total -= 2 * lam.sum()
    f = math.log2(1 + total) / total
    out_g, out_h = np.zeros(n), np.zeros(n)
    out_g[order], out_h[order] = grad * f, hess * f
    return out_g, out_h


def test_one_list_of_200k_rows():
    rng = np.random.default_rng(5)
    n = 200_000
    preds = rng.normal(size=n)
    labels = rng.integers(0, 5, size=n).astype(np.float64)
    t = time.perf_counter()
    grad, hess = lambdarank_gradients(preds, labels, [n], truncation_level=30)
    assert time.perf_counter() - t < 5.0
    rg, rh = _numpy_rows_reference(preds, labels, 30)
    assert_close(grad, rg)
    assert_close(hess, rh)


@pytest.mark.parametrize(
    "call, arg, extra",
    [
        (lambda p, y, g: lambdarank_gradients(p, y, [3, 3]), "group", "sum"),
        (lambda p, y, g: lambdarank_gradients(p, y, [4, -1, 4]), "group", "group 1"),
        (lambda p, y, g: lambdarank_gradients(p, np.array([0, 1, 2, 3, 4, 31, 0.0]), g), "labels", "group 1"),
        (lambda p, y, g: lambdarank_gradients(p, np.array([0, 1, 2, 3, -1, 1, 0.0]), g), "labels", "group 1"),
        (lambda p, y, g: lambdarank_gradients(p, np.array([0, 1.5, 2, 3, 1, 1, 0]), g), "labels", "group 0"),
        (lambda p, y, g: lambdarank_gradients(p, y, g, label_gain=[0, 1]), "labels", "group 0"),
        (lambda p, y, g: lambdarank_gradients(np.array([0, 1, 2, 3, np.nan, 1, 0]), y, g), "preds", "list 1"),
        (lambda p, y, g: lambdarank_gradients(np.array([0, 1, 2, np.inf, 0, 1, 0]), y, g), "preds", "list 0"),
        (lambda p, y, g: lambdarank_gradients(p, y, g, sigma=0), "sigma", ""),
        (lambda p, y, g: lambdarank_gradients(p, y, g, sigma=-1.0), "sigma", ""),
        (lambda p, y, g: lambdarank_gradients(p, y, g, truncation_level=0), "truncation_level", ""),
        (lambda p, y, g: lambdarank_gradients(p, y[:5], g), "labels", ""),
        (lambda p, y, g: lambdarank_gradients(p, y, g, weights=np.ones(3)), "weights", ""),
        (lambda p, y, g: lambdarank_gradients(p, y, g, weights=-np.ones(7)), "weights", "group 0"),
        (lambda p, y, g: lambdarank_gradients(p.reshape(1, 7), y, g), "preds", ""),
        (lambda p, y, g: lambdarank_gradients(p, y, g, metric="map"), "metric", ""),
        (lambda p, y, g: lambdarank_gradients(p, y, g, label_gain=[]), "label_gain", ""),
        (lambda p, y, g: lambdarank_gradients(p, y, np.array([3.5, 3.5])), "group", ""),
    ],
)
def test_gradients_bad_input(call, arg, extra):
    p = np.arange(7, dtype=np.float64)
    y = np.array([0, 1, 2, 3, 1, 1, 0], dtype=np.float64)
    with pytest.raises(ValueError) as e:
        call(p, y, [4, 3])
    assert arg in str(e.value) and extra in str(e.value), str(e.value)


def test_gradients_type_errors():
    with pytest.raises(TypeError, match="truncation_level"):
        lambdarank_gradients(np.zeros(2), np.zeros(2), [2], truncation_level=2.5)
    with pytest.raises(TypeError, match="preds"):
        lambdarank_gradients(np.array(["a", "b"]), np.zeros(2), [2])


# ------------------------------------------------------------------------------------------------
# lambdarank_loss


def random_padded(rng, b, n, levels=4, dtype=torch.float64, grid=3.0):
    s = torch.tensor(np.round(rng.normal(size=(b, n)) * grid) / grid, dtype=dtype)
    y = torch.tensor(rng.integers(0, levels, size=(b, n)), dtype=dtype)
    m = torch.tensor(rng.uniform(size=(b, n)) < 0.8)
    m[:, 0] = True
    if b > 3:
        m[1] = False
        m[1, 2] = True  # a single real item
        y[2] = 1.0  # one label only
        m[3] = False  # nothing real
        s[0, :] = 0.5  # all tied
    return s, y, m


OPTIONS = [
    dict(sigma=1.0, truncation_level=None, norm=False, metric="ndcg"),
    dict(sigma=1.0, truncation_level=None, norm=True, metric="ndcg"),
    dict(sigma=0.7, truncation_level=3, norm=True, metric="ndcg"),
    dict(sigma=2.0, truncation_level=10, norm=False, metric="ndcg", label_gain=[0.0, 0.5, 4.0, 2.0]),
    dict(sigma=1.3, truncation_level=None, norm=True, metric="mrr"),
    dict(sigma=1.0, truncation_level=2, norm=False, metric="mrr"),
]


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("opts", OPTIONS)
def test_loss_gradient_is_the_lambdas(backend, opts):
    rng = np.random.default_rng(len(str(opts)) + (backend == "torch"))
    b, n = 7, 19
    s, y, m = random_padded(rng, b, n)
    s.requires_grad_(True)
    loss = lambdarank_loss(s, y, mask=m, reduction="sum", backend=backend, **opts)
    loss.backward()
    k = opts["truncation_level"] or n
    total = 0.0
    for bi in range(b):
        real = m[bi].numpy()
        sr, yr = s[bi].detach().numpy()[real], y[bi].numpy()[real]
        if len(sr) == 0:
            assert torch.all(s.grad[bi] == 0)
            continue
        grad, _ = lambdarank_gradients(
            sr,
            yr,
            [len(sr)],
            sigma=opts["sigma"],
            truncation_level=k,
            norm=opts["norm"],
            label_gain=opts.get("label_gain"),
            metric=opts["metric"],
        )
        assert_close(s.grad[bi].numpy()[real], grad)
        assert torch.all(s.grad[bi][~m[bi]] == 0)
        gain = opts.get("label_gain") or None
        _, _, rl, _ = ref_list(
            sr, yr, sigma=opts["sigma"], k=k, norm=opts["norm"], gain=gain, metric=opts["metric"]
        )
        total += rl
    assert float(loss.detach()) == pytest.approx(total, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_rust_and_torch_backends_agree(opts, reduction, monkeypatch):
    monkeypatch.setattr(lr_mod, "chunk_rows", lambda b, n, dev=None, per_row=None: 3)  # several row chunks
    rng = np.random.default_rng(17)
    for dtype, tol in [(torch.float64, 1e-10), (torch.float32, 2e-5)]:
        s, y, m = random_padded(rng, 6, 33, dtype=dtype)
        out = []
        for backend in ("rust", "torch"):
            x = s.clone().requires_grad_(True)
            loss = lambdarank_loss(x, y, mask=m, reduction=reduction, backend=backend, **opts)
            assert loss.dtype == dtype
            (loss.sum() if reduction == "none" else loss).backward()
            out.append((loss.detach(), x.grad))
        torch.testing.assert_close(out[0][0], out[1][0], rtol=tol, atol=tol)
        torch.testing.assert_close(out[0][1], out[1][1], rtol=tol, atol=tol)


def test_degenerate_lists_do_not_count_in_mean():
    rng = np.random.default_rng(2)
    s, y, m = random_padded(rng, 6, 8)
    for backend in ("rust", "torch"):
        per = lambdarank_loss(s, y, mask=m, reduction="none", backend=backend)
        assert per[1] == 0 and per[2] == 0 and per[3] == 0
        counted = (per != 0).sum()
        mean = lambdarank_loss(s, y, mask=m, reduction="mean", backend=backend)
        assert float(mean) == pytest.approx(float(per.sum() / counted), rel=1e-12)
        x = s.clone().requires_grad_(True)
        lambdarank_loss(x, y, mask=m, backend=backend).backward()
        assert torch.all(x.grad[1:4] == 0)
    # empty batches and lists
    for backend in ("rust", "torch"):
        for shape in [(0, 5), (3, 0), (2, 1)]:
            x = torch.zeros(shape, requires_grad=True)
            loss = lambdarank_loss(x, torch.ones(shape), backend=backend)
            loss.backward()
            assert float(loss.detach()) == 0.0 and torch.all(x.grad == 0)
    assert [a.shape for a in lambdarank_gradients(np.zeros(0), np.zeros(0), [])] == [(0,), (0,)]
    # nothing counts: 0.0 and a zero gradient
    x = torch.zeros(2, 3, requires_grad=True)
    loss = lambdarank_loss(x, torch.ones(2, 3))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.all(x.grad == 0)


def test_loss_dtypes_shapes_and_module():
    rng = np.random.default_rng(9)
    s, y, m = random_padded(rng, 4, 10, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        for backend in ("rust", "torch"):
            x = s.to(dtype).requires_grad_(True)
            loss = lambdarank_loss(x, y, mask=m, backend=backend)
            assert loss.dtype == dtype
            loss.backward()
            assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    one = lambdarank_loss(s[0], y[0], reduction="none")
    assert one.ndim == 0
    assert float(one) == pytest.approx(float(lambdarank_loss(s[:1], y[:1], reduction="sum")))
    npy = lambdarank_loss(s.numpy(), y.numpy(), mask=m.numpy())
    assert isinstance(npy, np.generic) and float(npy) == pytest.approx(float(lambdarank_loss(s, y, mask=m)))
    mod = rankgrad.nn.LambdaRankLoss(sigma=0.5, truncation_level=4, norm=True, reduction="sum")
    assert float(mod(s, y, m)) == float(lambdarank_loss(s, y, 0.5, 4, True, m, "sum"))
    targets_int = y.to(torch.int64)
    assert float(lambdarank_loss(s, targets_int, mask=m)) == float(lambdarank_loss(s, y, mask=m))


def test_loss_real_valued_targets_match_reference():
    rng = np.random.default_rng(4)
    s = rng.normal(size=(3, 9))
    y = rng.uniform(-0.5, 3.0, size=(3, 9))
    for backend in ("rust", "torch"):
        x = torch.tensor(s, requires_grad=True)
        per = lambdarank_loss(x, torch.tensor(y), norm=True, reduction="none", backend=backend)
        per.sum().backward()
        for bi in range(3):
            rg, _, rl, _ = ref_list(s[bi], y[bi], k=None, norm=True)
            assert float(per[bi].detach()) == pytest.approx(rl, rel=1e-9)
            assert_close(x.grad[bi].numpy(), rg)


@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_loss_bad_input(backend):
    s, y = torch.zeros(2, 3), torch.ones(2, 3)
    bad_s = torch.tensor([[0.0, 1.0, 2.0], [0.0, float("nan"), 1.0]])
    cases = [
        (lambda: lambdarank_loss(s, y[:, :2], backend=backend), ValueError, "targets"),
        (lambda: lambdarank_loss(bad_s, y, backend=backend), ValueError, "list 1"),
        (lambda: lambdarank_loss(s, y, sigma=0.0, backend=backend), ValueError, "sigma"),
        (lambda: lambdarank_loss(s, y, truncation_level=0, backend=backend), ValueError, "truncation_level"),
        (lambda: lambdarank_loss(s, y, reduction="avg", backend=backend), ValueError, "reduction"),
        (lambda: lambdarank_loss(s, y, mask=torch.ones(2, 3), backend=backend), TypeError, "mask"),
        (
            lambda: lambdarank_loss(
                s, torch.tensor([[0.0, 1, 5], [0, 1, 2]]), label_gain=[0, 1, 3], backend=backend
            ),
            ValueError,
            "list 0",
        ),
        (
            lambda: lambdarank_loss(
                s, torch.tensor([[0.0, 1, 2], [0, 0.5, 2]]), label_gain=[0, 1, 3], backend=backend
            ),
            ValueError,
            "list 1",
        ),
        (lambda: lambdarank_loss(s, torch.full((2, 3), 2000.0), backend=backend), ValueError, "targets"),
        (
            lambda: lambdarank_loss(torch.zeros(2, 3, 1), torch.ones(2, 3, 1), backend=backend),
            ValueError,
            "scores",
        ),
        (lambda: lambdarank_loss(s, y, metric="err", backend=backend), ValueError, "metric"),
    ]
    for call, exc, text in cases:
        with pytest.raises(exc, match=text):
            call()
    # padded NaN is fine
    m = torch.tensor([[True, True, True], [True, False, True]])
    assert torch.isfinite(
        lambdarank_loss(bad_s, torch.tensor([[0.0, 1, 2], [0, 1, 2]]), mask=m, backend=backend)
    )


def test_loss_inputs_not_modified():
    rng = np.random.default_rng(8)
    s, y, m = random_padded(rng, 5, 12)
    copies = (s.clone(), y.clone(), m.clone())
    for backend in ("rust", "torch"):
        x = s.clone().requires_grad_(True)
        lambdarank_loss(x, y, mask=m, norm=True, backend=backend).backward()
        assert torch.equal(x.detach(), copies[0])
    assert torch.equal(s, copies[0]) and torch.equal(y, copies[1]) and torch.equal(m, copies[2])


# ---------------------------------------------------------------- torch integration (issue 9)

OP_OPTIONS = [
    dict(sigma=0.8, truncation_level=None, norm=False, metric="ndcg"),
    dict(sigma=1.2, truncation_level=3, norm=True, metric="ndcg", label_gain=[0.0, 1.0, 3.0, 7.0]),
    dict(sigma=1.0, truncation_level=None, norm=True, metric="mrr"),
]


def _op_batch(seed=5, b=4, n=7):
    rng = np.random.default_rng(seed)
    s = torch.tensor(rng.normal(size=(b, n)))
    y = torch.tensor(rng.integers(0, 4, size=(b, n)), dtype=torch.float64)
    m = torch.tensor(rng.uniform(size=(b, n)) < 0.85)
    m[:, :2] = True
    return s, y, m


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("opts", OP_OPTIONS)
def test_custom_op_opcheck(native, opts):
    from rankgrad.lambdarank._op import OP

    s, y, m = _op_batch()
    gain = opts.get("label_gain")
    args = (opts["sigma"], opts["truncation_level"], opts["norm"], gain, opts["metric"], native, True)
    torch.library.opcheck(OP.op, (s.requires_grad_(), y, m, None, *args, True))
    torch.library.opcheck(OP.op, (s.detach(), y, None, None, *args, False))


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_meta_tensors(backend):
    s, y, m = (t.to("meta") for t in _op_batch())
    assert lambdarank_loss(s, y, mask=m, reduction="none", backend=backend).shape == (4,)
    out = lambdarank_loss(s.float().requires_grad_(), y, mask=m, backend=backend)
    assert out.shape == () and out.dtype == torch.float32 and out.device.type == "meta"


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("opts", OP_OPTIONS)
def test_func_grad_and_vmap(backend, opts):
    s, y, m = _op_batch()
    x = s.clone().requires_grad_()
    lambdarank_loss(x, y, mask=m, reduction="sum", backend=backend, **opts).backward()
    f = lambda s, y, m: lambdarank_loss(s, y, mask=m, reduction="sum", backend=backend, **opts)  # noqa: E731
    torch.testing.assert_close(torch.func.grad(f)(s, y, m), x.grad, rtol=1e-12, atol=0)
    per = torch.func.vmap(lambda s, y, m: lambdarank_loss(s, y, mask=m, backend=backend, **opts))(s, y, m)
    torch.testing.assert_close(per, lambdarank_loss(s, y, mask=m, reduction="none", backend=backend, **opts))
    torch.testing.assert_close(torch.func.vmap(torch.func.grad(f))(s, y, m), x.grad, rtol=1e-12, atol=1e-15)


def test_issue_regressions():
    """Issue 10 items 3, 4 and 6 on the torch path (and the same on Rust)."""
    # float32 MRR with norm: the normalising sum is tiny (0.7543 before the log1p fix)
    s, y = torch.tensor([0.0, 3e4, -776901.8, 5.0]), torch.tensor([-1.0, -1, 2, 0])
    for backend in ("rust", "torch"):
        out = lambdarank_loss(s, y, sigma=0.5, norm=True, metric="mrr", backend=backend)
        assert out.item() == pytest.approx(0.7814592732526895, rel=1e-6)
    # float32 targets up to the gain cap: finite, equal to float64
    y = torch.tensor([[500.0, 1, 0, 128], [1000.0, 999, 0, 3]])
    s = torch.tensor([[1.0, 2, 0, 0.5], [0.1, 0.2, 0.3, 0.4]])
    want = lambdarank_loss(s.double(), y.double(), reduction="none", backend="rust")
    for backend in ("rust", "torch"):
        got = lambdarank_loss(s, y, reduction="none", backend=backend)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    # float64 +-1e308 on the torch path: finite loss and gradient
    x = torch.tensor([[1e308, -1e308, 0.0, 5.0]], dtype=torch.float64, requires_grad=True)
    for norm in (False, True):
        out = lambdarank_loss(x, torch.tensor([[2.0, 1, 0, 1]]), norm=norm, backend="torch")
        (g,) = torch.autograd.grad(out, x)
        assert torch.isfinite(out) and torch.isfinite(g).all()
    for backend in ("rust", "torch"):
        with pytest.raises(ValueError, match="sigma"):
            lambdarank_loss(torch.rand(2, 3), torch.rand(2, 3), sigma=1e39, backend=backend)
        # a count beyond the list is the whole list (the _core rule), on both backends
        s3, y3 = torch.rand(2, 3), torch.tensor([[2.0, 0, 1], [1, 0, 0]])
        for t in (2**64, 10**30):
            huge = lambdarank_loss(s3, y3, truncation_level=t, reduction="none", backend=backend)
            torch.testing.assert_close(huge, lambdarank_loss(s3, y3, reduction="none", backend=backend))
        with pytest.raises(ValueError, match="truncation_level"):
            lambdarank_loss(s3, y3, truncation_level=0, backend=backend)
        with pytest.raises(TypeError, match="truncation_level"):
            lambdarank_loss(s3, y3, truncation_level=2.0, backend=backend)
    g_huge = lambdarank_gradients(np.arange(3.0), np.array([0.0, 2, 1]), [3], truncation_level=2**64)
    g_all = lambdarank_gradients(np.arange(3.0), np.array([0.0, 2, 1]), [3], truncation_level=3)
    np.testing.assert_array_equal(g_huge[0], g_all[0])
    with pytest.raises(ValueError, match="sigma"):
        lambdarank_gradients(np.zeros(3), np.zeros(3), [3], sigma=1e200)


def test_module_options():
    from rankgrad.nn import LambdaRankLoss

    loss = LambdaRankLoss(0.5, 3, True, "sum", [0.0, 1.0, 3.0], "mrr", backend="torch", validate=False)
    r = repr(loss)
    for part in (
        "sigma=0.5",
        "truncation_level=3",
        "norm=True",
        "reduction='sum'",
        "label_gain=[0.0, 1.0, 3.0]",
        "metric='mrr'",
        "backend='torch'",
        "validate=False",
    ):
        assert part in r
    with pytest.raises(TypeError):
        LambdaRankLoss(1.0, None, False, "mean", None, "ndcg", "torch")  # backend is keyword-only
    with pytest.raises(ValueError, match="sigma"):
        LambdaRankLoss(sigma=1e200)


def test_out_untouched_when_raising():
    """Issue 10 item 6 / SPEC 10: `out` keeps its contents when the call raises."""
    rng = np.random.default_rng(3)
    p = rng.normal(size=6)
    for labels, preds in (([0, 1, 2, 0, 1, 99.0], p), ([0, 1, 2, 0, 1, 1.0], np.r_[p[:5], np.nan])):
        out = (np.full(6, 7.0), np.full(6, 7.0))
        with pytest.raises(ValueError):
            lambdarank_gradients(preds, np.array(labels), [3, 3], out=out)
        assert (out[0] == 7.0).all() and (out[1] == 7.0).all()


def test_empty_group_is_an_empty_list():
    """A size-0 group is an empty list (the one group rule of `_core`): no rows, no effect."""
    rng = np.random.default_rng(7)
    preds, labels = rng.normal(size=7), rng.integers(0, 3, size=7).astype(float)
    g1, h1 = lambdarank_gradients(preds, labels, [4, 0, 3])
    g2, h2 = lambdarank_gradients(preds, labels, [4, 3])
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(h1, h2)


# ------------------------------------------------------------------------------------------------
# Issue 17 items 2 and 9: the norm factor where S is tiny, huge scores with sigma > 1, the loss on
# the gradients' row kernel.


def exact_loss(s, y, *, sigma, norm, k=None):
    """SPEC 4's loss of one list (NDCG, 2^y - 1 gains) in decimal arithmetic (50 digits): score
    gaps, the sigmoid, softplus and the factor log2(1 + S) / S without overflow or rounding."""
    with localcontext() as ctx:
        ctx.prec = 50
        D = Decimal
        n = len(s)
        k = n if k is None else k
        order = sorted(range(n), key=lambda i: -float(s[i]))  # stable
        G = [D(2) ** int(v) - 1 for v in y]
        ln2 = D(2).ln()
        disc = [ln2 / D(p + 2).ln() for p in range(n)]  # 1 / log2(2 + p)
        ideal = sorted(range(n), key=lambda i: -float(y[i]))
        max_dcg = sum((G[i] * disc[p] for p, i in enumerate(ideal[:k])), D(0))
        inv = 1 / max_dcg
        spread = s[order[0]] != s[order[-1]]

        def exp(x):  # e^x, 0 far below (Decimal underflows quietly), never an overflow trap
            return D(0) if x < -100000 else x.exp()

        total, loss = D(0), D(0)
        for i in range(min(n - 1, k)):
            for j in range(i + 1, n):
                a, b = order[i], order[j]
                if y[a] == y[b]:
                    continue
                (h, ph), (l, pl) = ((a, i), (b, j)) if y[a] > y[b] else ((b, j), (a, i))
                ds = D(float(s[h])) - D(float(s[l]))
                delta = (G[h] - G[l]) * abs(disc[ph] - disc[pl]) * inv
                if norm and spread:
                    delta /= D("0.01") + abs(ds)
                x = D(sigma) * ds
                rho = exp(-x) / (1 + exp(-x)) if x > 0 else 1 / (1 + exp(x))
                total += 2 * D(sigma) * delta * rho
                z = -x  # softplus(z) = max(z, 0) + ln(1 + e^-|z|)
                loss += delta * (max(z, D(0)) + (1 + exp(-abs(z))).ln())
        if norm and total > 0:  # ln(1 + S) by its series where 1 + S would round to 1
            log1p = total * (1 - total / 2 + total * total / 3) if total < D("1e-15") else (1 + total).ln()
            loss *= log1p / (total * ln2)
        return float(loss)  # inf where it exceeds float64


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_norm_factor_is_accurate_for_a_tiny_sum(backend, dtype):
    """Issue 17 item 2: log2(1 + S) / S as log1p(S) / (S ln 2). With a tiny sigma S ~ sigma,
    1 + S rounds to 1 and the Rust loss was 0.0 (torch 0.2523); the factor's limit is 1 / ln 2,
    so the loss tends to the sum of the (norm-scaled) deltas."""
    s, y = [0.5, 2.0, -1.0], [1.0, 0.0, 2.0]
    disc = lambda p: 1.0 / math.log2(2.0 + p)  # noqa: E731
    inv = 1.0 / (3.0 + disc(1))  # maxDCG: gains 3, 1, 0 in the ideal order
    # the pairs (h, l) with their positions in the score order 2.0, 0.5, -1.0 and G_h - G_l
    limit = sum(
        dg * abs(disc(ph) - disc(pl)) * inv / (0.01 + abs(s[h] - s[l]))
        for h, l, ph, pl, dg in [(2, 0, 2, 1, 2.0), (0, 1, 1, 0, 1.0), (2, 1, 2, 0, 3.0)]
    )
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    sigmas = [1e-17, 1e-12] + ([1e-100, 1e-150] if dtype == torch.float64 else [1e-18])
    for sigma in sigmas:
        x = torch.tensor(s, dtype=dtype, requires_grad=True)
        out = lambdarank_loss(
            x, torch.tensor(y, dtype=dtype), sigma=sigma, norm=True, reduction="sum", backend=backend
        )
        assert float(out) == pytest.approx(limit, rel=tol), sigma
        assert float(out) == pytest.approx(exact_loss(s, y, sigma=sigma, norm=True), rel=tol)
        (g,) = torch.autograd.grad(out, x)
        grad, _ = lambdarank_gradients(np.array(s), np.array(y), [3], sigma=sigma, truncation_level=3)
        np.testing.assert_allclose(g.double().numpy(), grad, rtol=10 * tol, atol=0)
    # the same list among others, with padding and both reductions
    sb = torch.tensor([s + [9.0], [0.1, 0.2, 0.3, 0.4]], dtype=dtype)
    yb = torch.tensor([y + [5.0], [0.0, 0.0, 1.0, 0.0]], dtype=dtype)
    mb = torch.tensor([[True, True, True, False], [True] * 4])
    per = lambdarank_loss(sb, yb, sigma=1e-17, norm=True, mask=mb, reduction="none", backend=backend)
    assert float(per[0]) == pytest.approx(limit, rel=tol)
    assert float(per[1]) == pytest.approx(
        exact_loss([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 0], sigma=1e-17, norm=True), rel=tol
    )


def test_gbdt_gradients_use_the_accurate_norm_factor():
    """Issue 17 item 2, the GBDT objective: LightGBM's formula log2(1 + S) / S, computed as
    log1p(S) / (S ln 2); with S below 1e-16 every gradient and hessian was 0."""
    rng = np.random.default_rng(5)
    preds, labels, group = random_ragged(rng, [6, 9, 4, 12])
    for sigma in [1e-17, 1e-40, 1e-150, 1.0]:
        for k in [3, 30]:
            grad, hess = lambdarank_gradients(preds, labels, group, sigma=sigma, truncation_level=k)
            rg, rh = ref_ragged(preds, labels, group, sigma=sigma, k=k, norm=True, gain=DEFAULT_GAIN)
            assert_close(grad, rg)
            assert_close(hess, rh)
            assert np.count_nonzero(grad) > len(preds) // 2, sigma
    # the limit sigma -> 0: grad / sigma -> sum of -+delta / 2 / ln 2 (rho -> 1/2, factor -> 1/ln 2)
    g1, _ = lambdarank_gradients(preds, labels, group, sigma=1e-17)
    g2, _ = lambdarank_gradients(preds, labels, group, sigma=1e-30)
    np.testing.assert_allclose(g1 / 1e-17, g2 / 1e-30, rtol=1e-12, atol=1e-300)


CASES_HUGE = [
    # (scores, targets): one misordered pair far apart, alone or among ordinary items
    ([1.7e308, -1.7e308], [0.0, 1.0]),
    ([1.7e308, -1.7e308], [1.0, 0.0]),
    ([np.finfo(np.float64).max, -np.finfo(np.float64).max], [0.0, 1.0]),
    ([0.9e308, 0.5, -0.9e308, 0.0, 2.0, -1.0], [0.0, 1.0, 2.0, 1.0, 0.0, 3.0]),
    ([1e300, -1e300, 3.0, 0.25], [1.0, 2.0, 0.0, 2.0]),
]


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0, 1e100])
def test_huge_scores_with_sigma_above_one_give_the_true_loss(backend, norm, sigma):
    """Issue 17 item 2: [1.7e308, -1.7e308] / [0, 1], sigma 2, norm: NaN on Rust, inf on torch;
    the true value is factor * delta / (0.01 + |ds|) * sigma |ds| = delta sigma / ln 2 = 1.065.
    Against 50-digit decimal arithmetic: the true value wherever it fits, inf beyond, never NaN;
    gradients finite and equal to lambdarank_gradients'."""
    for s, y in CASES_HUGE:
        want = exact_loss(s, y, sigma=sigma, norm=norm)
        x = torch.tensor(s, dtype=torch.float64, requires_grad=True)
        out = lambdarank_loss(
            x, torch.tensor(y, dtype=torch.float64), sigma=sigma, norm=norm, reduction="sum", backend=backend
        )
        if math.isinf(want):
            assert float(out) == math.inf, (s, y)
        else:
            assert float(out) == pytest.approx(want, rel=1e-12, abs=1e-300), (s, y)
        (g,) = torch.autograd.grad(out, x)
        grad, _ = lambdarank_gradients(
            np.array(s), np.array(y), [len(s)], sigma=sigma, truncation_level=len(s), norm=norm
        )
        assert torch.isfinite(g).all() and np.isfinite(grad).all()
        np.testing.assert_allclose(g.numpy(), grad, rtol=1e-9, atol=1e-300)
    # the issue's case, by the limit of the formula
    delta = 1.0 - 1.0 / math.log2(3.0)
    out = lambdarank_loss(
        np.array([1.7e308, -1.7e308]), np.array([0.0, 1.0]), sigma=sigma, norm=True, backend=backend
    )
    assert float(out) == pytest.approx(delta * sigma / math.log(2.0), rel=1e-13)


@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_huge_float32_scores_with_sigma_above_one(backend):
    """The float32 twin of the above: +-3e38 apart with sigma 2 and 4, computed in float64 and
    returned in float32 (inf where the true value exceeds float32)."""
    f32max = float(np.finfo(np.float32).max)
    for s, y in [([3e38, -3e38], [0.0, 1.0]), ([3e38, 1.0, -3e38, 0.5], [0.0, 2.0, 1.0, 1.0])]:
        for sigma in (2.0, 4.0):
            for norm in (True, False):
                x = torch.tensor(s, dtype=torch.float32, requires_grad=True)
                out = lambdarank_loss(
                    x, torch.tensor(y), sigma=sigma, norm=norm, reduction="sum", backend=backend
                )
                want = exact_loss([float(v) for v in x.detach().double()], y, sigma=sigma, norm=norm)
                if want > f32max:
                    assert float(out) == math.inf
                else:
                    assert float(out) == pytest.approx(want, rel=1e-6)
                (g,) = torch.autograd.grad(out, x)
                assert torch.isfinite(g).all()


def test_loss_same_bits_at_any_thread_count():
    """Issue 17 item 9: the loss on the row kernel stays bitwise identical whatever the number of
    threads, float32 and float64, and its reduction="sum" gradient is the lambdas."""
    rng = np.random.default_rng(21)
    b, n = 12, 150
    for dtype in (torch.float64, torch.float32):
        s, y, m = random_padded(rng, b, n, dtype=dtype, grid=50.0)
        res = []
        try:
            for threads in (1, 2):
                rankgrad.set_num_threads(threads)
                x = s.clone().requires_grad_(True)
                out = lambdarank_loss(x, y, mask=m, norm=True, reduction="none")
                out.sum().backward()
                res.append((out.detach().numpy().tobytes(), x.grad.numpy().tobytes()))
        finally:
            rankgrad.set_num_threads(None)
        assert res[0] == res[1]
