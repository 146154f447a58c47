"""RankNet's torch twin (every device; CPU tensors with `backend="torch"`): the loss, its
closed-form gradient and its Hessian-vector product in torch ops, the pair matrix taken in
blocks of lists and of rows (never a `[B, N, N]` tensor for large lists).

Score gaps are `s_i / 2 - s_j / 2` (never overflows), each half-loss is divided by the pair
count before it is summed in the wide dtype, and a pair's linear term is taken by `mul3`, so
extreme but finite scores give the true mean wherever it fits (inf beyond, never NaN).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import torch

from .._torch_ops import chunk_rows, wide_dtype

__all__ = ["ranknet", "ranknet_hvp", "mul3", "pair_counts", "pairs_below", "item_weights"]


def mul3(a: torch.Tensor, b: Union[torch.Tensor, float], c: Union[torch.Tensor, float]) -> torch.Tensor:
    """`a b c` for finite `a` (any sign) and non-negative finite `b`, `c` (tensors or floats),
    taken as `(a * min(b, c)) * max(b, c)`: finite wherever the true product is, never NaN,
    0 when a factor is 0 (the Rust kernels' `float::mul3`). The pairwise twins use it for a
    pair's linear loss term `weight * sigma * |gap| / 2`, whose `sigma * gap` alone may overflow."""
    if not isinstance(b, torch.Tensor):
        b, c = c, b
    if not isinstance(c, torch.Tensor):
        return a * b.clamp(max=c) * b.clamp(min=c)
    return a * torch.minimum(b, c) * torch.maximum(b, c)


def pairs_below(y: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """For each real item the number of real items with a strictly lower target (int64
    `[B, N]`, 0 at padded items), from a sort (no pair matrix)."""
    key = y if m is None else torch.where(m, y, torch.full_like(y, math.inf))  # padding: never below
    below = torch.searchsorted(key.sort(-1).values, key.contiguous())
    return below if m is None else below.masked_fill(~m, 0)


def pair_counts(y: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """Per list the number of ordered pairs `y_i > y_j` among the real items (int64 `[B]`), from
    a sort (no pair matrix): for each real item, the real targets strictly below its own."""
    return pairs_below(y, m).sum(-1)


def item_weights(
    w: Optional[torch.Tensor], m: Optional[torch.Tensor], like: torch.Tensor
) -> Optional[torch.Tensor]:
    """SPEC 13's per-item weights in the dtype of `like`, 0 at padded items (whatever they hold
    there); None stays None."""
    if w is None:
        return None
    w = w.to(like.dtype)
    return w if m is None else torch.where(m, w, torch.zeros((), dtype=w.dtype, device=w.device))


def _pair_blocks(s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor]) -> Any:
    """Yields `(b0, b1, i0, i1, is_pair, hd)` over blocks of lists `b0:b1` and pair-matrix rows
    `i0:i1`: `is_pair [rb, ib, N]` (i above j, both real) and `hd = (s_i - s_j) / 2` (never
    overflows; `sigma hd` may, for sigma > 1); temporaries stay within `chunk_rows`' budget."""
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
            yield b0, b1, i0, i1, is_pair, hb[:, i0:i1, None] - hb[:, None, :]


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
    `rho = sigmoid(-x)` (times the more relevant item's weight `w_i` with per-item weights);
    torch ops on any device, chunked like the forward."""
    b = s.shape[0]
    out = torch.zeros_like(s)
    pairs = torch.zeros(b, dtype=torch.int64, device=s.device)
    zero = s.new_zeros(())
    v = v.to(s.dtype)
    wi = item_weights(w, m, s)
    for b0, b1, i0, i1, is_pair, hd in _pair_blocks(s, y, m):
        xh = sigma * hd
        w = torch.where(is_pair, sigma * sigma * torch.sigmoid(2.0 * xh) * torch.sigmoid(-2.0 * xh), zero)
        if wi is not None:
            w = w * wi[b0:b1, i0:i1, None]  # the pair's weight: its row's, the more relevant item
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
    that no temporary exceeds the ``chunk_rows`` budget. The pairs are counted first
    (``pair_counts``), so each half-loss is divided by ``P`` before it is summed (in float64):
    the sum overflows only where the mean does. Score gaps are taken as ``s_i / 2 - s_j / 2``
    (never overflows) and a misordered pair's linear term ``sigma |gap| / (2 P)`` by ``mul3``,
    so extreme but finite scores give the true mean wherever it fits, inf beyond, never NaN.
    Per-item weights ``w`` (SPEC 13) weigh each pair by its more relevant item's weight (the
    pair matrix's row), ``P`` unchanged; a list with no pair of positive weight does not count.
    """
    b = s.shape[0]
    acc = wide_dtype(s.device)
    below = pairs_below(y, m)
    pairs = below.sum(-1)
    wi = item_weights(w, m, s)
    valid = pairs > 0 if wi is None else (pairs > 0) & ((below > 0) & (wi > 0)).any(-1)
    inv = 1.0 / pairs.clamp(min=1).to(s.dtype)
    losses = torch.zeros(b, dtype=acc, device=s.device)
    grad = torch.zeros_like(s) if need_grad else None
    zero = s.new_zeros(())
    for b0, b1, i0, i1, is_pair, hd in _pair_blocks(s, y, m):
        xh = sigma * hd
        # log(1 + e^-x) / 2 = relu(-x/2) + log1p(e^-|x|) / 2, each divided by P; relu(-x/2) =
        # sigma relu(-hd) by mul3 (sigma hd itself overflows for sigma > 1 at huge gaps); with
        # weights, 1/P becomes w_i/P (the row's weight: the more relevant item's). Each term is
        # at most the mean, so it is finite in the scores' dtype wherever the mean is; the
        # terms are computed in that dtype and summed in the wide one.
        ib = inv[b0:b1, None, None]
        if wi is not None:
            ib = ib * wi[b0:b1, i0:i1, None]
        half_sp = mul3(ib, torch.relu(-hd), sigma) + ib * (0.5 * torch.log1p(torch.exp(-2.0 * xh.abs())))
        losses[b0:b1] += torch.where(is_pair, half_sp, zero).sum((1, 2), dtype=acc)
        if need_grad:
            lam = torch.where(is_pair, sigma * torch.sigmoid(-2.0 * xh), zero)  # -dL_ij/ds_i
            if wi is not None:
                lam = lam * wi[b0:b1, i0:i1, None]
            grad[b0:b1, i0:i1] -= lam.sum(2)
            grad[b0:b1] += lam.sum(1)
    # 2 * (sum of half-losses / P): overflows only where the mean itself does
    losses = torch.where(valid, 2.0 * losses, losses.new_zeros(())).to(s.dtype)
    if need_grad:
        grad = grad / pairs.clamp(min=1)[:, None].to(s.dtype)
    return losses, valid, grad
