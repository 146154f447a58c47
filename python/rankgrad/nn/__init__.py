"""torch.nn modules: ranking criteria and embedding losses (needs PyTorch)."""

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in tests/test_no_torch.py
    raise ImportError(
        'rankgrad.nn needs PyTorch, which is not installed: pip install "rankgrad[torch]"'
    ) from e

from ._approx import ApproxMRRLoss, ApproxNDCGLoss, ApproxRankMSELoss
from ._embedding import (
    FLOPSRegularization,
    L1Regularization,
    L2Regularization,
    MultipleNegativesRankingLoss,
)
from ._lambdarank import LambdaRankLoss
from ._listwise import LambdaLoss, ListMLELoss, SoftmaxLoss
from ._ranknet import RankNetLoss

__all__ = [
    "ApproxNDCGLoss",
    "ApproxMRRLoss",
    "ApproxRankMSELoss",
    "RankNetLoss",
    "LambdaRankLoss",
    "LambdaLoss",
    "SoftmaxLoss",
    "ListMLELoss",
    "L1Regularization",
    "L2Regularization",
    "FLOPSRegularization",
    "MultipleNegativesRankingLoss",
]
