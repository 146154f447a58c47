"""LambdaRank as a LightGBM custom objective (lightgbm is imported only when needed).

    obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=30)
    booster = lightgbm.train({"objective": obj, "metric": "ndcg"}, train_set)   # (preds, dataset)
    ranker = lightgbm.LGBMRanker(objective=obj).fit(X, y, group=group)          # (y, preds, w, group)

The gradients are `rankgrad.lambdarank_gradients` (LightGBM's own lambdarank formulas with an
exact sigmoid, no 10,000-row cap per query); groups come from the Dataset (or the
`group=` given to `fit`), per-row weights from `Dataset.get_weight()`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .lambdarank import _check_metric, _check_truncation, _label_gain, lambdarank_gradients
from ._inputs import check_positive

__all__ = ["LambdaRankObjective"]


def _is_dataset(obj) -> bool:
    try:
        import lightgbm
    except ImportError:  # pragma: no cover - without lightgbm nobody passes a Dataset
        return False
    return isinstance(obj, lightgbm.Dataset)


class LambdaRankObjective:
    """A LambdaRank objective for LightGBM: one callable for both `lightgbm.train` and
    `LGBMRanker`. Options are those of `rankgrad.lambdarank_gradients`:
    `sigma=1.0, truncation_level=30, norm=True, label_gain=None, metric="ndcg"`
    (LightGBM's `sigmoid`, `lambdarank_truncation_level`, `lambdarank_norm`, `label_gain`)."""

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

    # Four parameters, so that LGBMRanker passes (y_true, y_pred, weight, group); lightgbm.train
    # calls it with two, (preds, dataset).
    def __call__(self, y_true_or_preds, preds_or_dataset, weight=None, group=None) -> Tuple[np.ndarray, np.ndarray]:
        if _is_dataset(preds_or_dataset):
            preds, dataset = y_true_or_preds, preds_or_dataset
            labels = dataset.get_label()
            group = dataset.get_group()
            weight = dataset.get_weight()
            if group is None:
                raise ValueError("group: the LightGBM Dataset has no query groups; pass group= when making it")
        else:
            labels, preds = y_true_or_preds, preds_or_dataset
            if group is None:
                raise ValueError("group: LambdaRank needs the query groups (LGBMRanker.fit(..., group=...))")
        preds = np.asarray(preds)
        grad, hess = lambdarank_gradients(preds.ravel(), labels, group, weights=weight, **self.options)
        return grad.reshape(preds.shape), hess.reshape(preds.shape)

    def __repr__(self) -> str:
        return (f"LambdaRankObjective(sigma={self.sigma}, truncation_level={self.truncation_level}, "
                f"norm={self.norm}, metric={self.metric!r})")
