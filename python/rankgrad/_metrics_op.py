"""`rankgrad::ranking_metric`: the exact metrics (NDCG, MRR, AP, recall, precision) as a torch
custom op (Rust on CPU, torch ops elsewhere or with `native=True`), with a fake (meta)
implementation, so the metrics work on meta tensors and inside torch.compile. Not
differentiable (scores enter detached)."""

from __future__ import annotations

from typing import Optional

import torch

from . import _core
from ._inputs import GAIN_CAP, _check_finite

__all__ = ["metric_op", "metric_native"]


def _work(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _order(s: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """Positions by score descending, ties by position, padded items last."""
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    if m is not None:
        real_first = torch.sort(
            m.gather(1, order).to(torch.int8), dim=1, descending=True, stable=True
        ).indices
        order = order.gather(1, real_first)
    return order


def metric_native(
    kind: str,
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    k: Optional[int],
    scale_gains: bool,
) -> torch.Tensor:
    """Per-list values `[B]` (float64; float32 on MPS) in torch ops (any device)."""
    b, n = s.shape
    work = _work(s.device)
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


@torch.library.custom_op("rankgrad::ranking_metric", mutates_args=())
def metric_op(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    kind: str,
    k: Optional[int],
    scale_gains: bool,
    native: bool,
    validate: bool,
) -> torch.Tensor:
    """Per-list values `[B]`, float64 (float32 on MPS)."""
    if s.device.type == "cpu" and not native:
        mn = None if m is None else m.contiguous().numpy()
        values, _ = _core.ranking_metric(
            kind, s.contiguous().numpy(), y.contiguous().numpy(), mn, k, scale_gains
        )
        return torch.from_numpy(values)
    if validate:  # the Rust kernels always check; here it may cost a device sync
        _check_finite(s, m, "scores")
        _check_finite(y, m, "targets")
        if kind == "ndcg" and scale_gains:
            big = y > GAIN_CAP
            if m is not None:
                big = big & m
            rows = big.any(-1)
            if bool(rows.any()):
                raise ValueError(
                    f"targets: a value in list {int(rows.nonzero()[0, 0])} is too large for 2^y - 1 gains "
                    f"(at most {GAIN_CAP:g}; scale_gains=True)"
                )
    return metric_native(kind, s, y, m, k, scale_gains)


@metric_op.register_fake
def _(s, y, m, kind, k, scale_gains, native, validate):
    return s.new_empty(s.shape[0], dtype=_work(s.device))
