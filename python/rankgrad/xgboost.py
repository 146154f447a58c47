"""LambdaRank and XE-NDCG as XGBoost custom objectives (xgboost is imported only when needed).

    obj = rankgrad.xgboost.LambdaRankObjective()      # XGBoost's rank:ndcg, defaults and all
    booster = xgboost.train({**params, "base_score": 0.0}, dtrain, num_boost_round=100, obj=obj)

Groups come from the DMatrix's query groups (`group=`/`qid=`, stored as `group_ptr`).

Weights: XGBoost's ranking weights are one per query group (`DMatrix(weight=...)` with one
value per group). Both objectives follow XGBoost's ranking objectives (`rank:ndcg`,
`rank:map`, `rank:pairwise` alike): each group's weight times `G / sum(weights)` (weights
normalised to mean 1 over the G groups) multiplies the grad and hess of its rows; a vector with
one weight per row (which XGBoost's ranking objectives refuse) is used row by row, normalised to
mean 1 over the rows. No weights: all ones.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional, Tuple

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

# XGBoost's `lambdarank_num_pair_per_sample` default for the `topk` pair method
# (`LambdaRankParam::DefaultK`, src/common/ranking_utils.h, 2.0 to 3.2).
DEFAULT_TRUNCATION = 32

# `ndcg_exp_gain=True`: XGBoost's `CalcDCGGain`, `(1u << label) - 1` for labels 0 .. 31.
_EXP_GAIN = 2.0 ** np.arange(32) - 1.0


def _groups_and_weights(
    preds: Any, dtrain: Any, normalise: bool
) -> Tuple[npt.NDArray[np.int64], Optional[npt.NDArray[np.float64]]]:
    """The list sizes `[G]` of a DMatrix and its weights spread to rows (`[n]`, or None);
    `normalise`: to mean 1 over the groups (group weights) or the rows (row weights)."""
    n = np.asarray(preds).size
    ptr = np.asarray(dtrain.get_uint_info("group_ptr"), dtype=np.int64)
    if ptr.size < 2:
        raise ValueError("group: the DMatrix has no query groups; make it with group= or qid=")
    group = np.diff(ptr)
    w = np.asarray(dtrain.get_weight(), dtype=np.float64)
    if w.size == 0:
        return group, None
    if w.size != group.size and w.size != n:
        raise ValueError(
            f"weights: the DMatrix has {w.size} weights, expected one per group ({group.size}) or one per row ({n})"
        )
    if normalise:
        total = w.sum()
        if not (total > 0 and np.isfinite(total)):
            raise ValueError(f"weights: they must have a positive finite sum to be normalised, got {total}")
        w = w * (w.size / total)
    return group, (np.repeat(w, group) if w.size == group.size else w)


def _flag(params: Mapping[str, Any], key: str, default: bool) -> bool:
    """An XGBoost boolean parameter (True/False, 0/1, "true"/"false", "1"/"0")."""
    v = params.get(key, default)
    if isinstance(v, str):
        if v.strip().lower() in ("true", "1"):
            return True
        if v.strip().lower() in ("false", "0"):
            return False
        raise ValueError(f"{key} must be a boolean, got {v!r}")
    if isinstance(v, (bool, np.bool_)) or v in (0, 1):
        return bool(v)
    raise ValueError(f"{key} must be a boolean, got {v!r}")


def _xgboost_version() -> Tuple[int, int]:
    """(major, minor) of the installed XGBoost ("3.2.0", "2.1.0rc1", "3.0.0-dev" ...)."""
    import xgboost

    found = re.match(r"(\d+)\.(\d+)", xgboost.__version__)
    if found is None:  # pragma: no cover - every release has major.minor
        raise ValueError(f"cannot read the XGBoost version {xgboost.__version__!r}")
    return int(found.group(1)), int(found.group(2))


class LambdaRankObjective(LambdaRankBase):
    """XGBoost's own `rank:ndcg` (its `topk` pair method, the default) as a custom objective for
    `xgboost.train(params, dtrain, obj=...)`, called as `obj(preds, dtrain)`.

    With its defaults it is `objective="rank:ndcg"` with XGBoost's defaults (2.0 to 3.2): the same
    trees up to float32 rounding. Pass `base_score=0` in `params`: `rank:ndcg` fits its
    intercept with a Newton step on gradients that sum to zero in every group (so ~1e-10), while
    a custom objective gets XGBoost's default 0.5, which shifts every margin by 0.5 (the ranking
    is the same). `from_params(params)` reads the `lambdarank_*` / `ndcg_exp_gain` keys of a
    `rank:ndcg` params dict.

    What `rank:ndcg` computes (src/objective/lambdarank_obj.{h,cc}, src/common/ranking_utils.{h,cc},
    `LambdaGrad`, `CalcLambdaForGroup`, `MakePairs`, `NDCGCache`), and so this objective: per
    group, rows sorted by score descending (stable); for each position `i < min(n, k)` and each
    `j > i` with a different label (h the higher label, l the other, `ds = s_h - s_l`):

        delta = |G(y_h) - G(y_l)| * |D(p_h) - D(p_l)| / IDCG@k     D(p) = 1 / log2(p + 2)
        if normalised and best score != worst score: delta /= 0.01 + |ds|
        sig   = 1 / (1 + exp(-ds))
        grad[h] += (sig - 1) * delta;  grad[l] -= (sig - 1) * delta
        hess[h], hess[l] += 2 * max(sig * (1 - sig), 1e-16) * delta;   S += -2 * (sig - 1) * delta

    then, if normalised and `S > 0`, the group's grad and hess times `log2(1 + S) / S`, and
    finally times the group weight times `G / sum(weights)`. That is LightGBM's lambdarank
    (`rankgrad.lambdarank_gradients`, sigma = 1) with the hessian doubled (the `2` above),
    `k = 32` by default, gains `G(y) = 2^y - 1` (`ndcg_exp_gain`, labels 0 .. 31) or `G(y) = y`,
    and normalised weights. `lambdarank_unbiased` (position debiasing) is off by default and not
    reproduced.

    Args:
        truncation_level: `k`, XGBoost's `lambdarank_num_pair_per_sample` (default 32) with the
            `topk` pair method: pairs need their higher-ranked position below it, and IDCG is
            taken at `k`.
        norm: True: both of XGBoost's normalisations, `lambdarank_normalization` (the
            `log2(1 + S) / S` per group) and `lambdarank_score_normalization` (`delta /=
            0.01 + |ds|`), as XGBoost's defaults. False: neither (XGBoost >= 3.0 with both set to
            false). One without the other is not offered: rankgrad's kernel couples them
            (XGBoost 2.1 can turn off only the first; 2.0 has neither switch).
        ndcg_exp_gain: XGBoost's `ndcg_exp_gain`: gains `2^y - 1` (integer labels 0 .. 31) or,
            when False, the label itself (any real labels).
        label_gain: a gain table for integer labels instead (LightGBM's `label_gain`, no XGBoost
            counterpart; None: `ndcg_exp_gain` decides).
        sigma: the sigmoid's scale; 1 is XGBoost's (it has no such parameter).
        metric: "ndcg" (`rank:ndcg`), or "mrr" (no XGBoost counterpart).

    Where it differs from `rank:ndcg`, and why:
        - XGBoost computes the sigmoid in float32 (`1 / (1 + expf(-ds))`; newer versions cap
          `-ds` at 88.7) and accumulates each row's grad and hess in float32; rankgrad computes
          in float64, so one round agrees to float32 rounding (~1e-7 relative) and the
          differences can grow over rounds (measured with 3.2 after 30 rounds: margins up to ~4
          within 1.5e-6). Where the
          float32 sigmoid rounds to 1 (`ds > ~16.6`) XGBoost's pair grad is exactly 0 and its
          hess `2e-16 * delta` (the floor of `sig * (1 - sig)`); rankgrad's are about
          `e^-ds * delta`, as its hess is where `sig * (1 - sig) < 1e-16` (`ds < ~-36.8`).
        - The `mean` pair method (random pairs from `std::minstd_rand` and libstdc++'s
          `uniform_int_distribution`, seeded differently across versions, and in newer versions
          normalised by `1 / lambdarank_num_pair_per_sample` instead of `log2(1 + S) / S`) is not
          reproduced; nor are `rank:map` / `rank:pairwise` or `lambdarank_unbiased`.
        - Per-row weights, which `rank:ndcg` (2.0 to 3.2) refuses, are used row by row (module
          docstring).
        - XGBoost versions: 2.0 always applies both normalisations (no switches); 2.1 adds
          `lambdarank_normalization`; 3.0 adds `lambdarank_score_normalization`. The pair
          gradients, the default `k = 32`, the `topk` default, the gains and the group-weight
          normalisation `G / sum(weights)` are the same in the 2.0 and 3.x sources (measured
          against XGBoost 3.2 and 2.0.0, the floor). `from_params` reads the switches as the installed XGBoost does.

    The (grad, hess) arrays it returns are reused by its next call from the same thread
    (XGBoost copies them at once); copy them to keep them."""

    def __init__(
        self,
        *,
        truncation_level: int = DEFAULT_TRUNCATION,
        norm: bool = True,
        ndcg_exp_gain: bool = True,
        label_gain: Optional[Any] = None,
        sigma: float = 1.0,
        metric: str = "ndcg",
    ) -> None:
        super().__init__(
            sigma=sigma, truncation_level=truncation_level, norm=norm, label_gain=label_gain, metric=metric
        )
        self.ndcg_exp_gain = bool(ndcg_exp_gain)
        if label_gain is not None and not self.ndcg_exp_gain:
            raise ValueError("label_gain and ndcg_exp_gain=False both set the gains: give one")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LambdaRankObjective:
        """The objective that `rank:ndcg` with these XGBoost params is, on the installed XGBoost.

        Reads `lambdarank_pair_method` (only "topk"), `lambdarank_num_pair_per_sample`,
        `lambdarank_normalization` (XGBoost >= 2.1; 2.0 always normalises),
        `lambdarank_score_normalization` (>= 3.0; before, always on), `lambdarank_unbiased`
        (only false) and `ndcg_exp_gain`; an `objective` other than "rank:ndcg" is an error,
        every other key is ignored. Raises ValueError for what it cannot reproduce."""
        objective = params.get("objective", "rank:ndcg")
        if objective != "rank:ndcg":
            raise ValueError(f"objective: only rank:ndcg is reproduced, got {objective!r}")
        method = params.get("lambdarank_pair_method", "topk")
        if method != "topk":
            raise ValueError(
                f"lambdarank_pair_method: only 'topk' is reproduced (XGBoost's 'mean' samples random pairs), got {method!r}"
            )
        if _flag(params, "lambdarank_unbiased", False):
            raise ValueError("lambdarank_unbiased: XGBoost's position debiasing is not reproduced")
        k = params.get("lambdarank_num_pair_per_sample")
        version = _xgboost_version()
        normalise = _flag(params, "lambdarank_normalization", True) if version >= (2, 1) else True
        by_score = _flag(params, "lambdarank_score_normalization", True) if version >= (3, 0) else True
        if normalise != by_score:
            raise ValueError(
                f"lambdarank_normalization={normalise} with lambdarank_score_normalization={by_score} "
                f"(as XGBoost {version[0]}.{version[1]} reads them): rankgrad applies both "
                "normalisations or neither"
            )
        return cls(
            truncation_level=DEFAULT_TRUNCATION if k is None else int(k),
            norm=normalise,
            ndcg_exp_gain=_flag(params, "ndcg_exp_gain", True),
        )

    def __call__(self, preds: Any, dtrain: Any) -> Grad:
        group, weights = _groups_and_weights(preds, dtrain, normalise=True)
        labels = dtrain.get_label()
        overrides: Dict[str, Any] = {}
        if self.label_gain is None:
            if self.ndcg_exp_gain:
                overrides["label_gain"] = _EXP_GAIN
            else:
                # G(y) = y for real labels: the distinct labels, ascending, are the gain table and
                # each row's label its index in it (order and ties, all the kernel uses, are kept).
                values, index = np.unique(np.asarray(labels, dtype=np.float64), return_inverse=True)
                overrides["label_gain"] = values
                labels = index.astype(np.float64).ravel()
        grad, hess = self._gradients(preds, labels, group, weights, **overrides)
        hess *= 2.0  # XGBoost's hessian: 2 * sig * (1 - sig) * delta
        return grad, hess

    def __repr__(self) -> str:
        extra = "" if self.ndcg_exp_gain else ", ndcg_exp_gain=False"
        return super().__repr__()[:-1] + extra + ")"


class XENDCGObjective(XENDCGBase):
    """XE-NDCG (LightGBM's `rank_xendcg`) for `xgboost.train(obj=...)`, called as
    `obj(preds, dtrain)`.

    Args:
        seed: the generator seed (the gammas LightGBM draws with `objective_seed=seed`: one
            stream per query, independent of the thread count).

    Each call advances the streams; another DMatrix starts a new run from `seed`. Weights as
    given (module docstring), LightGBM's hessian (no factor 2).
    """

    def __call__(self, preds: Any, dtrain: Any) -> Grad:
        group, weights = _groups_and_weights(preds, dtrain, normalise=True)
        return self._state.gradients(preds, dtrain.get_label(), group, weights, dtrain)
