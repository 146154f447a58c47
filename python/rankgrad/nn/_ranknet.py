"""``RankNetLoss``: the module form of ``rankgrad.ranknet_loss``."""

from __future__ import annotations

from typing import Any

import torch

from .._inputs import check_backend, check_positive, check_reduction
from ..ranknet import ranknet_loss


class RankNetLoss(torch.nn.Module):
    """RankNet criterion: per list ``mean_{y_i > y_j} log(1 + exp(-sigma (s_i - s_j)))``.

    Called as ``loss(scores, targets, mask=None)`` on ``[B, N]`` (or ``[N]``) tensors; see
    ``rankgrad.ranknet_loss`` for the details.
    """

    def __init__(
        self, sigma: float = 1.0, reduction: str = "mean", backend: str = "auto", validate: bool = True
    ):
        super().__init__()
        self.sigma = check_positive("sigma", sigma)
        check_reduction(reduction)
        check_backend(backend)
        self.reduction = reduction
        self.backend = backend
        self.validate = bool(validate)

    def forward(self, scores: torch.Tensor, targets: Any, mask: Any = None) -> torch.Tensor:
        return ranknet_loss(
            scores,
            targets,
            sigma=self.sigma,
            mask=mask,
            reduction=self.reduction,
            backend=self.backend,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, reduction={self.reduction!r}"
