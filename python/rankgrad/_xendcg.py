"""XE-NDCG (Bruch et al. 2020), LightGBM's ``rank_xendcg``, for the ragged GBDT layout (numpy only).

Per list of ``m >= 2`` items (shorter lists get zero grad and hess), ``rho = softmax(s)``,
``phi_i = 2^y_i - gamma_i`` with ``gamma_i`` uniform in [0, 1), ``q = phi / sum(phi)``::

    t1_i = rho_i - q_i
    t2_i = rho_i * sum_{j != i} t1_j / (1 - rho_j)
    t3_i = rho_i * sum_{j != i} t2_j / (1 - rho_j)
    grad_i = t1_i + t2_i + t3_i,   hess_i = rho_i * (1 - rho_i)

times the row weights. The gammas come from one generator stream per list (LightGBM's, seeded
``seed + list index`` and advanced by ``m`` draws per round), so a seed gives the same gammas as
LightGBM's ``objective_seed`` and the same bits on any number of threads.
"""

from __future__ import annotations

import numbers
import weakref
from typing import Any, Optional, Tuple

import numpy as np
import numpy.typing as npt

from . import _core

__all__ = ["xendcg_gradients", "XENDCGState"]

Pair = Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _vector(x: Any, name: str) -> npt.NDArray[Any]:
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per row), got shape {a.shape}")
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def _inputs(
    preds: Any, labels: Any, group: Any, weights: Any
) -> Tuple[
    npt.NDArray[np.float64], npt.NDArray[Any], npt.NDArray[np.int64], Optional[npt.NDArray[np.float64]]
]:
    p = np.ascontiguousarray(_vector(preds, "preds"), dtype=np.float64)
    y = _vector(labels, "labels")
    y = np.ascontiguousarray(y, dtype=y.dtype if y.dtype in (np.float32, np.float64) else np.float64)
    if y.shape != p.shape:
        raise ValueError(f"labels has {y.size} values, expected {p.size} like preds")
    if group is None:
        raise ValueError("group: XE-NDCG needs the query groups (list sizes), got None")
    g = _vector(group, "group")
    if g.dtype.kind == "f" and not (np.isfinite(g).all() and (g == np.round(g)).all()):
        raise ValueError("group must hold integer list sizes")
    g = np.ascontiguousarray(g, dtype=np.int64)
    w = None
    if weights is not None and np.size(weights) > 0:
        w = np.ascontiguousarray(_vector(weights, "weights"), dtype=np.float64)
        if w.shape != p.shape:
            raise ValueError(f"weights has {w.size} values, expected {p.size} like preds")
    return p, y, g, w


def xendcg_gradients(preds: Any, labels: Any, group: Any, *, gammas: Any, weights: Any = None) -> Pair:
    """XE-NDCG gradients with the given gammas (module docstring).

    Args:
        preds: ``[n]`` scores.
        labels: ``[n]`` integers in ``[0, 31)``.
        group: ``[G]`` list sizes summing to n, each list's rows contiguous.
        gammas: ``[n]`` finite numbers (LightGBM draws them uniform in [0, 1)).
        weights: ``[n]`` per-row weights multiplying grad and hess, or None.

    Returns:
        ``(grad, hess)``, float64 ``[n]``.
    """
    p, y, g, w = _inputs(preds, labels, group, weights)
    gam = np.ascontiguousarray(_vector(gammas, "gammas"), dtype=np.float64)
    if gam.shape != p.shape:
        raise ValueError(f"gammas has {gam.size} values, expected {p.size} like preds")
    grad, hess = _core.xendcg_gradients(p, y, g, w, gam, None)
    return grad, hess


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not -(2**31) <= int(seed) < 2**31:
        raise ValueError(f"seed must fit in int32 (LightGBM's objective_seed), got {seed}")
    return int(seed)


class XENDCGState:
    """The generator streams of one training run (one uint32 state per list) and whose run it is."""

    def __init__(self, seed: int) -> None:
        self.seed = check_seed(seed)
        self.states: Optional[npt.NDArray[np.uint32]] = None
        self.owner: Optional[weakref.ref[Any]] = None

    def reset(self) -> None:
        self.states = None
        self.owner = None

    def gradients(self, preds: Any, labels: Any, group: Any, weights: Any, owner: Any) -> Pair:
        p, y, g, w = _inputs(preds, labels, group, weights)
        current = None if self.owner is None else self.owner()
        if self.states is None or current is not owner or self.states.size != g.size:
            states = (self.seed + np.arange(g.size, dtype=np.int64)) % (1 << 32)
            self.states = states.astype(np.uint32)
            try:
                self.owner = weakref.ref(owner)
            except TypeError:
                self.owner = None
        grad, hess = _core.xendcg_gradients(p, y, g, w, None, self.states)
        shape = np.shape(preds)
        return grad.reshape(shape), hess.reshape(shape)

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed, "states": None, "owner": None}
