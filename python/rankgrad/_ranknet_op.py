"""`rankgrad::ranknet_loss`: the RankNet kernel as a torch custom op (Rust on CPU, torch-native
elsewhere or with `native=True`), with a fake (meta) implementation, autograd and vmap rules.

The op returns per-list losses `[B]`, whether each list counts `[B]` and, with `need_grad`, the
per-list gradient `d losses_b / d scores_b` `[B, N]` (else an empty placeholder); the backward is
`rankgrad::list_grad`. Second derivatives raise a RuntimeError (see `_list_grad_op`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _core
from ._inputs import _check_finite, check_scale
from ._list_grad_op import loss_function, register_loss_autograd

__all__ = ["ranknet_op", "ranknet_native", "RankNetFunction"]

# Pair-matrix elements the torch-native path materialises at once (per temporary).
_PAIR_CHUNK = 1 << 22


def ranknet_native(
    s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], sigma: float, need_grad: bool
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Per-list losses [B], valid [B] and (optionally) the gradient [B, N], in torch ops.

    Works through blocks of lists (and, for long lists, blocks of rows of the pair matrix) so
    that no temporary exceeds ``_PAIR_CHUNK`` elements. Score gaps are taken as
    ``s_i / 2 - s_j / 2`` (never overflows) and half-losses are summed in float64 (then averaged and doubled), so extreme
    but finite scores give finite results wherever the true result is finite.
    """
    b, n = s.shape
    acc = torch.float64 if s.device.type != "mps" else torch.float32
    losses = torch.zeros(b, dtype=acc, device=s.device)
    pairs = torch.zeros(b, dtype=torch.int64, device=s.device)
    grad = torch.zeros_like(s) if need_grad else None
    if n * n <= _PAIR_CHUNK:
        rb, ib = max(1, _PAIR_CHUNK // max(n * n, 1)), max(n, 1)
    else:
        rb, ib = 1, max(1, _PAIR_CHUNK // n)
    zero = s.new_zeros(())
    half = s * 0.5
    for b0 in range(0, b, rb):
        b1 = min(b, b0 + rb)
        hb, yb = half[b0:b1], y[b0:b1]
        mb = None if m is None else m[b0:b1]
        for i0 in range(0, n, ib):
            i1 = min(n, i0 + ib)
            is_pair = yb[:, i0:i1, None] > yb[:, None, :]  # [rb, ib, n]: i above j
            if mb is not None:
                is_pair &= mb[:, i0:i1, None] & mb[:, None, :]
            xh = sigma * (hb[:, i0:i1, None] - hb[:, None, :])  # x / 2, x = sigma (s_i - s_j)
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


@torch.library.custom_op("rankgrad::ranknet_loss", mutates_args=())
def ranknet_op(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    sigma: float,
    native: bool,
    validate: bool,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(losses [B], valid [B], grad [B, N] or empty)`; `s`, `y` float32/float64 alike."""
    sigma = check_scale("sigma", sigma, s.dtype)
    if s.device.type == "cpu" and not native:
        mn = None if m is None else m.contiguous().numpy()
        losses, valid, grad = _core.ranknet_loss(
            s.detach().contiguous().numpy(), y.contiguous().numpy(), mn, sigma, need_grad
        )
        grad = torch.from_numpy(grad) if need_grad else s.new_empty(0)
        return torch.from_numpy(losses), torch.from_numpy(valid), grad
    if validate:  # the Rust kernel always checks; here it may cost a device sync
        _check_finite(s, m, "scores")
        _check_finite(y, m, "targets")
    with torch.no_grad():
        losses, valid, grad = ranknet_native(s.detach(), y, m, sigma, need_grad)
    return losses, valid, grad if need_grad else s.new_empty(0)


@ranknet_op.register_fake
def _(s, y, m, sigma, native, validate, need_grad):
    b = s.shape[0]
    grad = s.new_empty(s.shape) if need_grad else s.new_empty(0)
    return s.new_empty(b), s.new_empty(b, dtype=torch.bool), grad


register_loss_autograd(ranknet_op, "ranknet_loss")
RankNetFunction = loss_function(ranknet_op, "ranknet_loss")
