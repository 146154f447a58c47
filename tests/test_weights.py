"""SPEC 13: `weights=` on every loss of sections 3, 4 and 11, Rax's conventions.

- `LOSSES`: each weighted loss beside a plain float64 numpy transcription of its weighted
  formula (one list of real items at a time), checked on random batches with masks, ties, odd
  sizes, zero weights, a list whose relevant items all weigh 0, an all-zero-weight list and
  padded weights holding NaN / inf / negative values: per-list values, the three reductions,
  per-item and per-list weights, both backends (and both methods of the approx family).
- gradients by float64 gradcheck; second derivatives by gradgradcheck where they are exact
  (approx, softmax, ListMLE); the fast method against the exact one, values, gradients and
  Hessian-vector products.
- Rax itself (`pytest.importorskip("rax")`, jax on CPU, float64), with the mapping each test
  states: approx NDCG / MRR against `rax.approx_t12n(ndcg_metric / mrr_metric)`, `softmax_loss`
  against `rax.softmax_loss`, `listmle_loss` against `rax.listmle_loss`.
- bad weights (values, shapes, types, devices) name `weights` on both backends; `rankgrad.nn`
  modules take them in `forward`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch

import rankgrad
import rankgrad._ops  # registers torch.ops.rankgrad.*
import rankgrad.listwise as listwise
import rankgrad.nn as rnn
from conftest import BACKENDS, make_batch

NAN, INF = math.nan, math.inf


# ---------------------------------------------------------------- plain float64 references
def _sig(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _ranks(s: np.ndarray, t: float) -> np.ndarray:
    """`r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)`."""
    return 1.0 + _sig((s[None, :] - s[:, None]) / t).sum(1) - 0.5


def _true_ranks(y: np.ndarray) -> np.ndarray:
    order = np.argsort(-y, kind="stable")
    t = np.empty(len(y))
    t[order] = np.arange(1, len(y) + 1)
    return t


def ref_approx_ndcg(s, y, w, t=0.7, scale_gains=True):
    """`1 - sum_i g_i w_i / log2(1 + r_i) / IDCG(g w)` (Rax's weighted `ndcg_metric`)."""
    if len(s) < 2:
        return 0.0, False
    yc = np.maximum(y, 0.0)
    g = (2.0**yc - 1.0 if scale_gains else yc) * w
    ideal = np.sort(g)[::-1]
    idcg = float((ideal / np.log2(np.arange(len(g)) + 2.0)).sum())
    if idcg <= 0:
        return 0.0, False
    return 1.0 - float((g / np.log2(1.0 + _ranks(s, t))).sum()) / idcg, True


def ref_approx_mrr(s, y, w, t=0.5):
    """`1 - max_i w_i min(max(y_i, 0), 1) / r_i`."""
    rel = np.clip(y, 0.0, 1.0) * w
    if len(s) < 2 or not (rel > 0).any():
        return 0.0, False
    return 1.0 - float((rel / _ranks(s, t)).max()), True


def ref_approx_rank_mse(s, y, w, t=1.0, discount=None):
    """`sum_i w_i d(t_i) (r_i - t_i)^2 / n` (the mean over the n real items)."""
    if len(s) < 2 or not (w > 0).any():
        return 0.0, False
    tr = _true_ranks(y)
    d = {None: np.ones_like(tr), "log2": 1.0 / np.log2(tr + 1.0), "reciprocal": 1.0 / tr}[discount]
    return float((w * d * (_ranks(s, t) - tr) ** 2).sum() / len(s)), True


def ref_softmax(s, y, w, normalize=True):
    """`-sum_i p_i log softmax(s)_i`, `p_i = w_i max(y_i, 0)` (over its sum when normalising)."""
    p = np.maximum(y, 0.0) * w
    total = p.sum()
    if len(s) < 2 or total <= 0:
        return 0.0, False
    if normalize:
        p = p / total
    logp = s - (s.max() + np.log(np.exp(s - s.max()).sum()))
    return float(-(p * logp).sum()), True


def ref_listmle(s, y, w):
    """`sum_i w_pi(i) [logsumexp(s_pi(i..n)) - s_pi(i)]`, pi the order by y (stable)."""
    if len(s) < 2 or not (w > 0).any():
        return 0.0, False
    order = np.argsort(-y, kind="stable")
    ss, ws = s[order], w[order]
    tail = np.array([np.log(np.exp(ss[i:] - ss[i:].max()).sum()) + ss[i:].max() for i in range(len(ss))])
    return float((ws * (tail - ss)).sum()), True


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def ref_ranknet(s, y, w, sigma=1.0):
    """`sum_{y_i > y_j} w_i log(1 + exp(-sigma (s_i - s_j))) / P`, `P` the number of pairs."""
    pair = y[:, None] > y[None, :]
    if not pair.any() or not (pair & (w[:, None] > 0)).any():
        return 0.0, False
    terms = w[:, None] * _softplus(-sigma * (s[:, None] - s[None, :]))
    return float(terms[pair].sum() / pair.sum()), True


def ref_lambdarank(s, y, w, sigma=1.0, k=None, norm=False, metric="ndcg"):
    """SPEC 4's per-list pseudocode (LightGBM's lambdarank loss form), each pair's term times the
    weight of its higher-labelled item; S (norm) from the unweighted lambdas."""
    n = len(s)
    if n < 2 or (y == y[0]).all():
        return 0.0, False
    order = np.argsort(-s, kind="stable")
    k = n if k is None else k
    disc = 1.0 / np.log2(np.arange(n) + 2.0)
    gain = 2.0 ** np.maximum(y, 0.0) - 1.0
    if metric == "ndcg":
        max_dcg = float((np.sort(gain)[::-1][:k] * disc[:k]).sum())
        if max_dcg <= 0:
            return 0.0, False
    elif not (0 < (y > 0).sum() < n):
        return 0.0, False

    def rr(o):
        rel = np.flatnonzero(y[o] > 0)
        return 1.0 / (rel[0] + 1.0) if len(rel) else 0.0

    spread = s[order[0]] != s[order[-1]]
    total_s = loss = 0.0
    weighted = False
    for i in range(min(n - 1, k)):
        for j in range(i + 1, n):
            a, b = order[i], order[j]
            if y[a] == y[b]:
                continue
            (h, ph), (lo, pl) = ((a, i), (b, j)) if y[a] > y[b] else ((b, j), (a, i))
            ds = s[h] - s[lo]
            if metric == "ndcg":
                delta = (gain[h] - gain[lo]) * abs(disc[ph] - disc[pl]) / max_dcg
            else:
                swapped = order.copy()
                swapped[i], swapped[j] = swapped[j], swapped[i]
                delta = abs(rr(swapped) - rr(order))
            if norm and spread:
                delta /= 0.01 + abs(ds)
            rho = 1.0 / (1.0 + math.exp(min(sigma * ds, 700.0)))
            total_s += 2.0 * sigma * delta * rho
            loss += w[h] * delta * float(_softplus(-sigma * ds))
            weighted |= w[h] > 0
    if not weighted:
        return 0.0, False
    if norm and total_s > 0:
        loss *= math.log1p(total_s) / (total_s * math.log(2.0))
    return loss, True


def ref_lambda_loss(s, y, w, weighting="ndcg2pp", sigma=1.0, k=None, mu=10.0):
    """LambdaLoss (SPEC 11) over the ordered pairs of the top k, the pair (i, j) times `w_i`."""
    n = len(s)
    order = np.argsort(-s, kind="stable")
    pos = np.empty(n, dtype=int)
    pos[order] = np.arange(n)
    k = n if k is None else min(k, n)
    g = 2.0 ** np.maximum(y, 0.0) - 1.0
    max_dcg = float((np.sort(g)[::-1][:k] / np.log2(np.arange(k) + 2.0)).sum())
    if k < 2 or max_dcg <= 0:
        return 0.0, False
    gn, dd = g / max_dcg, np.log2(pos + 2.0)

    def rho(d):
        return 1.0 / np.log2(1.0 + d)

    total, pairs, weighted = 0.0, 0, False
    for i in range(n):
        for j in range(n):
            if i == j or pos[i] >= k or pos[j] >= k:
                continue
            if weighting == "ndcg1":
                wij = gn[i] / dd[i]
                weighted |= w[i] > 0 and g[i] > 0
            elif y[i] <= y[j]:
                continue
            else:
                weighted |= w[i] > 0
                d = abs(pos[i] - pos[j])
                ndcg2 = abs(rho(d) - rho(d + 1.0)) * abs(gn[i] - gn[j])
                lr = abs(1.0 / dd[i] - 1.0 / dd[j]) * abs(gn[i] - gn[j])
                wij = {"ndcg2": ndcg2, "lambdarank": lr, "ndcg2pp": mu * ndcg2 + lr, "ranknet": 1.0}[
                    weighting
                ]
            total += w[i] * wij * float(_softplus(-sigma * (s[i] - s[j]))) / math.log(2.0)
            pairs += 1
    if pairs == 0 or not weighted:
        return 0.0, False
    return total, True


def ref_batch(ref, s, y, m, w):
    """Per-list (losses, valid) of a padded batch, `w` None for unit weights."""
    losses, valid = [], []
    for b in range(s.shape[0]):
        k = m[b]
        wb = np.ones(int(k.sum())) if w is None else w[b][k]
        loss, ok = ref(s[b][k], y[b][k], wb)
        losses.append(loss)
        valid.append(ok)
    return np.array(losses), np.array(valid)


def ref_reduce(losses, valid, reduction, list_weights=None):
    """SPEC 2 / 13 reductions: `[B]` weights multiply each list's loss; `mean` is the weighted
    mean over the lists that count (0 if that weight is 0)."""
    lw = np.ones_like(losses) if list_weights is None else list_weights
    out = losses * lw
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    den = (lw * valid).sum()
    return out.sum() / den if den > 0 else 0.0


# ---------------------------------------------------------------- the weighted losses
@dataclass
class Loss:
    """`call(s, y, m, reduction, weights, backend, method)` -> the loss; `ref(s, y, w)` on one
    list of real items -> (loss, counts). `methods`: the approx family's (None: no `method`);
    `second`: second derivatives are exact (gradgradcheck)."""

    name: str
    call: Callable[..., Any]
    ref: Callable[..., Tuple[float, bool]]
    methods: Sequence[Optional[str]] = (None,)
    second: bool = True
    backends: Sequence[str] = BACKENDS
    gradcheck: bool = True

    def __repr__(self) -> str:
        return self.name


def _approx(fn, *args: Any, **opts: Any) -> Callable[..., Any]:
    def call(s, y, m, reduction, weights, backend="auto", method=None, validate=True):
        kw = {} if method is None else {"method": method}
        return fn(
            s,
            y,
            *args,
            mask=m,
            reduction=reduction,
            weights=weights,
            backend=backend,
            validate=validate,
            **kw,
            **opts,
        )

    return call


def _composite(fn, **opts: Any) -> Callable[..., Any]:
    def call(s, y, m, reduction, weights, backend="auto", method=None, validate=True):
        return fn(s, y, m, reduction, weights=weights, backend=backend, validate=validate, **opts)

    return call


APPROX_METHODS = ("exact", "fast")
LOSSES = [
    Loss("approx_ndcg", _approx(rankgrad.approx_ndcg_loss, 0.7), ref_approx_ndcg, APPROX_METHODS),
    Loss(
        "approx_ndcg_linear",
        _approx(rankgrad.approx_ndcg_loss, 1.3, scale_gains=False),
        lambda s, y, w: ref_approx_ndcg(s, y, w, 1.3, False),
        APPROX_METHODS,
    ),
    Loss("approx_mrr", _approx(rankgrad.approx_mrr_loss, 0.5), ref_approx_mrr, APPROX_METHODS),
    Loss("approx_rank_mse", _approx(rankgrad.approx_rank_mse_loss, 1.0), ref_approx_rank_mse, APPROX_METHODS),
    Loss(
        "approx_rank_mse_log2",
        _approx(rankgrad.approx_rank_mse_loss, 0.4, "log2"),
        lambda s, y, w: ref_approx_rank_mse(s, y, w, 0.4, "log2"),
        APPROX_METHODS,
    ),
    Loss(
        "approx_rank_mse_reciprocal",
        _approx(rankgrad.approx_rank_mse_loss, 2.0, "reciprocal"),
        lambda s, y, w: ref_approx_rank_mse(s, y, w, 2.0, "reciprocal"),
        APPROX_METHODS,
    ),
    Loss("softmax", _composite(listwise.softmax_loss), ref_softmax, backends=("auto",)),
    Loss(
        "softmax_unnormalized",
        _composite(listwise.softmax_loss, normalize=False),
        lambda s, y, w: ref_softmax(s, y, w, False),
        backends=("auto",),
    ),
    Loss("listmle", _composite(listwise.listmle_loss), ref_listmle, backends=("auto",)),
    Loss("ranknet", _approx(rankgrad.ranknet_loss, 1.0), ref_ranknet),
    Loss(
        "ranknet_sigma",
        _approx(rankgrad.ranknet_loss, 2.5),
        lambda s, y, w: ref_ranknet(s, y, w, 2.5),
    ),
    Loss(
        "lambdarank",
        _approx(rankgrad.lambdarank_loss, 1.3),
        lambda s, y, w: ref_lambdarank(s, y, w, 1.3),
        second=False,
    ),
    Loss(
        "lambdarank_norm_k",
        _approx(rankgrad.lambdarank_loss, 0.8, 3, True),
        lambda s, y, w: ref_lambdarank(s, y, w, 0.8, 3, True),
        second=False,
        gradcheck=False,  # norm's 1 / (0.01 + |ds|) is held constant: not the loss's derivative
    ),
    Loss(
        "lambdarank_mrr",
        _approx(rankgrad.lambdarank_loss, 1.0, None, False, metric="mrr"),
        lambda s, y, w: ref_lambdarank(s, y, w, 1.0, None, False, "mrr"),
        second=False,
    ),
    Loss(
        "lambda_loss",
        _approx(listwise.lambda_loss, "ndcg2pp", 1.0, 5),
        lambda s, y, w: ref_lambda_loss(s, y, w, "ndcg2pp", 1.0, 5),
        second=False,
    ),
    Loss(
        "lambda_loss_ndcg1",
        _approx(listwise.lambda_loss, "ndcg1", 0.7),
        lambda s, y, w: ref_lambda_loss(s, y, w, "ndcg1", 0.7),
        second=False,
    ),
    Loss(
        "lambda_loss_ranknet_k",
        _approx(listwise.lambda_loss, "ranknet", 1.5, 4),
        lambda s, y, w: ref_lambda_loss(s, y, w, "ranknet", 1.5, 4),
        second=False,
    ),
]


def _cases(losses: Sequence[Loss]) -> list:
    return [
        pytest.param(loss, backend, method, id=f"{loss.name}-{backend}" + (f"-{method}" if method else ""))
        for loss in losses
        for backend in loss.backends
        for method in loss.methods
    ]


def weighted_batch(seed: int, b: int = 7, n: int = 9, ties: bool = True):
    """(scores, targets, mask, per-item weights, per-list weights), float64 numpy, with: list 1's
    relevant items all weighing 0, list 2's every weight 0, list 3 a single real item, the last
    list all padded; zero weights elsewhere; padded weights NaN / inf / -inf / negative / huge."""
    rng = np.random.default_rng(seed)
    s, y, m = make_batch(rng, b, n, ties=ties, pad=0.25, empty_row=True)
    w = rng.uniform(0.0, 2.5, size=(b, n))
    w[rng.random((b, n)) < 0.2] = 0.0
    assert b >= 5 and n >= 2
    y[1, :2], m[1, :2] = (2.0, 1.0), True
    w[1, y[1] > 0] = 0.0
    w[2] = 0.0
    m[3] = False
    m[3, 0] = True
    pad = ~m
    w[pad] = rng.choice([NAN, INF, -INF, -1.0, 1e300], size=int(pad.sum()))
    lw = rng.uniform(0.0, 3.0, size=b)
    lw[0] = 0.0
    return s, y, m, w, lw


def _t(x: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.bool if np.asarray(x).dtype == bool else dtype)


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


# ---------------------------------------------------------------- against the transcriptions
@pytest.mark.parametrize("loss, backend, method", _cases(LOSSES))
@pytest.mark.parametrize("seed, b, n", [(0, 7, 9), (1, 5, 13), (2, 6, 4), (3, 9, 21)])
def test_matches_numpy_transcription(loss, backend, method, seed, b, n):
    s, y, m, w, lw = weighted_batch(seed, b, n)
    losses, valid = ref_batch(loss.ref, s, y, m, w)
    plain, plain_valid = ref_batch(loss.ref, s, y, m, None)
    tol = dict(rtol=1e-9, atol=1e-12)
    for tensors in (False, True):
        conv = _t if tensors else np.asarray
        S, Y, M = conv(s), conv(y), conv(m)
        for reduction in ("none", "sum", "mean"):
            got = loss.call(S, Y, M, reduction, conv(w), backend, method)
            np.testing.assert_allclose(_np(got), ref_reduce(losses, valid, reduction), **tol)
            got = loss.call(S, Y, M, reduction, conv(lw), backend, method)  # per list
            np.testing.assert_allclose(_np(got), ref_reduce(plain, plain_valid, reduction, lw), **tol)
    # lists with nothing weighted to rank (2; 1 unless every item's weight counts), one item (3),
    # all padded (last) do not count, and have loss 0
    every_item = loss.name.startswith(("approx_rank_mse", "listmle"))
    assert not valid[2:4].any() and not valid[-1] and (every_item or not valid[1])
    got = _np(loss.call(s, y, m, "none", w, backend, method))
    np.testing.assert_array_equal(got[~valid], 0.0)


@pytest.mark.parametrize("loss, backend, method", _cases(LOSSES))
def test_one_dimensional_input(loss, backend, method):
    s, y, m, w, _ = weighted_batch(3, 7, 8)
    for row in (0, 1, 4):
        k = m[row]
        want, _ = loss.ref(s[row][k], y[row][k], w[row][k])
        plain, plain_ok = loss.ref(s[row][k], y[row][k], np.ones(int(k.sum())))
        for conv in (np.asarray, _t):
            args = conv(s[row]), conv(y[row]), conv(m[row])
            got = loss.call(*args, "none", conv(w[row]), backend, method)
            assert got.shape == ()
            np.testing.assert_allclose(_np(got), want, rtol=1e-9, atol=1e-12)
            got = loss.call(*args, "mean", conv(np.array(2.5)), backend, method)  # 0-d: the list's weight
            np.testing.assert_allclose(_np(got), plain if plain_ok else 0.0, rtol=1e-9, atol=1e-12)
            got = loss.call(*args, "none", conv(np.array(2.5)), backend, method)
            np.testing.assert_allclose(_np(got), 2.5 * plain, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss, backend, method", _cases(LOSSES))
def test_unit_weights_change_nothing(loss, backend, method):
    s, y, m, _, _ = weighted_batch(4)
    ones = np.where(m, 1.0, NAN)
    for reduction in ("none", "mean"):
        a = _np(loss.call(_t(s), _t(y), _t(m), reduction, None, backend, method))
        b = _np(loss.call(_t(s), _t(y), _t(m), reduction, _t(ones), backend, method))
        c = _np(loss.call(_t(s), _t(y), _t(m), reduction, _t(np.ones(s.shape[0])), backend, method))
        if backend == "rust":  # the Rust kernels: the same bits
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------- gradients and second derivatives
def _grad_inputs(seed: int = 5):
    s, y, m, w, lw = weighted_batch(seed, 6, 7, ties=False)
    return _t(s), _t(y), _t(m), _t(w), _t(lw)


@pytest.mark.parametrize("loss, backend, method", _cases(LOSSES))
def test_gradcheck_weighted(loss, backend, method):
    if method == "fast":
        pytest.skip("fast summation is checked against the exact sums (test_methods_agree)")
    if not loss.gradcheck:
        pytest.skip("its gradient holds a score-dependent factor constant by definition")
    s, y, m, w, lw = _grad_inputs()
    for weights, reduction in ((w, "none"), (w, "mean"), (lw, "mean"), (lw, "none")):

        def f(x):
            return loss.call(x, y, m, reduction, weights, backend, method)

        x = s.clone().requires_grad_()
        assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)
        if loss.second:
            assert torch.autograd.gradgradcheck(f, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)
        else:  # a clear error, never silent zeros
            (g,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
            with pytest.raises(RuntimeError, match="second derivatives"):
                torch.autograd.grad(g.sum(), x)
        (g,) = torch.autograd.grad(f(x).sum(), x)
        assert (g[~m] == 0).all()  # padded items: exactly zero, whatever their weights hold


APPROX = [loss for loss in LOSSES if loss.methods == APPROX_METHODS]
TWINS = [loss for loss in LOSSES if tuple(loss.backends) == BACKENDS]


@pytest.mark.parametrize("loss", APPROX, ids=repr)
@pytest.mark.parametrize("backend", BACKENDS)
def test_methods_agree(loss, backend):
    """fast vs exact summation with weights: values, gradients and Hessian-vector products."""
    s, y, m, w, _ = _grad_inputs(6)
    v = torch.randn(s.shape, dtype=s.dtype, generator=torch.Generator().manual_seed(0))
    out = {}
    for method in APPROX_METHODS:
        x = s.clone().requires_grad_()
        val = loss.call(x, y, m, "none", w, backend, method)
        lin = torch.linspace(1.0, 2.0, val.numel(), dtype=s.dtype)
        (g,) = torch.autograd.grad((val * lin).sum(), x, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), x)
        out[method] = (val.detach(), g.detach(), hv)
    for a, b in zip(out["exact"], out["fast"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(
    "loss, method",
    [pytest.param(lo, me, id=f"{lo.name}-{me}") for lo in TWINS for me in lo.methods],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_backends_agree(loss, method, dtype):
    """Rust and the torch twin with weights: values, gradients, Hessian-vector products (where
    second derivatives exist)."""
    s, y, m, w, _ = weighted_batch(7, 6, 11)
    v = torch.randn(s.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    out = {}
    for backend in BACKENDS:
        x = _t(s, dtype).requires_grad_()
        val = loss.call(x, _t(y, dtype), _t(m), "none", _t(w, dtype), backend, method)
        (g,) = torch.autograd.grad(val.sum(), x, create_graph=loss.second)
        hv = torch.autograd.grad((g * v).sum(), x)[0] if loss.second else g
        out[backend] = (val.detach(), g.detach(), hv)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for a, b in zip(out["rust"], out["torch"]):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_weighted_hessian_is_exact():
    """The HVPs (approx: fused Rust and torch; RankNet: torch on both) equal torch.func.hessian
    of the weighted loss."""
    s, y, m, w, _ = _grad_inputs(8)
    for backend in BACKENDS:
        for fn in (
            partial(rankgrad.approx_ndcg_loss, method="exact"),
            partial(rankgrad.approx_mrr_loss, method="exact"),
            partial(rankgrad.approx_rank_mse_loss, method="exact"),
            partial(rankgrad.ranknet_loss, sigma=1.7),
        ):

            def total(x, fn=fn):
                return fn(x, y, mask=m, weights=w, reduction="sum", backend=backend)

            h = torch.func.hessian(total)(s)
            hr = torch.func.jacrev(torch.func.grad(total))(s)
            torch.testing.assert_close(h, hr, rtol=1e-10, atol=1e-13)
            assert h.abs().max() > 1e-6


# ---------------------------------------------------------------- zero weights and counting
def test_zero_weights_leave_lists_out_of_the_mean():
    """A list whose relevant items all weigh 0 has nothing to rank against: loss 0, zero
    gradient, not counted (as SPEC 2's degenerate lists); RankMSE and ListMLE weigh every item,
    so only an all-zero list drops out there."""
    s = torch.tensor(
        [[0.5, 2.0, -1.0, 0.3], [1.0, 0.2, 0.1, -0.4], [0.0, 1.0, 2.0, 3.0]], dtype=torch.float64
    )
    y = torch.tensor([[1.0, 0.0, 2.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 3.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.5, 2.0, 1.5]], dtype=torch.float64)
    for loss in LOSSES:
        for backend in loss.backends:
            x = s.clone().requires_grad_()
            none = loss.call(x, y, None, "none", w, backend)
            mean = loss.call(x, y, None, "mean", w, backend)
            every_item = loss.name.startswith(("approx_rank_mse", "listmle"))
            assert none[1] == 0
            counted = [0, 2] if every_item else [2]
            torch.testing.assert_close(mean, none[counted].sum() / len(counted), rtol=1e-12, atol=1e-15)
            (g,) = torch.autograd.grad(none.sum(), x)
            assert (g[1] == 0).all()
            if not every_item:
                assert none[0] == 0 and (g[0] == 0).all()


def test_list_weights_weighted_mean_and_zero_total():
    s, y, m, _, _ = weighted_batch(9)
    for loss in LOSSES:
        for backend in loss.backends:
            per = _np(loss.call(s, y, m, "none", None, backend))
            lw = np.linspace(0.0, 2.0, s.shape[0])
            _, valid = ref_batch(loss.ref, s, y, m, None)
            got = _np(loss.call(s, y, m, "mean", lw, backend))
            np.testing.assert_allclose(got, (lw * per).sum() / (lw * valid).sum(), rtol=1e-12)
            assert _np(loss.call(s, y, m, "mean", np.zeros(s.shape[0]), backend)) == 0.0


# ---------------------------------------------------------------- bad weights
BAD_VALUES = [-1.0, NAN, INF, -INF]


@pytest.mark.parametrize("loss, backend, method", _cases([lo for lo in LOSSES if lo.methods[0] != "fast"]))
def test_bad_weights_name_weights(loss, backend, method):
    s, y, m, w, lw = weighted_batch(10, 5, 6)
    w = np.where(m, np.abs(np.nan_to_num(w)), w)
    for bad in BAD_VALUES:
        for kind in ("item", "list"):
            wb = w.copy() if kind == "item" else lw.copy()
            if kind == "item":
                wb[2, np.flatnonzero(m[2])[0]] = bad
            else:
                wb[2] = bad
            for conv in (np.asarray, _t):
                with pytest.raises(ValueError, match=r"weights.*list 2"):
                    loss.call(conv(s), conv(y), conv(m), "mean", conv(wb), backend, method)
    for shape in [(4,), (5, 5), (6,), (1, 6), (5, 6, 1), ()]:
        for conv in (np.asarray, _t):
            with pytest.raises(ValueError, match="weights"):
                loss.call(conv(s), conv(y), conv(m), "mean", conv(np.ones(shape)), backend, method)
    with pytest.raises(TypeError, match="weights"):
        loss.call(s, y, m, "mean", [[1.0] * 6] * 5, backend, method)
    with pytest.raises(TypeError, match="weights"):
        loss.call(s, y, m, "mean", _t(w), backend, method)  # a tensor for numpy scores
    with pytest.raises(TypeError, match="weights"):
        loss.call(_t(s), _t(y), _t(m), "mean", _t(w).to(torch.complex128), backend, method)
    with pytest.raises(ValueError, match="weights is on meta"):
        loss.call(_t(s), _t(y), _t(m), "mean", _t(w).to("meta"), backend, method)
    # integer and bool weights are real numbers; numpy weights with tensor scores are converted
    loss.call(_t(s), _t(y), _t(m), "mean", np.ones(s.shape, dtype=np.int32), backend, method)
    loss.call(s, y, m, "mean", np.ones(s.shape, dtype=bool), backend, method)


def test_bad_weights_inside_the_op_on_both_paths():
    """The op checks per-item weights itself: the Rust kernels always, the torch twin with
    validate (the public functions leave tensors' per-item weights to it)."""
    s, y, m, w, _ = _grad_inputs(11)
    w = torch.where(m, w.abs().nan_to_num(), w)
    w[0, 0] = -1.0
    for native in (False, True):
        with pytest.raises(ValueError, match="weights"):
            torch.ops.rankgrad.approx_loss(
                s, y, m, w, 1.0, "ndcg", True, "none", "exact", native, True, False
            )
    # validate=False on the torch path reads no values (no device sync): no error
    torch.ops.rankgrad.approx_loss(s, y, m, w, 1.0, "ndcg", True, "none", "exact", True, False, False)


# ---------------------------------------------------------------- nn modules
def test_nn_modules_take_weights():
    s, y, m, w, lw = _grad_inputs(12)
    cases = [
        (rnn.ApproxNDCGLoss(0.7), lambda *a, **k: rankgrad.approx_ndcg_loss(*a, temperature=0.7, **k)),
        (
            rnn.ApproxMRRLoss(0.5, reduction="sum"),
            lambda *a, **k: rankgrad.approx_mrr_loss(*a, temperature=0.5, reduction="sum", **k),
        ),
        (
            rnn.ApproxRankMSELoss(discount="log2"),
            lambda *a, **k: rankgrad.approx_rank_mse_loss(*a, discount="log2", **k),
        ),
        (rnn.SoftmaxLoss(normalize=False), lambda *a, **k: listwise.softmax_loss(*a, normalize=False, **k)),
        (rnn.ListMLELoss(reduction="none"), lambda *a, **k: listwise.listmle_loss(*a, reduction="none", **k)),
        (rnn.RankNetLoss(sigma=2.0), lambda *a, **k: rankgrad.ranknet_loss(*a, sigma=2.0, **k)),
        (rnn.LambdaRankLoss(norm=True), lambda *a, **k: rankgrad.lambdarank_loss(*a, norm=True, **k)),
        (rnn.LambdaLoss("lambdarank", k=4), lambda *a, **k: listwise.lambda_loss(*a, "lambdarank", k=4, **k)),
    ]
    for module, fn in cases:
        for weights in (w, lw, None):
            x = s.clone().requires_grad_()
            got = module(x, y, m, weights)
            torch.testing.assert_close(got, fn(s, y, mask=m, weights=weights), rtol=0, atol=0)
            got.sum().backward()
            assert torch.isfinite(x.grad).all()
        torch.testing.assert_close(module(s, y, m, weights=w), module(s, y, m, w))


# ---------------------------------------------------------------- Rax itself
@pytest.fixture(scope="module")
def rax():
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    rax = pytest.importorskip("rax")
    import jax

    jax.config.update("jax_enable_x64", True)
    return rax


def _rax_batch(seed: int, b: int = 6, n: int = 8):
    """Real-valued scores without ties, labels 0..3, a mask, per-item weights (0 on padded items
    for Rax, NaN for rankgrad, which ignores them) and per-list weights."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(b, n)) * 1.5
    y = rng.integers(0, 4, size=(b, n)).astype(np.float64)
    m = rng.random((b, n)) > 0.25
    m[:, :2] = True
    y[:, 0] = 1.0  # every list has a relevant item
    w = rng.uniform(0.1, 3.0, size=(b, n))
    w[rng.random((b, n)) < 0.15] = 0.0
    w[:, 0] = 1.0
    w_rax = np.where(m, w, 0.0)
    w_ours = np.where(m, w, NAN)
    lw = rng.uniform(0.0, 2.0, size=b)
    return s, y, m, w_rax, w_ours, lw


def _j(x):
    import jax.numpy as jnp

    return jnp.asarray(x)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_approx_ndcg_against_rax(rax, backend, t):
    """`approx_ndcg_loss(s, y, temperature=T, weights=w)` per list = `1 +
    rax.approx_t12n(rax.ndcg_metric, temperature=T)(s, y, where=m, weights=w, reduce_fn=None)`
    (Rax's loss is `-ndcg`, ours `1 - ndcg`; its `step_fn` is `sigmoid(x / T)`, our T). A `[B]`
    weight: our mean is `sum_b w_b (1 + rax_b) / sum_b w_b` (Rax has no per-list weights)."""
    s, y, m, w_rax, w_ours, lw = _rax_batch(int(t * 10))
    approx_ndcg = rax.approx_t12n(rax.ndcg_metric, temperature=t)
    for weights_rax, weights_ours in ((None, None), (w_rax, w_ours)):
        want = 1.0 + np.asarray(approx_ndcg(_j(s), _j(y), where=_j(m), weights=weights_rax, reduce_fn=None))
        got = rankgrad.approx_ndcg_loss(
            s, y, t, mask=m, weights=weights_ours, reduction="none", backend=backend
        )
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        # gradients: jax.grad of Rax's summed loss
        import jax

        gw = jax.grad(lambda x: approx_ndcg(x, _j(y), where=_j(m), weights=weights_rax, reduce_fn=jnp_sum()))(
            _j(s)
        )
        x = _t(s).requires_grad_()
        wt = None if weights_ours is None else _t(weights_ours)
        rankgrad.approx_ndcg_loss(
            x, _t(y), t, mask=_t(m), weights=wt, reduction="sum", backend=backend
        ).backward()
        np.testing.assert_allclose(x.grad.numpy(), np.asarray(gw), rtol=1e-9, atol=1e-12)
    per = 1.0 + np.asarray(approx_ndcg(_j(s), _j(y), where=_j(m), reduce_fn=None))
    got = rankgrad.approx_ndcg_loss(s, y, t, mask=m, weights=lw, backend=backend)
    np.testing.assert_allclose(got, (lw * per).sum() / lw.sum(), rtol=1e-10)


def jnp_sum():
    import jax.numpy as jnp

    return jnp.sum


@pytest.mark.parametrize("backend", BACKENDS)
def test_approx_mrr_against_rax(rax, backend):
    """`approx_mrr_loss` per list = `1 + rax.approx_t12n(rax.mrr_metric, temperature=T)(s, y,
    where=m, reduce_fn=None)` on labels 0..3 (Rax counts `y >= 1` as relevant, rankgrad clips
    `y` to [0, 1]: the same on integer labels). Rax 0.4.0's `mrr_metric` takes no weights, so
    only per-list weights are compared (our weighted mean of Rax's per-list values)."""
    s, y, m, _, _, lw = _rax_batch(21)
    for t in (0.5, 1.0):
        per = 1.0 + np.asarray(
            rax.approx_t12n(rax.mrr_metric, temperature=t)(_j(s), _j(y), where=_j(m), reduce_fn=None)
        )
        got = rankgrad.approx_mrr_loss(s, y, t, mask=m, reduction="none", backend=backend)
        np.testing.assert_allclose(got, per, rtol=1e-10, atol=1e-12)
        got = rankgrad.approx_mrr_loss(s, y, t, mask=m, weights=lw, backend=backend)
        np.testing.assert_allclose(got, (lw * per).sum() / lw.sum(), rtol=1e-10)


def test_softmax_against_rax(rax):
    """`softmax_loss(normalize=False, weights=w)` per list = `rax.softmax_loss(s, y, where=m,
    weights=w, reduce_fn=None)` (Rax: `labels *= weights`, its default `label_fn` keeps them
    unnormalised); `normalize=True` = Rax with `label_fn=rax.utils.normalize_probabilities`."""
    s, y, m, w_rax, w_ours, lw = _rax_batch(31)
    for normalize, label_fn in ((False, None), (True, rax.utils.normalize_probabilities)):
        kw = {} if label_fn is None else {"label_fn": label_fn}
        for weights_rax, weights_ours in ((None, None), (w_rax, w_ours)):
            want = np.asarray(
                rax.softmax_loss(_j(s), _j(y), where=_j(m), weights=weights_rax, reduce_fn=None, **kw)
            )
            got = listwise.softmax_loss(s, y, m, "none", weights=weights_ours, normalize=normalize)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        per = np.asarray(rax.softmax_loss(_j(s), _j(y), where=_j(m), reduce_fn=None, **kw))
        got = listwise.softmax_loss(s, y, m, weights=lw, normalize=normalize)
        np.testing.assert_allclose(got, (lw * per).sum() / lw.sum(), rtol=1e-10)


def test_listmle_against_rax(rax):
    """`listmle_loss` per list = `rax.listmle_loss(s, y, where=m, reduce_fn=None)` (both sort by
    labels descending, ties in input order: jax.lax.sort is stable). Rax 0.4.0's `listmle_loss`
    takes no weights: per-item weights are checked against the transcription above, per-list
    weights here (our weighted mean of Rax's per-list values)."""
    s, y, m, _, _, lw = _rax_batch(41)
    per = np.asarray(rax.listmle_loss(_j(s), _j(y), where=_j(m), reduce_fn=None))
    np.testing.assert_allclose(listwise.listmle_loss(s, y, m, "none"), per, rtol=1e-10, atol=1e-12)
    got = listwise.listmle_loss(s, y, m, weights=lw)
    np.testing.assert_allclose(got, (lw * per).sum() / lw.sum(), rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_ranknet_against_rax(rax, backend, sigma):
    """`ranknet_loss(s, y, sigma, weights=w, reduction="none")` per list = Rax's
    `pairwise_logistic_loss(sigma * s, y, where=m, weights=w, reduce_fn=jnp.mean)` on that list
    alone (jax.vmap: Rax's mean over the list's valid pairs, each pair `y_i > y_j` times `w_i`;
    Rax has no sigma, so the scores are scaled). Rax's own batch reduction differs: its default
    `reduce_fn=jnp.mean` averages every valid pair of the batch at once, i.e. our per-list values
    weighted by their pair counts `P_b`; `jnp.sum` sums the pairs, i.e. `sum_b P_b loss_b`. A
    `[B]` weight is our weighted mean of the per-list values."""
    import jax
    import jax.numpy as jnp

    s, y, m, w_rax, w_ours, lw = _rax_batch(51 + int(sigma))
    pairs = ((y[:, :, None] > y[:, None, :]) & m[:, :, None] & m[:, None, :]).sum((1, 2)).astype(float)

    def per_list(x, lab, mk, wt):
        return rax.pairwise_logistic_loss(x, lab, where=mk, weights=wt, reduce_fn=jnp.mean)

    for weights_rax, weights_ours in ((np.ones_like(s), None), (w_rax, w_ours)):
        want = np.asarray(jax.vmap(per_list)(_j(sigma * s), _j(y), _j(m), _j(weights_rax)))
        got = rankgrad.ranknet_loss(s, y, sigma, m, "none", weights=weights_ours, backend=backend)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
        batch = rax.pairwise_logistic_loss(_j(sigma * s), _j(y), where=_j(m), weights=_j(weights_rax))
        np.testing.assert_allclose((pairs * got).sum() / pairs.sum(), float(batch), rtol=1e-10)
        total = rax.pairwise_logistic_loss(
            _j(sigma * s), _j(y), where=_j(m), weights=_j(weights_rax), reduce_fn=jnp.sum
        )
        np.testing.assert_allclose((pairs * got).sum(), float(total), rtol=1e-10)
        # gradients: jax.grad of Rax's per-list means, summed
        gw = jax.grad(lambda x: jax.vmap(per_list)(sigma * x, _j(y), _j(m), _j(weights_rax)).sum())(_j(s))
        x = _t(s).requires_grad_()
        wt = None if weights_ours is None else _t(weights_ours)
        rankgrad.ranknet_loss(x, _t(y), sigma, _t(m), "sum", weights=wt, backend=backend).backward()
        np.testing.assert_allclose(x.grad.numpy(), np.asarray(gw), rtol=1e-9, atol=1e-12)
    per = np.asarray(jax.vmap(per_list)(_j(sigma * s), _j(y), _j(m), _j(np.ones_like(s))))
    got = rankgrad.ranknet_loss(s, y, sigma, m, weights=lw, backend=backend)
    np.testing.assert_allclose(got, (lw * per).sum() / lw.sum(), rtol=1e-10)
