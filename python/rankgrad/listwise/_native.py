"""The listwise family's torch code: LambdaLoss's torch twin (every device; CPU tensors with
`backend="torch"`), walking the pair matrix a block of rows at a time, and the softmax and
ListMLE losses, which are torch composites on every backend (O(N log N), differentiable to any
order by autograd)."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .._inputs import check_gain_range
from .._torch_ops import chunk_rows

__all__ = ["lambda_loss", "check_gains", "softmax", "listmle"]

_LN2 = math.log(2.0)


def lambda_loss(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    w: Optional[torch.Tensor],
    sigma: float,
    weighting: str,
    k: Optional[int],
    mu: float,
    scale_gains: bool,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-list losses `[B]`, valid `[B]` and d losses / d scores `[B, N]` in torch ops, the
    pair matrix taken a block of rows at a time (never a `[B, N, N]` tensor for large lists).
    Per-item weights `w` (SPEC 13) weigh each ordered pair by its row's (first item's) weight."""
    b, n = s.shape
    dev, dt = s.device, s.dtype
    if n == 0:
        return s.new_zeros(b), torch.zeros(b, dtype=torch.bool, device=dev), torch.zeros_like(s)
    if m is None:
        m = torch.ones_like(s, dtype=torch.bool)
    s = torch.where(m, s, torch.zeros((), dtype=dt, device=dev))  # padding may hold NaN/inf
    key = torch.where(m, s, torch.full_like(s, -math.inf))
    order = torch.argsort(key, dim=-1, descending=True, stable=True)
    ss, ys = s.gather(1, order), y.gather(1, order)
    count = m.sum(-1)
    kk = count if k is None else count.clamp(max=k)
    pos = torch.arange(n, device=dev)
    inside = pos < kk[:, None]  # sorted order: a real item within the top k
    # gains and maxDCG@k in float64: 2^y stays finite for every target the Rust path accepts
    g64 = torch.where(m, y.to(torch.float64).clamp(min=0), torch.zeros((), dtype=torch.float64, device=dev))
    if scale_gains:
        g64 = torch.exp2(g64) - 1
    disc = 1.0 / torch.log2(pos.to(torch.float64) + 2.0)
    ideal = g64.sort(dim=-1, descending=True).values
    max_dcg = torch.where(pos < kk[:, None], ideal * disc, torch.zeros_like(ideal)).sum(-1)
    valid = (kk >= 2) & (max_dcg > 0)
    if weighting != "ndcg1":
        inf = torch.full_like(ys, math.inf)
        hi = torch.where(inside, ys, -inf).amax(-1)
        lo = torch.where(inside, ys, inf).amin(-1)
        valid = valid & (hi > lo)
    # SPEC 13: per-item weights in score order (0 at padded items); a pair (i, j) weighs w_i
    ws = (
        None
        if w is None
        else torch.where(m, w.to(dt), torch.zeros((), dtype=dt, device=dev)).gather(1, order)
    )
    any_weighted = torch.zeros(b, dtype=torch.bool, device=dev)
    gs = g64.gather(1, order) / torch.where(valid, max_dcg, torch.ones_like(max_dcg))[:, None]
    gn = gs.to(dt)
    inv_d = disc.to(dt)
    c1 = (gs * disc).to(dt)
    live = inside & valid[:, None]
    losses = torch.zeros(b, dtype=dt, device=dev)
    grad_sorted = torch.zeros_like(s)
    zero = s.new_zeros(())
    step = chunk_rows(b, n, dev)
    for a0 in range(0, n, step):
        a1 = min(n, a0 + step)
        half = ss * 0.5
        hd = half[:, a0:a1, None] - half[:, None, :]  # [B, c, N]: half the gap, never overflows
        x = sigma * hd  # half the scaled gap: may overflow (sigma > 1); then only exp(-2|x|) is used
        pair = live[:, a0:a1, None] & live[:, None, :]
        pair &= pos[a0:a1, None] != pos[None, :]
        if weighting == "ndcg1":
            w = c1[:, a0:a1, None].expand_as(x)
        else:
            pair &= ys[:, a0:a1, None] > ys[:, None, :]
            if weighting == "ranknet":
                w = torch.ones_like(x)
            else:
                dg = (gn[:, a0:a1, None] - gn[:, None, :]).abs()
                w = torch.zeros_like(x)
                if weighting in ("ndcg2", "ndcg2pp"):
                    d = (pos[a0:a1, None] - pos[None, :]).abs().clamp(min=1).to(dt)
                    rd = (1.0 / torch.log2(1.0 + d) - 1.0 / torch.log2(2.0 + d)).abs()
                    w = w + (mu if weighting == "ndcg2pp" else 1.0) * rd
                if weighting in ("lambdarank", "ndcg2pp"):
                    w = w + (inv_d[a0:a1, None] - inv_d[None, :]).abs()
                w = w * dg
        w = torch.where(pair, w, zero)
        if ws is not None:
            wrow = ws[:, a0:a1, None]  # the pair's first (more relevant) item's weight
            w = w * wrow
            lead = pair & (wrow > 0)
            if weighting == "ndcg1":
                lead &= g64.gather(1, order)[:, a0:a1, None] > 0
            any_weighted |= lead.any(-1).any(-1)
        # w (-ln sigmoid(2x)) / 2 = w relu(-x) + w log1p(exp(-2|x|)) / 2, w relu(-x) taken as
        # mul3(w, relu(-hd), sigma): inf only where the loss truly exceeds the dtype, never NaN
        # (a zero weight gives exactly 0). In place on fresh temporaries (the same operations in
        # the same order as `mul3`), so that few [B, c, N] blocks are alive at once.
        r = torch.relu(-hd)
        del hd
        term = r.clamp(max=sigma).mul_(w).mul_(r.clamp_(min=sigma))
        del r
        term += x.abs().mul_(-2.0).exp_().log1p_().mul_(0.5).mul_(w)
        losses += 2.0 * term.sum((1, 2))
        del term
        lam = torch.mul(x, -2.0).sigmoid_().mul_(w).mul_(sigma)  # -dL_ab/ds_a = dL_ab/ds_b
        grad_sorted[:, a0:a1] -= lam.sum(2)
        grad_sorted += lam.sum(1)
    grad = torch.zeros_like(s).scatter_(1, order, grad_sorted / _LN2)
    if ws is not None:  # nothing weighted to rank: not counted (its terms are all 0)
        valid = valid & any_weighted
    return losses / _LN2, valid, grad


def check_gains(s, y, m, w, sigma, weighting, k, mu, scale_gains) -> None:  # type: ignore[no-untyped-def]
    """The Rust kernel's gain cap, for the torch path (behind `validate`)."""
    if scale_gains:
        check_gain_range(y, m)


def softmax(
    s: torch.Tensor, y: torch.Tensor, m: torch.Tensor, normalize: bool, w: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-list `-sum_i p_i log softmax(s)_i` over the real items and whether each list counts:
    `p = max(y, 0)` (times the per-item weights `w`, SPEC 13, as Rax's `labels *= weights`),
    divided by its sum when `normalize`; a list counts when it has 2 real items and positive
    (weighted) targets."""
    zero = s.new_zeros(())
    p = torch.where(m, y.clamp(min=0), zero)  # where first: padding may hold NaN
    if w is not None:
        p = p * torch.where(m, w.to(s.dtype), zero)
    total = p.sum(-1)
    valid = (total > 0) & (m.sum(-1) >= 2)
    if normalize:
        p = p / torch.where(valid, total, torch.ones_like(total))[:, None]
    logits = torch.where(m, s, torch.full_like(s, -math.inf))
    logits = torch.where(m.any(-1, keepdim=True), logits, zero)  # a list with no real item
    # -log softmax(s)_i = lse - s_i >= 0 may exceed the dtype (an item 2 max below the top): as
    # 2 * (p_i * (lse / 2 - s_i / 2)), which overflows only where the loss truly does; p > 0 only
    # (an item far below the others has log p = -inf: 0 * -inf = NaN)
    lse = torch.logsumexp(logits, -1, keepdim=True)
    half_nlogp = torch.where(m, 0.5 * lse - 0.5 * torch.where(m, s, zero), zero)
    losses = 2.0 * torch.where(m & (p > 0), p * half_nlogp, zero).sum(-1)
    return torch.where(valid, losses, zero), valid


def listmle(
    s: torch.Tensor, y: torch.Tensor, m: torch.Tensor, w: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-list Plackett-Luce negative log-likelihood of the order by targets (descending, ties
    in input order) over the real items, and whether each list counts (2 real items or more).
    With per-item weights `w` (SPEC 13) each position's term is multiplied by the weight of the
    item placed there, and a list whose real items all weigh 0 does not count."""
    zero = s.new_zeros(())
    # padded items first, so every suffix from a real item holds only real items (no -inf
    # entries: forward-mode AD through logcumsumexp mishandles them)
    key = torch.where(m, y, torch.full_like(s, math.inf))
    order = torch.argsort(key, dim=-1, descending=True, stable=True)
    ms = m.gather(1, order)
    ss = torch.where(ms, s.gather(1, order), zero)
    tail = torch.logcumsumexp(ss.flip(-1), -1).flip(-1)  # logsumexp of s_pi(i..n)
    valid = m.sum(-1) >= 2
    if w is None:
        losses = torch.where(ms, tail - ss, zero).sum(-1)
    else:
        ws = torch.where(m, w.to(s.dtype), zero).gather(1, order)
        # weight 0: exactly 0 (not 0 * a term that overflowed)
        losses = torch.where(ms & (ws > 0), (tail - ss) * ws, zero).sum(-1)
        valid = valid & (ms & (ws > 0)).any(-1)
    return torch.where(valid, losses, zero), valid
