"""What the LightGBM and XGBoost adapters share (numpy only; neither library is imported here):

- `_objective.LambdaRankBase`: the LambdaRank options and the reused output arrays of
  `LambdaRankObjective`, on `rankgrad.lambdarank_gradients`;
- `_xendcg`: XE-NDCG (LightGBM's `rank_xendcg`), its gradients and generator streams;
- `_position_bias`: the position bias factors of position-debiased LambdaRank (LightGBM >= 4.1);
- `_metrics`: NDCG@k, MRR@k, AP@k, recall@k and precision@k as evaluation metrics.

`rankgrad.lightgbm` and `rankgrad.xgboost` are thin adapters over these: they only read each
library's call shape (a Dataset or a DMatrix, groups, weights, positions).
"""

from ._metrics import (
    AveragePrecisionMetric,
    MRRMetric,
    NDCGMetric,
    PrecisionMetric,
    RankingMetric,
    RecallMetric,
    ragged_metric,
)
from ._objective import LambdaRankBase
from ._xendcg import XENDCGBase, xendcg_gradients

__all__ = [
    "LambdaRankBase",
    "XENDCGBase",
    "xendcg_gradients",
    "RankingMetric",
    "NDCGMetric",
    "MRRMetric",
    "AveragePrecisionMetric",
    "RecallMetric",
    "PrecisionMetric",
    "ragged_metric",
]
