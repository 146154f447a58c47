"""The approximate-rank family (SPEC section 3): smooth ranks and the listwise losses on them.

    r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)

numpy arrays and CPU tensors go to the Rust kernels, which compute each list's loss and its
gradient in one O(N^2)-time, O(N)-memory pass. Tensors on other devices (or `backend="torch"`)
take the torch-native path: the same ranks, rows processed in chunks and recomputed in the
backward, so no `[B, N, N]` tensor is ever held.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import _core
from ._inputs import Array, Lists, check_positive, check_reduction, lists, reduce, use_rust

__all__ = ["approx_ranks", "approx_ndcg_loss", "approx_mrr_loss", "approx_rank_mse_loss"]

_DISCOUNTS = (None, "log2", "reciprocal")


def _chunk(b: int, n: int, device: torch.device) -> int:
    """Rows per chunk so that one `[B, chunk, N]` temporary stays near a fixed budget."""
    budget = (1 << 26) if device.type == "cuda" else (1 << 22)
    return max(1, min(n, budget // max(1, b * n)))


class _RanksTorch(torch.autograd.Function):
    """Torch-native approximate ranks, rows in chunks; the backward is the closed form,
    recomputed by chunks: dL/ds_k = (1/T) sum_{i != k} sigmoid'((s_k - s_i)/T) (c_i - c_k).

    Per chunk one `[B, chunk, N]` buffer is updated in place and reduced with a batched
    matrix product against the mask (and `mask * c`)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, m: torch.Tensor, inv_t: float) -> torch.Tensor:
        ctx.save_for_backward(s, m)
        ctx.inv_t = inv_t
        b, n = s.shape
        mf = m.to(s.dtype)
        r = torch.empty_like(s)
        step = _chunk(b, n, s.device)
        ctx.p = None
        for a in range(0, n, step):
            e = min(n, a + step)
            x = s[:, None, :] - s[:, a:e, None]  # [B, c, N]: s_j - s_i
            x.mul_(inv_t).sigmoid_()
            # the j == i term is sigmoid(0) = 1/2
            r[:, a:e] = torch.bmm(x, mf[:, :, None])[..., 0] + 0.5
        if step >= n:  # one chunk holds every pair: keep it for the backward
            ctx.p = x
        return r * mf

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_r: torch.Tensor):
        s, m = ctx.saved_tensors
        inv_t = ctx.inv_t
        b, n = s.shape
        mf = m.to(s.dtype)
        c = grad_r.to(s.dtype) * mf
        rhs = torch.stack((c, mf), dim=-1)  # [B, N, 2]
        g = torch.empty_like(s)
        step = _chunk(b, n, s.device)
        for a in range(0, n, step):
            e = min(n, a + step)
            if ctx.p is not None:  # sigmoid(s_j - s_i) for row i: sigmoid' is symmetric
                w = ctx.p - ctx.p.square()  # not in place: a backward may run twice
            else:
                p = (s[:, a:e, None] - s[:, None, :]).mul_(inv_t).sigmoid_()  # [B, c, N]
                w = p.sub_(p.square())  # sigmoid' = p (1 - p)
            wc, w1 = torch.bmm(w, rhs).unbind(-1)  # sum_i w c_i m_i, sum_i w m_i
            g[:, a:e] = (wc - c[:, a:e] * w1) * inv_t
        return g * mf, None, None


class _RanksRust(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s: torch.Tensor, m: Optional[torch.Tensor], temperature: float):
        sn = s.detach().contiguous().numpy()
        mn = None if m is None else m.contiguous().numpy()
        ctx.save_for_backward(s)
        ctx.mask, ctx.temperature = mn, temperature
        return torch.from_numpy(_core.approx_ranks(sn, mn, temperature))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_r: torch.Tensor):
        (s,) = ctx.saved_tensors
        g = _core.approx_ranks_backward(
            s.detach().contiguous().numpy(),
            ctx.mask,
            ctx.temperature,
            grad_r.to(s.dtype).contiguous().numpy(),
        )
        return torch.from_numpy(g), None, None


@torch.library.custom_op("rankgrad::approx_loss", mutates_args=(), device_types="cpu")
def _approx_loss_op(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    kind: str,
    temperature: float,
    scale_gains: bool,
    discount: str,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-list losses `[B]`, counts `[B]` and, with `need_grad`, d losses / d scores `[B, N]`
    (else an empty tensor), from the Rust kernel. A custom op, so torch.compile keeps it in
    its graph."""
    losses, valid, grad = _core.approx_loss(
        kind,
        s.detach().contiguous().numpy(),
        y.contiguous().numpy(),
        None if m is None else m.contiguous().numpy(),
        temperature,
        need_grad,
        scale_gains,
        discount,
    )
    grad = torch.from_numpy(grad) if need_grad else s.new_empty(0)
    return torch.from_numpy(losses), torch.from_numpy(valid), grad


@_approx_loss_op.register_fake
def _(s, y, m, kind, temperature, scale_gains, discount, need_grad):
    b = s.shape[0]
    grad = s.new_empty(s.shape) if need_grad else s.new_empty(0)
    return s.new_empty(b), s.new_empty(b, dtype=torch.bool), grad


def _approx_loss_setup(ctx, inputs, output):
    ctx.save_for_backward(output[2])


def _approx_loss_backward(ctx, grad_losses, _grad_valid, _grad_grad):
    (g,) = ctx.saved_tensors
    return g * grad_losses[:, None], None, None, None, None, None, None, None


_approx_loss_op.register_autograd(_approx_loss_backward, setup_context=_approx_loss_setup)


def _native(x: Lists):
    """(scores with padded entries zeroed, mask, real-item count) for the torch path."""
    s = x.scores
    m = torch.ones_like(s, dtype=torch.bool) if x.mask is None else x.mask
    return torch.where(m, s, torch.zeros((), dtype=s.dtype, device=s.device)), m, m.sum(-1)


def _torch_ranks(x: Lists, temperature: float):
    s, m, count = _native(x)
    return _RanksTorch.apply(s, m, 1.0 / temperature), m, count


def _gains(y: torch.Tensor, scale_gains: bool) -> torch.Tensor:
    y = y.clamp(min=0)
    return torch.exp2(y) - 1 if scale_gains else y


def _ideal_dcg(g: torch.Tensor) -> torch.Tensor:
    """DCG of the ideal order; `g` is zero at padded positions."""
    n = g.shape[-1]
    disc = 1.0 / torch.log2(torch.arange(n, device=g.device, dtype=g.dtype) + 2.0)
    return (g.sort(dim=-1, descending=True).values * disc).sum(-1)


def _safe(valid: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`v` where it is used, 1 elsewhere: keeps the unused branch of a where() finite."""
    return torch.where(valid, v, torch.ones_like(v))


def _torch_ndcg(x: Lists, temperature: float, scale_gains: bool):
    r, m, count = _torch_ranks(x, temperature)
    g = _gains(x.targets, scale_gains) * m
    idcg = _ideal_dcg(g)
    dcg = (g / torch.log2(1 + _safe(m, r))).sum(-1)
    valid = (count >= 2) & (idcg > 0)
    loss = torch.where(valid, 1 - dcg / _safe(valid, idcg), torch.zeros_like(dcg))
    return loss, valid


def _torch_mrr(x: Lists, temperature: float):
    r, m, count = _torch_ranks(x, temperature)
    y = x.targets
    rel = y.clamp(0, 1) * m
    best = (rel / _safe(m, r)).max(dim=-1).values
    valid = (count >= 2) & ((y > 0) & m).any(-1)
    return torch.where(valid, 1 - best, torch.zeros_like(best)), valid


def _true_ranks(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1-based ranks by targets descending among the real items, ties in input order."""
    key = torch.where(m, y, torch.full_like(y, -math.inf))
    order = key.argsort(dim=-1, descending=True, stable=True)
    pos = torch.arange(1, y.shape[-1] + 1, device=y.device, dtype=y.dtype).expand_as(y)
    return torch.empty_like(y).scatter_(-1, order, pos)


def _rank_weights(t: torch.Tensor, discount: Optional[str]) -> torch.Tensor:
    if discount is None:
        return torch.ones_like(t)
    return 1.0 / torch.log2(t + 1) if discount == "log2" else 1.0 / t


def _torch_rank_mse(x: Lists, temperature: float, discount: Optional[str]):
    r, m, count = _torch_ranks(x, temperature)
    t = _true_ranks(x.targets, m)
    per_item = _rank_weights(t, discount) * (r - t) ** 2 * m
    valid = count >= 2
    loss = per_item.sum(-1) / _safe(valid, count.to(r.dtype))
    return torch.where(valid, loss, torch.zeros_like(loss)), valid


def _from_numpy(*arrays):
    return [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in arrays]


def _loss(kind, scores, targets, mask, temperature, reduction, backend, validate, **opts):
    check_reduction(reduction)
    temperature = check_positive("temperature", temperature)
    if backend == "torch" and isinstance(scores, np.ndarray):
        lists(scores, targets, mask, validate=False)  # numpy inputs of the right kinds
        scores, targets, mask = _from_numpy(scores, targets, mask)
        return _loss(kind, scores, targets, mask, temperature, reduction, backend, validate, **opts).numpy()
    x = lists(scores, targets, mask, validate=False)
    if use_rust(x, backend):
        if x.is_torch:
            need_grad = x.scores.requires_grad and torch.is_grad_enabled()
            losses, valid, _ = _approx_loss_op(
                x.scores,
                x.targets,
                x.mask,
                kind,
                temperature,
                opts.get("scale_gains", True),
                opts.get("discount") or "none",
                need_grad,
            )
        else:
            s, y, m = x.numpy()
            losses, valid, _ = _core.approx_loss(
                kind,
                s,
                y,
                m,
                temperature,
                False,
                opts.get("scale_gains", True),
                opts.get("discount"),
            )
        return reduce(losses, valid, reduction, x)
    if validate:
        x.check_finite()
    if kind == "ndcg":
        losses, valid = _torch_ndcg(x, temperature, opts["scale_gains"])
    elif kind == "mrr":
        losses, valid = _torch_mrr(x, temperature)
    else:
        losses, valid = _torch_rank_mse(x, temperature, opts["discount"])
    return reduce(losses, valid, reduction, x)


def approx_ranks(
    scores: Array,
    temperature: float = 1.0,
    mask: Optional[Array] = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Array:
    """Smooth ranks `r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` over the real items
    (0 at padded positions); same shape and dtype as `scores`, differentiable."""
    temperature = check_positive("temperature", temperature)
    if backend == "torch" and isinstance(scores, np.ndarray):
        scores, mask = _from_numpy(scores, mask)
        return approx_ranks(scores, temperature, mask, backend=backend, validate=validate).numpy()
    x = lists(scores, None, mask, targets_required=False, validate=False)
    if use_rust(x, backend):
        if x.is_torch:
            r = _RanksRust.apply(x.scores, x.mask, temperature)
        else:
            s, _, m = x.numpy()
            r = _core.approx_ranks(s, m, temperature)
    else:
        if validate:
            x.check_finite()
        r, _, _ = _torch_ranks(x, temperature)
    r = r.to(x.dtype) if isinstance(r, torch.Tensor) else r.astype(x.dtype)
    return r[0] if x.squeeze else r


def approx_ndcg_loss(
    scores: Array,
    targets: Array,
    temperature: float = 1.0,
    scale_gains: bool = True,
    mask: Optional[Array] = None,
    reduction: str = "mean",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Array:
    """ApproxNDCG: `1 - sum_i g(y_i) / log2(1 + r_i) / IDCG`, `g(y) = 2^y - 1` (or `y` when
    `scale_gains=False`), targets below 0 counting as 0, IDCG the exact ideal DCG.

    `backend`: "auto" (Rust for numpy and CPU tensors, torch otherwise), "rust" or "torch".
    `validate=False` skips the NaN/inf check on the torch path (it syncs a CUDA device)."""
    return _loss(
        "ndcg",
        scores,
        targets,
        mask,
        temperature,
        reduction,
        backend,
        validate,
        scale_gains=bool(scale_gains),
    )


def approx_mrr_loss(
    scores: Array,
    targets: Array,
    temperature: float = 1.0,
    mask: Optional[Array] = None,
    reduction: str = "mean",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Array:
    """ApproxMRR: `1 - max_i min(max(y_i, 0), 1) / r_i`."""
    return _loss("mrr", scores, targets, mask, temperature, reduction, backend, validate)


def approx_rank_mse_loss(
    scores: Array,
    targets: Array,
    temperature: float = 1.0,
    discount: Optional[str] = None,
    mask: Optional[Array] = None,
    reduction: str = "mean",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Array:
    """ApproxRankMSE: per list, `mean_i w_i (r_i - t_i)^2` over the real items, `t_i` the
    1-based rank by targets descending (ties in input order), `w_i` = 1 (`discount=None`),
    `1/log2(t_i + 1)` ("log2") or `1/t_i` ("reciprocal"). Targets may be any real numbers."""
    if discount not in _DISCOUNTS:
        raise ValueError(f"discount must be None, 'log2' or 'reciprocal', got {discount!r}")
    return _loss(
        "rank_mse", scores, targets, mask, temperature, reduction, backend, validate, discount=discount
    )
