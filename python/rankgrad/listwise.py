"""The LambdaLoss framework (SPEC section 11): `rankgrad.lambda_loss`.

Per list, its real items ordered by score (descending, ties in input order), position `p_i`
(0-based), `D_i = log2(2 + p_i)`, `G_i = (2^y_i - 1) / maxDCG@k` (`y_i` with
`scale_gains=False`; targets below 0 count 0). Over the pairs with both positions `< k`::

    L = -sum w_ij * log2(sigmoid(sigma * (s_i - s_j)))

the weights held constant. numpy arrays and CPU tensors go to the Rust kernel (one fused
O(N^2)-time, O(N)-memory pass per list: sort, weights, loss and closed-form gradient); other
devices, or `backend="torch"`, to a torch-native twin that walks the pair matrix by blocks of
rows. Both run inside the custom op `rankgrad::lambda_loss`, whose backward is the custom op
`rankgrad::lambda_loss_backward`; a second derivative raises a RuntimeError.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, overload

import numpy as np
import torch

from . import _core
from ._custom_ops import checkable, custom_op_rows, entry, needs_grad, np_in
from ._inputs import (
    NumpyLoss,
    check_backend,
    check_count,
    check_gain_range,
    check_reduction,
    check_scale,
    chunk_rows,
    lists,
    op_count,
    reduce,
    use_rust,
)
from ._list_grad_op import loss_jvp

__all__ = ["lambda_loss", "softmax_loss", "listmle_loss", "WEIGHTINGS"]

WEIGHTINGS = ("ndcg1", "ndcg2", "lambdarank", "ndcg2pp", "ranknet")
_LN2 = math.log(2.0)


def _lambda_torch(s, y, m, weighting: str, sigma: float, k: Optional[int], mu: float, scale_gains: bool):
    """Per-list losses `[B]`, valid `[B]` and d losses / d scores `[B, N]` in torch ops, the
    pair matrix taken a block of rows at a time (never a `[B, N, N]` tensor for large lists)."""
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
        x = sigma * (half[:, a0:a1, None] - half[:, None, :])  # [B, c, N]: half the scaled gap
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
        # -ln sigmoid(2x) / 2, stable and finite for any finite scores (0 weight: exactly 0)
        softplus = torch.relu(-x) + 0.5 * torch.log1p(torch.exp(-2.0 * x.abs()))
        losses += 2.0 * (w * softplus).sum((1, 2))
        lam = w * torch.sigmoid(-2.0 * x) * sigma  # -dL_ab/ds_a = dL_ab/ds_b
        grad_sorted[:, a0:a1] -= lam.sum(2)
        grad_sorted += lam.sum(1)
    grad = torch.zeros_like(s).scatter_(1, order, grad_sorted / _LN2)
    return losses / _LN2, valid, grad


def _fake(s, y, m, weighting, sigma, k, mu, scale_gains, native, need_grad):
    b = s.shape[0]
    grad = torch.empty_like(s) if need_grad else s.new_empty(0)
    return s.new_empty(b), s.new_empty(b, dtype=torch.bool), grad


@custom_op_rows("lambda_loss", _fake)
def _lambda_loss_op(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    weighting: str,
    sigma: float,
    k: Optional[int],
    mu: float,
    scale_gains: bool,
    native: bool,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-list losses `[B]`, counts `[B]` and, with `need_grad`, d losses / d scores `[B, N]`
    (else an empty tensor). This is the torch-native kernel (every device); on CPU the Rust
    kernel below runs unless `native` (backend="torch")."""
    losses, valid, grad = _lambda_torch(s.detach(), y, m, weighting, sigma, k, mu, scale_gains)
    return losses, valid, grad if need_grad else s.new_empty(0)


@_lambda_loss_op.register_kernel("cpu")
def _(s, y, m, weighting, sigma, k, mu, scale_gains, native, need_grad):
    if native:
        losses, valid, grad = _lambda_torch(s.detach(), y, m, weighting, sigma, k, mu, scale_gains)
        return losses, valid, grad if need_grad else s.new_empty(0)
    losses, valid, grad = _core.lambda_loss(
        np_in(s), np_in(y), np_in(m), weighting, sigma, k, mu, scale_gains, need_grad
    )
    grad = torch.from_numpy(grad) if need_grad else s.new_empty(0)
    return torch.from_numpy(losses), torch.from_numpy(valid), grad


class _LambdaLoss(torch.autograd.Function):
    """(losses, valid, grad) from the op; backward `grad * grad_losses` via `_FirstOrderOnly`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s, y, m, weighting, sigma, k, mu, scale_gains, native, need_grad):
        return _lambda_loss_op(s, y, m, weighting, sigma, k, mu, scale_gains, native, need_grad)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.save_for_backward(inputs[0], output[2])
        ctx.save_for_forward(output[2])

    jvp = staticmethod(loss_jvp)

    @staticmethod
    def backward(ctx, grad_losses, _valid, _grad):
        s, g = ctx.saved_tensors
        if g.dim() != 2:
            raise RuntimeError("rankgrad::lambda_loss ran with need_grad=False; it cannot be differentiated")
        return (_FirstOrderOnly.apply(g, grad_losses, s), *(None,) * 9)


class _FirstOrderOnly(torch.autograd.Function):
    """`g * grad_losses[:, None]`; differentiating it again raises a clear RuntimeError. It
    takes the scores `s` (unused) so that its result stays connected to them under
    `create_graph=True`: a second derivative reaches `backward` and raises instead of
    coming back as None or zeros."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g, grad_losses, s):
        return g * grad_losses[:, None].to(g.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, _v):
        raise RuntimeError(
            "lambda_loss: second derivatives are not available (its pair weights are held "
            "constant and no Hessian is implemented); take first-order gradients only"
        )


# The same formula for callers of torch.ops.rankgrad.lambda_loss (and opcheck).
_lambda_loss_op.register_autograd(_LambdaLoss.backward, setup_context=_LambdaLoss.setup_context)


def _check_options(weighting: Any, mu: Any) -> float:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    try:
        mu = float(mu)
    except (TypeError, ValueError):
        raise TypeError(f"mu must be a number, got {type(mu).__name__}") from None
    if not 0.0 <= mu < math.inf:
        raise ValueError(f"mu must be a finite number >= 0, got {mu!r}")
    return mu


@overload
def lambda_loss(
    scores: torch.Tensor,
    targets: Any,
    weighting: str = ...,
    sigma: float = ...,
    k: Optional[int] = ...,
    mu: float = ...,
    mask: Any = ...,
    reduction: str = ...,
    scale_gains: bool = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def lambda_loss(
    scores: np.ndarray,
    targets: Any,
    weighting: str = ...,
    sigma: float = ...,
    k: Optional[int] = ...,
    mu: float = ...,
    mask: Any = ...,
    reduction: str = ...,
    scale_gains: bool = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
def lambda_loss(
    scores,
    targets,
    weighting="ndcg2pp",
    sigma=1.0,
    k=None,
    mu=10.0,
    mask=None,
    reduction="mean",
    scale_gains=True,
    *,
    backend="auto",
    validate=True,
):
    """LambdaLoss (Wang et al., CIKM 2018), as allRank's ``lambdaLoss``.

    Per list, over its real items ordered by score (descending, ties in input order) at
    0-based positions ``p_i``, ``D_i = log2(2 + p_i)``, ``G_i = g(y_i) / maxDCG@k`` with
    ``g(y) = 2^y - 1`` (``y`` when ``scale_gains=False``; targets below 0 count 0)::

        loss = -sum_{(i, j)} w_ij * log2(sigmoid(sigma * (s_i - s_j)))

    over the pairs with ``y_i > y_j`` and both positions ``< k``, the weights ``w_ij`` held
    constant: ``"ndcg2pp"`` ``mu * ndcg2 + lambdarank``; ``"ndcg2"``
    ``|rho(|p_i - p_j|) - rho(|p_i - p_j| + 1)| * |G_i - G_j|``, ``rho(d) = 1/log2(1 + d)``;
    ``"lambdarank"`` ``|1/D_i - 1/D_j| * |G_i - G_j|``; ``"ranknet"`` 1; ``"ndcg1"``
    ``G_i / D_i`` summed over every ordered pair ``i != j`` (allRank's ``i == j`` constant
    terms are left out). The log-sigmoid is computed stably, never clamped.

    Args:
      scores: ``[B, N]`` (or ``[N]``, one list) float tensor or numpy array.
      targets: graded relevance, the shape of ``scores``.
      weighting: ``"ndcg2pp"`` (default), ``"ndcg2"``, ``"lambdarank"``, ``"ranknet"``, ``"ndcg1"``.
      sigma: the sigmoid's slope, > 0.
      k: only pairs with both positions ``< k``, and maxDCG@k; ``None``: every position.
      mu: the ndcg2 weight in ``"ndcg2pp"``, >= 0.
      mask: optional ``[B, N]`` bool, True = real item; padded items get zero gradient.
      reduction: ``"mean"`` over the lists that count (a list with fewer than 2 real items
        within ``k``, no pair or zero maxDCG has loss 0 and does not count), ``"sum"``, or
        ``"none"`` (``[B]``).
      scale_gains: ``2^y - 1`` gains (default) or linear ``y``.
      backend: ``"auto"`` (Rust for numpy and CPU tensors, torch-native elsewhere), ``"rust"``
        or ``"torch"``.
      validate: check for NaN/inf (and too large targets) on the torch-native path; the Rust
        kernel always checks.

    Returns:
      A scalar (``"mean"``/``"sum"``) or ``[B]`` (``"none"``) in the input dtype: a tensor
      differentiable once with respect to ``scores`` for tensor input, numpy for numpy input.
    """
    check_reduction(reduction)
    check_backend(backend)
    mu = _check_options(weighting, mu)
    k = check_count("k", k)
    if backend == "torch" and isinstance(scores, np.ndarray):
        lists(scores, targets, mask, validate=False)  # numpy inputs of the right kinds
        t = [None if a is None else torch.from_numpy(np.asarray(a)) for a in (scores, targets, mask)]
        out = lambda_loss(
            *t[:2], weighting, sigma, k, mu, t[2], reduction, scale_gains, backend=backend, validate=validate
        )
        return out.numpy()[()]  # a 0-d result as a numpy scalar, like the Rust path
    x = lists(scores, targets, mask, validate=False)
    sigma = check_scale("sigma", sigma, x.scores.dtype)
    scale_gains = bool(scale_gains)
    rust = use_rust(x, backend)
    if not x.is_torch:
        s, y, m = x.numpy()
        losses, valid, _ = _core.lambda_loss(s, y, m, weighting, sigma, k, mu, scale_gains, False)
        return reduce(losses, valid, reduction, x)
    if not rust and validate and checkable(x.scores):  # the Rust kernel always checks
        x.check_finite()
        if scale_gains:
            check_gain_range(x.targets, x.mask)
    losses, valid, _ = entry(_LambdaLoss, _lambda_loss_op)(
        x.scores,
        x.targets,
        x.mask,
        weighting,
        sigma,
        op_count(k),
        mu,
        scale_gains,
        not rust,
        needs_grad(x.scores),
    )
    return reduce(losses, valid, reduction, x)


# ---------------------------------------------------------------- softmax and ListMLE (torch)
def _torch_lists(scores: Any, targets: Any, mask: Any, validate: bool):
    """(validated batch with tensors, whether the input was numpy)."""
    numpy_in = isinstance(scores, np.ndarray)
    if numpy_in:
        lists(scores, targets, mask, validate=False)  # numpy inputs of the right kinds
        scores, targets, mask = (
            None if a is None else torch.from_numpy(np.asarray(a)) for a in (scores, targets, mask)
        )
    x = lists(scores, targets, mask, validate=False)
    if validate and checkable(x.scores):
        x.check_finite()
    m = torch.ones_like(x.scores, dtype=torch.bool) if x.mask is None else x.mask
    return x, m, numpy_in


def _finish(losses, valid, reduction, x, numpy_in):
    out = reduce(losses, valid, reduction, x)
    return out.detach().numpy()[()] if numpy_in else out  # 0-d: a numpy scalar


@overload
def softmax_loss(
    scores: torch.Tensor,
    targets: Any,
    mask: Any = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def softmax_loss(
    scores: np.ndarray,
    targets: Any,
    mask: Any = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
def softmax_loss(scores, targets, mask=None, reduction="mean", *, backend="auto", validate=True):
    """Softmax cross-entropy (Rax's ``softmax_loss``; ListNet with a top-1 target)::

        loss = -sum_i p_i * log softmax(s)_i,   p_i = max(y_i, 0) / sum_j max(y_j, 0)

    over the real items of each list.

    Args:
      scores: ``[B, N]`` (or ``[N]``) float tensor (or numpy array).
      targets: relevance, the shape of ``scores``; negative values count 0.
      mask: optional ``[B, N]`` bool, True = real item; padded items get zero gradient.
      reduction: ``"mean"`` over the lists that count (a list whose targets sum to 0 has loss
        0 and does not count), ``"sum"``, or ``"none"`` (``[B]``).
      backend: accepted for a uniform signature ("auto", "rust" or "torch"); this O(N log N)
        loss is torch-native on every backend.
      validate: check for NaN/inf on real items (skipped under torch.compile and torch.func).

    Returns:
      A scalar or ``[B]`` tensor in the input dtype (numpy for numpy input). Built from
      native torch ops: torch.compile, torch.func and higher-order gradients all work.
    """
    check_reduction(reduction)
    check_backend(backend)
    x, m, numpy_in = _torch_lists(scores, targets, mask, validate)
    s = x.scores
    zero = s.new_zeros(())
    p = torch.where(m, x.targets.clamp(min=0), zero)  # where first: padding may hold NaN
    total = p.sum(-1)
    valid = total > 0
    p = p / torch.where(valid, total, torch.ones_like(total))[:, None]
    logits = torch.where(m, s, torch.full_like(s, -math.inf))
    logits = torch.where(m.any(-1, keepdim=True), logits, zero)  # a list with no real item
    logp = logits - torch.logsumexp(logits, -1, keepdim=True)
    losses = -(p * torch.where(m, logp, zero)).sum(-1)
    return _finish(torch.where(valid, losses, zero), valid, reduction, x, numpy_in)


@overload
def listmle_loss(
    scores: torch.Tensor,
    targets: Any,
    mask: Any = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def listmle_loss(
    scores: np.ndarray,
    targets: Any,
    mask: Any = ...,
    reduction: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
def listmle_loss(scores, targets, mask=None, reduction="mean", *, backend="auto", validate=True):
    """ListMLE (Rax's ``listmle_loss``): the Plackett-Luce negative log-likelihood of the order
    by targets (descending, ties in input order), ``pi``, over the ``n`` real items::

        loss = sum_{i=1..n} [logsumexp(s_pi(i), ..., s_pi(n)) - s_pi(i)]

    Args:
      scores: ``[B, N]`` (or ``[N]``) float tensor (or numpy array).
      targets: relevance (any real numbers), the shape of ``scores``.
      mask: optional ``[B, N]`` bool, True = real item; padded items get zero gradient.
      reduction: ``"mean"`` over the lists that count (a list with fewer than 2 real items has
        loss 0 and does not count), ``"sum"``, or ``"none"`` (``[B]``).
      backend: accepted for a uniform signature ("auto", "rust" or "torch"); this O(N log N)
        loss is torch-native on every backend.
      validate: check for NaN/inf on real items (skipped under torch.compile and torch.func).

    Returns:
      A scalar or ``[B]`` tensor in the input dtype (numpy for numpy input). Native torch ops,
      O(N log N): torch.compile, torch.func and higher-order gradients all work.
    """
    check_reduction(reduction)
    check_backend(backend)
    x, m, numpy_in = _torch_lists(scores, targets, mask, validate)
    s = x.scores
    zero = s.new_zeros(())
    # padded items first, so every suffix from a real item holds only real items (no -inf
    # entries: forward-mode AD through logcumsumexp mishandles them)
    key = torch.where(m, x.targets, torch.full_like(s, math.inf))
    order = torch.argsort(key, dim=-1, descending=True, stable=True)
    ms = m.gather(1, order)
    ss = torch.where(ms, s.gather(1, order), zero)
    tail = torch.logcumsumexp(ss.flip(-1), -1).flip(-1)  # logsumexp of s_pi(i..n)
    losses = torch.where(ms, tail - ss, zero).sum(-1)
    valid = m.sum(-1) >= 2
    return _finish(torch.where(valid, losses, zero), valid, reduction, x, numpy_in)
