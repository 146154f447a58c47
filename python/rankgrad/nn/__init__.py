"""torch.nn modules: ranking criteria and embedding losses."""

__all__: list = []

from ._embedding import (  # noqa: E402
    FLOPSRegularization,
    L1Regularization,
    L2Regularization,
    MultipleNegativesRankingLoss,
)

__all__ += ["L1Regularization", "L2Regularization", "FLOPSRegularization", "MultipleNegativesRankingLoss"]
