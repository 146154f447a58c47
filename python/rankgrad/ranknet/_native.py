"""RankNet's torch twin (every device; CPU tensors with `backend="torch"`): the loss, its
closed-form gradient and its Hessian-vector product in torch ops, the pair matrix taken in
blocks of lists and of rows (never a `[B, N, N]` tensor for large lists).

Score gaps are `s_i / 2 - s_j / 2` (never overflows) and half-losses are summed in the wide
dtype, so extreme but finite scores give finite results wherever the true result is finite.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .._torch_ops import chunk_rows, wide_dtype

__all__ = ["ranknet", "ranknet_hvp"]


def _pair_blocks(s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], sigma: float):
    """Yields `(b0, b1, i0, i1, is_pair, xh)` over blocks of lists `b0:b1` and pair-matrix rows
    `i0:i1`: `is_pair [rb, ib, N]` (i above j, both real) and `xh = sigma (s_i - s_j) / 2`
    (never overflows); temporaries stay within `chunk_rows`' budget."""
    b, n = s.shape
    rb = chunk_rows(1, b, s.device, per_row=n * n)  # lists per block, each its whole pair matrix
    ib = chunk_rows(1, n, s.device)  # rows of one list's pair matrix per block
    half = s * 0.5
    for b0 in range(0, b, rb):
        b1 = min(b, b0 + rb)
        hb, yb = half[b0:b1], y[b0:b1]
        mb = None if m is None else m[b0:b1]
        for i0 in range(0, n, ib):
            i1 = min(n, i0 + ib)
            is_pair = yb[:, i0:i1, None] > yb[:, None, :]
            if mb is not None:
                is_pair &= mb[:, i0:i1, None] & mb[:, None, :]
            yield b0, b1, i0, i1, is_pair, sigma * (hb[:, i0:i1, None] - hb[:, None, :])


def ranknet_hvp(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    w: Optional[torch.Tensor],
    sigma: float,
    v: torch.Tensor,
) -> torch.Tensor:
    """Per list, the Hessian of its loss times `v_b` `[B, N]`: each pair (i, j) adds
    `w (v_i - v_j)` to i and `w (v_j - v_i)` to j, `w = sigma^2 rho (1 - rho) / P`,
    `rho = sigmoid(-x)`; torch ops on any device, chunked like the forward."""
    b = s.shape[0]
    out = torch.zeros_like(s)
    pairs = torch.zeros(b, dtype=torch.int64, device=s.device)
    zero = s.new_zeros(())
    v = v.to(s.dtype)
    for b0, b1, i0, i1, is_pair, xh in _pair_blocks(s, y, m, sigma):
        w = torch.where(is_pair, sigma * sigma * torch.sigmoid(2.0 * xh) * torch.sigmoid(-2.0 * xh), zero)
        vb = v[b0:b1]
        wv_rows = torch.bmm(w, vb[:, :, None])[..., 0]  # sum_j w_ij v_j
        out[b0:b1, i0:i1] += w.sum(2) * vb[:, i0:i1] - wv_rows
        out[b0:b1] += w.sum(1) * vb - torch.bmm(vb[:, None, i0:i1], w)[:, 0]  # sum_i w_ij v_i
        pairs[b0:b1] += is_pair.sum((1, 2))
    return out / pairs.clamp(min=1)[:, None].to(s.dtype)


def ranknet(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    w: Optional[torch.Tensor],
    sigma: float,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Per-list losses [B], valid [B] and (optionally) the gradient [B, N], in torch ops.

    Works through blocks of lists (and, for long lists, blocks of rows of the pair matrix) so
    that no temporary exceeds the ``chunk_rows`` budget. Score gaps are taken as
    ``s_i / 2 - s_j / 2`` (never overflows) and half-losses are summed in float64 (then
    averaged and doubled), so extreme but finite scores give finite results wherever the true
    result is finite.
    """
    b = s.shape[0]
    acc = wide_dtype(s.device)
    losses = torch.zeros(b, dtype=acc, device=s.device)
    pairs = torch.zeros(b, dtype=torch.int64, device=s.device)
    grad = torch.zeros_like(s) if need_grad else None
    zero = s.new_zeros(())
    for b0, b1, i0, i1, is_pair, xh in _pair_blocks(s, y, m, sigma):
        # log(1 + e^-x) / 2 = relu(-x/2) + log1p(e^-|x|) / 2: finite when x overflows
        half_sp = torch.relu(-xh) + 0.5 * torch.log1p(torch.exp(-2.0 * xh.abs()))
        losses[b0:b1] += torch.where(is_pair, half_sp, zero).sum((1, 2), dtype=acc)
        pairs[b0:b1] += is_pair.sum((1, 2))
        if need_grad:
            lam = torch.where(is_pair, sigma * torch.sigmoid(-2.0 * xh), zero)  # -dL_ij/ds_i
            grad[b0:b1, i0:i1] -= lam.sum(2)
            grad[b0:b1] += lam.sum(1)
    valid = pairs > 0
    denom = pairs.clamp(min=1)
    # 2 * (half-loss sum / P): overflows only where the mean itself does
    losses = torch.where(valid, 2.0 * (losses / denom.to(acc)), losses.new_zeros(())).to(s.dtype)
    if need_grad:
        grad = grad / denom[:, None].to(s.dtype)
    return losses, valid, grad
