"""Torch-native approximate-rank losses as functions of the ranks `r` (SPEC section 3),
and their first two derivatives in `r` for the Rust path's double backward.

Padded targets are zeroed before anything reads them (a NaN/inf/huge value at a padded
position changes nothing); `2^y - 1` gains are divided by `2^max(y)` per list, which NDCG's
ratio ignores, so float32 targets up to the gain cap stay finite.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

_LN2 = math.log(2.0)


def _padded(
    r: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mask, targets with padded entries 0, real-item counts)."""
    m = torch.ones_like(r, dtype=torch.bool) if m is None else m
    y = torch.where(m, y.to(r.dtype), torch.zeros((), dtype=r.dtype, device=r.device))
    return m, y, m.sum(-1)


def _safe(valid: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`v` where it is used, 1 elsewhere: keeps the unused branch of a where() finite."""
    return torch.where(valid, v, torch.ones_like(v))


def gains(y: torch.Tensor, m: torch.Tensor, scale_gains: bool) -> torch.Tensor:
    """`(2^y - 1) / 2^max(y)` (or `y`), targets below 0 as 0, zero at padded positions."""
    y = y.clamp(min=0) * m
    if not scale_gains:
        return y
    top = y.amax(-1, keepdim=True)
    return (torch.exp2(y - top) - torch.exp2(-top)) * m


def ideal_dcg(g: torch.Tensor) -> torch.Tensor:
    n = g.shape[-1]
    disc = 1.0 / torch.log2(torch.arange(n, device=g.device, dtype=g.dtype) + 2.0)
    return (g.sort(dim=-1, descending=True).values * disc).sum(-1)


def true_ranks(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1-based ranks by targets descending among the real items, ties in input order."""
    key = torch.where(m, y, torch.full_like(y, -math.inf))
    order = key.argsort(dim=-1, descending=True, stable=True)
    pos = torch.arange(1, y.shape[-1] + 1, device=y.device, dtype=y.dtype).expand_as(y)
    return torch.empty_like(y).scatter_(-1, order, pos)


def rank_weights(t: torch.Tensor, discount: Optional[str]) -> torch.Tensor:
    if discount is None:
        return torch.ones_like(t)
    return 1 / torch.log2(t + 1) if discount == "log2" else 1 / t


def mrr_item(v: torch.Tensor, rel: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """`[B, 1]` index of the item whose `v = rel / r` MRR takes, chosen as the Rust kernel does:
    per relevance level the first highest-scored item (its rank is the smallest: decided on
    the scores, exactly, never on rounded ranks), then the first of those with the largest v."""
    relm = (rel > 0) & m
    inf = torch.full_like(v, math.inf)
    o1 = torch.where(relm, s.to(v.dtype), -inf).argsort(dim=-1, descending=True, stable=True)
    r1 = torch.where(relm, rel, -torch.ones_like(rel)).gather(-1, o1)
    o2 = r1.argsort(dim=-1, descending=True, stable=True)
    rs = r1.gather(-1, o2)
    first = torch.cat([torch.ones_like(rs[:, :1], dtype=torch.bool), rs[:, 1:] != rs[:, :-1]], -1)
    cand = torch.zeros_like(relm).scatter(-1, o1.gather(-1, o2), first & (rs > 0))
    return torch.where(cand, v, -inf).argmax(-1, keepdim=True)


def loss_from_ranks(
    kind: str,
    r: torch.Tensor,
    y: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale_gains: bool,
    discount: Optional[str],
    s: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-list losses `[B]` and whether each counts `[B]`, from ranks `r [B, N]` (MRR also
    reads the scores `s`, see `mrr_item`)."""
    m, y, count = _padded(r, y, mask)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    if kind == "ndcg":
        g = gains(y, m, scale_gains)
        idcg = ideal_dcg(g)
        dcg = (g / torch.log2(1 + _safe(m, r))).sum(-1)
        valid = (count >= 2) & (idcg > 0)
        return torch.where(valid, 1 - dcg / _safe(valid, idcg), zero), valid
    if kind == "mrr":
        rel = y.clamp(0, 1)
        v = rel / _safe(m, r)
        best = v.gather(-1, mrr_item(v.detach(), rel, (-r if s is None else s).detach(), m))[:, 0]
        valid = (count >= 2) & ((y > 0) & m).any(-1)
        return torch.where(valid, 1 - best, zero), valid
    tr = true_ranks(y, m)
    valid = count >= 2
    loss = (rank_weights(tr, discount) * (r - tr) ** 2 * m).sum(-1) / _safe(valid, count.to(r.dtype))
    return torch.where(valid, loss, zero), valid


def curvature(
    kind: str,
    r: torch.Tensor,
    y: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale_gains: bool,
    discount: Optional[str],
    s: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """`c = d loss_b / d r` and the diagonal `D = dc / dr` `[B, N]` (each list's loss depends
    on each r_i separately), zero at padded positions and in lists that do not count.

    NDCG, `a_i = g_i ln2 / IDCG`, `L = ln(1 + r_i)`: `c = a / ((1 + r) L^2)`,
    `D = -a (L + 2) / ((1 + r)^2 L^3)`. MRR, at the item `i*` of the max: `c = rel / r^2`,
    `D = -2 rel / r^3`. RankMSE: `c = 2 w (r - t) / n`, `D = 2 w / n`."""
    m, y, count = _padded(r, y, mask)
    rs = _safe(m, r)
    if kind == "ndcg":
        g = gains(y, m, scale_gains)
        idcg = ideal_dcg(g)
        valid = (count >= 2) & (idcg > 0)
        a = g * _LN2 / _safe(valid, idcg)[:, None]
        lr = torch.log1p(rs)
        c = a / ((1 + rs) * lr**2)
        d = -a * (lr + 2) / ((1 + rs) ** 2 * lr**3)
    elif kind == "mrr":
        rel = y.clamp(0, 1) * m
        valid = (count >= 2) & ((y > 0) & m).any(-1)
        item = mrr_item(rel / rs, rel, -r if s is None else s, m)
        top = torch.zeros_like(r).scatter_(-1, item, 1.0)
        c = top * rel / rs**2
        d = -2 * top * rel / rs**3
    else:
        valid = count >= 2
        k = 2 * rank_weights(true_ranks(y, m), discount) / _safe(valid, count.to(r.dtype))[:, None]
        c = k * (r - true_ranks(y, m))
        d = k
    keep = valid[:, None] & m
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    return torch.where(keep, c, zero), torch.where(keep, d, zero)
