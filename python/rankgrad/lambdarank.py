"""LambdaRank (SPEC section 4): LightGBM's lambdarank objective for GBDTs, and as a torch loss.

Per list, items sorted by score descending (stable); gain ``G`` (``label_gain``, default
``2^y - 1``); discount ``d(p) = 1/log2(2 + p)``; ``inv = 1/maxDCG@k`` (ideal order: labels
descending; 0 if maxDCG is 0). For each position ``i < min(n - 1, k)`` and each ``j > i`` with
a different label, ``h`` the item of higher label, ``l`` the other, ``ds = s_h - s_l``::

    delta = (G[y_h] - G[y_l]) * |d(p_h) - d(p_l)| * inv
    if norm and best score != worst score: delta /= 0.01 + |ds|
    rho = 1 / (1 + exp(sigma * ds))
    grad[h] += -sigma * delta * rho;  grad[l] -= -sigma * delta * rho
    hess[h], hess[l] += sigma^2 * delta * rho * (1 - rho);  S += 2 * sigma * delta * rho

then with norm and ``S > 0`` grad and hess are scaled by ``log2(1 + S) / S``.

``metric="mrr"`` uses ``delta = |RR' - RR|`` instead, ``RR = 1/(1 + f)`` with ``f`` the 0-based
position of the first relevant item (label > 0) and ``RR'`` the same after swapping h and l:
with ``i < j`` the pair's positions, ``delta = 1/(1+i) - 1/(1+f)`` when ``i < f`` and the item
at ``j`` is relevant; ``delta = 1/(1+f) - 1/(1+min(j, f2))`` when ``i == f`` and the item at
``j`` is not (``f2`` the second relevant position); 0 otherwise.
"""

from __future__ import annotations

import math
import numbers
import threading
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import _core
from ._inputs import Array, Lists, check_positive, check_reduction, lists, reduce, use_rust

__all__ = ["lambdarank_gradients", "lambdarank_loss"]

_METRICS = ("ndcg", "mrr")
_MAX_GAIN_EXPONENT = 1000.0


def _check_metric(metric) -> str:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    return metric


def _check_truncation(truncation_level, allow_none: bool) -> Optional[int]:
    if truncation_level is None and allow_none:
        return None
    if isinstance(truncation_level, bool) or not isinstance(truncation_level, numbers.Integral):
        want = "an integer >= 1 or None" if allow_none else "an integer >= 1"
        raise TypeError(f"truncation_level must be {want}, got {truncation_level!r}")
    if truncation_level < 1:
        raise ValueError(f"truncation_level must be at least 1, got {truncation_level}")
    return int(truncation_level)


def _vector(x, name: str, n: Optional[int] = None, kinds: str = "fiu") -> np.ndarray:
    """`x` as a 1-D numpy array (torch tensors are moved to the CPU), or a TypeError/ValueError."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in kinds:
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} values, expected {n} like preds")
    return a


def _float(a: np.ndarray) -> np.ndarray:
    """float32/float64 stay as they are (no copy); anything else becomes float64."""
    if a.dtype in (np.float32, np.float64):
        return a
    return a.astype(np.float64)


def _label_gain(label_gain) -> Optional[np.ndarray]:
    if label_gain is None:
        return None
    g = np.ascontiguousarray(_vector(label_gain, "label_gain"), dtype=np.float64)
    if g.size == 0:
        raise ValueError("label_gain must not be empty")
    if not np.isfinite(g).all():
        raise ValueError("label_gain must hold finite numbers")
    return g


def _group(group, n: int) -> np.ndarray:
    g = _vector(group, "group", kinds="fiu")
    if g.dtype.kind == "f":
        if not (np.isfinite(g).all() and (g == np.round(g)).all()):
            raise ValueError("group must hold integer list sizes")
    if g.dtype.kind == "u" and g.size and g.max() > np.iinfo(np.int64).max:
        raise ValueError(f"group sizes must sum to the {n} rows")
    return np.ascontiguousarray(g, dtype=np.int64)


def lambdarank_gradients(
    preds,
    labels,
    group,
    *,
    sigma: float = 1.0,
    truncation_level: int = 30,
    norm: bool = True,
    label_gain: Optional[Sequence[float]] = None,
    weights=None,
    metric: str = "ndcg",
    out: Optional[Tuple[np.ndarray, np.ndarray]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """LightGBM's lambdarank objective (module docstring) with an exact sigmoid.

    `preds`, `labels`: `[n]`; `group`: list sizes summing to n, each list's rows contiguous
    (no cap on a list's size). Labels must be integers in `[0, len(label_gain))`
    (default gains `2^y - 1`, y < 31). `weights`: per-row, multiplying grad and hess.
    Returns `(grad, hess)`, float64 `[n]`, written into `out` (two contiguous float64 `[n]`
    arrays, e.g. reused from round to round) when given. Errors name the argument and the
    group."""
    sigma = check_positive("sigma", sigma)
    k = _check_truncation(truncation_level, allow_none=False)
    metric = _check_metric(metric)
    p = _float(_vector(preds, "preds"))
    n = p.shape[0]
    y = _vector(labels, "labels", n, kinds="fiub")
    y = _float(y.astype(np.float64) if y.dtype.kind == "b" else y)
    g = _group(group, n)
    w = None
    if weights is not None:
        w = np.ascontiguousarray(_vector(weights, "weights", n), dtype=np.float64)
    if out is not None:
        out = _check_out(out, n, (p, y, w))
    return _core.lambdarank_gradients(p, y, g, sigma, k, bool(norm), _label_gain(label_gain), w, metric, out)


def _check_out(out, n: int, inputs) -> Tuple[np.ndarray, np.ndarray]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(a, np.ndarray) for a in out)):
        raise TypeError("out must be a pair (grad, hess) of numpy arrays")
    for i, a in enumerate(out):
        if a.dtype != np.float64 or a.ndim != 1 or not a.flags.c_contiguous or not a.flags.writeable:
            raise TypeError(f"out[{i}] must be a writable contiguous 1-D float64 array")
        if a.shape[0] != n:
            raise ValueError(f"out[{i}] has {a.shape[0]} values, expected {n} like preds")
        if any(x is not None and np.shares_memory(a, x) for x in inputs):
            raise ValueError(f"out[{i}] must not share memory with the inputs")
    if np.shares_memory(out[0], out[1]):
        raise ValueError("out[0] and out[1] must not share memory")
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# The loss (padded [B, N] batches)


class _LambdaRankFn(torch.autograd.Function):
    """Per-list losses `[B]` and whether each counts; `compute` also returns their gradient,
    saved for the backward (`grad * grad_losses[:, None]`)."""

    @staticmethod
    def forward(ctx, s, y, m, compute):
        losses, valid, grad = compute(s.detach(), y, m, ctx.needs_input_grad[0])
        ctx.mark_non_differentiable(valid)
        if grad is not None:
            ctx.save_for_backward(grad)
        return losses, valid

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_losses, _grad_valid):
        (g,) = ctx.saved_tensors
        return g * grad_losses[:, None].to(g.dtype), None, None, None


def _rust_compute(sigma, k, norm, gain, metric):
    def compute(s, y, m, need_grad):
        losses, valid, grad = _core.lambdarank_loss(
            s.contiguous().numpy(),
            y.contiguous().numpy(),
            None if m is None else m.contiguous().numpy(),
            sigma,
            k,
            norm,
            gain,
            metric,
            need_grad,
        )
        grad = None if grad is None else torch.from_numpy(grad)
        return torch.from_numpy(losses), torch.from_numpy(valid), grad

    return compute


def _chunk_rows(b: int, n: int, device: torch.device) -> int:
    """Rows per chunk so that one `[B, rows, N]` temporary stays near a fixed budget."""
    budget = (1 << 23) if device.type == "cuda" else (1 << 19)  # elements per temporary
    return max(1, min(n, budget // max(1, b * n)))


def _torch_lambdas(s, y, m, sigma, k, norm, gain, metric):
    """Torch-native twin of the Rust kernel: `(losses [B], valid [B], grad [B, N])`.

    Works in the sorted order; row chunks `[B, rows, N]` of pairs, never `[B, N, N]` at once."""
    b, n = s.shape
    dev, dt = s.device, s.dtype
    if n < 2:  # no pair anywhere
        z = torch.zeros(b, dtype=dt, device=dev)
        return z, torch.zeros(b, dtype=torch.bool, device=dev), torch.zeros_like(s)
    if m is None:
        m = torch.ones((b, n), dtype=torch.bool, device=dev)
    zero = torch.zeros((), dtype=dt, device=dev)
    s = torch.where(m, s, zero)
    y = torch.where(m, y, zero)
    cnt = m.sum(-1)
    neg_inf = torch.tensor(-math.inf, dtype=dt, device=dev)
    order = torch.where(m, s, neg_inf).argsort(dim=-1, descending=True, stable=True)
    ss, ys, ms = s.gather(-1, order), y.gather(-1, order), m.gather(-1, order)
    if gain is None:
        gains = torch.exp2(ys.clamp(min=0)) - 1
    else:
        table = torch.as_tensor(gain, dtype=dt, device=dev)
        gains = table[ys.long().clamp(0, table.numel() - 1)]
    gains = torch.where(ms, gains, zero)
    pos_f = torch.arange(n, device=dev, dtype=dt)
    disc = 1.0 / torch.log2(pos_f + 2.0)
    kk = n if k is None else min(k, n)
    # maxDCG@k: the ideal order is the labels descending (LightGBM's convention).
    ideal = torch.where(ms, ys, neg_inf).argsort(dim=-1, descending=True, stable=True)
    max_dcg = (gains.gather(-1, ideal)[:, :kk] * disc[:kk]).sum(-1)
    first_y = ys[:, :1]
    mixed = ((ys != first_y) & ms).any(-1)
    rel = (ys > 0) & ms
    nrel = rel.sum(-1)
    if metric == "ndcg":
        inv = torch.where(max_dcg > 0, 1.0 / torch.where(max_dcg > 0, max_dcg, 1.0), zero)
        valid = (cnt >= 2) & mixed & (max_dcg > 0)
    else:
        inv = torch.ones_like(max_dcg)
        valid = (cnt >= 2) & mixed & (nrel > 0) & (nrel < cnt)
    last = (cnt - 1).clamp(min=0)
    spread = ss[:, 0] != ss.gather(-1, last[:, None])[:, 0]
    norm_on = (spread & valid) if norm else torch.zeros_like(valid)
    one = torch.ones((), dtype=dt, device=dev)
    c0 = torch.where(norm_on, torch.full((), 0.01, dtype=dt, device=dev), one)[:, None, None]
    c1 = torch.where(norm_on, one, zero)[:, None, None]
    # MRR: first and second relevant positions (n when absent).
    big = torch.full_like(rel, n, dtype=torch.long)
    p_long = torch.arange(n, device=dev).expand(b, n)
    rel_pos = torch.where(rel, p_long, big).sort(dim=-1).values
    f = rel_pos[:, 0]
    f2 = rel_pos[:, 1] if n > 1 else f

    grad_s = torch.zeros((b, n), dtype=dt, device=dev)
    total_s = torch.zeros(b, dtype=dt, device=dev)
    total_l = torch.zeros(b, dtype=dt, device=dev)
    rows = min(kk, n - 1) if n > 1 else 0
    step = _chunk_rows(b, n, dev)
    jj = torch.arange(n, device=dev)
    for a in range(0, rows, step):
        e = min(rows, a + step)
        ii = torch.arange(a, e, device=dev)
        si, sj = ss[:, a:e, None], ss[:, None, :]
        yi, yj = ys[:, a:e, None], ys[:, None, :]
        pm = (jj[None, None, :] > ii[None, :, None]) & (jj[None, None, :] < cnt[:, None, None])
        pm = pm & (yi != yj) & valid[:, None, None]
        if metric == "ndcg":
            gi, gj = gains[:, a:e, None], gains[:, None, :]
            dd = (gi - gj) * (disc[a:e, None] - disc[None, :]) * inv[:, None, None]
        else:
            rr = lambda p: 1.0 / (p.to(dt) + 1.0)  # noqa: E731
            fi = f[:, None, None]
            relj = rel[:, None, :]
            above = (ii[None, :, None] < fi) & relj
            at = (ii[None, :, None] == fi) & ~relj
            first_after = torch.minimum(jj[None, None, :], f2[:, None, None])
            dd = torch.where(above, -(rr(ii)[None, :, None] - rr(fi)), zero)
            dd = torch.where(at, rr(fi) - rr(first_after), dd)
        dd = torch.where(pm, dd, zero)
        diff = si - sj
        pos = yi > yj
        ds = torch.where(pos, diff, -diff)
        den = c0 + c1 * diff.abs()
        delta = torch.where(pos, dd, -dd) / den  # the pair's delta, norm factor included
        rho = torch.sigmoid(-sigma * ds)
        lam_i = -sigma * (dd / den) * rho  # added to grad[i], taken from grad[j]
        grad_s[:, a:e] += lam_i.sum(-1)
        grad_s -= lam_i.sum(1)
        total_s += (2.0 * sigma * delta * rho).sum((1, 2))
        total_l += (delta * torch.nn.functional.softplus(-sigma * ds)).sum((1, 2))
    factor = torch.ones_like(total_s)
    if norm:
        ok = total_s > 0
        safe = torch.where(ok, total_s, torch.ones_like(total_s))
        factor = torch.where(ok, torch.log2(1.0 + safe) / safe, factor)
    grad = torch.zeros_like(grad_s).scatter_(-1, order, grad_s * factor[:, None])
    return total_l * factor, valid, grad


def _torch_compute(sigma, k, norm, gain, metric):
    def compute(s, y, m, need_grad):
        with torch.no_grad():
            losses, valid, grad = _torch_lambdas(s, y, m, sigma, k, norm, gain, metric)
        return losses, valid, grad if need_grad else None

    return compute


def _check_targets_torch(x: Lists, gain: Optional[np.ndarray]) -> None:
    """The value checks the Rust kernel makes, for the torch path (behind `validate`)."""
    y = x.targets
    real = torch.ones_like(y, dtype=torch.bool) if x.mask is None else x.mask
    if gain is None:
        bad = (y > _MAX_GAIN_EXPONENT) & real
        what = f"too large for 2^y - 1 gains (at most {_MAX_GAIN_EXPONENT:g})"
    else:
        bad = ((y < 0) | (y != torch.floor(y)) | (y >= len(gain))) & real
        what = f"not an integer in [0, {len(gain)}) (the label_gain table has {len(gain)} entries)"
    rows = bad.any(-1)
    if bool(rows.any()):
        bi = int(rows.nonzero()[0, 0])
        v = float(y[bi][bad[bi]][0])
        raise ValueError(f"targets: value {v:g} in list {bi} is {what}")


def _check_finite(x: Lists) -> None:
    for name, v in (("scores", x.scores), ("targets", x.targets)):
        bad = ~torch.isfinite(v)
        if x.mask is not None:
            bad &= x.mask
        rows = bad.any(-1)
        if bool(rows.any()):
            raise ValueError(f"{name} contains NaN or inf (list {int(rows.nonzero()[0, 0])})")


def _cast(v, dtype):
    return v.to(dtype) if isinstance(v, torch.Tensor) else np.asarray(v).astype(dtype)[()]


def lambdarank_loss(
    scores: Array,
    targets: Array,
    sigma: float = 1.0,
    truncation_level: Optional[int] = None,
    norm: bool = False,
    mask: Optional[Array] = None,
    reduction: str = "mean",
    label_gain: Optional[Sequence[float]] = None,
    metric: str = "ndcg",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Array:
    """LambdaRank as a loss: per list `c * sum_pairs delta * log(1 + exp(-sigma * ds))` over the
    pairs of `lambdarank_gradients` (positions `i < truncation_level` in the score order,
    `j > i`, different labels; `truncation_level=None`: every pair), with `delta` (and norm's
    `1/(0.01 + |ds|)`) held constant and `c = log2(1 + S)/S` when `norm` (else 1), also
    constant; so with `reduction="sum"` its gradient is exactly the `grad` of
    `lambdarank_gradients` with the same options.

    `scores`, `targets`, `mask`: `[B, N]` (or `[N]`, one list). Gains: `label_gain[y]` (integer
    targets) or `2^max(y, 0) - 1`. A list with fewer than 2 real items, a single label or a
    zero maxDCG (MRR: no relevant or no irrelevant item) has loss 0, zero gradient and does
    not count in "mean". `backend`: "auto" (Rust for numpy and CPU tensors, torch otherwise),
    "rust" or "torch". `validate=False` skips the value checks on the torch path."""
    check_reduction(reduction)
    sigma = check_positive("sigma", sigma)
    k = _check_truncation(truncation_level, allow_none=True)
    metric = _check_metric(metric)
    gain = _label_gain(label_gain)
    norm = bool(norm)
    if backend == "torch" and isinstance(scores, np.ndarray):
        conv = [torch.from_numpy(v) if isinstance(v, np.ndarray) else v for v in (scores, targets, mask)]
        out = lambdarank_loss(
            conv[0],
            conv[1],
            sigma,
            k,
            norm,
            conv[2],
            reduction,
            gain,
            metric,
            backend=backend,
            validate=validate,
        )
        return out.numpy()[()]
    x = lists(scores, targets, mask, validate=False)
    if use_rust(x, backend):
        compute = _rust_compute(sigma, k, norm, gain, metric)
    else:
        if validate:
            _check_finite(x)
            _check_targets_torch(x, gain)
        compute = _torch_compute(sigma, k, norm, gain, metric)
    if x.is_torch:
        losses, valid = _LambdaRankFn.apply(x.scores, x.targets, x.mask, compute)
    else:
        s, y, m = x.numpy()
        losses, valid, _ = _core.lambdarank_loss(s, y, m, sigma, k, norm, gain, metric, False)
    out = reduce(losses, valid, reduction)
    if reduction == "none":
        return x.out(out)
    return _cast(out, x.dtype)


class _GBDTObjective:
    """Shared by the LightGBM and XGBoost adapters: the options of `lambdarank_gradients`,
    checked once, and per-thread output arrays reused from one boosting round to the next
    (the boosters copy grad and hess at once; reusing them saves allocating and
    page-faulting two fresh arrays each round)."""

    def __init__(self, *, sigma=1.0, truncation_level=30, norm=True, label_gain=None, metric="ndcg"):
        self.sigma = check_positive("sigma", sigma)
        self.truncation_level = _check_truncation(truncation_level, allow_none=False)
        self.norm = bool(norm)
        self.label_gain = _label_gain(label_gain)
        self.metric = _check_metric(metric)
        self._local = threading.local()

    @property
    def options(self) -> dict:
        return dict(
            sigma=self.sigma,
            truncation_level=self.truncation_level,
            norm=self.norm,
            label_gain=self.label_gain,
            metric=self.metric,
        )

    def _gradients(self, preds, labels, group, weights):
        """`lambdarank_gradients` into this thread's reused arrays, shaped like `preds`."""
        preds = np.asarray(preds)
        n = preds.size
        out = getattr(self._local, "out", None)
        if out is None or out[0].shape[0] != n:
            out = self._local.out = (np.empty(n), np.empty(n))
        grad, hess = lambdarank_gradients(
            preds.ravel(), labels, group, weights=weights, out=out, **self.options
        )
        return grad.reshape(preds.shape), hess.reshape(preds.shape)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sigma={self.sigma}, truncation_level={self.truncation_level}, "
            f"norm={self.norm}, metric={self.metric!r})"
        )
