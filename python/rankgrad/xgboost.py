"""LambdaRank as an XGBoost custom objective (xgboost is imported only when needed).

    obj = rankgrad.xgboost.LambdaRankObjective(truncation_level=30)
    booster = xgboost.train(params, dtrain, num_boost_round=100, obj=obj)

Groups come from the DMatrix's query groups (`group=`/`qid=`, stored as `group_ptr`).
Weights: XGBoost's ranking convention is one weight per query group (`DMatrix(weight=...)`
with one value per group); each group's weight multiplies the grad and hess of its rows. A
weight vector with one value per row is used row by row. No weights: all ones.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .lambdarank import _check_metric, _check_truncation, _label_gain, lambdarank_gradients
from ._inputs import check_positive

__all__ = ["LambdaRankObjective"]


class LambdaRankObjective:
    """A LambdaRank objective for `xgboost.train(obj=...)`, called as `obj(preds, dtrain)`.
    Options are those of `rankgrad.lambdarank_gradients`:
    `sigma=1.0, truncation_level=30, norm=True, label_gain=None, metric="ndcg"`."""

    def __init__(
        self,
        *,
        sigma: float = 1.0,
        truncation_level: int = 30,
        norm: bool = True,
        label_gain: Optional[Sequence[float]] = None,
        metric: str = "ndcg",
    ):
        self.sigma = check_positive("sigma", sigma)
        self.truncation_level = _check_truncation(truncation_level, allow_none=False)
        self.norm = bool(norm)
        self.label_gain = _label_gain(label_gain)
        self.metric = _check_metric(metric)

    @property
    def options(self) -> dict:
        return dict(sigma=self.sigma, truncation_level=self.truncation_level, norm=self.norm,
                    label_gain=self.label_gain, metric=self.metric)

    def __call__(self, preds, dtrain) -> Tuple[np.ndarray, np.ndarray]:
        preds = np.asarray(preds)
        n = preds.size
        labels = dtrain.get_label()
        ptr = np.asarray(dtrain.get_uint_info("group_ptr"), dtype=np.int64)
        if ptr.size < 2:
            raise ValueError("group: the DMatrix has no query groups; make it with group= or qid=")
        group = np.diff(ptr)
        w = np.asarray(dtrain.get_weight(), dtype=np.float64)
        if w.size == 0:
            weights = None
        elif w.size == group.size:
            weights = np.repeat(w, group)
        elif w.size == n:
            weights = w
        else:
            raise ValueError(
                f"weights: the DMatrix has {w.size} weights, expected one per group ({group.size}) "
                f"or one per row ({n})"
            )
        grad, hess = lambdarank_gradients(preds.ravel(), labels, group, weights=weights, **self.options)
        return grad.reshape(preds.shape), hess.reshape(preds.shape)

    def __repr__(self) -> str:
        return (f"LambdaRankObjective(sigma={self.sigma}, truncation_level={self.truncation_level}, "
                f"norm={self.norm}, metric={self.metric!r})")
