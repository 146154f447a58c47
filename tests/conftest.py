"""Shared test fixtures and plain references (SPEC sections 2-5).

- `BACKENDS`: the two twin paths every differentiable function has.
- `make_batch(rng, b, n, ...)`: a random padded batch (scores, integer targets, mask) with
  optional ties, an all-padded last list and odd sizes.
- References in float64 straight from the SPEC formulas: `sigmoid`, `gain`, `dcg_discount`,
  `ideal_dcg`, `ref_approx_ranks`, `true_ranks`.
- `twins(call)`: runs `call(backend)` on both backends and asserts equal results or the
  same exception type (SPEC section 10), returning the result (float64 numpy) or the exception.
- Fixture: `rng` (a seeded numpy Generator per test). LightGBM's example data (path, loader,
  skip marker) lives in `gbdt_data.py`.

Test files import the plain names with `from conftest import ...` (pytest puts tests/ on the path).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import pytest

BACKENDS: Tuple[str, ...] = ("rust", "torch")


def make_batch(
    rng: np.random.Generator,
    b: int,
    n: int,
    *,
    ties: bool = False,
    levels: int = 4,
    pad: float = 0.25,
    empty_row: bool = False,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [b, n] float64, targets [b, n] float64 in {0..levels-1}, mask [b, n] bool).

    The first item of each list is real; `ties` rounds scores to halves; `empty_row` pads
    the whole last list (when b > 1); `pad` is the share of padded positions."""
    s = rng.normal(size=(b, n))
    if ties:
        s = np.round(s * 2) / 2
    y = rng.integers(0, levels, size=(b, n)).astype(np.float64)
    mask = rng.random((b, n)) > pad
    if n:
        mask[:, 0] = True
    if empty_row and b > 1:
        mask[-1] = False
    return s, y, mask


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def gain(y: float, scale_gains: bool = True) -> float:
    """`2^max(y, 0) - 1`, or `max(y, 0)`."""
    y = max(y, 0.0)
    return 2.0**y - 1.0 if scale_gains else y


def dcg_discount(p: int) -> float:
    """`1 / log2(2 + p)` for the 0-based position p."""
    return 1.0 / math.log2(p + 2)


def ideal_dcg(gains: Sequence[float], k: Optional[int] = None) -> float:
    ideal = sorted(gains, reverse=True)[:k]
    return sum(g * dcg_discount(p) for p, g in enumerate(ideal))


def ref_approx_ranks(s: Sequence[float], t: float) -> List[float]:
    """`r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` of one list of real items."""
    n = len(s)
    return [1.0 + sum(sigmoid((s[j] - s[i]) / t) for j in range(n) if j != i) for i in range(n)]


def true_ranks(y: Sequence[float]) -> List[int]:
    """1-based ranks by y descending, ties in input order."""
    order = sorted(range(len(y)), key=lambda i: -y[i])  # sorted() is stable
    out = [0] * len(y)
    for p, i in enumerate(order):
        out[i] = p + 1
    return out


def twins(call: Callable[[str], Any], rtol: float = 2e-6, atol: float = 1e-7) -> Any:
    """`call(backend)` for each of `BACKENDS`: equal results (to rtol/atol, compared in
    float64) or the same exception type; returns the first result or the exception."""
    res: List[Any] = []
    for backend in BACKENDS:
        try:
            res.append(call(backend))
        except Exception as e:
            res.append(e)
    a, b = res
    if isinstance(a, Exception) or isinstance(b, Exception):
        assert type(a) is type(b), f"the backends disagree: {a!r} vs {b!r}"
        return a
    a, b = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64) for v in (a, b))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    return a


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A numpy Generator seeded from the test's id (stable across runs and processes)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
