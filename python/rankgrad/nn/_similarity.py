"""Pairwise similarities `[n, m]` between two sets of embeddings, for the embedding losses."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["SIMILARITIES", "similarity_matrix"]

SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")

# The Manhattan backward works on [rows, C, D] blocks of at most this many elements.
_CHUNK_ELEMENTS = 1 << 23


def _l2_distance(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise L2 distances `[n, m]` from `||x||^2 + ||y||^2 - 2 x.y`, no `[n, m, D]` tensor.

    The square is clamped at 0 and the root has a zero gradient at zero distance. As
    with torch.cdist's matmul path, a distance is exact to about sqrt(eps) * ||x||.
    """
    sq = (x * x).sum(-1)[:, None] + (y * y).sum(-1)[None, :] - 2.0 * (x @ y.T)
    sq = sq.clamp_min(0.0)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


class _L1Distance(torch.autograd.Function):
    """Pairwise L1 distances `[n, m]`; the backward works on bounded `[rows, m, D]` blocks.

    torch.cdist's own backward allocates a full `[m, n, D]` buffer; this one does not.
    The subgradient of |t| at 0 is taken as 0.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor) -> Tensor:
        ctx.save_for_backward(x, y)
        return torch.cdist(x, y, p=1.0)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        x, y = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad
        gx = torch.zeros_like(x) if need_x else None
        gy = torch.zeros_like(y) if need_y else None
        m, dim = y.shape
        rows = max(1, _CHUNK_ELEMENTS // max(1, m * dim))
        for i in range(0, x.shape[0], rows):
            sign = torch.sign(x[i : i + rows, None, :] - y[None, :, :])  # [r, m, D]
            g = grad[i : i + rows]  # [r, m]
            if gx is not None:
                gx[i : i + rows] = torch.bmm(g[:, None, :], sign)[:, 0, :]
            if gy is not None:
                gy -= torch.bmm(g.T[:, None, :], sign.transpose(0, 1))[:, 0, :]
        return gx, gy


def similarity_matrix(x: Tensor, y: Tensor, similarity: str) -> Tensor:
    """`sim(x_i, y_j)`: cosine, dot, `1/(1 + ||x_i - y_j||_2)` or `1/(1 + ||x_i - y_j||_1)`.

    Args:
      x: [n, D] float.
      y: [m, D] float, the dtype of x.
      similarity: one of SIMILARITIES.

    Returns:
      [n, m] in the dtype of x.
    """
    if similarity == "cosine":
        return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
    if similarity == "dot":
        return x @ y.T
    if similarity == "euclidean":
        return 1.0 / (1.0 + _l2_distance(x, y))
    if similarity == "manhattan":
        l1: Tensor = _L1Distance.apply(x, y)
        return 1.0 / (1.0 + l1)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
