"""NDCG@k, MRR@k, AP@k, recall@k and precision@k as evaluation metrics for LightGBM and XGBoost.

One callable class, ``RankingMetric(metric="ndcg", k=10)`` (with the shorthands
``NDCGMetric(k)``, ``MRRMetric(k)``, ``AveragePrecisionMetric(k)``, ``RecallMetric(k)`` and
``PrecisionMetric(k)``), that works wherever a GBDT library takes a custom metric; it tells
the call apart by its arguments:

- ``lgb.train(..., feval=metric)``: ``metric(preds, dataset)`` -> ``(name, value, True)``,
  groups from ``dataset.get_group()``;
- ``LGBMRanker().fit(..., eval_metric=metric)``: ``metric(y_true, y_pred, weight, group)``
  -> ``(name, value, True)`` (LightGBM picks this form from the 4 parameters of
  ``__call__``);
- ``xgb.train(..., custom_metric=metric)``: ``metric(preds, dmatrix)`` -> ``(name, value)``,
  groups from the DMatrix's ``group_ptr`` (pass ``maximize=True`` for early stopping);
- ``XGBRanker(eval_metric=metric)``: ``metric(y_true, y_score)`` for one query -> value.

The value is the mean over queries of the per-query metric (rankgrad.ndcg / rankgrad.mrr /
rankgrad.average_precision / rankgrad.recall / rankgrad.precision: ties by input order,
relevant = label > 0, NDCG gains ``2^y - 1`` like LightGBM's default ``label_gain``; AP@k
divides by the list's number of relevant items and P@k by k, as trec_eval), weighted by
query weights when the data has weights (LightGBM: the mean of a query's row weights; XGBoost:
its per-group weights). A query with no relevant item scores ``empty``: 0.0 by default
(trec_eval, rankgrad.ndcg), 1.0 to match LightGBM's and XGBoost's built-in ``ndcg``, or
``None`` to leave such queries out of the mean. The lists are computed by the Rust kernel on
the ragged layout in O(n log n); no list size cap. lightgbm and xgboost are never imported
here: a dataset is recognised only if its library is already loaded.

Names: ``rankgrad_<metric>@<k>`` (``rankgrad_ndcg@10``, ``rankgrad_mrr@5``,
``rankgrad_map@10``, ``rankgrad_recall@10``, ``rankgrad_precision@10``; no ``@k`` when
``k=None``), so that LightGBM's and XGBoost's own metrics (``ndcg@10``, ``map@10``) keep
their own series in ``evals_result``; ``name=`` sets another.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

from .. import _core
from .._inputs import check_real, flat, group_sizes, ragged
from ..metrics import check_k

if TYPE_CHECKING:  # for the overloads only; never imported at run time
    from lightgbm import Dataset
    from xgboost import DMatrix

__all__ = [
    "RankingMetric",
    "NDCGMetric",
    "MRRMetric",
    "AveragePrecisionMetric",
    "RecallMetric",
    "PrecisionMetric",
    "ragged_metric",
]

METRICS = ("ndcg", "mrr", "average_precision", "recall", "precision")
# The short tag in a metric's default name.
_TAGS = {
    "ndcg": "ndcg",
    "mrr": "mrr",
    "average_precision": "map",
    "recall": "recall",
    "precision": "precision",
}

_MISSING: Any = object()


def _check_metric(metric: Any) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return str(metric)


def _is_instance(obj: Any, module: str, cls: str) -> bool:
    mod = sys.modules.get(module)
    return mod is not None and isinstance(obj, getattr(mod, cls))


def ragged_metric(
    metric: str, preds: Any, labels: Any, group: Any, k: Optional[int] = None, scale_gains: bool = True
) -> Tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per-query metric values on the ragged (GBDT) layout.

    Args:
        metric: one of ``METRICS``.
        preds, labels: ``[n]`` real numbers.
        group: ``[G]`` list sizes summing to n.
        k: cut-off, or ``None`` for the whole list.
        scale_gains: NDCG gains ``2^y - 1`` (True) or ``y``.

    Returns:
        ``(values [G] float64, valid [G] bool)``; ``valid`` is False for a query with no
        relevant item (value 0).
    """
    metric = _check_metric(metric)
    k = check_k(k)
    p, y, g, _ = ragged(preds, labels, group)
    return _core.ranking_metric_ragged(metric, p, y, g, k, bool(scale_gains))


class RankingMetric:
    """Mean NDCG@k, MRR@k, AP@k, recall@k or precision@k over queries, as a LightGBM/XGBoost
    evaluation metric.

    Args:
        metric: ``"ndcg"``, ``"mrr"``, ``"average_precision"``, ``"recall"`` or ``"precision"``.
        k: cut-off (``None``: the whole list).
        scale_gains: NDCG gain ``2^y - 1`` (True) or ``y``.
        empty: the score of a query with no relevant item (0.0, 1.0 for LightGBM/XGBoost's
            NDCG convention, or None to leave it out of the mean).
        name: the reported name; default ``rankgrad_<tag>@<k>`` (tag ``map`` for
            average_precision), which no LightGBM/XGBoost built-in metric uses.
    """

    higher_is_better = True

    def __init__(
        self,
        metric: str = "ndcg",
        k: Optional[int] = 10,
        *,
        scale_gains: bool = True,
        empty: Optional[float] = 0.0,
        name: Optional[str] = None,
    ) -> None:
        self.metric = _check_metric(metric)
        self.k = check_k(k)
        self.scale_gains = bool(scale_gains)
        self.empty: Optional[float] = None if empty is None else check_real("empty", empty)
        if name is None:
            tag = "rankgrad_" + _TAGS[self.metric]
            name = tag if self.k is None else f"{tag}@{self.k}"
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.name: str = name
        self.__name__ = self.name  # XGBRanker reports a callable metric under its __name__

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(metric={self.metric!r}, k={self.k}, scale_gains={self.scale_gains}, "
            f"empty={self.empty}, name={self.name!r})"
        )

    def evaluate(self, preds: Any, labels: Any, group: Any, weight: Any = None) -> float:
        """The (weighted) mean metric over the queries given by ``group`` (list sizes).

        ``weight``: None, one weight per query, or one per row (a query then weighs the
        mean of its rows' weights, as in LightGBM).
        """
        values, valid = ragged_metric(self.metric, preds, labels, group, self.k, self.scale_gains)
        sizes = group_sizes(group, np.size(preds))
        qw = self._query_weights(weight, sizes)
        if self.empty is None:
            qw = valid.astype(np.float64) if qw is None else np.where(valid, qw, 0.0)
        else:
            values = np.where(valid, values, self.empty)
        if qw is None:
            return float(values.mean()) if values.size else 0.0
        total = float(qw.sum())
        return float(np.dot(values, qw) / total) if total > 0 else 0.0

    @staticmethod
    def _query_weights(weight: Any, sizes: np.ndarray) -> Optional[np.ndarray]:
        if weight is None:
            return None
        w = np.asarray(weight, dtype=np.float64).ravel()
        if w.size == 0:
            return None
        if not np.all(np.isfinite(w)) or w.min() < 0:
            raise ValueError("weight must be finite and non-negative")
        n = int(sizes.sum())
        if w.size == sizes.size and w.size != n:
            return w
        if w.size != n:
            raise ValueError(
                f"weight has {w.size} values: expected one per row ({n}) or per query ({sizes.size})"
            )
        ids = np.repeat(np.arange(sizes.size), sizes)
        sums = np.bincount(ids, weights=w, minlength=sizes.size)
        out: npt.NDArray[np.float64] = np.divide(sums, sizes, out=np.zeros(sizes.size), where=sizes > 0)
        return out

    @overload
    def __call__(self, a: npt.NDArray[Any], b: Dataset) -> Tuple[str, float, bool]: ...
    @overload
    def __call__(self, a: npt.NDArray[Any], b: DMatrix) -> Tuple[str, float]: ...
    @overload
    def __call__(self, a: Any, b: Any, weight: Any, group: Any) -> Tuple[str, float, bool]: ...
    @overload
    def __call__(self, a: npt.ArrayLike, b: npt.ArrayLike) -> float: ...
    def __call__(
        self, a: Any, b: Any, weight: Any = _MISSING, group: Any = _MISSING
    ) -> Union[float, Tuple[str, float], Tuple[str, float, bool]]:
        if _is_instance(b, "lightgbm", "Dataset"):  # lgb.train feval: (preds, dataset)
            value = self.evaluate(a, b.get_label(), b.get_group(), b.get_weight())
            return self.name, value, True
        if _is_instance(b, "xgboost", "DMatrix"):  # xgb.train custom_metric: (preds, dmatrix)
            ptr = np.asarray(b.get_uint_info("group_ptr"), dtype=np.int64)
            sizes = np.diff(ptr) if ptr.size >= 2 else None
            return self.name, self.evaluate(a, b.get_label(), sizes, b.get_weight())
        if weight is _MISSING and group is _MISSING:  # one query: (y_true, y_score) -> value
            y = flat(a, "y_true")
            return self.evaluate(b, y, [y.size])
        # LightGBM's sklearn API: (y_true, y_pred, weight, group)
        w = None if weight is _MISSING else weight
        g = None if group is _MISSING else group
        return self.name, self.evaluate(b, a, g, w), True


class NDCGMetric(RankingMetric):
    """``RankingMetric("ndcg", k, ...)``: mean NDCG@k over queries."""

    def __init__(
        self,
        k: Optional[int] = 10,
        *,
        scale_gains: bool = True,
        empty: Optional[float] = 0.0,
        name: Optional[str] = None,
    ) -> None:
        super().__init__("ndcg", k, scale_gains=scale_gains, empty=empty, name=name)


class MRRMetric(RankingMetric):
    """``RankingMetric("mrr", k, ...)``: mean MRR@k over queries."""

    def __init__(
        self, k: Optional[int] = 10, *, empty: Optional[float] = 0.0, name: Optional[str] = None
    ) -> None:
        super().__init__("mrr", k, empty=empty, name=name)


class AveragePrecisionMetric(RankingMetric):
    """``RankingMetric("average_precision", k, ...)``: mean AP@k (MAP@k) over queries,
    ``AP@k = sum_{p < k, y_(p) > 0} P@(p + 1) / #relevant`` (trec_eval's ``map_cut``)."""

    def __init__(
        self, k: Optional[int] = 10, *, empty: Optional[float] = 0.0, name: Optional[str] = None
    ) -> None:
        super().__init__("average_precision", k, empty=empty, name=name)


class RecallMetric(RankingMetric):
    """``RankingMetric("recall", k, ...)``: mean ``#relevant in top k / #relevant``."""

    def __init__(
        self, k: Optional[int] = 10, *, empty: Optional[float] = 0.0, name: Optional[str] = None
    ) -> None:
        super().__init__("recall", k, empty=empty, name=name)


class PrecisionMetric(RankingMetric):
    """``RankingMetric("precision", k, ...)``: mean ``#relevant in top k / k`` (``k=None``:
    over the list's length)."""

    def __init__(
        self, k: Optional[int] = 10, *, empty: Optional[float] = 0.0, name: Optional[str] = None
    ) -> None:
        super().__init__("precision", k, empty=empty, name=name)
