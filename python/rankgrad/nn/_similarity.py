"""Pairwise similarities and in-batch softmax logits for the embedding losses, without overflow.

Embeddings are rescaled by powers of two (exact: only exponents change) before anything
is squared or multiplied: for cosine and dot products each row by its own exponent,
`x = x_hat * 2**e` with `max|x_hat| in [1/2, 1)`; for distances, which are computed
exactly (equal rows are at distance 0, see `_l2`), the whole batch by the
smallest power of two that keeps them finite (none for ordinary inputs). A similarity is
then held as a bounded mantissa and an integer exponent, `sim_ij = w_ij * 2**E_ij`, and
the softmax logits enter the cross-entropy only as differences from the target's,

    t_ij = scale * (sim(x_i, y_j) - sim(x_i, y_target(i)))
         = s_m * (w_ij 2**(E_ij - k) - w_it 2**(E_it - k)) * 2**(k + s_e),
    k = max(E_ij, E_it),   scale = s_m * 2**s_e,

so `t_ij` is exact up to rounding, or +-inf only when its true value is beyond the
dtype's range. Where nothing overflows, the rescaling changes no bit of the similarities.

`"cosine"` is scale-invariant, `"dot"` is `x.y`, `"euclidean"` and `"manhattan"` are
quaterion's `1/(1 + d)` (L2 and L1 distance), `"euclidean_sim"` and `"manhattan_sim"`
are sentence-transformers' `util.euclidean_sim` and `util.manhattan_sim`, `-d`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    "SIMILARITIES",
    "Gaps",
    "Scores",
    "dot_logit_gaps",
    "ldexp",
    "logit_gaps",
    "pair_scores",
    "row_logsumexp",
    "similarity_matrix",
]

SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan", "euclidean_sim", "manhattan_sim")

# The distances' exact parts (L1 backward, near L2 pairs) work on blocks of at most this many elements.
_CHUNK_ELEMENTS = 1 << 23

# ------------------------------------------------------------------- powers of two

# dtype: (integer view, mantissa bits, exponent bias, largest step, exponent limit).
# A step 2**p with |p| <= largest step is a normal number. Beyond the limit, x * 2**e is
# 0 or +-inf for every |x| in [smallest subnormal, 2**60]: the exponent is clamped there.
_BITS = {
    torch.float32: (torch.int32, 23, 127, 100, 300),
    torch.float64: (torch.int64, 52, 1023, 1000, 2200),
}


def _pow2(p: Tensor, dtype: torch.dtype) -> Tensor:
    """Exactly `2.0**p` for integers `|p| <= 100` (float32) or `<= 1000` (float64), from the bits."""
    int_dtype, bits, bias, _, _ = _BITS[dtype]
    return torch.bitwise_left_shift(p.to(int_dtype) + bias, bits).view(dtype)


def _ldexp(x: Tensor, e: Tensor) -> Tensor:
    _, _, _, step, limit = _BITS[x.dtype]
    e = e.clamp(-limit, limit)
    for _ in range(-(-limit // step)):  # steps of one sign: |x| moves one way, no spurious inf
        p = e.clamp(-step, step)
        x = x * _pow2(p, x.dtype)
        e = e - p
    return x


class _Ldexp(torch.autograd.Function):
    """`x * 2**e` (gradient `g * 2**e`), saving only the integer exponents."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, e: Tensor) -> Tensor:
        ctx.save_for_backward(e)
        ctx.shape = x.shape
        return _ldexp(x, e)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None]:
        (e,) = ctx.saved_tensors
        return ldexp(grad, e).sum_to_size(ctx.shape), None


def ldexp(x: Tensor, e: Tensor) -> Tensor:
    """`x * 2**e` for an integer tensor `e` (broadcast with x), as `math.ldexp` does.

    The product is formed in steps of at most 2**100 (float32) or 2**1000 (float64), all
    of one sign, so it is exact whenever the result is a normal number, +-inf only when
    `|x| 2**e` is beyond the dtype, and 0 or subnormal only when it is below (a subnormal
    result may be rounded twice). float32 and float64 only. Differentiable in x.
    """
    out: Tensor = _Ldexp.apply(x, e)
    return out


def _ldexp_scalar(x: Tensor, e: int) -> Tensor:
    """`x * 2**e` for a Python int e, in exact steps like `ldexp`."""
    _, _, _, step, limit = _BITS[x.dtype]
    e = max(-limit, min(limit, e))
    while e:
        p = max(-step, min(step, e))
        x = x * (2.0**p)
        e -= p
    return x


def _row_exponents(x: Tensor) -> Tensor:
    """int32 `[n]`: `e_i` with `max_k |x_ik| = m 2**e_i`, `m in [1/2, 1)` (0 for a zero row)."""
    return torch.frexp(x.detach().abs().amax(dim=-1)).exponent.to(torch.int32)


def _scale_rows(x: Tensor) -> Tuple[Tensor, Tensor]:
    """(`x_hat = x * 2**-e` with `max|x_hat_i| in [1/2, 1)` or a zero row, `e` int32 `[n]`)."""
    e = _row_exponents(x)
    return ldexp(x, -e[:, None]), e


# ---------------------------------------------------------------- rows and distances


def _unit_rows(x: Tensor) -> Tensor:
    """`x_i / ||x_i||`, computed on `x_hat` so that the norm neither overflows nor underflows.

    A zero row stays zero (its cosine with anything is 0, like `F.normalize` and
    sentence-transformers' `cos_sim`) and gets a zero gradient.
    """
    xh, _ = _scale_rows(x)
    norm = torch.linalg.vector_norm(xh, dim=-1, keepdim=True)  # in [1/2, sqrt(D)) or 0
    nonzero = norm > 0
    return torch.where(nonzero, xh / torch.where(nonzero, norm, torch.ones_like(norm)), 0.0)


# Pairs closer than this (`||x - y||^2 <= _NEAR (||x||^2 + ||y||^2)`) are recomputed from
# their differences; the others keep the matmul form, exact to a relative ~eps sqrt(D) / _NEAR.
_NEAR = 2.0**-4


class _PairL2(torch.autograd.Function):
    """`||x_i - y_j||_2` `[P]` for listed pairs `(i, j)`, from the differences, in blocks of
    bounded size. The backward, `g (x_i - y_j) / d` (0 at d = 0), is made of
    differentiable ops, so second derivatives are exact too."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, i: Tensor, j: Tensor) -> Tensor:
        ctx.save_for_backward(x, y, i, j)
        step = max(1, _CHUNK_ELEMENTS // x.shape[1])
        parts = [x.new_zeros(0)]
        for s in range(0, i.shape[0], step):
            parts.append(torch.linalg.vector_norm(x[i[s : s + step]] - y[j[s : s + step]], dim=-1))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, Tensor, None, None]:
        x, y, i, j = ctx.saved_tensors
        step = max(1, _CHUNK_ELEMENTS // x.shape[1])
        gx, gy = torch.zeros_like(x), torch.zeros_like(y)
        for s in range(0, i.shape[0], step):
            diff = x[i[s : s + step]] - y[j[s : s + step]]
            d = torch.linalg.vector_norm(diff, dim=-1)
            pos = d > 0
            w = (
                torch.where(pos, grad[s : s + step] / torch.where(pos, d, torch.ones_like(d)), 0.0)[:, None]
                * diff
            )
            gx = gx.index_add(0, i[s : s + step], w)
            gy = gy.index_add(0, j[s : s + step], -w)
        return gx, gy, None, None


def _l2(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise L2 distances `[n, m]` of inputs whose squares cannot overflow.

    `||x||^2 + ||y||^2 - 2 x.y` (one matmul, clamped at 0; the root has a zero gradient
    at 0) is exact only to about `sqrt(eps) max(||x||, ||y||)`, which `1/(1 + d)` does not
    forgive at large norms (equal rows at 1e20 would be ~1e16 apart). So the pairs where
    it cancels (`d^2 <= _NEAR (||x||^2 + ||y||^2)`, few in a batch unless the embeddings
    have collapsed) are recomputed from their differences: equal rows are at distance 0,
    and every distance is exact to a few units of the dtype's precision.
    """
    nx = (x * x).sum(-1)[:, None]
    ny = (y * y).sum(-1)[None, :]
    sq = (nx + ny - 2.0 * (x @ y.T)).clamp_min(0.0)
    pos = sq > 0
    r = torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))
    i, j = (sq.detach() <= _NEAR * (nx + ny).detach()).nonzero(as_tuple=True)
    if i.numel():
        r = r.index_put((i, j), _PairL2.apply(x, y, i, j))
    return r


class _L1Distance(torch.autograd.Function):
    """Pairwise L1 distances `[n, m]`; the backward works on bounded `[rows, m, D]` blocks.

    torch.cdist's own backward allocates a full `[m, n, D]` buffer; this one does not.
    The subgradient of |t| at 0 is taken as 0. The backward is made of differentiable
    ops (`sign` has a zero derivative), so second derivatives are exact too.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor) -> Tensor:
        ctx.save_for_backward(x, y)
        return torch.cdist(x, y, p=1.0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        x, y = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad
        m, dim = y.shape
        rows = max(1, _CHUNK_ELEMENTS // max(1, m * dim))
        gx, gy = [torch.zeros_like(x[:0])], torch.zeros_like(y)
        for i in range(0, x.shape[0], rows):
            sign = torch.sign(x[i : i + rows, None, :] - y[None, :, :])  # [r, m, D]
            g = grad[i : i + rows]  # [r, m]
            if need_x:
                gx.append(torch.bmm(g[:, None, :], sign)[:, 0, :])
            if need_y:
                gy = gy - torch.bmm(g.T[:, None, :], sign.transpose(0, 1))[:, 0, :]
        return torch.cat(gx) if need_x else None, gy if need_y else None


def _distance(x: Tensor, y: Tensor, p: int) -> Tuple[Tensor, Tensor]:
    """Pairwise Lp distances (p = 1 or 2) as `(r, g)`: `||x_i - y_j||_p = r_ij * 2**g`.

    The exponent g (one for the batch) is 0 unless an entry is so large that a distance
    (p = 1) or a squared difference (p = 2) could overflow, above about `max / (4 D)` or
    `sqrt(max / (4 D))`; then both sets are divided by the smallest power of two that
    keeps every `r_ij` finite. Entries below `2**g` times the dtype's smallest normal
    number are then rounded, far under the rounding of the largest distances.
    """
    top = x.new_zeros(())
    for z in (x, y):
        if z.numel():
            top = torch.maximum(top, z.detach().abs().amax())
    big = torch.frexp(top).exponent.to(torch.int32)  # every |entry| < 2**big
    room = torch.finfo(x.dtype).max / (4 * x.shape[1])
    room_exp = math.floor(math.log2(room if p == 1 else math.sqrt(room))) - 1
    g = (big - room_exp).clamp_min(0)
    xh, yh = ldexp(x, -g), ldexp(y, -g)
    r: Tensor = _L1Distance.apply(xh, yh) if p == 1 else _l2(xh, yh)
    return r, g


# --------------------------------------------------------------------------- scores


class Scores(NamedTuple):
    """Similarities `[n, m]` as `w * 2**e`: `w` bounded, `e` int32 (broadcastable) or None (0)."""

    w: Tensor
    e: Optional[Tensor]

    def head_transposed(self, b: int) -> Scores:
        """The scores of the first b columns, transposed: `sim(y_i, x_j)` for symmetric sims."""
        e = None if self.e is None else self.e.expand_as(self.w)[:, :b].T
        return Scores(self.w[:, :b].T, e)

    def value(self) -> Tensor:
        return self.w if self.e is None else ldexp(self.w, self.e)


def _dot_scores(x: Tensor, y: Tensor) -> Scores:
    xh, a = _scale_rows(x)
    yh, b = _scale_rows(y)
    return Scores(xh @ yh.T, a[:, None] + b[None, :])


def pair_scores(x: Tensor, y: Tensor, similarity: str) -> Scores:
    """`sim(x_i, y_j)` `[n, m]` as `Scores` (differentiable; for "dot" use `dot_logit_gaps`).

    Args:
      x: [n, D] float32 or float64.
      y: [m, D], the dtype of x.
      similarity: one of SIMILARITIES.
    """
    if similarity == "cosine":
        return Scores(_unit_rows(x) @ _unit_rows(y).T, None)
    if similarity == "dot":
        return _dot_scores(x, y)
    if similarity in ("euclidean", "euclidean_sim", "manhattan", "manhattan_sim"):
        r, g = _distance(x, y, 2 if similarity.startswith("euclidean") else 1)
        if similarity.endswith("_sim"):
            return Scores(-r, g)
        return Scores(1.0 / (1.0 + ldexp(r, g)), None)
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")


def similarity_matrix(x: Tensor, y: Tensor, similarity: str) -> Tensor:
    """`sim(x_i, y_j)` `[n, m]` in the dtype of x: exact up to rounding, or +-inf when the
    similarity itself is beyond the dtype (a dot product or a distance).

    Args:
      x: [n, D] float32 or float64.
      y: [m, D] float, the dtype of x.
      similarity: one of SIMILARITIES.
    """
    if similarity == "dot":
        return x @ y.T
    return pair_scores(x, y, similarity).value()


class Gaps(NamedTuple):
    """Logit gaps `t` `[n, m]` (differentiable) and `order` `[n, m]` (no gradient): `log2 t_ij`
    where `t_ij` is +inf (its true value is beyond the dtype), -inf elsewhere, so the
    largest of the overflowed gaps is known; None when no gap can overflow."""

    t: Tensor
    order: Optional[Tensor]


def _order(t: Tensor, v: Tensor, k: Any) -> Tensor:
    """`log2(v 2**k)` where `t = v 2**k` overflowed to +inf, -inf elsewhere (no gradient)."""
    v = v.detach()
    lg = torch.log2(torch.where(v > 0, v, torch.ones_like(v))) + k
    return torch.where(t.detach() == math.inf, lg, -math.inf)


def logit_gaps(scores: Scores, target: Tensor, scale: float) -> Gaps:
    """`t_ij = scale * (sim_ij - sim_i,target(i))` `[n, m]` without intermediate overflow.

    With `sim = w 2**e` and `scale = s_m 2**s_e`: `t_ij = v_ij 2**(k_ij + s_e)`,
    `v_ij = s_m (w_ij 2**(e_ij - k_ij) - w_it 2**(e_it - k_ij))`, `k_ij = max(e_ij, e_it)`;
    `|v| <= 2 max|w|`, and the power of two is applied exactly (`ldexp`).
    `t_i,target(i)` is exactly 0; an entry is +-inf only when its true value is beyond
    the dtype. Differentiable in `scores.w`.
    """
    w, e = scores
    s_m, s_e = math.frexp(scale)
    wt = w.gather(1, target[:, None])
    if e is None:
        v = s_m * (w - wt)
        t = _ldexp_scalar(v, s_e)
        # |v| <= 2 max|w|: with |w| <= 1 (cosine, 1/(1 + d)), no gap overflows unless scale does
        can_overflow = 2.0 * scale >= torch.finfo(w.dtype).max
        return Gaps(t, _order(t, v, s_e) if can_overflow else None)
    e = e.expand_as(w)
    et = e.gather(1, target[:, None])
    k = torch.maximum(e, et)
    v = s_m * (ldexp(w, e - k) - ldexp(wt, et - k))
    t = ldexp(v, k + s_e)
    return Gaps(t, _order(t, v, k + s_e))


class _DotLogitGaps(torch.autograd.Function):
    """`scale * (x_i.y_j - x_i.y_target(i))`: evaluated on rescaled rows (no overflow), with
    the exact bilinear gradient `scale * G @ y`, `scale * G^T @ x` (G: the gradient of the
    logits), which never forms `scale * 2**E`. The backward is differentiable, so second
    derivatives are exact too. Outputs the gaps and their `order` (see `Gaps`)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, target: Tensor, scale: float) -> Tuple[Tensor, Tensor]:
        ctx.save_for_backward(x, y, target)
        ctx.scale = scale
        t, order = logit_gaps(_dot_scores(x, y), target, scale)
        assert order is not None
        ctx.mark_non_differentiable(order)
        return t, order

    @staticmethod
    def backward(
        ctx: Any, grad: Tensor, _grad_order: Optional[Tensor]
    ) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        x, y, target = ctx.saved_tensors
        s_m, s_e = math.frexp(ctx.scale)
        # t_ij = z_ij - z_it: the target column takes minus the row's sum as well
        gz = grad.scatter_add(1, target[:, None], -grad.sum(dim=1, keepdim=True))
        gx = _ldexp_scalar(s_m * (gz @ y), s_e) if ctx.needs_input_grad[0] else None
        gy = _ldexp_scalar(s_m * (gz.T @ x), s_e) if ctx.needs_input_grad[1] else None
        return gx, gy, None, None


def dot_logit_gaps(x: Tensor, y: Tensor, target: Tensor, scale: float) -> Gaps:
    """`logit_gaps` of the dot product `[n, m]`; see `_DotLogitGaps`."""
    t, order = _DotLogitGaps.apply(x, y, target, scale)
    return Gaps(t, order)


# ---------------------------------------------------------------------- cross-entropy


def _softmax_limit(t: Tensor, order: Optional[Tensor]) -> Tensor:
    """softmax over rows; a row holding +inf gives its limit: all the weight on its largest
    gap (by `order`; ties share it evenly)."""
    if order is None:
        return torch.softmax(t, dim=1)
    best = order.amax(dim=1, keepdim=True)
    hit = best > -math.inf
    top = (order == best) & hit
    even = top.to(t.dtype) / top.sum(dim=1, keepdim=True).clamp_min(1).to(t.dtype)
    return torch.where(hit, even, torch.softmax(torch.where(hit, torch.zeros_like(t), t), dim=1))


class _RowLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t: Tensor, order: Optional[Tensor]) -> Tensor:
        ctx.save_for_backward(t, order)
        # m + log1p(sum of the other terms): a loss near 0 keeps its relative precision
        top, where = t.max(dim=1, keepdim=True)
        finite = top < math.inf
        rest = torch.exp(t - torch.where(finite, top, torch.zeros_like(top))).scatter(1, where, 0.0)
        out = top + torch.log1p(rest.sum(dim=1, keepdim=True))
        return torch.where(finite, out, math.inf)[:, 0]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, None]:
        t, order = ctx.saved_tensors
        return grad[:, None] * _softmax_limit(t, order), None


def row_logsumexp(gaps: Gaps) -> Tensor:
    """`log sum_j exp(t_ij)` `[n]` for logit gaps (each row holds a 0 at its target), as
    `m_i + log1p(sum_{j != argmax} exp(t_ij - m_i))`, `m_i = max_j t_ij`.

    -inf entries add nothing; a row holding +inf gives +inf (its true value is beyond
    the dtype) and the gradient of the true loss there: the softmax is one-hot at the
    largest gap (equal shares on ties). Never NaN for inputs without NaN.
    """
    out: Tensor = _RowLogSumExp.apply(gaps.t, gaps.order)
    return out
