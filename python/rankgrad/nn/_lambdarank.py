"""`rankgrad.lambdarank_loss` as a module: options in the constructor, `loss(scores, targets, mask=None)`."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from .._inputs import check_backend, check_reduction, check_scale
from ..lambdarank import check_metric, check_truncation, gain_list, lambdarank_loss


class LambdaRankLoss(torch.nn.Module):
    """LambdaRank loss (`rankgrad.lambdarank_loss`): per list
    `c * sum_pairs delta * log(1 + exp(-sigma * ds))`, delta and c held constant, so that its
    gradient is LightGBM's lambdarank gradient.

    Args:
        sigma: the sigmoid's scale.
        truncation_level: pairs need their higher-ranked position below it (None: every pair).
        norm: normalise each list's lambdas (LightGBM's `lambdarank_norm`).
        reduction: "mean", "sum" or "none".
        label_gain: the gain table (None: `2^max(y, 0) - 1`).
        metric: "ndcg" or "mrr". All six as for `rankgrad.lambdarank_loss`.
        backend: "auto", "rust" or "torch".
        validate: value checks on the torch path.

    Called as `loss(scores, targets, mask=None)` on `[B, N]` (or `[N]`) tensors; returns a
    tensor (a scalar, or `[B]` for "none").

    Example:
        >>> import torch
        >>> from rankgrad.nn import LambdaRankLoss
        >>> scores = torch.tensor([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]], requires_grad=True)
        >>> targets = torch.tensor([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> loss = LambdaRankLoss(truncation_level=2)(scores, targets)
        >>> loss.backward()
        >>> round(loss.item(), 4)
        0.3413
    """

    def __init__(
        self,
        sigma: float = 1.0,
        truncation_level: Optional[int] = None,
        norm: bool = False,
        reduction: str = "mean",
        label_gain: Optional[Sequence[float]] = None,
        metric: str = "ndcg",
        *,
        backend: str = "auto",
        validate: bool = True,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        check_backend(backend)
        self.sigma = check_scale("sigma", sigma)  # each call checks its dtype's range
        self.truncation_level = check_truncation(truncation_level, allow_none=True)
        self.norm = bool(norm)
        self.reduction = reduction
        self.label_gain = gain_list(label_gain)
        self.metric = check_metric(metric)
        self.backend = backend
        self.validate = bool(validate)

    def forward(
        self, scores: torch.Tensor, targets: Any, mask: Optional[torch.Tensor] = None, weights: Any = None
    ) -> torch.Tensor:
        """`weights`: `[B, N]` per item or `[B]` per list (SPEC 13, see `rankgrad.lambdarank_loss`)."""
        return lambdarank_loss(
            scores,
            targets,
            self.sigma,
            self.truncation_level,
            self.norm,
            mask,
            self.reduction,
            self.label_gain,
            self.metric,
            weights=weights,
            backend=self.backend,
            validate=self.validate,
        )

    def extra_repr(self) -> str:
        return (
            f"sigma={self.sigma}, truncation_level={self.truncation_level}, norm={self.norm}, "
            f"reduction={self.reduction!r}, label_gain={self.label_gain}, metric={self.metric!r}, "
            f"backend={self.backend!r}, validate={self.validate}"
        )
