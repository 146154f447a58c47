"""NDCG@k and MRR@k as evaluation metrics for LightGBM and XGBoost.

One callable class, ``RankingMetric(metric="ndcg", k=10)`` (with the shorthands
``NDCGMetric(k)`` and ``MRRMetric(k)``), that works wherever a GBDT library takes a
custom metric; it tells the call apart by its arguments:

- ``lgb.train(..., feval=metric)``: ``metric(preds, dataset)`` -> ``(name, value, True)``,
  groups from ``dataset.get_group()``;
- ``LGBMRanker().fit(..., eval_metric=metric)``: ``metric(y_true, y_pred, weight, group)``
  -> ``(name, value, True)`` (LightGBM picks this form from the 4 parameters of
  ``__call__``);
- ``xgb.train(..., custom_metric=metric)``: ``metric(preds, dmatrix)`` -> ``(name, value)``,
  groups from the DMatrix's ``group_ptr`` (pass ``maximize=True`` for early stopping);
- ``XGBRanker(eval_metric=metric)``: ``metric(y_true, y_score)`` for one query -> value.

The value is the mean over queries of the per-query metric (rankgrad.ndcg / rankgrad.mrr:
ties by input order, gains ``2^y - 1`` like LightGBM's default ``label_gain``), weighted by
query weights when the data has weights (LightGBM: the mean of a query's row weights; XGBoost:
its per-group weights). A query with no relevant item scores ``empty``: 0.0 by default
(trec_eval, rankgrad.ndcg), 1.0 to match LightGBM's and XGBoost's built-in ``ndcg``, or
``None`` to leave such queries out of the mean. The lists are computed by the Rust kernel on
the ragged layout in O(n log n); no list size cap. lightgbm and xgboost are never imported
here: a dataset is recognised only if its library is already loaded.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np

from . import _core
from .metrics import check_k

__all__ = ["RankingMetric", "NDCGMetric", "MRRMetric", "ragged_metric"]

_MISSING = object()


def _is_instance(obj: Any, module: str, cls: str) -> bool:
    mod = sys.modules.get(module)
    return mod is not None and isinstance(obj, getattr(mod, cls))


def _flat(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per row), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise TypeError(f"{name} must be real numbers, got {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _group_sizes(group: Any, n: int) -> np.ndarray:
    if group is None:
        raise ValueError("group: ranking metrics need query groups (list sizes), got None")
    g = np.asarray(group)
    if g.ndim != 1:
        raise ValueError(f"group must be 1-D (list sizes), got shape {g.shape}")
    if g.size and not np.issubdtype(g.dtype, np.integer):
        if not (np.issubdtype(g.dtype, np.floating) and np.all(np.mod(g, 1) == 0)):
            raise ValueError(f"group must hold integer list sizes, got {g.dtype}")
    g = g.astype(np.int64)
    if g.size and g.min() < 0:
        raise ValueError(f"group: size of list {int(np.argmax(g < 0))} is negative")
    if int(g.sum()) != n:
        raise ValueError(f"group: sizes sum to {int(g.sum())}, but preds has {n} rows")
    return g


def ragged_metric(
    metric: str, preds: Any, labels: Any, group: Any, k: Optional[int] = None, scale_gains: bool = True
):
    """Per-query ``(values [G], valid [G])`` for flat ``preds``/``labels`` ``[n]`` and list
    sizes ``group`` ``[G]``; ``valid`` is False for a query with no relevant item (value 0)."""
    if metric not in ("ndcg", "mrr"):
        raise ValueError(f"metric must be 'ndcg' or 'mrr', got {metric!r}")
    k = check_k(k)
    p = _flat(preds, "preds")
    y = _flat(labels, "labels")
    if y.shape != p.shape:
        raise ValueError(f"labels has {y.size} rows, expected {p.size} like preds")
    g = _group_sizes(group, p.size)
    return _core.ranking_metric_ragged(metric, p, y, g, k, bool(scale_gains))


class RankingMetric:
    """Mean NDCG@k or MRR@k over queries, as a LightGBM/XGBoost evaluation metric.

    ``metric``: ``"ndcg"`` or ``"mrr"``; ``k``: cut-off (``None``: whole list);
    ``scale_gains``: NDCG gain ``2^y - 1`` (True) or ``y``; ``empty``: the score of a query
    with no relevant item (0.0, 1.0 for LightGBM/XGBoost's convention, or None to skip it);
    ``name``: the reported name (default ``"ndcg@10"``; pick another if the library's own
    metric of that name is also on, so their logs stay apart).
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
    ):
        if metric not in ("ndcg", "mrr"):
            raise ValueError(f"metric must be 'ndcg' or 'mrr', got {metric!r}")
        self.metric = metric
        self.k = check_k(k)
        self.scale_gains = bool(scale_gains)
        if empty is not None:
            empty = float(empty)
            if not np.isfinite(empty):
                raise ValueError(f"empty must be a finite number or None, got {empty!r}")
        self.empty = empty
        self.name = name if name is not None else (metric if self.k is None else f"{metric}@{self.k}")
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__}")
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
        sizes = np.asarray(group, dtype=np.int64)
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
        return np.divide(sums, sizes, out=np.zeros(sizes.size), where=sizes > 0)

    def __call__(self, a: Any, b: Any, weight: Any = _MISSING, group: Any = _MISSING):
        if _is_instance(b, "lightgbm", "Dataset"):  # lgb.train feval: (preds, dataset)
            value = self.evaluate(a, b.get_label(), b.get_group(), b.get_weight())
            return self.name, value, True
        if _is_instance(b, "xgboost", "DMatrix"):  # xgb.train custom_metric: (preds, dmatrix)
            ptr = np.asarray(b.get_uint_info("group_ptr"), dtype=np.int64)
            sizes = np.diff(ptr) if ptr.size >= 2 else None
            return self.name, self.evaluate(a, b.get_label(), sizes, b.get_weight())
        if weight is _MISSING and group is _MISSING:  # one query: (y_true, y_score) -> value
            y = _flat(a, "y_true")
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
    ):
        super().__init__("ndcg", k, scale_gains=scale_gains, empty=empty, name=name)


class MRRMetric(RankingMetric):
    """``RankingMetric("mrr", k, ...)``: mean MRR@k over queries."""

    def __init__(self, k: Optional[int] = 10, *, empty: Optional[float] = 0.0, name: Optional[str] = None):
        super().__init__("mrr", k, empty=empty, name=name)
