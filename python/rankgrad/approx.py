"""The approximate-rank family (SPEC section 3): smooth ranks and the listwise losses on them.

    r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)

Layout (the pattern every differentiable function follows): the kernels are custom ops
(`_approx_ops`: `rankgrad::approx_ranks`, `approx_ranks_backward`,
`approx_ranks_double_backward`, `approx_loss`); each differentiable step is an
`autograd.Function` (setup_context, backward, jvp, generate_vmap_rule) whose methods call
those ops, and the same backward is registered on the op. Eager and torch.func calls go
through the Function (torch.func.grad/vmap/jacfwd/hessian), torch.compile calls the op
(fullgraph, dynamic shapes); the ops' fake implementations serve meta tensors.

- numpy arrays and CPU tensors: the fused Rust kernel computes each list's loss and its
  gradient in one O(N^2)-time, O(N)-memory pass (`approx_loss`).
- other devices, or `backend="torch"`: the losses are torch code (`_approx_native`) over the
  ranks ops, which walk the pairs in row chunks (no `[B, N, N]` tensor).
- Second derivatives are exact on both paths, in O(N^2) time and O(B*N) memory: the ranks'
  Jacobian J is symmetric, its derivative is the op `approx_ranks_double_backward`, and the
  losses' curvature in r is diagonal (`_approx_native.curvature`). A third derivative raises.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union, overload

import numpy as np
import torch

from . import _approx_native as native
from . import _approx_ops as ops
from . import _core
from ._custom_ops import checkable, entry, needs_grad
from ._inputs import (
    Lists,
    NumpyLoss,
    check_backend,
    check_gain_range,
    check_reduction,
    check_scale,
    lists,
    reduce,
    use_rust,
)

__all__ = ["approx_ranks", "approx_ndcg_loss", "approx_mrr_loss", "approx_rank_mse_loss"]

DISCOUNTS = (None, "log2", "reciprocal")


# ---------------------------------------------------------------- autograd over the ops
class _Ranks(torch.autograd.Function):
    """r(s); backward `J^T g` through `_RanksBackward`, itself differentiable."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s: torch.Tensor, m: Optional[torch.Tensor], t: float, native: bool) -> torch.Tensor:
        return ops.approx_ranks(s, m, t, native)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        s, m, ctx.t, ctx.native = inputs
        ctx.save_for_backward(s, m)
        ctx.save_for_forward(s, m)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[Any, ...]:
        s, m = ctx.saved_tensors
        return _RanksBackward.apply(s, m, ctx.t, g, ctx.native), None, None, None

    @staticmethod
    def jvp(ctx: Any, ds: Optional[torch.Tensor], *_: Any) -> torch.Tensor:
        s, m = ctx.saved_tensors  # J ds = J^T ds: J is symmetric
        return _RanksBackward.apply(s, m, ctx.t, _tangent(ds, s), ctx.native)


class _RanksBackward(torch.autograd.Function):
    """`J^T c`; its gradient: with respect to s `approx_ranks_double_backward`, with respect
    to c `J v` (= `J^T v`, J is symmetric). A third derivative raises a RuntimeError."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        s: torch.Tensor, m: Optional[torch.Tensor], t: float, c: torch.Tensor, native: bool
    ) -> torch.Tensor:
        return ops.approx_ranks_backward(s, m, t, c, native)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        s, m, ctx.t, c, ctx.native = inputs
        ctx.save_for_backward(s, m, c)
        ctx.save_for_forward(s, m, c)

    @staticmethod
    def backward(ctx: Any, v: torch.Tensor) -> Tuple[Any, ...]:
        s, m, c = ctx.saved_tensors
        ds = ops.approx_ranks_double_backward(s, m, ctx.t, c, v) if ctx.needs_input_grad[0] else None
        dc = ops.approx_ranks_backward(s, m, ctx.t, v, ctx.native) if ctx.needs_input_grad[3] else None
        return ds, None, None, dc, None

    @staticmethod
    def jvp(ctx: Any, ds: Any, _dm: Any, _dt: Any, dc: Any, _dn: Any) -> torch.Tensor:
        s, m, c = ctx.saved_tensors  # d(J^T c)/ds is the Hessian of <c, r(s)>: symmetric
        return ops.approx_ranks_double_backward(s, m, ctx.t, c, _tangent(ds, s)) + ops.approx_ranks_backward(
            s, m, ctx.t, _tangent(dc, s), ctx.native
        )


class _RustLoss(torch.autograd.Function):
    """The fused Rust loss: forward returns (losses, valid, d losses / d s)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        s: torch.Tensor,
        y: torch.Tensor,
        m: Optional[torch.Tensor],
        kind: str,
        t: float,
        scale_gains: bool,
        discount: str,
        need_grad: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return ops.approx_loss(s, y, m, kind, t, scale_gains, discount, need_grad)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        s, y, m, kind, t, scale_gains, discount, _ = inputs
        ctx.opts = (kind, t, scale_gains, None if discount == "none" else discount)
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.save_for_backward(s, output[2], y, m)
        ctx.save_for_forward(output[2])

    @staticmethod
    def backward(ctx: Any, grad_losses: torch.Tensor, _valid: Any, _grad: Any) -> Tuple[Any, ...]:
        s, g, y, m = ctx.saved_tensors
        return (_LossGrad.apply(s, g, grad_losses, y, m, *ctx.opts), *(None,) * 7)

    @staticmethod
    def jvp(ctx: Any, ds: Any, *_: Any) -> Tuple[Any, ...]:
        (g,) = ctx.saved_tensors
        return (g * _tangent(ds, g)).sum(-1), None, None


class _LossGrad(torch.autograd.Function):
    """`g * grad_losses[:, None]`, `g = d losses / d s` from the fused kernel; differentiable
    again in closed form. With `u = v * grad_losses[:, None]`, `c = dL/dr`, `D = dc/dr`
    (diagonal, `_approx_native.curvature`) and `J = dr/ds` (symmetric):

        d<v, g * grad_losses>/ds = approx_ranks_double_backward(s, c, u) + J (D * J u)

    O(N^2) time and O(B*N) memory, like the first derivative."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        s: torch.Tensor,
        g: torch.Tensor,
        grad_losses: torch.Tensor,
        y: torch.Tensor,
        m: Optional[torch.Tensor],
        kind: str,
        t: float,
        scale_gains: bool,
        discount: Optional[str],
    ) -> torch.Tensor:
        return g * grad_losses[:, None].to(g.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        s, g, grad_losses, y, m, *opts = inputs
        ctx.opts = tuple(opts)
        ctx.save_for_backward(s, g, grad_losses, y, m)
        ctx.save_for_forward(s, g, grad_losses, y, m)

    @staticmethod
    def backward(ctx: Any, v: torch.Tensor) -> Tuple[Any, ...]:
        s, g, grad_losses, y, m = ctx.saved_tensors
        ds = _loss_hessian_times(s, y, m, ctx.opts, v * grad_losses[:, None].to(v.dtype))
        return ds, None, (v * g).sum(-1).to(grad_losses.dtype), *(None,) * 6

    @staticmethod
    def jvp(ctx: Any, ds: Any, _dg: Any, dgl: Any, *_: Any) -> torch.Tensor:
        s, g, grad_losses, y, m = ctx.saved_tensors
        out = _loss_hessian_times(s, y, m, ctx.opts, _tangent(ds, s)) * grad_losses[:, None].to(s.dtype)
        return out if dgl is None else out + g * dgl[:, None].to(g.dtype)


def _loss_hessian_times(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    opts: Tuple[str, float, bool, Optional[str]],
    u: torch.Tensor,
) -> torch.Tensor:
    """Row b: the Hessian of loss_b in s_b times u_b (symmetric, so also its transpose)."""
    kind, t, scale_gains, discount = opts
    r = ops.approx_ranks(s, m, t, False)
    c, d = native.curvature(kind, r, y, m, scale_gains, discount, s)
    ju = ops.approx_ranks_backward(s, m, t, u, False)
    return ops.approx_ranks_double_backward(s, m, t, c, u) + ops.approx_ranks_backward(s, m, t, d * ju, False)


def _ranks(s: torch.Tensor, m: Optional[torch.Tensor], t: float, native: bool) -> torch.Tensor:
    return entry(_Ranks, ops.approx_ranks)(s, m, t, native)


def _tangent(x: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if x is None else x


# The same formulas as the ops' own autograd, for callers of torch.ops.rankgrad.* (and
# opcheck); the public functions go through the Functions, which torch.func also supports.
for _op, _fn in (
    (ops.approx_ranks, _Ranks),
    (ops.approx_ranks_backward, _RanksBackward),
    (ops.approx_loss, _RustLoss),
):
    _op.register_autograd(_fn.backward, setup_context=_fn.setup_context)


def _no_third_derivative(ctx: Any, v: torch.Tensor) -> Tuple[Any, ...]:
    raise RuntimeError("approx_ranks: third derivatives are not available (second ones are exact)")


ops.approx_ranks_double_backward.register_autograd(_no_third_derivative)


def _native_loss(
    x: Lists, kind: str, t: float, scale_gains: bool, discount: Optional[str]
) -> Tuple[torch.Tensor, torch.Tensor]:
    s = x.scores
    if s.shape[-1] == 0:  # nothing to rank: 0, not counted (connected to s for autograd)
        return s.sum(-1) * 0, torch.zeros(s.shape[0], dtype=torch.bool, device=s.device)
    r = _ranks(s, x.mask, t, True)
    return native.loss_from_ranks(kind, r, x.targets, x.mask, scale_gains, discount, s)


def _as_tensors(x: Lists) -> Lists:
    """A numpy batch as CPU tensors sharing its memory (backend="torch" on numpy input)."""
    conv = [None if a is None else torch.from_numpy(a) for a in (x.scores, x.targets, x.mask)]
    return Lists(conv[0], conv[1], conv[2], x.squeeze, x.dtype)


# ---------------------------------------------------------------- dispatch
def _tensor_losses(
    x: Lists, kind: str, t: float, rust: bool, validate: bool, scale_gains: bool, discount: Optional[str]
) -> Tuple[torch.Tensor, torch.Tensor]:
    if rust:
        need_grad = needs_grad(x.scores)
        losses, valid, _ = entry(_RustLoss, ops.approx_loss)(
            x.scores, x.targets, x.mask, kind, t, scale_gains, discount or "none", need_grad
        )
        return losses, valid
    if validate and checkable(x.scores):
        x.check_finite()
        if kind == "ndcg" and scale_gains:
            check_gain_range(x.targets, x.mask)
    return _native_loss(x, kind, t, scale_gains, discount)


def _loss(
    kind: str,
    scores: Any,
    targets: Any,
    mask: Any,
    temperature: float,
    reduction: str,
    backend: str,
    validate: bool,
    scale_gains: bool = True,
    discount: Optional[str] = None,
) -> Any:
    check_reduction(reduction)
    check_backend(backend)
    x = lists(scores, targets, mask, validate=False)
    t = check_scale("temperature", temperature, x.scores.dtype)
    rust = use_rust(x, backend)
    if x.is_torch:
        return reduce(*_tensor_losses(x, kind, t, rust, validate, scale_gains, discount), reduction, x)
    if rust:
        s, y, m = x.numpy()
        losses, valid, _ = _core.approx_loss(kind, s, y, m, t, False, scale_gains, discount)
    else:
        with torch.no_grad():
            lt, vt = _tensor_losses(_as_tensors(x), kind, t, False, validate, scale_gains, discount)
        losses, valid = lt.numpy(), vt.numpy()
    return reduce(losses, valid, reduction, x)


# ---------------------------------------------------------------- public functions
@overload
def approx_ranks(
    scores: np.ndarray,
    temperature: float = ...,
    mask: Optional[np.ndarray] = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> np.ndarray: ...
@overload
def approx_ranks(
    scores: torch.Tensor,
    temperature: float = ...,
    mask: Optional[torch.Tensor] = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
def approx_ranks(
    scores: Any,
    temperature: float = 1.0,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """Smooth ranks `r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` over the real items.

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        temperature: `T > 0`; smaller is closer to the exact ranks.
        mask: `[B, N]` bool, True = real item (None: all real).
        backend: "auto" (Rust for numpy and CPU tensors, torch-native otherwise), "rust" or "torch".
        validate: check for NaN/inf on the torch-native path (it syncs a CUDA device; skipped
            while torch.compile traces, on meta tensors and under torch.func transforms).

    Returns:
        Ranks of the shape and dtype of `scores` (0 at padded positions), a tensor for a
        tensor (differentiable, twice) and an array for an array.
    """
    check_backend(backend)
    x = lists(scores, None, mask, targets_required=False, validate=False)
    t = check_scale("temperature", temperature, x.scores.dtype)
    rust = use_rust(x, backend)
    if not x.is_torch:
        if rust:
            s, _, m = x.numpy()
            r = _core.approx_ranks(s, m, t)
        else:
            xt = _as_tensors(x)
            if validate:
                xt.check_finite()
            r = ops.approx_ranks(xt.scores, xt.mask, t, True).numpy()
        r = r.astype(x.dtype)
    else:
        if not rust and validate and checkable(x.scores):
            x.check_finite()
        r = _ranks(x.scores, x.mask, t, not rust).to(x.dtype)
    return r[0] if x.squeeze else r


@overload
def approx_ndcg_loss(
    scores: np.ndarray,
    targets: np.ndarray,
    temperature: float = ...,
    scale_gains: bool = ...,
    mask: Optional[np.ndarray] = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
@overload
def approx_ndcg_loss(
    scores: torch.Tensor,
    targets: Union[torch.Tensor, np.ndarray],
    temperature: float = ...,
    scale_gains: bool = ...,
    mask: Optional[torch.Tensor] = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
def approx_ndcg_loss(
    scores: Any,
    targets: Any,
    temperature: float = 1.0,
    scale_gains: bool = True,
    mask: Any = None,
    reduction: str = "mean",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """ApproxNDCG: `1 - sum_i g(y_i) / log2(1 + r_i) / IDCG` per list, `g(y) = 2^y - 1`
    (`y` when `scale_gains=False`), targets below 0 counting as 0, IDCG the exact ideal DCG.

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        targets: graded relevance of the same shape (at most the gain cap, 1000, on real
            items when `scale_gains`).
        temperature: `T > 0` of the approximate ranks.
        scale_gains: `2^y - 1` gains (True) or linear gains `y`.
        mask: `[B, N]` bool, True = real item; padded items change nothing.
        reduction: "mean" over the lists that count (those with a relevant item and at
            least 2 real items; 0.0 if none), "sum", or "none" (`[B]`, a scalar for `[N]`).
        backend: "auto" (Rust for numpy and CPU tensors, torch-native otherwise), "rust" or "torch".
        validate: check for NaN/inf on the torch-native path (it syncs a CUDA device; skipped
            while torch.compile traces, on meta tensors and under torch.func transforms).

    Returns:
        The loss in the dtype of `scores`: a tensor for a tensor, numpy for numpy.
    """
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


@overload
def approx_mrr_loss(
    scores: np.ndarray,
    targets: np.ndarray,
    temperature: float = ...,
    mask: Optional[np.ndarray] = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
@overload
def approx_mrr_loss(
    scores: torch.Tensor,
    targets: Union[torch.Tensor, np.ndarray],
    temperature: float = ...,
    mask: Optional[torch.Tensor] = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
def approx_mrr_loss(
    scores: Any,
    targets: Any,
    temperature: float = 1.0,
    mask: Any = None,
    reduction: str = "mean",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """ApproxMRR: `1 - max_i min(max(y_i, 0), 1) / r_i` per list.

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        targets: relevance of the same shape (above 0 = relevant, clipped to [0, 1]).
        temperature: `T > 0` of the approximate ranks.
        mask: `[B, N]` bool, True = real item; padded items change nothing.
        reduction: "mean" over the lists with a relevant item and at least 2 real items
            (0.0 if none), "sum", or "none" (`[B]`, a scalar for `[N]`).
        backend: "auto", "rust" or "torch" (see `approx_ndcg_loss`).
        validate: check for NaN/inf on the torch-native path.

    Returns:
        The loss in the dtype of `scores`: a tensor for a tensor, numpy for numpy.
    """
    return _loss("mrr", scores, targets, mask, temperature, reduction, backend, validate)


@overload
def approx_rank_mse_loss(
    scores: np.ndarray,
    targets: np.ndarray,
    temperature: float = ...,
    discount: Optional[str] = ...,
    mask: Optional[np.ndarray] = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
@overload
def approx_rank_mse_loss(
    scores: torch.Tensor,
    targets: Union[torch.Tensor, np.ndarray],
    temperature: float = ...,
    discount: Optional[str] = ...,
    mask: Optional[torch.Tensor] = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
def approx_rank_mse_loss(
    scores: Any,
    targets: Any,
    temperature: float = 1.0,
    discount: Optional[str] = None,
    mask: Any = None,
    reduction: str = "mean",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """ApproxRankMSE: per list, `mean_i w_i (r_i - t_i)^2` over the real items, `t_i` the
    1-based rank by targets descending (ties in input order).

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        targets: any real numbers of the same shape (e.g. teacher scores).
        temperature: `T > 0` of the approximate ranks.
        discount: `w_i` = 1 (None), `1/log2(t_i + 1)` ("log2") or `1/t_i` ("reciprocal").
        mask: `[B, N]` bool, True = real item; padded items change nothing.
        reduction: "mean" over the lists with at least 2 real items (0.0 if none), "sum",
            or "none" (`[B]`, a scalar for `[N]`).
        backend: "auto", "rust" or "torch" (see `approx_ndcg_loss`).
        validate: check for NaN/inf on the torch-native path.

    Returns:
        The loss in the dtype of `scores`: a tensor for a tensor, numpy for numpy.
    """
    if discount not in DISCOUNTS:
        raise ValueError(f"discount must be None, 'log2' or 'reciprocal', got {discount!r}")
    return _loss(
        "rank_mse", scores, targets, mask, temperature, reduction, backend, validate, discount=discount
    )
