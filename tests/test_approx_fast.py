"""Fast summation (`rankgrad.approx._fast`, `method="fast"` of the torch twin) against plain
float64 pair sums, over many score distributions, temperatures, masks and sizes.

The contract (float64): ranks within `1e-10 max(1, |r|)` elementwise; `J^T c` within
`1e-10 max_k S_k`, `S_k` the same sum over the absolute values of its terms
(`(1/T) sum_i sigmoid'(.) (|c_i| + |c_k|)`), and d<v, J^T c>/ds likewise
(`(1/T^2) sum_k |sigmoid''(.)| (|c_k| + |c_l|)(|v_l| + |v_k|)`; see `VJP_GRAD_RTOL`), plus a
rounding floor for lists where S vanishes (all ties). float32: no worse than 4x the exact float32
kernel's own error against float64, or 1e-6 relative, whichever is larger.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, List, Optional, Tuple

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rankgrad
from rankgrad.approx import _fast, _native

RTOL = 1e-10
# sigmoid'' has triple poles at +-i pi: with p = 12 nodes on cells of width T its interpolation is
# off by up to ~2.5e-12 absolutely and, near the diagonal at a cell's edge, ~2.3e-9 relative to
# sigmoid'' itself, which is what S measures when a whole list spans much less than T. p >= 14
# brings that under 2e-11 (see the docstring of rankgrad.approx._fast).
VJP_GRAD_RTOL = RTOL if _fast.FAST_NODES >= 14 else 5e-9
FLOOR = 1e-15  # rounding floor, times n max|c| (max|v|) / T (T^2): where S is 0 (exact ties)

DISTRIBUTIONS = (
    "normal",
    "cauchy",
    "clusters",
    "ties",
    "equal",
    "offset",
    "huge",
    "logspread",
    "mixed",
)


# ---------------------------------------------------------------- the plain float64 reference
def _kernels(d: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    p, q = torch.sigmoid(d), torch.sigmoid(-d)
    d1 = p * q
    return p, d1, -d1 * torch.tanh(0.5 * d)


def reference(
    s: torch.Tensor,
    m: Optional[torch.Tensor],
    t: float,
    c: torch.Tensor,
    v: torch.Tensor,
    rows: Optional[List[torch.Tensor]] = None,
) -> Tuple[torch.Tensor, ...]:
    """(r, J^T c, d<v, J^T c>/ds, S of J^T c, S of the latter) `[B, N]` float64, pair by pair
    (row chunks), at the real items (only `rows[b]`, indices among list b's real items, if given)."""
    s, c, v = s.double(), c.double(), v.double()
    b, n = s.shape
    m = torch.ones(b, n, dtype=torch.bool) if m is None else m
    out = [torch.zeros(b, n, dtype=torch.float64) for _ in range(5)]
    for k in range(b):
        idx = m[k].nonzero()[:, 0]
        xs, cs, vs = s[k, idx], c[k, idx], v[k, idx]
        sel = torch.arange(len(idx)) if rows is None else rows[k]
        for a in range(0, len(sel), 512):
            r = sel[a : a + 512]
            sig, d1, d2 = _kernels((xs[None, :] - xs[r, None]) / t)  # x_j - x_i
            at = idx[r]
            out[0][k, at] = 0.5 + sig.sum(1)
            out[1][k, at] = (d1 @ cs - cs[r] * d1.sum(1)) / t
            out[3][k, at] = (d1 @ cs.abs() + cs[r].abs() * d1.sum(1)) / t
            w = -d2  # sigmoid''(x_l - x_k)
            dc, dv = cs[None, :] - cs[r, None], vs[r, None] - vs[None, :]
            out[2][k, at] = (w * dc * dv).sum(1) / t**2
            ac, av = cs[None, :].abs() + cs[r, None].abs(), vs[r, None].abs() + vs[None, :].abs()
            out[4][k, at] = (w.abs() * ac * av).sum(1) / t**2
    return tuple(out)


# ---------------------------------------------------------------- score distributions
def scores(rng: np.random.Generator, kind: str, b: int, n: int, t: float, dtype: torch.dtype) -> np.ndarray:
    """`[b, n]` scores of one distribution (some in units of T, to reach both branches)."""
    shape = (b, n)
    if kind == "normal":
        x = rng.normal(size=shape) * (t if rng.random() < 0.5 else 1.0)
    elif kind == "cauchy":
        x = rng.standard_cauchy(shape) * (t if rng.random() < 0.5 else 1.0)
    elif kind == "clusters":  # two tight clusters far apart (in units of T)
        far = rng.choice([3.0, 50.0, 1e4])
        x = (rng.normal(0, 0.01, shape) + far * (rng.random(shape) < 0.5)) * t
    elif kind == "ties":
        x = np.round(rng.normal(0, 3, shape) * rng.choice([1.0, 10.0])) * (t if rng.random() < 0.5 else 1.0)
    elif kind == "equal":
        x = np.full(shape, rng.normal())
    elif kind == "offset":
        x = 1e6 + rng.normal(size=shape) * (t if rng.random() < 0.5 else 1.0)
    elif kind == "huge":  # float64: +-1e30 + N(0, T^2), T ~ 1e14..1e19 (`temperature`), ulp 1.4e14
        big = 1e30 if dtype == torch.float64 else 1e6
        x = big * rng.choice([-1.0, 1.0], size=shape) + rng.normal(size=shape) * t
    elif kind == "logspread":
        x = rng.choice([-1.0, 1.0], size=shape) * 10.0 ** rng.uniform(-30, 30, shape)
    else:  # "mixed": a dense cluster, a sparse run (one item a cell, gaps < D) and isolated items
        k = rng.integers(0, n + 1, size=3)
        x = np.concatenate(
            [
                rng.normal(size=(b, n)),
                30 + np.cumsum(rng.uniform(0.5, 6, size=(b, n)), axis=1),
                rng.uniform(-1e5, -1e3, size=(b, n)),
            ],
            axis=1,
        )
        x = np.stack(
            [
                rng.permutation(np.concatenate([x[i, : k[0]], x[i, n : n + k[1]], x[i, 2 * n :]]))[:n]
                for i in range(b)
            ]
        )
        x = x * t
    if dtype == torch.float32:
        x = np.clip(x, -1e37, 1e37)
    return x


def temperature(kind: str, t: float, dtype: torch.dtype) -> float:
    """The case's temperature: "huge" scores in float64 take a tiny one for their 1e30 scale."""
    return t * 1e16 if kind == "huge" and dtype == torch.float64 else t


def make_case(
    seed: int, kind: str, b: int, n: int, t: float, pad: float, dtype: torch.dtype
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor, torch.Tensor]:
    """(scores, mask or None, c, v): padded positions hold NaN / +-inf / huge values."""
    rng = np.random.default_rng(seed)
    s = torch.tensor(scores(rng, kind, b, n, t, dtype), dtype=dtype)
    c = torch.tensor(rng.normal(size=(b, n)) * (rng.random((b, n)) < 0.9), dtype=dtype)
    v = torch.tensor(rng.normal(size=(b, n)), dtype=dtype)
    if pad == 0:
        return s, None, c, v
    m = torch.tensor(rng.random((b, n)) >= pad)
    junk = torch.tensor(rng.choice([math.nan, math.inf, -math.inf, 1e30], size=(b, n)), dtype=dtype)
    s, c, v = (torch.where(m, x, junk) for x in (s, c, v))
    return s, m, c, v


@contextlib.contextmanager
def branch(name: str) -> Iterator[None]:
    """Force every segment to be interpolated ("interp") or summed directly ("direct")."""
    saved = (_fast.FAST_MIN_SEGMENT, _fast.FAST_MIN_OCCUPANCY)
    if name == "interp":
        _fast.FAST_MIN_SEGMENT, _fast.FAST_MIN_OCCUPANCY = 1, 0.0
    elif name == "direct":
        _fast.FAST_MIN_SEGMENT = 1 << 62
    try:
        yield
    finally:
        _fast.FAST_MIN_SEGMENT, _fast.FAST_MIN_OCCUPANCY = saved


def fast_all(s, m, t, c, v):  # type: ignore[no-untyped-def]
    return _fast.ranks(s, m, t), _fast.vjp(s, m, t, c), _fast.vjp_grad(s, m, t, c, v)


def exact_all(s, m, t, c, v):  # type: ignore[no-untyped-def]
    return _native.exact_ranks(s, m, t), _native.exact_vjp(s, m, t, c), _native.exact_vjp_grad(s, m, t, c, v)


def errors(got, ref, m, c, v, t, rtol_g=RTOL, rtol_h=None):  # type: ignore[no-untyped-def]
    """Per list `[B]` each: max_i |r - R| / max(1, |R|), and the vjp / vjp_grad errors in units
    of their bounds `rtol max_k S_k + floor` (within the contract: <= 1)."""
    rtol_h = VJP_GRAD_RTOL if rtol_h is None else rtol_h
    r, g, h = (x.double() for x in got)
    rr, gg, hh, sg, sh = ref
    b, n = r.shape
    if n == 0:
        return (torch.zeros(b, dtype=torch.float64),) * 3
    mm = torch.ones(b, n, dtype=torch.bool) if m is None else m
    zero = torch.zeros((), dtype=torch.float64)
    cm = torch.where(mm, c.double(), zero).abs().amax(-1)
    vm = torch.where(mm, v.double(), zero).abs().amax(-1)
    cnt = mm.sum(-1).double()
    er = torch.where(mm, (r - rr).abs() / rr.abs().clamp(min=1), zero).amax(-1)
    bound_g = rtol_g * sg.amax(-1) + FLOOR * cnt * cm / t
    bound_h = rtol_h * sh.amax(-1) + FLOOR * cnt * cm * vm / t**2
    eg = torch.where(mm, (g - gg).abs(), zero).amax(-1)
    eh = torch.where(mm, (h - hh).abs(), zero).amax(-1)
    return er, (eg / bound_g).nan_to_num(0.0), (eh / bound_h).nan_to_num(0.0)


def check_padding(out: Tuple[torch.Tensor, ...], s: torch.Tensor, m: Optional[torch.Tensor]) -> None:
    for x in out:
        assert x.dtype == s.dtype and x.shape == s.shape
        if m is not None:
            assert (x[~m] == 0).all()
        assert torch.isfinite(x).all()


# ---------------------------------------------------------------- hypothesis: float64 and float32
CASES = st.tuples(
    st.integers(0, 2**32 - 1),
    st.sampled_from(DISTRIBUTIONS),
    st.integers(1, 3),
    st.one_of(st.integers(0, 5), st.integers(6, 130), st.integers(200, 420)),
    st.sampled_from([0.01, 0.1, 0.37, 1.0, 3.0, 10.0, 100.0, 1000.0]),
    st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.97]),
)


@pytest.mark.parametrize("path", ["rule", "interp", "direct"])
@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=CASES)
def test_float64_within_contract(path: str, case: tuple) -> None:
    seed, kind, b, n, t, pad = case
    t = temperature(kind, t, torch.float64)
    s, m, c, v = make_case(seed, kind, b, n, t, pad, torch.float64)
    with branch(path):
        got = fast_all(s, m, t, c, v)
    check_padding(got, s, m)
    er, eg, eh = errors(got, reference(s, m, t, c, v), m, c, v, t)
    assert er.max() <= RTOL, (kind, t, er)
    assert eg.max() <= 1, (kind, t, eg)
    assert eh.max() <= 1, (kind, t, eh)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=CASES)
def test_float32_no_worse_than_exact(case: tuple) -> None:
    seed, kind, b, n, t, pad = case
    s, m, c, v = make_case(seed, kind, b, n, t, pad, torch.float32)
    got = fast_all(s, m, t, c, v)
    check_padding(got, s, m)
    ref = reference(s, m, t, c, v)
    # errors in units of 1e-6 S + floor: fast within max(4 x exact's, 1)
    fast = errors(got, ref, m, c, v, t, 1e-6, 1e-6)
    exact = errors(exact_all(s, m, t, c, v), ref, m, c, v, t, 1e-6, 1e-6)
    for name, f, e, unit in zip(("ranks", "vjp", "vjp_grad"), fast, exact, (1e-6, 1, 1)):
        assert (f <= torch.clamp(4 * e, min=unit)).all(), (name, kind, t, f, e)


def test_contract_with_more_nodes_for_sigmoid2() -> None:
    """The vjp_grad case p = 12 misses (a list much narrower than T, S tiny): 14 nodes meet
    the 1e-10 contract there (the fix to take up with the Rust twin's constants)."""
    s, m, c, v = make_case(7, "normal", 2, 400, 1000.0, 0.1, torch.float64)
    ref = reference(s, m, 1000.0, c, v)
    saved = _fast.FAST_NODES
    try:
        _fast.FAST_NODES = 14
        eh14 = errors(fast_all(s, m, 1000.0, c, v), ref, m, c, v, 1000.0, rtol_h=RTOL)[2]
    finally:
        _fast.FAST_NODES = saved
    eh = errors(fast_all(s, m, 1000.0, c, v), ref, m, c, v, 1000.0)[2]
    assert eh14.max() <= 1
    assert eh.max() <= 1


# ---------------------------------------------------------------- edge cases
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_and_single(dtype: torch.dtype) -> None:
    for b, n in ((0, 5), (3, 0), (0, 0)):
        s = torch.zeros(b, n, dtype=dtype)
        for x in fast_all(s, None, 1.0, s, s):
            assert x.shape == (b, n) and x.dtype == dtype
    s = torch.tensor([[3.0, math.nan, 1.0], [math.inf, 2.0, -math.inf], [0.0, 0.0, 0.0]], dtype=dtype)
    m = torch.tensor([[True, False, False], [False, True, False], [False, False, False]])
    c = torch.tensor([[1.0, math.nan, 2.0], [5.0, -1.0, math.inf], [1.0, 1.0, 1.0]], dtype=dtype)
    r, g, h = fast_all(s, m, 0.5, c, c)
    assert r.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert (g == 0).all() and (h == 0).all()


def test_all_equal_exact_values() -> None:
    s = torch.full((2, 300), 1.5, dtype=torch.float64)
    c = torch.randn(2, 300, dtype=torch.float64)
    r, g, h = fast_all(s, None, 1.0, c, c)
    torch.testing.assert_close(r, torch.full_like(r, 150.5), rtol=1e-13, atol=0)  # 1 + (n - 1) / 2
    exact_g = (c.sum(-1, keepdim=True) - 300 * c) / 4  # sigmoid'(0) = 1/4
    torch.testing.assert_close(g, exact_g, rtol=0, atol=1e-10 * exact_g.abs().max().item())
    assert h.abs().max() < 1e-12


def test_segment_breaks_and_overflowing_gaps() -> None:
    """Scores 1e308 apart (their difference overflows), tiny T: every pair saturated."""
    s = torch.tensor([[1e308, -1e308, 0.0, 5e-324, -1e-300, 1e300, 1.7e308, -1.7e308]], dtype=torch.float64)
    r = _fast.ranks(s, None, 1e-300)
    ref = reference(s, None, 1e-300, s * 0, s * 0)[0]
    torch.testing.assert_close(r, ref, rtol=1e-15, atol=0)


# ---------------------------------------------------------------- fixed large cases
@pytest.mark.parametrize("kind", ["normal", "cauchy", "mixed", "ties"])
def test_large_lists(kind: str) -> None:
    """2 x 5,000, every item against the full reference."""
    s, m, c, v = make_case(11, kind, 2, 5000, 1.0, 0.05, torch.float64)
    er, eg, eh = errors(fast_all(s, m, 1.0, c, v), reference(s, m, 1.0, c, v), m, c, v, 1.0)
    assert er.max() <= RTOL and eg.max() <= 1 and eh.max() <= 1, (er, eg, eh)


@pytest.mark.parametrize("t", [0.05, 1.0])
def test_50k_list_sampled(t: float) -> None:
    """One 50,000-item list, 300 random items against an item-wise reference."""
    s, m, c, v = make_case(3, "normal", 1, 50_000, 1.0, 0.02, torch.float64)
    rows = [torch.randperm(int(m[0].sum()), generator=torch.Generator().manual_seed(0))[:300]]
    ref = reference(s, m, t, c, v, rows)
    got = fast_all(s, m, t, c, v)
    at = m[0].nonzero()[:, 0][rows[0]]
    r, g, h = (x[0, at].double() for x in got)
    rr, gg, hh, sg, sh = (x[0, at] for x in ref)
    assert ((r - rr).abs() / rr.abs().clamp(min=1)).max() <= RTOL
    assert (g - gg).abs().max() <= RTOL * sg.max()
    assert (h - hh).abs().max() <= VJP_GRAD_RTOL * sh.max()


# ---------------------------------------------------------------- through the public functions
LOSSES = {
    "ndcg": lambda s, y, m, **kw: rankgrad.approx_ndcg_loss(s, y, 0.7, mask=m, **kw),
    "mrr": lambda s, y, m, **kw: rankgrad.approx_mrr_loss(s, y, 0.7, mask=m, **kw),
    "mse": lambda s, y, m, **kw: rankgrad.approx_rank_mse_loss(s, y, 0.7, "log2", mask=m, **kw),
    "ranks": lambda s, y, m, **kw: (rankgrad.approx_ranks(s, 0.7, m, **kw) * y).sum(),
}


def _derivatives(name: str, s: torch.Tensor, y, m, v, method: str):  # type: ignore[no-untyped-def]
    s = s.clone().requires_grad_(True)
    loss = LOSSES[name](s, y, m, method=method, backend="torch")
    (g,) = torch.autograd.grad(loss, s, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), s)
    return loss.detach(), g.detach(), hv


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_public_fast_equals_exact(name: str, dtype: torch.dtype) -> None:
    rng = np.random.default_rng(5)
    b, n = 3, 400
    s = torch.tensor(rng.normal(size=(b, n)) * 2, dtype=dtype)
    y = torch.tensor(rng.integers(0, 4, size=(b, n)), dtype=dtype)
    m = torch.tensor(rng.random((b, n)) > 0.2)
    m[2, 300:] = False
    v = torch.tensor(rng.normal(size=(b, n)), dtype=dtype)
    fast = _derivatives(name, s, y, m, v, "fast")
    exact = _derivatives(name, s, y, m, v, "exact")
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    for f, e in zip(fast, exact):
        assert f.dtype == dtype
        torch.testing.assert_close(f, e, rtol=tol, atol=tol * e.abs().max().item())


def test_auto_mixes_methods_per_list() -> None:
    rng = np.random.default_rng(9)
    long, short = _native.FAST_MIN_N + 40, _native.FAST_MIN_N - 56
    n = long + 10
    s = torch.tensor(rng.normal(size=(3, n)), dtype=torch.float64)
    m = torch.ones(3, n, dtype=torch.bool)
    m[0, long:] = False
    m[1, short:] = False
    m[2, 7:] = False
    auto = rankgrad.approx_ranks(s, 0.5, m, method="auto", backend="torch")
    exact = rankgrad.approx_ranks(s, 0.5, m, method="exact", backend="torch")
    fast = rankgrad.approx_ranks(s, 0.5, m, method="fast", backend="torch")
    torch.testing.assert_close(auto[1:], exact[1:], rtol=1e-14, atol=0)
    torch.testing.assert_close(auto[:1], fast[:1], rtol=1e-14, atol=0)
    assert not torch.equal(fast[0], exact[0])  # the long list really took the other method
    y = torch.tensor(rng.integers(0, 3, size=(3, n)), dtype=torch.float64)
    grads = {}
    for method in ("auto", "exact", "fast"):
        sg = s.clone().requires_grad_(True)
        rankgrad.approx_ndcg_loss(
            sg, y, 0.5, mask=m, reduction="sum", method=method, backend="torch"
        ).backward()
        grads[method] = sg.grad
    torch.testing.assert_close(grads["auto"][1:], grads["exact"][1:], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(grads["auto"][:1], grads["fast"][:1], rtol=1e-12, atol=1e-15)
