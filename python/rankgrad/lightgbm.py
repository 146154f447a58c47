"""LambdaRank and XE-NDCG as LightGBM custom objectives (lightgbm is imported only when needed).

    obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=30)
    booster = lightgbm.train({"objective": obj, "metric": "ndcg"}, train_set)   # (preds, dataset)
    ranker = lightgbm.LGBMRanker(objective=obj).fit(X, y, group=group)          # (y, preds, w, group)

The LambdaRank gradients are `rankgrad.lambdarank_gradients` (LightGBM's own lambdarank formulas
with an exact sigmoid, no 10,000-row cap per query); groups come from the Dataset (or the
`group=` given to `fit`), per-row weights from `Dataset.get_weight()`. With positions
(`Dataset(position=...)`, or `positions=` for LGBMRanker) it learns per-position bias factors
as LightGBM >= 4.1 does (`rankgrad._position_bias`). `XENDCGObjective` is LightGBM's
`rank_xendcg` (`rankgrad._xendcg`).

An objective keeps state from round to round (the bias factors, the XE-NDCG generator
streams); a new training run (another Dataset, or another label array for LGBMRanker) starts
it afresh.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from ._inputs import check_nonnegative
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
from .gbdt._position_bias import PositionBias, learning_rate_from

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

_DEFAULT_LEARNING_RATE = 0.1  # LightGBM's


def _is_dataset(obj: Any) -> bool:
    try:
        import lightgbm
    except ImportError:  # pragma: no cover - without lightgbm nobody passes a Dataset
        return False
    return isinstance(obj, lightgbm.Dataset)


class _Call:
    """The arguments of one call, in either LightGBM form."""

    def __init__(self, a: Any, b: Any, weight: Any, group: Any, what: str) -> None:
        self.dataset = b if _is_dataset(b) else None
        if self.dataset is not None:
            self.preds, self.labels = a, self.dataset.get_label()
            self.group, self.weight = self.dataset.get_group(), self.dataset.get_weight()
            if self.group is None:
                raise ValueError(
                    "group: the LightGBM Dataset has no query groups; pass group= when making it"
                )
            self.owner: Any = self.dataset
        else:
            self.labels, self.preds, self.weight, self.group = a, b, weight, group
            if group is None:
                raise ValueError(f"group: {what} needs the query groups (LGBMRanker.fit(..., group=...))")
            self.owner = a


class LambdaRankObjective(LambdaRankBase):
    """A LambdaRank objective for LightGBM: one callable for both `lightgbm.train` and
    `LGBMRanker`.

    Args:
        sigma: the sigmoid's scale (LightGBM's `sigmoid`).
        truncation_level: pairs need their higher-ranked position below it (`lambdarank_truncation_level`).
        norm: normalise each list's lambdas (`lambdarank_norm`).
        label_gain: the gain table (LightGBM's `label_gain`; None: `2^i - 1`).
        metric: "ndcg" or "mrr". All five as in `rankgrad.lambdarank_gradients`.
        positions: `[n]` integer display positions of the training rows, for LGBMRanker
            (`lightgbm.train` reads `Dataset(position=...)` when this is None). With positions,
            the lambdas use `s_i + b[pos_i]` and the factors `b` are learned each round as in
            LightGBM >= 4.1 (`rankgrad._position_bias`).
        position_bias_regularization: L2 penalty on the factors
            (`lambdarank_position_bias_regularization`), >= 0.
        learning_rate: the step of the factors' update; None: the `learning_rate` of the params
            given to `lightgbm.train`, else 0.1 (LightGBM's default). Pass the booster's own
            learning rate when using LGBMRanker with another one.

    After training with positions, `position_biases_` holds the factors (float32 `[P]`) of the
    positions `position_ids_` (the distinct positions, sorted). A constructed LightGBM Dataset
    reports its own ids for the positions (0 .. P-1 in order of first appearance), so with
    `lightgbm.train` these are those ids unless `positions=` gives the original values.

    The (grad, hess) arrays it returns are reused by its next call from the same thread
    (LightGBM copies them at once); copy them to keep them.
    """

    def __init__(
        self,
        *,
        sigma: float = 1.0,
        truncation_level: int = 30,
        norm: bool = True,
        label_gain: Optional[Sequence[float]] = None,
        metric: str = "ndcg",
        positions: Optional[npt.ArrayLike] = None,
        position_bias_regularization: float = 0.0,
        learning_rate: Optional[float] = None,
    ) -> None:
        super().__init__(
            sigma=sigma, truncation_level=truncation_level, norm=norm, label_gain=label_gain, metric=metric
        )
        self.positions = None if positions is None else np.array(positions)
        self.position_bias_regularization = check_nonnegative(
            "position_bias_regularization", position_bias_regularization
        )
        if learning_rate is not None:
            learning_rate = check_nonnegative("learning_rate", learning_rate)
        self.learning_rate = learning_rate
        self._bias: Optional[PositionBias] = None

    @property
    def position_biases_(self) -> npt.NDArray[np.float32]:
        """The learned position bias factors `[P]` (float32), one per `position_ids_`."""
        if self._bias is None:
            raise AttributeError("position_biases_: train with positions first")
        return self._bias.factors.copy()

    @property
    def position_ids_(self) -> npt.NDArray[np.int64]:
        """The distinct positions `[P]` (sorted) that `position_biases_` belong to."""
        if self._bias is None:
            raise AttributeError("position_ids_: train with positions first")
        return self._bias.values.copy()

    def reset(self) -> None:
        """Forget the learned position bias factors (a new run also does)."""
        self._bias = None

    def __deepcopy__(self, memo: dict[int, Any]) -> LambdaRankObjective:
        # lightgbm.train deep-copies its params: sharing the object keeps position_biases_
        # visible on the one the user holds (a new run starts the factors afresh anyway).
        return self

    # Four parameters, so that LGBMRanker passes (y_true, y_pred, weight, group); lightgbm.train
    # calls it with two, (preds, dataset).
    def __call__(
        self, y_true_or_preds: Any, preds_or_dataset: Any, weight: Any = None, group: Any = None
    ) -> Grad:
        c = _Call(y_true_or_preds, preds_or_dataset, weight, group, "LambdaRank")
        positions = self.positions
        lr = self.learning_rate
        if c.dataset is not None:
            if positions is None:
                # Dataset(position=...) and get_position() exist from LightGBM 4.1 on
                get_position = getattr(c.dataset, "get_position", None)
                positions = get_position() if get_position is not None else None
            if lr is None:
                lr = learning_rate_from(getattr(c.dataset, "params", None))
        if positions is None:
            plain: Grad = self._gradients(c.preds, c.labels, c.group, c.weight)
            return plain
        preds = np.asarray(c.preds)
        bias = self._bias
        if bias is None or not bias.same_run(c.owner):
            bias = PositionBias(positions, preds.size)
            bias.same_run(c.owner)
            self._bias = bias
        grad, hess = self._gradients(bias.adjust(preds), c.labels, c.group, c.weight)
        bias.update(
            grad.ravel(), hess.ravel(), self.position_bias_regularization, lr or _DEFAULT_LEARNING_RATE
        )
        return grad.reshape(preds.shape), hess.reshape(preds.shape)

    def __repr__(self) -> str:
        extra = ""
        if self.positions is not None or self.position_bias_regularization:
            extra = f", position_bias_regularization={self.position_bias_regularization}"
        return super().__repr__()[:-1] + extra + ")"


class XENDCGObjective(XENDCGBase):
    """XE-NDCG, LightGBM's `rank_xendcg` objective, for `lightgbm.train` and `LGBMRanker`.

    Args:
        seed: the generator seed; the gammas are those LightGBM draws with
            `objective_seed=seed` (one stream per query, independent of the thread count).

    Each call advances the streams; a new training run restarts them from `seed`.
    """

    def __call__(
        self, y_true_or_preds: Any, preds_or_dataset: Any, weight: Any = None, group: Any = None
    ) -> Grad:
        c = _Call(y_true_or_preds, preds_or_dataset, weight, group, "XE-NDCG")
        return self._state.gradients(c.preds, c.labels, c.group, c.weight, c.owner)
