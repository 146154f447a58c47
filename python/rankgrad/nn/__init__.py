"""torch.nn modules: ranking criteria and embedding losses."""

from ._embedding import (
    FLOPSRegularization,
    L1Regularization,
    L2Regularization,
    MultipleNegativesRankingLoss,
)
from ._ranking import ApproxMRRLoss, ApproxNDCGLoss, ApproxRankMSELoss

__all__ = [
    "ApproxNDCGLoss",
    "ApproxMRRLoss",
    "ApproxRankMSELoss",
    "L1Regularization",
    "L2Regularization",
    "FLOPSRegularization",
    "MultipleNegativesRankingLoss",
]
