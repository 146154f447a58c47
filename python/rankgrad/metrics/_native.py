"""The exact metrics' torch twin (every device; CPU tensors with `backend="torch"`): NDCG, MRR,
AP, recall and precision per list in torch ops, in the wide dtype."""

from __future__ import annotations

from typing import Optional

import torch

from .._inputs import GAIN_CAP
from .._torch_ops import wide_dtype

__all__ = ["metric"]


def _order(s: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """Positions by score descending, ties by position, padded items last."""
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    if m is not None:
        real_first = torch.sort(
            m.gather(1, order).to(torch.int8), dim=1, descending=True, stable=True
        ).indices
        order = order.gather(1, real_first)
    return order


def metric(
    kind: str,
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    k: Optional[int],
    scale_gains: bool,
) -> torch.Tensor:
    """Per-list values `[B]` (float64; float32 on MPS) in torch ops (any device)."""
    b, n = s.shape
    work = wide_dtype(s.device)
    if n == 0:
        return torch.zeros(b, dtype=work, device=s.device)
    kk = n if k is None else min(k, n)
    order = _order(s, m)
    y = y.to(work)
    real = torch.ones_like(s, dtype=torch.bool) if m is None else m
    zero = torch.zeros((), dtype=work, device=s.device)
    if kind == "ndcg":
        g = torch.where(real, y, zero).clamp(min=0)  # padded targets may be NaN/inf
        if scale_gains:
            g = torch.exp2(g.clamp(max=GAIN_CAP)) - 1
        disc = 1.0 / torch.log2(torch.arange(kk, dtype=work, device=s.device) + 2.0)
        dcg = (g.gather(1, order)[:, :kk] * disc).sum(1)
        idcg = (torch.topk(g, kk, dim=1).values * disc).sum(1)
        valid = (g > 0).any(1)
        return torch.where(valid, dcg / torch.where(valid, idcg, torch.ones_like(idcg)), zero)
    rel = ((y > 0) & real).gather(1, order)
    valid = rel.any(1)
    if kind == "mrr":
        pos = rel.to(torch.int8).argmax(1)  # the first relevant position
        return torch.where(valid & (pos < kk), 1.0 / (pos.to(work) + 1.0), zero)
    total = rel.sum(1).to(work).clamp(min=1)  # R; lists with R = 0 give 0 below
    top = rel[:, :kk].to(work)
    hits = top.cumsum(1)
    if kind == "average_precision":
        ranks = torch.arange(1, kk + 1, dtype=work, device=s.device)
        value = (top * hits / ranks).sum(1) / total
    elif kind == "recall":
        value = hits[:, -1] / total
    else:  # precision: divided by k even past the list's end; k=None: the real items
        per = real.sum(1).to(work) if k is None else torch.full_like(total, float(k))
        value = hits[:, -1] / per.clamp(min=1)
    return torch.where(valid, value, zero)
