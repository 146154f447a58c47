"""LambdaRank as a LightGBM custom objective (lightgbm is imported only when needed).

    obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=30)
    booster = lightgbm.train({"objective": obj, "metric": "ndcg"}, train_set)   # (preds, dataset)
    ranker = lightgbm.LGBMRanker(objective=obj).fit(X, y, group=group)          # (y, preds, w, group)

The gradients are `rankgrad.lambdarank_gradients` (LightGBM's own lambdarank formulas with an
exact sigmoid, no 10,000-row cap per query); groups come from the Dataset (or the
`group=` given to `fit`), per-row weights from `Dataset.get_weight()`.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ._gbdt_metrics import MRRMetric, NDCGMetric, RankingMetric
from .lambdarank import _GBDTObjective

__all__ = ["LambdaRankObjective", "RankingMetric", "NDCGMetric", "MRRMetric"]


def _is_dataset(obj) -> bool:
    try:
        import lightgbm
    except ImportError:  # pragma: no cover - without lightgbm nobody passes a Dataset
        return False
    return isinstance(obj, lightgbm.Dataset)


class LambdaRankObjective(_GBDTObjective):
    """A LambdaRank objective for LightGBM: one callable for both `lightgbm.train` and
    `LGBMRanker`. Options are those of `rankgrad.lambdarank_gradients`:
    `sigma=1.0, truncation_level=30, norm=True, label_gain=None, metric="ndcg"`
    (LightGBM's `sigmoid`, `lambdarank_truncation_level`, `lambdarank_norm`, `label_gain`).

    The (grad, hess) arrays it returns are reused by its next call from the same thread
    (LightGBM copies them at once); copy them to keep them."""

    # Four parameters, so that LGBMRanker passes (y_true, y_pred, weight, group); lightgbm.train
    # calls it with two, (preds, dataset).
    def __call__(
        self, y_true_or_preds, preds_or_dataset, weight=None, group=None
    ) -> Tuple[np.ndarray, np.ndarray]:
        if _is_dataset(preds_or_dataset):
            preds, dataset = y_true_or_preds, preds_or_dataset
            labels = dataset.get_label()
            group = dataset.get_group()
            weight = dataset.get_weight()
            if group is None:
                raise ValueError(
                    "group: the LightGBM Dataset has no query groups; pass group= when making it"
                )
        else:
            labels, preds = y_true_or_preds, preds_or_dataset
            if group is None:
                raise ValueError("group: LambdaRank needs the query groups (LGBMRanker.fit(..., group=...))")
        return self._gradients(preds, labels, group, weight)
