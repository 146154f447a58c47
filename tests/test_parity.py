"""Twin parity (SPEC section 10, issue 10 item 3): every function with a Rust path and a
torch-native path gets the same input matrix through ``backend="rust"`` and ``backend="torch"``
(CPU tensors) and must give the same outputs and gradients (float tolerance) or raise the same
exception type; when both succeed on finite real inputs, the results must be finite too (where
the true value is bounded; else inf, never NaN).

Also here (issue 17 items 6 and 7), for the pairwise and listwise families: every numpy layout
goes through the one conversion (results equal to the plain float64 call), and sparse or
quantized tensors are refused up front with a TypeError naming the argument.

SPEC 13's weights are variants too: ``{"weights": "item"}`` (``[B, N]``: 0, 0.25, ..., 1 on real
items, NaN on padded ones, which both backends must ignore) and ``{"weights": "list"}`` (``[B]``),
made by ``_weights`` for each case's shape.

To cover a new function, append one ``Twin`` to ``TWINS``. The input matrix is ``CASES`` (a fixed
list of edge cases plus seeded random batches) times ``DTYPES``; ``SCALE_CASES`` adds
temperature/sigma values at and beyond the allowed range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch

import rankgrad

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
REDUCTIONS = ("mean", "sum", "none")
# rtol/atol per dtype: float16/bfloat16 are computed in float32 and rounded once.
TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


# ---------------------------------------------------------------------------------- the registry


@dataclass
class Twin:
    """One public twin function. ``call(s, y, m, scale, reduction, backend, **opts)``."""

    name: str
    call: Callable[..., Any]
    variants: list = field(default_factory=lambda: [{}])
    reductions: tuple = REDUCTIONS  # () for functions without a reduction
    differentiable: bool = True
    has_scale: bool = True  # takes a temperature or sigma
    # outputs stay finite at finite extreme scores (a mean over pairs, a metric); False for
    # unnormalised sums over pairs, which may truly exceed the dtype's max: inf, never NaN
    bounded: bool = True


def _listwise():
    import rankgrad.listwise

    return rankgrad.listwise


def _approx(fn):
    return lambda s, y, m, scale, red, be, **o: fn(
        s, y, temperature=scale, mask=m, reduction=red, backend=be, **o
    )


TWINS = [
    Twin(
        "approx_ranks",
        lambda s, y, m, scale, red, be, **o: rankgrad.approx_ranks(
            s, temperature=scale, mask=m, backend=be, **o
        ),
        variants=[{}, {"method": "fast"}, {"method": "exact"}],
        reductions=(),
    ),
    Twin(
        "approx_ndcg_loss",
        _approx(rankgrad.approx_ndcg_loss),
        variants=[
            {"scale_gains": True},
            {"scale_gains": False},
            {"scale_gains": True, "method": "fast"},
            {"scale_gains": False, "method": "exact"},
            {"scale_gains": True, "weights": "item"},
            {"scale_gains": True, "method": "fast", "weights": "item"},
            {"scale_gains": False, "weights": "list"},
        ],
    ),
    Twin(
        "approx_mrr_loss",
        _approx(rankgrad.approx_mrr_loss),
        variants=[{}, {"method": "fast"}, {"weights": "item"}, {"method": "fast", "weights": "list"}],
    ),
    Twin(
        "approx_rank_mse_loss",
        _approx(rankgrad.approx_rank_mse_loss),
        variants=[
            {"discount": None},
            {"discount": "log2"},
            {"discount": "reciprocal"},
            {"discount": "log2", "method": "fast"},
            {"discount": "reciprocal", "weights": "item"},
            {"discount": None, "method": "fast", "weights": "item"},
        ],
    ),
    Twin(
        "ranknet_loss",
        lambda s, y, m, scale, red, be, **o: rankgrad.ranknet_loss(
            s, y, sigma=scale, mask=m, reduction=red, backend=be, **o
        ),
        variants=[{}, {"weights": "item"}, {"weights": "list"}],
    ),
    Twin(
        "lambdarank_loss",
        lambda s, y, m, scale, red, be, **o: rankgrad.lambdarank_loss(
            s, y, sigma=scale, mask=m, reduction=red, backend=be, **o
        ),
        variants=[
            {"norm": False},
            {"norm": True},
            {"norm": True, "truncation_level": 2},
            {"norm": False, "truncation_level": 1, "metric": "mrr"},
            {"norm": True, "metric": "mrr"},
            {"norm": False, "weights": "item"},
            {"norm": True, "truncation_level": 2, "weights": "item"},
            {"norm": True, "metric": "mrr", "weights": "item"},
            {"norm": False, "weights": "list"},
        ],
    ),
    Twin(
        "ndcg",
        lambda s, y, m, scale, red, be, **o: rankgrad.ndcg(s, y, mask=m, backend=be, **o),
        variants=[{}, {"k": 1}, {"k": 3, "scale_gains": False}, {"k": 10**6}],
        reductions=(),
        differentiable=False,
        has_scale=False,
    ),
    Twin(
        "mrr",
        lambda s, y, m, scale, red, be, **o: rankgrad.mrr(s, y, mask=m, backend=be, **o),
        variants=[{}, {"k": 1}, {"k": 2}],
        reductions=(),
        differentiable=False,
        has_scale=False,
    ),
    Twin(
        "lambda_loss",
        lambda s, y, m, scale, red, be, **o: _listwise().lambda_loss(
            s, y, sigma=scale, mask=m, reduction=red, backend=be, **o
        ),
        variants=[{"weighting": w} for w in ("ndcg1", "ndcg2", "lambdarank", "ndcg2pp", "ranknet")]
        + [
            {"weighting": "ndcg2pp", "k": 3, "mu": 2.0},
            {"weighting": "ndcg1", "k": 2, "scale_gains": False},
            {"weighting": "lambdarank", "k": 10**30},
            {"weighting": "ndcg2pp", "weights": "item"},
            {"weighting": "ndcg1", "k": 3, "weights": "item"},
            {"weighting": "ranknet", "weights": "list"},
        ],
        bounded=False,
    ),
    Twin(
        "softmax_loss",
        lambda s, y, m, scale, red, be, **o: rankgrad.softmax_loss(
            s, y, mask=m, reduction=red, backend=be, **o
        ),
        variants=[
            {"normalize": True},
            {"normalize": False},
            {"normalize": True, "weights": "item"},
            {"normalize": False, "weights": "list"},
        ],
        has_scale=False,
        bounded=False,  # -log softmax of an item 2 max below the top exceeds the range
    ),
    Twin(
        "listmle_loss",
        lambda s, y, m, scale, red, be, **o: rankgrad.listmle_loss(
            s, y, mask=m, reduction=red, backend=be, **o
        ),
        variants=[{}, {"weights": "item"}, {"weights": "list"}],
        has_scale=False,
        bounded=False,
    ),
    Twin(
        "average_precision",
        lambda s, y, m, scale, red, be, **o: rankgrad.average_precision(s, y, mask=m, backend=be, **o),
        variants=[{}, {"k": 1}, {"k": 3}, {"k": 10**6}],
        reductions=(),
        differentiable=False,
        has_scale=False,
    ),
    Twin(
        "recall",
        lambda s, y, m, scale, red, be, **o: rankgrad.recall(s, y, mask=m, backend=be, **o),
        variants=[{}, {"k": 1}, {"k": 3}],
        reductions=(),
        differentiable=False,
        has_scale=False,
    ),
    Twin(
        "precision",
        lambda s, y, m, scale, red, be, **o: rankgrad.precision(s, y, mask=m, backend=be, **o),
        variants=[{}, {"k": 1}, {"k": 3}, {"k": 10**6}],
        reductions=(),
        differentiable=False,
        has_scale=False,
    ),
]


# ------------------------------------------------------------------------------- the input matrix


def _never(name: str, variant: dict, reduction: Any) -> bool:
    return False


@dataclass
class Case:
    name: str
    make: Callable[[torch.dtype], tuple]  # dtype -> (scores, targets, mask or None) as float64 numpy
    scale: float = 1.0
    # (twin name, variant, reduction) -> whether the true value of a bounded twin may exceed the
    # dtype's range on this case (sigma > 1 at huge scores): then inf is allowed there, NaN never
    may_overflow: Callable[[str, dict, Any], bool] = _never
    only: tuple = ()  # the twins this case is for (all when empty)


def _overflows_with_sigma(sigma):
    """On `_extreme` RankNet's per-list means (over 5 pairs, two misordered by ~0.9 max each)
    stay within the range up to sigma 2 (0.72 max), beyond from sigma 4 on; their sum over the
    lists exceeds it from sigma 2 on ("mean" does not: `_inputs.reduce` scales the losses first
    when their sum overflows). LambdaRank without norm sums delta * sigma * |gap|."""

    def f(name, variant, reduction):
        if name == "ranknet_loss":
            return sigma > 2 or (sigma > 1 and reduction == "sum")
        return name == "lambdarank_loss" and not variant.get("norm")

    return f


def _fixed(s, y, m=None):
    return lambda dt: (
        np.asarray(s, dtype=np.float64),
        np.asarray(y, dtype=np.float64),
        m if m is None else np.asarray(m),
    )


def _big(dt):
    return 0.9 * float(torch.finfo(dt).max)


def _extreme(dt):
    v = _big(dt)
    s = [[v, -v, 0.0, 1.0], [v, v, -v, -v], [-v, 0.5, v, 0.25]]
    return np.array(s), np.array([[1.0, 1, 0, 2], [2, 0, 1, 0], [0, 3, 1, 1]]), None


def _extreme_padded(dt):
    v = _big(dt)
    s = np.array([[v, -v, 3.0, 1.0, 2.0]])
    return s, np.array([[2.0, 0, 1, 0, 1]]), np.array([[True, True, False, True, True]])


def _one_pair_at_max(dt):
    """One list of 64: +max (label 0) and -max (label 4) among items with small scores and labels
    0..4: the misordered pair's gap is 2 max, while RankNet's mean over its ~1500 pairs fits."""
    v = float(torch.finfo(dt).max)
    rng = np.random.default_rng(11)
    s = np.round(rng.normal(size=(1, 64)) * 4) / 4
    y = rng.integers(0, 5, size=(1, 64)).astype(np.float64)
    s[0, 5], s[0, 40] = v, -v
    y[0, 5], y[0, 40] = 0.0, 4.0
    return s, y, None


def _random(seed, b, n, levels=4, pad=0.25, ties=True):
    def make(dt):
        rng = np.random.default_rng(seed)
        s = rng.normal(size=(b, n)) * 2
        if ties:
            s = np.round(s * 2) / 2
        y = rng.integers(0, levels + 1, size=(b, n)).astype(np.float64)
        m = rng.random((b, n)) > pad
        if b > 2:
            m[-1] = False
        return s, y, m

    return make


NAN, INF = math.nan, math.inf
# sigma (not a temperature): a tiny one is a case for these (1/T of the approximate ranks is not)
PAIRWISE = ("ranknet_loss", "lambdarank_loss", "lambda_loss")
CASES = [
    Case("basic", _fixed([[0.5, 2.0, -1.0, 0.0, 1.5]], [[1, 0, 2, 0, 3]])),
    Case(
        "padding_nan_inf_huge",
        _fixed(
            [[1.0, NAN, 0.0, INF, 2.0], [0.5, -1.0, -INF, 2.0, NAN]],
            [[1.0, 1e30, 0.0, NAN, 2.0], [INF, 1.0, 2.0, 0.0, 1e6]],
            [[True, False, True, False, True], [False, True, False, True, False]],
        ),
    ),
    Case("empty_lists", _fixed(np.zeros((3, 0)), np.zeros((3, 0)))),
    Case("empty_batch", _fixed(np.zeros((0, 4)), np.zeros((0, 4)))),
    Case("one_item_lists", _fixed([[1.0], [2.0]], [[1.0], [0.0]])),
    Case(
        "all_masked",
        _fixed([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0]], [[1, 0, 2], [2, 1, 0]], np.zeros((2, 3), bool)),
    ),
    Case("ties", _fixed([[1.0, 1.0, 1.0, 0.0], [2.0, 2.0, 0.5, 0.5]], [[1, 1, 0, 0], [2, 2, 2, 2]])),
    Case("extreme_scores", _extreme),
    Case("extreme_scores_padded", _extreme_padded),
    Case("targets_31_127", _fixed([[0.3, 0.1, 0.2, -0.5]], [[31, 127, 0, 3]])),
    Case("targets_128_1000", _fixed([[0.3, 0.1, 0.2, -0.5]], [[128, 1000, 0, 500]])),
    Case("targets_beyond_cap", _fixed([[0.3, 0.1, 0.2]], [[1001, 2, 0]])),
    Case("negative_targets", _fixed([[0.3, 0.1, 0.2, -0.5, 1.0]], [[-1, -2.5, 0, 1, -1]])),
    Case("mrr_norm_small_sum", _fixed([[0.0, 3e4, -776901.8, 5.0]], [[-1, -1, 2, 0]]), scale=0.5),
    Case("one_dimensional", _fixed([0.2, 1.0, -0.5, 0.7], [1, 0, 2, 1])),
    Case("one_dimensional_masked", _fixed([0.2, 1.0, -0.5, 0.7], [1, 0, 2, 1], [True, False, True, True])),
    Case("random_4x7", _random(0, 4, 7)),
    Case("random_2x13", _random(1, 2, 13, levels=2)),
    Case("random_5x3", _random(2, 5, 3)),
    Case("random_1x9_no_ties", _random(3, 1, 9, ties=False, pad=0.0)),
    Case("random_3x33", _random(4, 3, 33, levels=6)),
    Case("random_6x2", _random(5, 6, 2, levels=1)),
    Case("random_2x20_sigma", _random(6, 2, 20), scale=0.3),
    # lists of FAST_MIN_N (100) real items and more: method="auto" takes fast summation for them
    Case("random_3x160_auto_fast", _random(8, 3, 160, pad=0.2)),
    # issue 17 item 10: sigma > 1 at +-0.9 max, a tiny sigma (norm's factor where 1 + S == 1),
    # one pair at +-max among many items
    Case("extreme_scores_sigma2", _extreme, scale=2.0, may_overflow=_overflows_with_sigma(2.0)),
    Case("extreme_scores_sigma4", _extreme, scale=4.0, may_overflow=_overflows_with_sigma(4.0)),
    Case("extreme_padded_sigma4", _extreme_padded, scale=4.0, may_overflow=_overflows_with_sigma(4.0)),
    Case(
        "basic_tiny_sigma",
        _fixed([[0.5, 2.0, -1.0, 0.0, 1.5]], [[1, 0, 2, 0, 3]]),
        scale=1e-17,
        only=PAIRWISE,
    ),
    Case("random_3x9_tiny_sigma", _random(8, 3, 9), scale=1e-12, only=PAIRWISE),
    Case("one_pair_at_max", _one_pair_at_max, may_overflow=_overflows_with_sigma(1.0)),
    Case("one_pair_at_max_sigma2", _one_pair_at_max, scale=2.0, may_overflow=_overflows_with_sigma(2.0)),
]

# Temperatures / sigmas: in range, subnormal or huge (must raise the same ValueError on both).
SCALE_CASES = [1e-40, 1e-30, 1e39, 1e30, 0.0, -1.0, NAN, INF]


def _params():
    out = []
    for twin in TWINS:
        for vi, variant in enumerate(twin.variants):
            for case in CASES:
                if case.only and twin.name not in case.only:
                    continue
                for dt in DTYPES:
                    pid = f"{twin.name}[{vi}]-{case.name}-{str(dt).rsplit('.', 1)[-1]}"
                    out.append(pytest.param(twin, variant, case, dt, id=pid))
    return out


def _scale_params():
    out = []
    for twin in TWINS:
        if not twin.has_scale:
            continue
        for scale in SCALE_CASES:
            for dt in (torch.float32, torch.float64):
                pid = f"{twin.name}-scale={scale!r}-{str(dt).rsplit('.', 1)[-1]}"
                out.append(pytest.param(twin, scale, dt, id=pid))
    return out


# ------------------------------------------------------------------------------------ the check


def _weights(kind, x, m):
    """SPEC 13's weights for scores `x`: "item" -> `x`'s shape, 0, 0.25, ..., 1 cycling over the
    items (at most 1: a weighted loss stays within its unweighted range) and NaN at padded items
    (ignored by both backends); "list" -> one weight per list (0-d for a 1-D input)."""
    if kind == "list":
        b = x.shape[0] if x.ndim == 2 else 1
        w = torch.linspace(0.0, 1.0, b + 1, dtype=x.dtype)[1:].flip(0) if b else torch.zeros(0, dtype=x.dtype)
        return w if x.ndim == 2 else w[0]
    w = (torch.arange(x.numel(), dtype=torch.float64) % 5 * 0.25).reshape(x.shape).to(x.dtype)
    return w if m is None else torch.where(m, w, torch.full_like(w, NAN))


def _run(twin, variant, s, y, m, scale, reduction, backend, dt):
    """(output, gradient or None) or the exception raised."""
    x = torch.tensor(s, dtype=dt).requires_grad_(twin.differentiable)
    yt = torch.tensor(y, dtype=dt)
    mt = None if m is None else torch.tensor(m, dtype=torch.bool)
    if "weights" in variant:
        variant = {**variant, "weights": _weights(variant["weights"], x.detach(), mt)}
    try:
        out = twin.call(x, yt, mt, scale, reduction, backend, **variant)
        grad = None
        if twin.differentiable and out.requires_grad:
            w = torch.linspace(0.5, 1.5, max(out.numel(), 1), dtype=out.dtype)[: out.numel()].reshape(
                out.shape
            )
            (gx,) = torch.autograd.grad((out * w).sum(), x, allow_unused=True)
            grad = torch.zeros_like(x) if gx is None else gx
        return out.detach(), grad
    except Exception as e:
        return e


def _compare(a, b, dt, what):
    if a is None or b is None:
        assert a is None and b is None, f"{what}: one backend gives no gradient"
        return
    assert a.dtype == b.dtype == dt, f"{what}: dtypes {a.dtype} / {b.dtype}, expected {dt}"
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} / {tuple(b.shape)}"
    tol = TOL[dt]
    torch.testing.assert_close(
        a.double(), b.double(), rtol=tol, atol=tol, equal_nan=True, msg=lambda m: f"{what}: {m}"
    )


def _check(twin, variant, s, y, m, scale, reductions, dt, may_overflow=_never):
    for reduction in reductions or (None,):
        r = _run(twin, variant, s, y, m, scale, reduction, "rust", dt)
        t = _run(twin, variant, s, y, m, scale, reduction, "torch", dt)
        what = f"{twin.name}{variant} reduction={reduction}"
        if isinstance(r, Exception) or isinstance(t, Exception):
            assert type(r) is type(t), f"{what}: rust gives {r!r}, torch gives {t!r}"
            continue
        _compare(r[0], t[0], dt, what + " output")
        _compare(r[1], t[1], dt, what + " gradient")
        bounded = twin.bounded and not may_overflow(twin.name, variant, reduction)
        ok = torch.isfinite(r[0]) if bounded else ~torch.isnan(r[0])
        assert ok.all(), f"{what}: non-finite output {r[0]} from finite real inputs"
        if r[1] is not None:
            assert torch.isfinite(r[1]).all(), f"{what}: non-finite gradient from finite real inputs"


@pytest.mark.parametrize("twin, variant, case, dt", _params())
def test_twins_agree(twin, variant, case, dt):
    s, y, m = case.make(dt)
    _check(twin, variant, s, y, m, case.scale, twin.reductions, dt, case.may_overflow)


@pytest.mark.parametrize("twin, scale, dt", _scale_params())
def test_twins_agree_on_scales(twin, scale, dt):
    s, y, m = _random(7, 3, 6)(dt)
    s[0, :3] = 0.25  # tied scores: sigmoid(0 / T) with a tiny T
    _check(twin, twin.variants[0], s, y, m, scale, twin.reductions[:1], dt)


def test_matrix_size():
    """The counts the issue asks for (inputs x functions), and a guard that nothing vanished."""
    inputs = len(CASES) * len(DTYPES)
    functions = len(TWINS)
    combos = len(_params())
    scale_combos = sum(t.has_scale for t in TWINS) * len(SCALE_CASES) * 2
    assert functions >= 12 and inputs >= 80
    print(
        f"parity matrix: {inputs} inputs x {functions} functions ({combos} function-variant-input cases, "
        f"{scale_combos} scale cases, reductions looped inside)"
    )


# ------------------------------------------------------- issue 17 items 6 and 7: inputs, one rule

LAYOUT_FUNCS = {
    "softmax_loss": lambda s, y, m, **o: rankgrad.softmax_loss(s, y, m, reduction="none", **o),
    "listmle_loss": lambda s, y, m, **o: rankgrad.listmle_loss(s, y, m, reduction="none", **o),
    "lambda_loss": lambda s, y, m, **o: rankgrad.lambda_loss(s, y, mask=m, reduction="none", **o),
    "ranknet_loss": lambda s, y, m, **o: rankgrad.ranknet_loss(s, y, mask=m, reduction="none", **o),
    "lambdarank_loss": lambda s, y, m, **o: rankgrad.lambdarank_loss(
        s, y, mask=m, reduction="none", norm=True, **o
    ),
}


def _layouts(a):
    """`a` (a C-ordered native array) in other layouts holding the same values."""
    yield "longdouble", a.astype(np.longdouble) if a.dtype.kind == "f" else a
    yield "big_endian", a.astype(a.dtype.newbyteorder(">"))
    yield "negative_stride", np.flip(np.flip(a).copy())
    yield "fortran", np.asfortranarray(a)
    wide = np.zeros((a.shape[0] * 2, a.shape[-1] * 3), dtype=a.dtype)
    wide[::2, ::3] = a
    yield "non_contiguous", wide[::2, ::3]


@pytest.mark.parametrize("name", list(LAYOUT_FUNCS))
@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_every_numpy_layout_takes_the_one_conversion(name, backend):
    """Issue 17 item 6: longdouble, big-endian, negative-stride, Fortran-ordered and
    non-contiguous arrays (scores, targets, mask, one at a time and all at once) give exactly the
    plain float64 call's result, on both backends: `_inputs.lists` / `native_array` /
    `as_tensors`, no raw torch error."""
    fn = LAYOUT_FUNCS[name]
    rng = np.random.default_rng(3)
    s = rng.normal(size=(4, 7))
    y = rng.integers(0, 4, size=(4, 7)).astype(np.float64)
    m = rng.random((4, 7)) > 0.2
    m[:, :2] = True
    want = fn(s, y, m, backend=backend)
    assert want.dtype == np.float64 and np.isfinite(want).all() and np.any(want != 0)
    for which in ("scores", "targets", "mask", "all"):
        for kind, _ in _layouts(s):
            args = {"scores": s, "targets": y, "mask": m}
            for arg in args if which == "all" else [which]:
                args[arg] = dict(_layouts(args[arg]))[kind]
            got = fn(args["scores"], args["targets"], args["mask"], backend=backend)
            assert got.dtype == np.float64, (which, kind)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {which} {kind}")
    # one list (1-D), reversed with a negative stride; and float32 big-endian equals float32
    got = fn(np.flip(s[0].copy())[::-1], y[0][::-1][::-1], m[0], backend=backend)
    np.testing.assert_array_equal(got, want[0])
    s32 = s.astype(np.float32)
    want32 = fn(s32, y, m, backend=backend)
    got32 = fn(s32.astype(">f4"), y.astype(">f8"), np.asfortranarray(m), backend=backend)
    assert got32.dtype == np.float32
    np.testing.assert_array_equal(got32, want32)


def _sparse_kinds(t):
    yield "sparse_coo", t.to_sparse()
    yield "sparse_csr", t.to_sparse_csr()
    if t.dtype != torch.bool:
        yield "quantized", torch.quantize_per_tensor(t.float(), 0.1, 0, torch.qint8)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", list(LAYOUT_FUNCS))
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_sparse_and_quantized_tensors_are_refused(name, backend):
    """Issue 17 item 7: a sparse (COO, CSR) or quantized scores, targets or mask is refused up
    front with a TypeError naming the argument (`_inputs._kind`), on every backend."""
    fn = LAYOUT_FUNCS[name]
    s = torch.tensor([[0.3, 1.0, -0.5, 2.0], [1.0, 0.0, 0.5, 0.25]])
    y = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 3.0]])
    m = torch.tensor([[True, True, False, True], [True] * 4])
    assert torch.isfinite(fn(s, y, m, backend=backend)).all()
    for arg in ("scores", "targets", "mask"):
        args = {"scores": s, "targets": y, "mask": m}
        for kind, bad in _sparse_kinds(args[arg]):
            args[arg] = bad
            with pytest.raises(TypeError, match=f"{arg} must be a dense tensor") as e:
                fn(args["scores"], args["targets"], args["mask"], backend=backend)
            assert kind.split("_")[-1] in str(e.value) or kind in str(e.value), str(e.value)


# ------------------------------------------------------- SPEC 13: weights take the same one rule

WEIGHTED_FUNCS = {
    **LAYOUT_FUNCS,
    "approx_ndcg_loss": lambda s, y, m, **o: rankgrad.approx_ndcg_loss(s, y, mask=m, reduction="none", **o),
    "approx_mrr_loss": lambda s, y, m, **o: rankgrad.approx_mrr_loss(s, y, mask=m, reduction="none", **o),
    "approx_rank_mse_loss": lambda s, y, m, **o: rankgrad.approx_rank_mse_loss(
        s, y, mask=m, reduction="none", **o
    ),
}


@pytest.mark.parametrize("name", list(WEIGHTED_FUNCS))
@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_weights_in_every_numpy_layout(name, backend):
    """Per-item and per-list weights in every numpy layout (longdouble, big-endian, negative
    stride, Fortran, non-contiguous; int and bool dtypes) give exactly the plain float64 call's
    result on both backends, and the twins agree on it."""
    fn = WEIGHTED_FUNCS[name]
    rng = np.random.default_rng(5)
    s = rng.normal(size=(4, 7))
    y = rng.integers(0, 4, size=(4, 7)).astype(np.float64)
    m = rng.random((4, 7)) > 0.2
    m[:, :2] = True
    for w in (np.where(m, rng.integers(0, 4, size=(4, 7)) * 0.5, np.nan), rng.random(4)):
        want = fn(s, y, m, weights=w, backend=backend)
        other = fn(s, y, m, weights=w, backend="torch" if backend == "rust" else "rust")
        np.testing.assert_allclose(want, other, rtol=1e-10, atol=1e-12)
        assert want.dtype == np.float64 and np.isfinite(want).all()
        for kind, wl in _layouts(w if w.ndim == 2 else w[:, None]):
            wl = wl if w.ndim == 2 else wl[:, 0]
            got = fn(s, y, m, weights=wl, backend=backend)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} weights {kind}")
    ones = fn(s, y, m, weights=np.ones((4, 7), dtype=np.int32), backend=backend)
    np.testing.assert_array_equal(ones, fn(s, y, m, weights=np.ones((4, 7), dtype=bool), backend=backend))
    np.testing.assert_allclose(ones, fn(s, y, m, backend=backend), rtol=1e-14, atol=0)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", list(WEIGHTED_FUNCS))
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_sparse_and_quantized_weights_are_refused(name, backend):
    """Sparse (COO, CSR) or quantized weights: a TypeError naming `weights`, on every backend."""
    fn = WEIGHTED_FUNCS[name]
    s = torch.tensor([[0.3, 1.0, -0.5, 2.0], [1.0, 0.0, 0.5, 0.25]])
    y = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 3.0]])
    m = torch.tensor([[True, True, False, True], [True] * 4])
    for w in (torch.rand(2, 4) + 0.1, torch.rand(2) + 0.1):
        assert torch.isfinite(fn(s, y, m, weights=w, backend=backend)).all()
        kinds = (
            _sparse_kinds(w)
            if w.ndim == 2
            else [("coo", w.to_sparse()), ("q", torch.quantize_per_tensor(w, 0.1, 0, torch.qint8))]
        )
        for _, bad in kinds:
            with pytest.raises(TypeError, match="weights must be a dense tensor"):
                fn(s, y, m, weights=bad, backend=backend)
