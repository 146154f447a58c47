"""Module wrappers of the ranking criteria: options in the constructor, `loss(scores, targets, mask=None)`."""

from __future__ import annotations

from typing import Optional

import torch

from .. import approx
from .._inputs import check_positive, check_reduction


class _ApproxLoss(torch.nn.Module):
    def __init__(self, temperature: float = 1.0, reduction: str = "mean", backend: str = "auto"):
        super().__init__()
        check_reduction(reduction)
        self.temperature = check_positive("temperature", temperature)
        self.reduction = reduction
        self.backend = backend

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


class ApproxNDCGLoss(_ApproxLoss):
    """`rankgrad.approx_ndcg_loss` as a module."""

    def __init__(
        self,
        temperature: float = 1.0,
        scale_gains: bool = True,
        reduction: str = "mean",
        backend: str = "auto",
    ):
        super().__init__(temperature, reduction, backend)
        self.scale_gains = scale_gains

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, mask: Optional[torch.Tensor] = None):
        return approx.approx_ndcg_loss(
            scores, targets, self.temperature, self.scale_gains, mask, self.reduction, backend=self.backend
        )


class ApproxMRRLoss(_ApproxLoss):
    """`rankgrad.approx_mrr_loss` as a module."""

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, mask: Optional[torch.Tensor] = None):
        return approx.approx_mrr_loss(
            scores, targets, self.temperature, mask, self.reduction, backend=self.backend
        )


class ApproxRankMSELoss(_ApproxLoss):
    """`rankgrad.approx_rank_mse_loss` as a module."""

    def __init__(
        self,
        temperature: float = 1.0,
        discount: Optional[str] = None,
        reduction: str = "mean",
        backend: str = "auto",
    ):
        super().__init__(temperature, reduction, backend)
        if discount not in (None, "log2", "reciprocal"):
            raise ValueError(f"discount must be None, 'log2' or 'reciprocal', got {discount!r}")
        self.discount = discount

    def forward(self, scores: torch.Tensor, targets: torch.Tensor, mask: Optional[torch.Tensor] = None):
        return approx.approx_rank_mse_loss(
            scores, targets, self.temperature, self.discount, mask, self.reduction, backend=self.backend
        )
