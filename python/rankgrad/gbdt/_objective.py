"""The LambdaRank objective's shared part (`LambdaRankObjective` of `rankgrad.lightgbm` and
`rankgrad.xgboost`): the options of `lambdarank_gradients`, checked once, and per-thread output
arrays reused from one boosting round to the next (the boosters copy grad and hess at once;
reusing them saves allocating and page-faulting two fresh arrays each round). numpy only."""

from __future__ import annotations

import threading
from typing import Any, Dict, Tuple

import numpy as np

from .._inputs import check_scale
from ..lambdarank import check_metric, check_truncation, label_gain_table, lambdarank_gradients

__all__ = ["LambdaRankBase"]


class LambdaRankBase:
    """The options of `lambdarank_gradients` and the reused output arrays (see the module)."""

    def __init__(
        self,
        *,
        sigma: float = 1.0,
        truncation_level: int = 30,
        norm: bool = True,
        label_gain: Any = None,
        metric: str = "ndcg",
    ) -> None:
        self.sigma = check_scale("sigma", sigma, "float64")
        self.truncation_level = check_truncation(truncation_level, allow_none=False)
        self.norm = bool(norm)
        self.label_gain = label_gain_table(label_gain)
        self.metric = check_metric(metric)
        self._local = threading.local()

    @property
    def options(self) -> Dict[str, Any]:
        return dict(
            sigma=self.sigma,
            truncation_level=self.truncation_level,
            norm=self.norm,
            label_gain=self.label_gain,
            metric=self.metric,
        )

    def _gradients(
        self, preds: Any, labels: Any, group: Any, weights: Any, **overrides: Any
    ) -> Tuple[np.ndarray, np.ndarray]:
        """`lambdarank_gradients` into this thread's reused arrays, shaped like `preds`
        (`overrides` replace entries of `options` for this call)."""
        preds = np.asarray(preds)
        n = preds.size
        out = getattr(self._local, "out", None)
        if out is None or out[0].shape[0] != n:
            out = self._local.out = (np.empty(n), np.empty(n))
        grad, hess = lambdarank_gradients(
            preds.ravel(), labels, group, weights=weights, out=out, **{**self.options, **overrides}
        )
        return grad.reshape(preds.shape), hess.reshape(preds.shape)

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sigma={self.sigma}, truncation_level={self.truncation_level}, "
            f"norm={self.norm}, metric={self.metric!r})"
        )
