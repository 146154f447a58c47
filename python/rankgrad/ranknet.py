"""RankNet: the pairwise logistic loss (SPEC section 4).

Per list, over its real items, with ``P`` the number of ordered pairs ``y_i > y_j`` (ties
are not pairs)::

    L = (1/P) * sum_{y_i > y_j} log(1 + exp(-sigma * (s_i - s_j)))

The gradient comes in lambda form, ``dL/ds_k = (1/P) (sum_j lambda_kj - sum_j lambda_jk)``
with ``lambda_ij = -sigma * sigmoid(-sigma * (s_i - s_j))``. CPU inputs go to the Rust kernel
(one O(N^2)-time, O(N)-memory pass per list for the loss and the gradient); other devices
to a torch-native twin that works through the pairs in chunks, never holding a ``[B, N, N]``
tensor.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import _core
from ._inputs import _check_finite, check_backend, check_positive, check_reduction, lists, reduce, use_rust

__all__ = ["ranknet_loss"]

# Pair-matrix elements the torch-native path materialises at once (per temporary).
_PAIR_CHUNK = 1 << 22


def _ranknet_rust(s: np.ndarray, y: np.ndarray, m: Optional[np.ndarray], sigma: float, need_grad: bool):
    return _core.ranknet_loss(s, y, m, sigma, need_grad)


def _ranknet_torch(
    s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], sigma: float, need_grad: bool
):
    """Per-list losses [B], valid [B] and (optionally) the gradient [B, N], in torch ops.

    Works through blocks of lists (and, for long lists, blocks of rows of the pair matrix) so
    that no temporary exceeds ``_PAIR_CHUNK`` elements.
    """
    b, n = s.shape
    losses = torch.zeros(b, dtype=s.dtype, device=s.device)
    pairs = torch.zeros(b, dtype=torch.int64, device=s.device)
    grad = torch.zeros_like(s) if need_grad else None
    if n * n <= _PAIR_CHUNK:
        rb, ib = max(1, _PAIR_CHUNK // max(n * n, 1)), max(n, 1)
    else:
        rb, ib = 1, max(1, _PAIR_CHUNK // n)
    zero = s.new_zeros(())
    for b0 in range(0, b, rb):
        b1 = min(b, b0 + rb)
        sb, yb = s[b0:b1], y[b0:b1]
        mb = None if m is None else m[b0:b1]
        for i0 in range(0, n, ib):
            i1 = min(n, i0 + ib)
            is_pair = yb[:, i0:i1, None] > yb[:, None, :]  # [rb, ib, n]: i above j
            if mb is not None:
                is_pair &= mb[:, i0:i1, None] & mb[:, None, :]
            x = sigma * (sb[:, i0:i1, None] - sb[:, None, :])
            softplus = torch.relu(-x) + torch.log1p(torch.exp(-x.abs()))  # log(1 + e^-x), stable
            losses[b0:b1] += torch.where(is_pair, softplus, zero).sum((1, 2))
            pairs[b0:b1] += is_pair.sum((1, 2))
            if need_grad:
                lam = torch.where(is_pair, sigma * torch.sigmoid(-x), zero)  # -dL_ij/ds_i
                grad[b0:b1, i0:i1] -= lam.sum(2)
                grad[b0:b1] += lam.sum(1)
    valid = pairs > 0
    denom = pairs.clamp(min=1).to(s.dtype)
    losses = torch.where(valid, losses / denom, zero)
    if need_grad:
        grad = grad / denom[:, None]
    return losses, valid, grad


class _RankNet(torch.autograd.Function):
    """Per-list losses and validity; the forward keeps dL/ds, the backward scales it."""

    @staticmethod
    def forward(ctx, s, y, m, sigma, rust):
        need_grad = bool(ctx.needs_input_grad[0])
        if rust:
            sn = s.detach().numpy()
            yn = y.detach().numpy()
            mn = None if m is None else m.numpy()
            losses, valid, grad = _ranknet_rust(sn, yn, mn, sigma, need_grad)
            losses, valid = torch.from_numpy(losses), torch.from_numpy(valid)
            grad = None if grad is None else torch.from_numpy(grad)
        else:
            losses, valid, grad = _ranknet_torch(s.detach(), y, m, sigma, need_grad)
        if need_grad:
            ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(valid)
        return losses, valid

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_losses, _grad_valid):
        (grad,) = ctx.saved_tensors
        return grad * grad_losses[:, None], None, None, None, None


def ranknet_loss(
    scores: Any,
    targets: Any,
    sigma: float = 1.0,
    mask: Any = None,
    reduction: str = "mean",
    backend: str = "auto",
    validate: bool = True,
):
    """RankNet loss: per list, ``mean_{y_i > y_j} log(1 + exp(-sigma (s_i - s_j)))``.

    ``scores``/``targets``/``mask``: ``[B, N]`` (or ``[N]``, one list) torch tensors or numpy
    arrays; ``mask`` True marks real items. Ties are not pairs; a list with no ordered pair
    has loss 0, zero gradient and does not count in ``"mean"``. ``reduction``: ``"mean"``
    over the lists that count, ``"sum"``, or ``"none"`` (``[B]``). ``backend``: ``"auto"``
    (Rust on CPU, torch elsewhere), ``"rust"`` or ``"torch"``. ``validate`` checks for
    NaN/inf on the torch path (the Rust kernel always checks). Tensors in give a
    differentiable tensor in the input dtype; numpy arrays in give numpy out.
    """
    sigma = check_positive("sigma", sigma)
    check_reduction(reduction)
    check_backend(backend)
    x = lists(scores, targets, mask, validate=False)
    rust = use_rust(x, backend)
    if not rust and validate:  # the Rust kernel always checks; here it may cost a device sync
        _check_finite(x.scores, x.mask, "scores")
        _check_finite(x.targets, x.mask, "targets")
    if not x.is_torch:
        s, y, m = x.numpy()
        if rust:
            losses, valid, _ = _ranknet_rust(s, y, m, sigma, False)
        else:
            t = [None if a is None else torch.from_numpy(a) for a in (s, y, m)]
            losses, valid, _ = (None if a is None else a.numpy() for a in _ranknet_torch(*t, sigma, False))
        out = reduce(losses, valid, reduction)
        return x.out(out) if reduction == "none" else np.asarray(out).astype(x.dtype)[()]
    if torch.is_grad_enabled() and x.scores.requires_grad:
        losses, valid = _RankNet.apply(x.scores, x.targets, x.mask, sigma, rust)
    elif rust:  # no gradient wanted: the loss alone
        losses, valid, _ = _ranknet_rust(*x.numpy(), sigma, False)
        losses, valid = torch.from_numpy(losses), torch.from_numpy(valid)
    else:
        losses, valid, _ = _ranknet_torch(x.scores, x.targets, x.mask, sigma, False)
    out = reduce(losses, valid, reduction)
    return x.out(out) if reduction == "none" else out.to(x.dtype)
