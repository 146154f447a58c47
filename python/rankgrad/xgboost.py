"""LambdaRank and XE-NDCG as XGBoost custom objectives (xgboost is imported only when needed).

    obj = rankgrad.xgboost.LambdaRankObjective(truncation_level=30)
    booster = xgboost.train(params, dtrain, num_boost_round=100, obj=obj)

Groups come from the DMatrix's query groups (`group=`/`qid=`, stored as `group_ptr`).
Weights: XGBoost's ranking convention is one weight per query group (`DMatrix(weight=...)`
with one value per group); each group's weight multiplies the grad and hess of its rows. A
weight vector with one value per row is used row by row. No weights: all ones.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import numpy.typing as npt

from .gbdt import (
    AveragePrecisionMetric,
    LambdaRankBase,
    MRRMetric,
    NDCGMetric,
    PrecisionMetric,
    RankingMetric,
    RecallMetric,
    XENDCGBase,
    xendcg_gradients,
)

__all__ = [
    "LambdaRankObjective",
    "XENDCGObjective",
    "xendcg_gradients",
    "RankingMetric",
    "NDCGMetric",
    "MRRMetric",
    "AveragePrecisionMetric",
    "RecallMetric",
    "PrecisionMetric",
]

Grad = Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


def _groups_and_weights(
    preds: Any, dtrain: Any
) -> Tuple[npt.NDArray[np.int64], Optional[npt.NDArray[np.float64]]]:
    """The list sizes `[G]` of a DMatrix and its weights spread to rows (`[n]`, or None)."""
    n = np.asarray(preds).size
    ptr = np.asarray(dtrain.get_uint_info("group_ptr"), dtype=np.int64)
    if ptr.size < 2:
        raise ValueError("group: the DMatrix has no query groups; make it with group= or qid=")
    group = np.diff(ptr)
    w = np.asarray(dtrain.get_weight(), dtype=np.float64)
    if w.size == 0:
        return group, None
    if w.size == group.size:
        return group, np.repeat(w, group)
    if w.size == n:
        return group, w
    raise ValueError(
        f"weights: the DMatrix has {w.size} weights, expected one per group ({group.size}) or one per row ({n})"
    )


class LambdaRankObjective(LambdaRankBase):
    """A LambdaRank objective for `xgboost.train(obj=...)`, called as `obj(preds, dtrain)`.

    Args:
        sigma: the sigmoid's scale.
        truncation_level: pairs need their higher-ranked position below it.
        norm: normalise each list's lambdas.
        label_gain: the gain table (None: `2^i - 1`).
        metric: "ndcg" or "mrr". All five as in `rankgrad.lambdarank_gradients`.

    The (grad, hess) arrays it returns are reused by its next call from the same thread
    (XGBoost copies them at once); copy them to keep them."""

    def __init__(
        self,
        *,
        sigma: float = 1.0,
        truncation_level: int = 30,
        norm: bool = True,
        label_gain: Optional[Any] = None,
        metric: str = "ndcg",
    ) -> None:
        super().__init__(
            sigma=sigma, truncation_level=truncation_level, norm=norm, label_gain=label_gain, metric=metric
        )

    def __call__(self, preds: Any, dtrain: Any) -> Grad:
        group, weights = _groups_and_weights(preds, dtrain)
        grad, hess = self._gradients(preds, dtrain.get_label(), group, weights)
        return grad, hess


class XENDCGObjective(XENDCGBase):
    """XE-NDCG (LightGBM's `rank_xendcg`) for `xgboost.train(obj=...)`, called as
    `obj(preds, dtrain)`.

    Args:
        seed: the generator seed (the gammas LightGBM draws with `objective_seed=seed`: one
            stream per query, independent of the thread count).

    Each call advances the streams; another DMatrix starts a new run from `seed`.
    """

    def __call__(self, preds: Any, dtrain: Any) -> Grad:
        group, weights = _groups_and_weights(preds, dtrain)
        return self._state.gradients(preds, dtrain.get_label(), group, weights, dtrain)
