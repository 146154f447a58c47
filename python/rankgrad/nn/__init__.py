"""torch.nn modules: ranking criteria and embedding losses."""

from ._embedding import (
    FLOPSRegularization,
    L1Regularization,
    L2Regularization,
    MultipleNegativesRankingLoss,
)
from ._lambdarank import LambdaRankLoss
from ._ranking import ApproxMRRLoss, ApproxNDCGLoss, ApproxRankMSELoss
from ._ranknet import RankNetLoss

__all__ = [
    "ApproxNDCGLoss",
    "ApproxMRRLoss",
    "ApproxRankMSELoss",
    "RankNetLoss",
    "LambdaRankLoss",
    "L1Regularization",
    "L2Regularization",
    "FLOPSRegularization",
    "MultipleNegativesRankingLoss",
]
