"""Module wrappers of the approximate-rank losses: options in the constructor,
`loss(scores, targets, mask=None, weights=None)` in `forward` (SPEC 13's weights: `[B, N]` per
item or `[B]` per list)."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from .. import approx
from .._inputs import check_backend, check_method, check_reduction, check_scale


class _ApproxLoss(torch.nn.Module):
    def __init__(
        self,
        temperature: float = 1.0,
        reduction: str = "mean",
        *,
        method: str = "auto",
        backend: str = "auto",
        validate: bool = True,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        check_backend(backend)
        self.temperature = check_scale("temperature", temperature)  # each call checks its dtype's range
        self.reduction = reduction
        self.method = check_method(method)
        self.backend = backend
        self.validate = bool(validate)

    def _options(self) -> str:
        return ""

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}{self._options()}, reduction={self.reduction!r}, "
            f"method={self.method!r}, backend={self.backend!r}, validate={self.validate}"
        )


class ApproxNDCGLoss(_ApproxLoss):
    """`rankgrad.approx_ndcg_loss` as a module.

    Args:
        temperature: `T > 0` of the approximate ranks.
        scale_gains: `2^y - 1` gains (True) or linear gains `y`.
        reduction: "mean", "sum" or "none".
        method: "auto", "fast" or "exact" summation (keyword-only; see `rankgrad.approx_ranks`).
        backend: "auto", "rust" or "torch" (keyword-only).
        validate: NaN/inf checks on the torch-native path (keyword-only).

    Example:
        >>> import torch
        >>> from rankgrad.nn import ApproxNDCGLoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = ApproxNDCGLoss(temperature=0.5)(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        0.2543
    """

    def __init__(
        self,
        temperature: float = 1.0,
        scale_gains: bool = True,
        reduction: str = "mean",
        *,
        method: str = "auto",
        backend: str = "auto",
        validate: bool = True,
    ) -> None:
        super().__init__(temperature, reduction, method=method, backend=backend, validate=validate)
        self.scale_gains = bool(scale_gains)

    def _options(self) -> str:
        return f", scale_gains={self.scale_gains}"

    def forward(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        weights: Union[torch.Tensor, np.ndarray, None] = None,
    ) -> torch.Tensor:
        """Scores/targets `[B, N]` (or `[N]`), mask `[B, N]` bool, weights `[B, N]` per item or
        `[B]` per list (SPEC 13, see the function); the reduced loss."""
        return approx.approx_ndcg_loss(
            scores,
            targets,
            self.temperature,
            self.scale_gains,
            mask,
            self.reduction,
            weights=weights,
            method=self.method,
            backend=self.backend,
            validate=self.validate,
        )


class ApproxMRRLoss(_ApproxLoss):
    """`rankgrad.approx_mrr_loss` as a module.

    Args:
        temperature: `T > 0` of the approximate ranks.
        reduction: "mean", "sum" or "none".
        method: "auto", "fast" or "exact" summation (keyword-only; see `rankgrad.approx_ranks`).
        backend: "auto", "rust" or "torch" (keyword-only).
        validate: NaN/inf checks on the torch-native path (keyword-only).

    Example:
        >>> import torch
        >>> from rankgrad.nn import ApproxMRRLoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = ApproxMRRLoss()(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        0.4145
    """

    def forward(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        weights: Union[torch.Tensor, np.ndarray, None] = None,
    ) -> torch.Tensor:
        """Scores/targets `[B, N]` (or `[N]`), mask `[B, N]` bool, weights `[B, N]` per item or
        `[B]` per list (SPEC 13, see the function); the reduced loss."""
        return approx.approx_mrr_loss(
            scores,
            targets,
            self.temperature,
            mask,
            self.reduction,
            weights=weights,
            method=self.method,
            backend=self.backend,
            validate=self.validate,
        )


class ApproxRankMSELoss(_ApproxLoss):
    """`rankgrad.approx_rank_mse_loss` as a module.

    Args:
        temperature: `T > 0` of the approximate ranks.
        discount: None, "log2" or "reciprocal" weights by true rank.
        reduction: "mean", "sum" or "none".
        method: "auto", "fast" or "exact" summation (keyword-only; see `rankgrad.approx_ranks`).
        backend: "auto", "rust" or "torch" (keyword-only).
        validate: NaN/inf checks on the torch-native path (keyword-only).

    Example:
        >>> import torch
        >>> from rankgrad.nn import ApproxRankMSELoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = ApproxRankMSELoss(discount="log2")(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        0.397
    """

    def __init__(
        self,
        temperature: float = 1.0,
        discount: Optional[str] = None,
        reduction: str = "mean",
        *,
        method: str = "auto",
        backend: str = "auto",
        validate: bool = True,
    ) -> None:
        super().__init__(temperature, reduction, method=method, backend=backend, validate=validate)
        self.discount = approx.check_discount(discount)

    def _options(self) -> str:
        return f", discount={self.discount!r}"

    def forward(
        self,
        scores: torch.Tensor,
        targets: torch.Tensor,
        mask: Optional[torch.Tensor] = None,
        weights: Union[torch.Tensor, np.ndarray, None] = None,
    ) -> torch.Tensor:
        """Scores/targets `[B, N]` (or `[N]`), mask `[B, N]` bool, weights `[B, N]` per item or
        `[B]` per list (SPEC 13, see the function); the reduced loss."""
        return approx.approx_rank_mse_loss(
            scores,
            targets,
            self.temperature,
            self.discount,
            mask,
            self.reduction,
            weights=weights,
            method=self.method,
            backend=self.backend,
            validate=self.validate,
        )
