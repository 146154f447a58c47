"""Position-debiased LambdaRank (LightGBM >= 4.1, ``Dataset(position=...)``): per-position bias
factors ``b`` learned inside the objective, as LightGBM's ``UpdatePositionBiasFactors`` does.

Each round the lambdas are computed on the adjusted scores ``s_i + b[pos_i]`` (``b`` from the
previous rounds, zero at first), then for every position ``p`` with ``c_p`` rows, ``reg`` the
``position_bias_regularization`` and ``lr`` the booster's learning rate (one Newton step):

    d1 = -sum_{pos_i = p} grad_i - reg * c_p * b[p]
    d2 = -sum_{pos_i = p} hess_i - reg * c_p
    b[p] += lr * d1 / (|d2| + 0.001)

(grad and hess after the row weights). Like LightGBM, ``b`` is stored in float32. numpy only.
"""

from __future__ import annotations

import weakref
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

__all__ = ["PositionBias"]

# LightGBM's spellings of the learning rate, in the order its config reads them.
_LR_ALIASES = ("learning_rate", "shrinkage_rate", "eta")


def learning_rate_from(params: Any) -> Optional[float]:
    """The learning rate in a LightGBM params dict (or its aliases), or None."""
    if not isinstance(params, dict):
        return None
    for key in _LR_ALIASES:
        if params.get(key) is not None:
            return float(params[key])
    return None


class PositionBias:
    """The state of the bias factors for one training run: the positions' ids (the distinct
    position values, sorted), each row's id, and the factors ``[P]`` (float32)."""

    def __init__(self, positions: Any, n: int) -> None:
        pos = np.asarray(positions)
        if pos.ndim != 1:
            raise ValueError(f"positions must be 1-D (one per row), got shape {pos.shape}")
        if pos.shape[0] != n:
            raise ValueError(f"positions has {pos.shape[0]} values, expected {n} (one per row)")
        if pos.dtype.kind not in "iu" and not (
            pos.dtype.kind == "f" and np.isfinite(pos).all() and (pos == np.round(pos)).all()
        ):
            raise TypeError(f"positions must hold integers, got {pos.dtype}")
        self.values, ids = np.unique(pos.astype(np.int64), return_inverse=True)
        self.ids: npt.NDArray[np.intp] = ids.astype(np.intp).ravel()
        self.counts = np.bincount(self.ids, minlength=self.values.size).astype(np.float64)
        self.factors = np.zeros(self.values.size, dtype=np.float32)
        self.owner: Optional[weakref.ref[Any]] = None

    def adjust(self, preds: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """``preds + b[pos]`` in float64 (LightGBM adds the float32 factor to the double score)."""
        return np.asarray(preds, dtype=np.float64).ravel() + self.factors[self.ids].astype(np.float64)

    def update(
        self, grad: npt.NDArray[np.float64], hess: npt.NDArray[np.float64], reg: float, lr: float
    ) -> None:
        """One Newton step on the factors from this round's (weighted) grad and hess; LightGBM
        sums them as the float32 values it stores."""
        p = self.values.size
        g = np.bincount(self.ids, weights=grad.astype(np.float32).astype(np.float64), minlength=p)
        h = np.bincount(self.ids, weights=hess.astype(np.float32).astype(np.float64), minlength=p)
        b = self.factors.astype(np.float64)
        d1 = -g - b * reg * self.counts
        d2 = -h - reg * self.counts
        with np.errstate(over="ignore", invalid="ignore"):
            factors = (b + lr * d1 / (np.abs(d2) + 0.001)).astype(np.float32)
        if not np.isfinite(factors).all():
            bad = int(np.argmin(np.isfinite(factors)))
            raise ValueError(
                f"position bias: the factor of position {int(self.values[bad])} overflowed float32 "
                f"(learning_rate={lr!r}, position_bias_regularization={reg!r}): the step "
                "lr * d1 / (|d2| + 0.001) is too large; use a smaller learning_rate"
            )
        self.factors = factors

    def same_run(self, owner: Any) -> bool:
        """Whether `owner` (the Dataset, or the label array LightGBM passes) is the one this state
        was made for; the first call adopts it."""
        if self.owner is None:
            try:
                self.owner = weakref.ref(owner)
            except TypeError:
                return True
            return True
        return self.owner() is owner

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["owner"] = None  # a weak reference does not pickle; a copy starts a new run
        return state
