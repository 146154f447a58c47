"""Module forms of the listwise losses: `LambdaLoss`, `SoftmaxLoss`, `ListMLELoss`."""

from __future__ import annotations

from typing import Any, Optional

import torch

from .._inputs import check_backend, check_count, check_reduction, check_scale
from ..listwise import WEIGHTINGS, check_options, lambda_loss, listmle_loss, softmax_loss


class LambdaLoss(torch.nn.Module):
    """LambdaLoss criterion (`rankgrad.lambda_loss`): per list
    `-sum w_ij log2(sigmoid(sigma (s_i - s_j)))` over the pairs `y_i > y_j` in the top `k`
    positions by score, `w_ij` the `weighting`'s constant NDCG-derived weight.

    Called as `loss(scores, targets, mask=None)` on `[B, N]` (or `[N]`) tensors.

    Example:
        >>> import torch
        >>> from rankgrad.nn import LambdaLoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = LambdaLoss(k=2)(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        1.516
    """

    def __init__(
        self,
        weighting: str = "ndcg2pp",
        sigma: float = 1.0,
        k: Optional[int] = None,
        mu: float = 10.0,
        scale_gains: bool = True,
        reduction: str = "mean",
        *,
        backend: str = "auto",
        validate: bool = True,
    ):
        super().__init__()
        self.mu = check_options(weighting, mu)
        check_reduction(reduction)
        check_backend(backend)
        self.weighting = weighting
        self.sigma = check_scale("sigma", sigma)  # each call checks its dtype's range
        self.k = check_count("k", k)
        self.scale_gains = bool(scale_gains)
        self.reduction = reduction
        self.backend = backend
        self.validate = bool(validate)

    def forward(
        self, scores: torch.Tensor, targets: Any, mask: Any = None, weights: Any = None
    ) -> torch.Tensor:
        """`weights`: `[B, N]` per item or `[B]` per list (SPEC 13, see `rankgrad.lambda_loss`)."""
        return lambda_loss(
            scores,
            targets,
            self.weighting,
            self.sigma,
            self.k,
            self.mu,
            mask,
            self.reduction,
            self.scale_gains,
            weights=weights,
            backend=self.backend,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        return (
            f"weighting={self.weighting!r}, sigma={self.sigma}, k={self.k}, mu={self.mu}, "
            f"scale_gains={self.scale_gains}, reduction={self.reduction!r}, "
            f"backend={self.backend!r}, validate={self.validate}"
        )


class SoftmaxLoss(torch.nn.Module):
    """Softmax cross-entropy criterion (`rankgrad.softmax_loss`): per list
    `-sum_i p_i log softmax(s)_i`, `p_i = max(y_i, 0) / sum_j max(y_j, 0)` (`normalize=False`:
    `p_i = max(y_i, 0)`).

    Example:
        >>> import torch
        >>> from rankgrad.nn import SoftmaxLoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = SoftmaxLoss()(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        1.0832
    """

    def __init__(self, reduction: str = "mean", *, normalize: bool = True, validate: bool = True):
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction
        self.normalize = bool(normalize)
        self.validate = bool(validate)

    def forward(
        self, scores: torch.Tensor, targets: Any, mask: Any = None, weights: Any = None
    ) -> torch.Tensor:
        """`weights`: `[B, N]` per item or `[B]` per list (SPEC 13, see `rankgrad.softmax_loss`)."""
        return softmax_loss(
            scores,
            targets,
            mask,
            self.reduction,
            weights=weights,
            normalize=self.normalize,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, normalize={self.normalize}, validate={self.validate}"


class ListMLELoss(torch.nn.Module):
    """ListMLE criterion (`rankgrad.listmle_loss`): per list the Plackett-Luce negative
    log-likelihood `sum_i [logsumexp(s_pi(i..n)) - s_pi(i)]` of the order by targets.

    Example:
        >>> import torch
        >>> from rankgrad.nn import ListMLELoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = ListMLELoss()(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        1.6424
    """

    def __init__(self, reduction: str = "mean", *, validate: bool = True):
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction
        self.validate = bool(validate)

    def forward(
        self, scores: torch.Tensor, targets: Any, mask: Any = None, weights: Any = None
    ) -> torch.Tensor:
        """`weights`: `[B, N]` per item or `[B]` per list (SPEC 13, see `rankgrad.listmle_loss`)."""
        return listmle_loss(scores, targets, mask, self.reduction, weights=weights, validate=self.validate)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, validate={self.validate}"


__all__ = ["LambdaLoss", "SoftmaxLoss", "ListMLELoss", "WEIGHTINGS"]
