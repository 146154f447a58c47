"""`rankgrad::ranknet_loss`: the RankNet kernel as a torch custom op (Rust on CPU, torch-native
elsewhere or with `native=True`), with a fake (meta) implementation, autograd and vmap rules.

The op returns per-list losses `[B]`, whether each list counts `[B]` and, with `need_grad`, the
per-list gradient `d losses_b / d scores_b` `[B, N]` (else an empty placeholder); the backward is
`rankgrad::list_grad` inside `_RankNetGrad`, whose own backward is the closed-form
Hessian-vector product (op `rankgrad::ranknet_hvp`, torch ops on every device): second
derivatives are exact, a third raises RuntimeError. Forward-mode AD (jvp,
`torch.func.hessian`) is not implemented (NotImplementedError); use `jacrev(jacrev(f))`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _core
from ._inputs import _check_finite, check_scale, chunk_rows
from ._list_grad_op import flatten_batch, forward_vmap, loss_jvp

__all__ = ["ranknet_op", "ranknet_native", "RankNetFunction"]


def _pair_blocks(s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], sigma: float):
    """Yields `(b0, b1, i0, i1, is_pair, xh)` over blocks of lists `b0:b1` and pair-matrix rows
    `i0:i1`: `is_pair [rb, ib, N]` (i above j, both real) and `xh = sigma (s_i - s_j) / 2`
    (never overflows); temporaries stay within `_inputs.chunk_rows`' budget."""
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
    s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], sigma: float, v: torch.Tensor
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


def ranknet_native(
    s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], sigma: float, need_grad: bool
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Per-list losses [B], valid [B] and (optionally) the gradient [B, N], in torch ops.

    Works through blocks of lists (and, for long lists, blocks of rows of the pair matrix) so
    that no temporary exceeds the ``_inputs.chunk_rows`` budget. Score gaps are taken as
    ``s_i / 2 - s_j / 2`` (never overflows) and half-losses are summed in float64 (then
    averaged and doubled), so extreme but finite scores give finite results wherever the true
    result is finite.
    """
    b = s.shape[0]
    acc = torch.float64 if s.device.type != "mps" else torch.float32
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


@torch.library.custom_op("rankgrad::ranknet_hvp", mutates_args=())
def ranknet_hvp_op(
    s: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor], sigma: float, v: torch.Tensor
) -> torch.Tensor:
    """`ranknet_hvp` as an op (torch ops on every device, the Rust path's double backward too)."""
    with torch.no_grad():
        return ranknet_hvp(s.detach(), y, m, sigma, v)


@ranknet_hvp_op.register_fake
def _(s, y, m, sigma, v):
    return torch.empty_like(s)


def _no_third(ctx, grad):
    raise RuntimeError("rankgrad.ranknet_loss has no third derivative (its second derivative is exact)")


ranknet_hvp_op.register_autograd(_no_third, setup_context=lambda ctx, inputs, output: None)
torch.library.register_vmap(
    "rankgrad::ranknet_hvp",
    lambda info, in_dims, s, y, m, sigma, v: _hvp_vmap(info, in_dims, s, y, m, sigma, v),
)


def _hvp_vmap(info, in_dims, s, y, m, sigma, v):
    n_v, d_s = info.batch_size, in_dims[0]
    b = s.shape[0] if d_s is None else s.movedim(d_s, 0).shape[1]
    s2, y2, v2 = (flatten_batch(x, d, n_v) for x, d in ((s, in_dims[0]), (y, in_dims[1]), (v, in_dims[4])))
    m2 = None if m is None else flatten_batch(m, in_dims[2], n_v)
    out = ranknet_hvp_op(s2, y2, m2, sigma, v2)
    return out.reshape(n_v, b, *out.shape[1:]), 0


class _Hvp(torch.autograd.Function):
    """`ranknet_hvp_op` whose backward raises (a third derivative); works under torch.func."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s, y, m, sigma, v):
        return torch.ops.rankgrad.ranknet_hvp.default(s, y, m, sigma, v)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("rankgrad.ranknet_loss has no third derivative (its second derivative is exact)")


class _RankNetGrad(torch.autograd.Function):
    """The backward `dL/ds = G * grad_losses[:, None]`, differentiable: d/ds is the Hessian
    (`ranknet_hvp`, exact), d/d grad_losses is `sum_n V G`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s, y, m, sigma, g, grad_losses):
        return torch.ops.rankgrad.list_grad.default(s, g, grad_losses, "ranknet_loss")

    @staticmethod
    def setup_context(ctx, inputs, output):
        s, y, m, sigma, g, grad_losses = inputs
        ctx.sigma = sigma
        ctx.save_for_backward(s, y, m, g, grad_losses)
        ctx.save_for_forward(s, y, m, g, grad_losses)

    @staticmethod
    def backward(ctx, v):
        s, y, m, g, gl = ctx.saved_tensors
        ds = _Hvp.apply(s, y, m, ctx.sigma, v * gl[:, None].to(v.dtype))
        return ds, None, None, None, None, (v * g).sum(-1).to(gl.dtype)

    @staticmethod
    def jvp(ctx, ds, _dy, _dm, _dsigma, _dg, dgl):
        s, y, m, g, gl = ctx.saved_tensors  # d(G gl) = H (ds gl) + G dgl
        out = (
            torch.zeros_like(g)
            if ds is None
            else _Hvp.apply(s, y, m, ctx.sigma, ds * gl[:, None].to(ds.dtype))
        )
        return out if dgl is None else out + g * dgl[:, None].to(g.dtype)


class RankNetFunction(torch.autograd.Function):
    """`rankgrad::ranknet_loss` with autograd that works under torch.func (see `_list_grad_op`);
    its backward is `_RankNetGrad`, so second derivatives are exact."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s, y, m, sigma, native, validate, need_grad):
        return torch.ops.rankgrad.ranknet_loss.default(s, y, m, sigma, native, validate, need_grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        s, y, m, sigma, _, _, need_grad = inputs
        ctx.sigma, ctx.need_grad = sigma, need_grad
        ctx.save_for_backward(s, y, m, output[2])
        ctx.save_for_forward(output[2])
        ctx.mark_non_differentiable(output[1], output[2])

    jvp = staticmethod(loss_jvp)

    @staticmethod
    def backward(ctx, grad_losses, _grad_valid, _grad_grad):
        s, y, m, g = ctx.saved_tensors
        if not ctx.need_grad:
            raise RuntimeError("rankgrad.ranknet_loss: the forward op was called with need_grad=False")
        return _RankNetGrad.apply(s, y, m, ctx.sigma, g, grad_losses), None, None, None, None, None, None


ranknet_op.register_autograd(
    lambda ctx, gl, gv, gg: RankNetFunction.backward(ctx, gl, gv, gg),
    setup_context=RankNetFunction.setup_context,
)
torch.library.register_vmap(
    "rankgrad::ranknet_loss",
    lambda info, in_dims, s, y, m, *o: forward_vmap(ranknet_op, info, in_dims, s, y, m, *o),
)
