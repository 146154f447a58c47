"""The approximate-rank family's torch twin (every device; CPU tensors with `backend="torch"`).

Three sums over the pairs of each list, with `d_lk = (s_l - s_k) / T`:

    r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)                    ranks
    (J^T c)_k = (1/T) sum_{i != k} sigmoid'(d_ki) (c_i - c_k)           vjp
    h_l = (1/T^2) sum_{k != l} sigmoid''(d_lk) (c_k - c_l) (v_l - v_k)  vjp_grad

(`J = dr/ds` is symmetric, so `J^T c` is also the JVP; `h` is the gradient of `<v, J^T c>` with
respect to the scores, c held fixed). `method="exact"` walks the pairs in row chunks
(`chunk_rows`: no `[B, N, N]` tensor); `"fast"` evaluates the same sums by fast summation
(`_fast`, O(B N p) memory); `"auto"` picks per list by the Rust kernels' rule, fast for lists of
at least `FAST_MIN_N` real items.

The losses are functions of the ranks (`loss_from_ranks`); their gradient is `J^T c` with
`c = dL/dr` and their Hessian-vector product `vjp_grad(c, v) + J (D * J v)` with `D = dc/dr`
diagonal (`curvature`): the fused `loss` and `hvp` below, the torch side of the op
`rankgrad::approx_loss`. SPEC 13's per-item weights change only `c` and `D` (and the loss), never
the rank sums, so both methods take them alike.

Padded targets are zeroed before anything reads them (a NaN/inf/huge value at a padded
position changes nothing); `2^y - 1` gains are divided by `2^max(y)` per list, which NDCG's
ratio ignores, so float32 targets up to the gain cap stay finite.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch

from .. import _core
from .._inputs import check_gain_range
from .._torch_ops import chunk_rows

# The rule of `method="auto"` (the Rust kernels' constant): fast summation for lists of at least
# this many real items.
FAST_MIN_N: int = int(_core.FAST_MIN_N)

_LN2 = math.log(2.0)

# Relative tolerance of approx MRR's choice of item (the Rust kernel's): values of rel / r this
# close count as tied, and the lowest index wins.
MRR_TIE_RTOL = {torch.float64: 1e-9, torch.float32: 1e-5}


def _prep(s: torch.Tensor, m: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(scores with padded entries zeroed, mask as 0/1 in the scores' dtype)."""
    if m is None:
        return s, torch.ones_like(s)
    return torch.where(m, s, torch.zeros((), dtype=s.dtype, device=s.device)), m.to(s.dtype)


def _zero_padded(x: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """`x` with padded entries 0 (not `x * mask`: a NaN/inf there would stay NaN)."""
    return x if m is None else torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _pair_rows(s: torch.Tensor, a: int, e: int, inv_t: float) -> torch.Tensor:
    """sigmoid((s_i - s_j) / T) for rows i in [a, e): `[B, e - a, N]`."""
    return (s[:, a:e, None] - s[:, None, :]).mul_(inv_t).sigmoid_()


def exact_ranks(s: torch.Tensor, m: Optional[torch.Tensor], temperature: float) -> torch.Tensor:
    s, mf = _prep(s, m)
    b, n = s.shape
    r = torch.empty_like(s)
    step = chunk_rows(b, n, s.device)
    for a in range(0, n, step):
        e = min(n, a + step)
        q = (s[:, None, :] - s[:, a:e, None]).mul_(1.0 / temperature).sigmoid_()  # sigmoid(s_j - s_i)
        r[:, a:e] = torch.bmm(q, mf[:, :, None])[..., 0] + 0.5  # the j == i term is sigmoid(0) = 1/2
    return r * mf


def exact_vjp(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, c: torch.Tensor
) -> torch.Tensor:
    s, mf = _prep(s, m)
    b, n = s.shape
    inv_t = 1.0 / temperature
    c = _zero_padded(c.to(s.dtype), m)
    rhs = torch.stack((c, mf), dim=-1)  # [B, N, 2]
    g = torch.empty_like(s)
    step = chunk_rows(b, n, s.device)
    for a in range(0, n, step):
        e = min(n, a + step)
        p = _pair_rows(s, a, e, inv_t)
        w = p.sub_(p.square())  # sigmoid' = p (1 - p), even in its argument
        wc, w1 = torch.bmm(w, rhs).unbind(-1)
        g[:, a:e] = (wc - c[:, a:e] * w1) * inv_t
    return g * mf


def exact_vjp_grad(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, c: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    s, mf = _prep(s, m)
    b, n = s.shape
    inv_t = 1.0 / temperature
    c, v = _zero_padded(c.to(s.dtype), m), _zero_padded(v.to(s.dtype), m)
    # sum_k W_lk (c_k - c_l)(v_l - v_k) = v_l (Wc)_l - (W cv)_l - c_l v_l (W1)_l + c_l (Wv)_l
    rhs = torch.stack((c, c * v, mf, v), dim=-1)  # [B, N, 4]
    h = torch.empty_like(s)
    step = chunk_rows(b, n, s.device, per_row=2 * b * n)
    for a in range(0, n, step):
        e = min(n, a + step)
        p = _pair_rows(s, a, e, inv_t)
        w = p * (1 - p) * (1 - 2 * p)  # sigmoid''(d_lk), odd
        wc, wcv, w1, wv = torch.bmm(w, rhs).unbind(-1)
        cl, vl = c[:, a:e], v[:, a:e]
        h[:, a:e] = (vl * wc - wcv - cl * vl * w1 + cl * wv) * (inv_t * inv_t)
    return h * mf


# ---------------------------------------------------------------- method dispatch
def _by_method(
    method: str,
    m: Optional[torch.Tensor],
    n: int,
    exact: Callable[[slice], torch.Tensor],
    fast: Callable[[slice], torch.Tensor],
    like: torch.Tensor,
) -> torch.Tensor:
    """`exact(rows)` or `fast(rows)` per list as `method` says ("auto": fast for lists of at
    least `FAST_MIN_N` real items), assembled into one `[B, N]` result."""
    if method == "exact":
        return exact(slice(None))
    if method == "fast":
        return fast(slice(None))
    count = torch.full(like.shape[:1], n, device=like.device) if m is None else m.sum(-1)
    use_fast = count >= FAST_MIN_N
    n_fast = int(use_fast.sum())
    if n_fast == 0:
        return exact(slice(None))
    if n_fast == like.shape[0]:
        return fast(slice(None))
    out = torch.empty_like(like)
    for rows, fn in ((use_fast.nonzero()[:, 0], fast), ((~use_fast).nonzero()[:, 0], exact)):
        out[rows] = fn(rows)
    return out


def _rows(x: Optional[torch.Tensor], rows: object) -> Optional[torch.Tensor]:
    return None if x is None else x[rows]


def _fast():  # type: ignore[no-untyped-def]
    from . import _fast as fast

    return fast


def ranks(s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, method: str) -> torch.Tensor:
    """Approximate ranks `[B, N]`, 0 at padded positions."""
    return _by_method(
        method,
        m,
        s.shape[-1],
        lambda r: exact_ranks(s[r], _rows(m, r), temperature),
        lambda r: _fast().ranks(s[r], _rows(m, r), temperature),
        s,
    )


def vjp(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, c: torch.Tensor, method: str
) -> torch.Tensor:
    """`J^T c` `[B, N]` (0 at padded positions)."""
    c = c.to(s.dtype)
    return _by_method(
        method,
        m,
        s.shape[-1],
        lambda r: exact_vjp(s[r], _rows(m, r), temperature, c[r]),
        lambda r: _fast().vjp(s[r], _rows(m, r), temperature, c[r]),
        s,
    )


def vjp_grad(
    s: torch.Tensor,
    m: Optional[torch.Tensor],
    temperature: float,
    c: torch.Tensor,
    v: torch.Tensor,
    method: str,
) -> torch.Tensor:
    """d<v, J^T c>/ds `[B, N]` (0 at padded positions)."""
    c, v = c.to(s.dtype), v.to(s.dtype)
    return _by_method(
        method,
        m,
        s.shape[-1],
        lambda r: exact_vjp_grad(s[r], _rows(m, r), temperature, c[r], v[r]),
        lambda r: _fast().vjp_grad(s[r], _rows(m, r), temperature, c[r], v[r]),
        s,
    )


# ---------------------------------------------------------------- losses of the ranks


def _padded(
    r: torch.Tensor, y: torch.Tensor, m: Optional[torch.Tensor]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mask, targets with padded entries 0, real-item counts)."""
    m = torch.ones_like(r, dtype=torch.bool) if m is None else m
    y = torch.where(m, y.to(r.dtype), torch.zeros((), dtype=r.dtype, device=r.device))
    return m, y, m.sum(-1)


def _safe(valid: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """`v` where it is used, 1 elsewhere: keeps the unused branch of a where() finite."""
    return torch.where(valid, v, torch.ones_like(v))


def gains(y: torch.Tensor, m: torch.Tensor, scale_gains: bool) -> torch.Tensor:
    """`(2^y - 1) / 2^max(y)` (or `y`), targets below 0 as 0, zero at padded positions."""
    y = y.clamp(min=0) * m
    if not scale_gains:
        return y
    top = y.amax(-1, keepdim=True)
    return (torch.exp2(y - top) - torch.exp2(-top)) * m


def ideal_dcg(g: torch.Tensor) -> torch.Tensor:
    n = g.shape[-1]
    disc = 1.0 / torch.log2(torch.arange(n, device=g.device, dtype=g.dtype) + 2.0)
    return (g.sort(dim=-1, descending=True).values * disc).sum(-1)


def true_ranks(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """1-based ranks by targets descending among the real items, ties in input order."""
    key = torch.where(m, y, torch.full_like(y, -math.inf))
    order = key.argsort(dim=-1, descending=True, stable=True)
    pos = torch.arange(1, y.shape[-1] + 1, device=y.device, dtype=y.dtype).expand_as(y)
    return torch.empty_like(y).scatter_(-1, order, pos)


def rank_weights(t: torch.Tensor, discount: Optional[str]) -> torch.Tensor:
    if discount is None:
        return torch.ones_like(t)
    return 1 / torch.log2(t + 1) if discount == "log2" else 1 / t


def item_weights(w: Optional[torch.Tensor], m: torch.Tensor, like: torch.Tensor) -> Optional[torch.Tensor]:
    """SPEC 13's per-item weights in the dtype of `like`, 0 at padded positions (whatever they
    hold there); None stays None."""
    return None if w is None else _zero_padded(w.to(like.dtype), m)


def weighted_gains(
    y: torch.Tensor, m: torch.Tensor, scale_gains: bool, w: Optional[torch.Tensor]
) -> torch.Tensor:
    """NDCG's gains (`gains`), times the weights divided by the list's largest weight (the Rust
    kernels' scale: the ratio ignores it, and the weighted gains never exceed the unweighted
    ones). `2^-max(y)` is taken over the items of positive weight: an item weighing 0 adds
    nothing, and must not scale the others' gains away."""
    if w is None:
        return gains(y, m, scale_gains)
    top = w.amax(-1, keepdim=True)
    return gains(y, m & (w > 0), scale_gains) * (w / torch.where(top > 0, top, torch.ones_like(top)))


def mrr_item(v: torch.Tensor, rel: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """`[B, 1]` index of the item whose `v = rel / r` MRR takes (`rel` the weighted relevance
    `w min(max(y, 0), 1)`), chosen as the Rust kernel does:
    per relevance level the first highest-scored item (its rank is the smallest: decided on
    the scores, exactly, never on rounded ranks); of those, the first (lowest index) whose `v`
    is within a relative `MRR_TIE_RTOL` of the largest, so that ranks differing by rounding
    (between methods or backends) never flip the choice."""
    relm = (rel > 0) & m
    inf = torch.full_like(v, math.inf)
    o1 = torch.where(relm, s.to(v.dtype), -inf).argsort(dim=-1, descending=True, stable=True)
    r1 = torch.where(relm, rel, -torch.ones_like(rel)).gather(-1, o1)
    o2 = r1.argsort(dim=-1, descending=True, stable=True)
    rs = r1.gather(-1, o2)
    first = torch.cat([torch.ones_like(rs[:, :1], dtype=torch.bool), rs[:, 1:] != rs[:, :-1]], -1)
    cand = torch.zeros_like(relm).scatter(-1, o1.gather(-1, o2), first & (rs > 0))
    vmax = torch.where(cand, v, -inf).amax(-1, keepdim=True)
    tol = MRR_TIE_RTOL[torch.float64 if v.dtype == torch.float64 else torch.float32]
    return (cand & (v >= vmax * (1 - tol))).to(torch.int8).argmax(-1, keepdim=True)


def loss_from_ranks(
    kind: str,
    r: torch.Tensor,
    y: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale_gains: bool,
    discount: Optional[str],
    s: Optional[torch.Tensor] = None,
    w: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-list losses `[B]` and whether each counts `[B]`, from ranks `r [B, N]` (MRR also
    reads the scores `s`, see `mrr_item`), with per-item weights `w` (SPEC 13) or None."""
    m, y, count = _padded(r, y, mask)
    w = item_weights(w, m, r)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    if kind == "ndcg":
        g = weighted_gains(y, m, scale_gains, w)
        idcg = ideal_dcg(g)
        dcg = (g / torch.log2(1 + _safe(m, r))).sum(-1)
        valid = (count >= 2) & (idcg > 0)
        return torch.where(valid, 1 - dcg / _safe(valid, idcg), zero), valid
    if kind == "mrr":
        rel = y.clamp(0, 1) if w is None else y.clamp(0, 1) * w
        v = rel / _safe(m, r)
        best = v.gather(-1, mrr_item(v.detach(), rel, (-r if s is None else s).detach(), m))[:, 0]
        valid = (count >= 2) & ((rel > 0) & m).any(-1)
        return torch.where(valid, 1 - best, zero), valid
    tr = true_ranks(y, m)
    valid = count >= 2 if w is None else (count >= 2) & ((w > 0) & m).any(-1)
    k = rank_weights(tr, discount) if w is None else rank_weights(tr, discount) * w
    loss = (k * (r - tr) ** 2 * m).sum(-1) / _safe(valid, count.to(r.dtype))
    return torch.where(valid, loss, zero), valid


def curvature(
    kind: str,
    r: torch.Tensor,
    y: torch.Tensor,
    mask: Optional[torch.Tensor],
    scale_gains: bool,
    discount: Optional[str],
    s: Optional[torch.Tensor] = None,
    w: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """`c = d loss_b / d r` and the diagonal `D = dc / dr` `[B, N]` (each list's loss depends
    on each r_i separately), zero at padded positions and in lists that do not count.

    NDCG, `a_i = g_i ln2 / IDCG`, `L = ln(1 + r_i)`: `c = a / ((1 + r) L^2)`,
    `D = -a (L + 2) / ((1 + r)^2 L^3)`. MRR, at the item `i*` of the max: `c = rel / r^2`,
    `D = -2 rel / r^3`. RankMSE: `c = 2 w (r - t) / n`, `D = 2 w / n`. Per-item weights `w`
    (SPEC 13) enter only here (and in the loss): `g` and `rel` are weighted, RankMSE's `w` is
    the discount times the item's weight; the ranks and their sums do not change."""
    m, y, count = _padded(r, y, mask)
    w = item_weights(w, m, r)
    rs = _safe(m, r)
    if kind == "ndcg":
        g = weighted_gains(y, m, scale_gains, w)
        idcg = ideal_dcg(g)
        valid = (count >= 2) & (idcg > 0)
        a = g * _LN2 / _safe(valid, idcg)[:, None]
        lr = torch.log1p(rs)
        c = a / ((1 + rs) * lr**2)
        d = -a * (lr + 2) / ((1 + rs) ** 2 * lr**3)
    elif kind == "mrr":
        rel = y.clamp(0, 1) * m if w is None else y.clamp(0, 1) * w
        valid = (count >= 2) & ((rel > 0) & m).any(-1)
        item = mrr_item(rel / rs, rel, -r if s is None else s, m)
        top = torch.zeros_like(r).scatter_(-1, item, 1.0)
        c = top * rel / rs**2
        d = -2 * top * rel / rs**3
    else:
        valid = count >= 2 if w is None else (count >= 2) & ((w > 0) & m).any(-1)
        k = 2 * rank_weights(true_ranks(y, m), discount) / _safe(valid, count.to(r.dtype))[:, None]
        if w is not None:
            k = k * w
        c = k * (r - true_ranks(y, m))
        d = k
    keep = valid[:, None] & m
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    return torch.where(keep, c, zero), torch.where(keep, d, zero)


# ---------------------------------------------------------------- the fused loss op's torch side
def _discount(discount: str) -> Optional[str]:
    return None if discount == "none" else discount


def loss(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    w: Optional[torch.Tensor],
    temperature: float,
    kind: str,
    scale_gains: bool,
    discount: str,
    method: str,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Per-list losses `[B]`, whether each counts `[B]`, and with `need_grad` d losses / d s."""
    if s.shape[-1] == 0:  # nothing to rank: 0, not counted
        return (
            s.new_zeros(s.shape[0]),
            torch.zeros(s.shape[0], dtype=torch.bool, device=s.device),
            torch.zeros_like(s),
        )
    r = ranks(s, m, temperature, method)
    losses, valid = loss_from_ranks(kind, r, y, m, scale_gains, _discount(discount), s, w)
    if not need_grad:
        return losses, valid, None
    c, _ = curvature(kind, r, y, m, scale_gains, _discount(discount), s, w)
    return losses, valid, vjp(s, m, temperature, c, method)


def hvp(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    w: Optional[torch.Tensor],
    temperature: float,
    kind: str,
    scale_gains: bool,
    discount: str,
    method: str,
    v: torch.Tensor,
) -> torch.Tensor:
    """Row b: the Hessian of loss_b in s_b times v_b: `vjp_grad(c, v) + J (D * J v)`."""
    if s.shape[-1] == 0:
        return torch.zeros_like(s)
    r = ranks(s, m, temperature, method)
    c, d = curvature(kind, r, y, m, scale_gains, _discount(discount), s, w)
    jv = vjp(s, m, temperature, v, method)
    return vjp_grad(s, m, temperature, c, v, method) + vjp(s, m, temperature, d * jv, method)


def check_targets(s, y, m, w, temperature, kind, scale_gains, discount, method) -> None:  # type: ignore[no-untyped-def]
    """The Rust kernel's gain cap, for the torch path (behind `validate`)."""
    if kind == "ndcg" and scale_gains:
        check_gain_range(y, m)
