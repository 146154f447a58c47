"""LambdaRank as an XGBoost custom objective (xgboost is imported only when needed).

    obj = rankgrad.xgboost.LambdaRankObjective(truncation_level=30)
    booster = xgboost.train(params, dtrain, num_boost_round=100, obj=obj)

Groups come from the DMatrix's query groups (`group=`/`qid=`, stored as `group_ptr`).
Weights: XGBoost's ranking convention is one weight per query group (`DMatrix(weight=...)`
with one value per group); each group's weight multiplies the grad and hess of its rows. A
weight vector with one value per row is used row by row. No weights: all ones.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ._gbdt_metrics import MRRMetric, NDCGMetric, RankingMetric
from .lambdarank import _GBDTObjective

__all__ = ["LambdaRankObjective", "RankingMetric", "NDCGMetric", "MRRMetric"]


class LambdaRankObjective(_GBDTObjective):
    """A LambdaRank objective for `xgboost.train(obj=...)`, called as `obj(preds, dtrain)`.
    Options are those of `rankgrad.lambdarank_gradients`:
    `sigma=1.0, truncation_level=30, norm=True, label_gain=None, metric="ndcg"`.

    The (grad, hess) arrays it returns are reused by its next call from the same thread
    (XGBoost copies them at once); copy them to keep them."""

    def __call__(self, preds, dtrain) -> Tuple[np.ndarray, np.ndarray]:
        n = np.asarray(preds).size
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
        return self._gradients(preds, labels, group, weights)
