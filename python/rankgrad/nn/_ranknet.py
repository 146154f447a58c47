"""``RankNetLoss``: the module form of ``rankgrad.ranknet_loss``."""

from __future__ import annotations

from typing import Any, Optional

import torch

from .._inputs import check_backend, check_reduction, check_scale
from ..ranknet import ranknet_loss


class RankNetLoss(torch.nn.Module):
    """RankNet criterion: per list ``mean_{y_i > y_j} log(1 + exp(-sigma (s_i - s_j)))``.

    Args:
        sigma: the sigmoid's scale, ``> 0``.
        reduction: ``"mean"`` over the lists that count, ``"sum"`` or ``"none"``.
        backend: ``"auto"``, ``"rust"`` or ``"torch"`` (see ``rankgrad.ranknet_loss``).
        validate: NaN/inf checks on the torch path.

    Called as ``loss(scores, targets, mask=None)`` on ``[B, N]`` (or ``[N]``) tensors; returns
    a tensor (a scalar, or ``[B]`` for ``"none"``).

    Example:
        >>> import torch
        >>> from rankgrad.nn import RankNetLoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = RankNetLoss()(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        0.6338
    """

    def __init__(
        self, sigma: float = 1.0, reduction: str = "mean", *, backend: str = "auto", validate: bool = True
    ) -> None:
        super().__init__()
        self.sigma = check_scale("sigma", sigma)  # each call checks its dtype's range
        check_reduction(reduction)
        check_backend(backend)
        self.reduction = reduction
        self.backend = backend
        self.validate = bool(validate)

    def forward(
        self, scores: torch.Tensor, targets: Any, mask: Optional[torch.Tensor] = None, weights: Any = None
    ) -> torch.Tensor:
        """`weights`: `[B, N]` per item or `[B]` per list (SPEC 13, see `rankgrad.ranknet_loss`)."""
        return ranknet_loss(
            scores,
            targets,
            sigma=self.sigma,
            mask=mask,
            reduction=self.reduction,
            weights=weights,
            backend=self.backend,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, reduction={self.reduction!r}, backend={self.backend!r}, "
            f"validate={self.validate}"
        )
