"""XE-NDCG (Bruch et al. 2020), LightGBM's ``rank_xendcg``, for the ragged GBDT layout (numpy only).

Per list of ``m >= 2`` items (shorter lists get zero grad and hess), ``rho = softmax(s)``,
``phi_i = 2^y_i - gamma_i`` with ``gamma_i`` uniform in [0, 1), ``q = phi / sum(phi)``
(``sum(phi)`` taken as 1e-15 when smaller in magnitude, LightGBM's floor)::

    t1_i = rho_i - q_i
    t2_i = rho_i * sum_{j != i} t1_j / (1 - rho_j)
    t3_i = rho_i * sum_{j != i} t2_j / (1 - rho_j)
    grad_i = t1_i + t2_i + t3_i,   hess_i = rho_i * (1 - rho_i)

times the row weights. The gammas come from one generator stream per list (LightGBM's, seeded
``seed + list index`` and advanced by ``m`` draws per round), so a seed gives the same gammas as
LightGBM's ``objective_seed`` and the same bits on any number of threads.

Given gammas may be any finite numbers: ``q`` is ``phi / sum(phi)`` to float64 accuracy even
where ``phi`` or its sum would overflow or cancel (``sum(phi) = sum(2^y) - sum(gamma)``,
compensated and scaled), so gammas of +-1e300 give the limit ``q = 1/m``. LightGBM's own floor
``max(1e-15, sum(phi))`` differs only for ``sum(phi) <= -1e-15``, impossible with its gammas.
"""

from __future__ import annotations

import numbers
import weakref
from typing import Any, Optional, Tuple

import numpy as np
import numpy.typing as npt

from .. import _core
from .._inputs import flat, ragged

__all__ = ["xendcg_gradients", "XENDCGState", "XENDCGBase"]

Pair = Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _inputs(
    preds: Any, labels: Any, group: Any, weights: Any
) -> Tuple[
    npt.NDArray[np.float64], npt.NDArray[Any], npt.NDArray[np.int64], Optional[npt.NDArray[np.float64]]
]:
    """The ragged inputs (`rankgrad._inputs.ragged`): float64 preds, float32/float64 labels."""
    p, y, g, w = ragged(preds, labels, group, weights, keep_float=True)
    return np.ascontiguousarray(p, dtype=np.float64), y, g, w


def xendcg_gradients(preds: Any, labels: Any, group: Any, *, gammas: Any, weights: Any = None) -> Pair:
    """XE-NDCG gradients with the given gammas (module docstring).

    Args:
        preds: ``[n]`` scores.
        labels: ``[n]`` integers in ``[0, 31)``.
        group: ``[G]`` list sizes summing to n, each list's rows contiguous.
        gammas: ``[n]`` finite numbers (LightGBM draws them uniform in [0, 1)); a ValueError
            naming ``gammas`` when a list's gradients overflow float64 (``|q|`` near 1e308,
            e.g. huge gammas cancelling so that ``sum(phi)`` is about 0).
        weights: ``[n]`` per-row weights multiplying grad and hess, or None.

    Returns:
        ``(grad, hess)``, float64 ``[n]``.
    """
    p, y, g, w = _inputs(preds, labels, group, weights)
    gam = flat(gammas, "gammas", p.size)
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


class XENDCGBase:
    """The part of `XENDCGObjective` both adapters share (`rankgrad.lightgbm`, `rankgrad.xgboost`):
    the seed and the generator streams of the current run."""

    def __init__(self, seed: int = 0) -> None:
        self._state = XENDCGState(seed)

    @property
    def seed(self) -> int:
        return self._state.seed

    def reset(self) -> None:
        """Restart the generator streams from `seed` (a new training run also does)."""
        self._state.reset()

    def __repr__(self) -> str:
        return f"XENDCGObjective(seed={self.seed})"
