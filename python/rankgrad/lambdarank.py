"""LambdaRank (SPEC section 4): LightGBM's lambdarank objective for GBDTs, and as a torch loss.

This module is numpy-only at import: ``lambdarank_loss`` imports torch (and its custom op
``rankgrad::lambdarank_loss`` in ``_lambdarank_op``) only when handed a tensor or
``backend="torch"``.

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
import threading
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple, overload

import numpy as np

from . import _core
from ._inputs import (
    NumpyLoss,
    check_backend,
    check_count,
    check_reduction,
    check_scale,
    is_tensor,
    lists,
    op_count,
    reduce,
    use_rust,
)

if TYPE_CHECKING:
    import torch

__all__ = ["lambdarank_gradients", "lambdarank_loss"]

_METRICS = ("ndcg", "mrr")


def _check_metric(metric) -> str:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    return metric


def _check_truncation(truncation_level, allow_none: bool) -> Optional[int]:
    return check_count("truncation_level", truncation_level, allow_none)


def _vector(x, name: str, n: Optional[int] = None, kinds: str = "fiu") -> np.ndarray:
    """`x` as a 1-D numpy array (torch tensors are moved to the CPU), or a TypeError/ValueError."""
    if is_tensor(x):
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


def _gain_list(label_gain) -> Optional[list]:
    """`label_gain` as a list of floats (plain Python for lists of numbers, so torch.compile
    traces it), checked like `_label_gain`."""
    if label_gain is None:
        return None
    if isinstance(label_gain, (list, tuple)) and all(type(v) in (int, float) for v in label_gain):
        vals = [float(v) for v in label_gain]
        if not vals:
            raise ValueError("label_gain must not be empty")
        if not all(abs(v) < math.inf for v in vals):  # (not math.isfinite: dynamo traces this)
            raise ValueError("label_gain must hold finite numbers")
        return vals
    return [float(v) for v in _label_gain(label_gain)]


def _group(group, n: int) -> np.ndarray:
    g = _vector(group, "group", kinds="fiu")
    if g.dtype.kind == "f":
        if not (np.isfinite(g).all() and (g == np.round(g)).all()):
            raise ValueError("group must hold integer list sizes")
    if g.dtype.kind == "u" and g.size and g.max() > np.iinfo(np.int64).max:
        raise ValueError(f"group sizes must sum to the {n} rows")
    return np.ascontiguousarray(g, dtype=np.int64)


def lambdarank_gradients(
    preds: Any,
    labels: Any,
    group: Any,
    *,
    sigma: float = 1.0,
    truncation_level: int = 30,
    norm: bool = True,
    label_gain: Optional[Sequence[float]] = None,
    weights: Any = None,
    metric: str = "ndcg",
    out: Optional[Tuple[np.ndarray, np.ndarray]] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """LightGBM's lambdarank objective (module docstring) with an exact sigmoid; numpy only.

    Args:
        preds: scores ``[n]`` (float32/float64; others are converted).
        labels: ``[n]`` integers in ``[0, len(label_gain))`` (default gains ``2^y - 1``, y < 31).
        group: list sizes ``[G]`` summing to n, each list's rows contiguous (no size cap).
        sigma: the sigmoid's scale, in ``_inputs.scale_range("float64")``.
        truncation_level: pairs need their higher-ranked position below it (any integer >= 1).
        norm: LightGBM's ``lambdarank_norm``.
        label_gain: the gain table (None: ``2^i - 1`` for i < 31).
        weights: per-row weights ``[n]`` multiplying grad and hess (None: 1).
        metric: ``"ndcg"`` or ``"mrr"``.
        out: two writable contiguous float64 ``[n]`` arrays (e.g. reused from round to round)
            to write into; left untouched when the call raises.

    Returns:
        ``(grad, hess)``, float64 ``[n]`` numpy arrays (``out`` when given). Errors name the
        argument and the group.
    """
    sigma = check_scale("sigma", sigma, "float64")
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
# The loss (padded [B, N] batches); torch is imported only when a tensor (or backend="torch")
# needs it: the kernel's custom op lives in `_lambdarank_op`.


@overload
def lambdarank_loss(
    scores: torch.Tensor,
    targets: Any,
    sigma: float = ...,
    truncation_level: Optional[int] = ...,
    norm: bool = ...,
    mask: Any = ...,
    reduction: str = ...,
    label_gain: Optional[Sequence[float]] = ...,
    metric: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def lambdarank_loss(
    scores: np.ndarray,
    targets: Any,
    sigma: float = ...,
    truncation_level: Optional[int] = ...,
    norm: bool = ...,
    mask: Any = ...,
    reduction: str = ...,
    label_gain: Optional[Sequence[float]] = ...,
    metric: str = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
def lambdarank_loss(
    scores: Any,
    targets: Any,
    sigma: float = 1.0,
    truncation_level: Optional[int] = None,
    norm: bool = False,
    mask: Any = None,
    reduction: str = "mean",
    label_gain: Optional[Sequence[float]] = None,
    metric: str = "ndcg",
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """LambdaRank as a loss: per list ``c * sum_pairs delta * log(1 + exp(-sigma * ds))`` over
    the pairs of ``lambdarank_gradients`` (positions ``i < truncation_level`` in the score
    order, ``j > i``, different labels), with ``delta`` (and norm's ``1/(0.01 + |ds|)``) held
    constant and ``c = log2(1 + S)/S`` when ``norm`` (else 1), also constant; so with
    ``reduction="sum"`` its gradient is exactly the ``grad`` of ``lambdarank_gradients`` with
    the same options. A list with fewer than 2 real items, a single label or a zero maxDCG
    (MRR: no relevant or no irrelevant item) has loss 0, zero gradient and does not count in
    ``"mean"``.

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) float tensor or numpy array.
        targets: the shape of ``scores``; gains ``label_gain[y]`` (integer targets) or
            ``2^max(y, 0) - 1`` (targets up to ``GAIN_CAP`` = 1000).
        sigma: the sigmoid's scale, ``> 0`` (and within ``_inputs.scale_range`` of the dtype).
        truncation_level: pairs need their higher-ranked position below it; None: every pair.
        norm: LightGBM's ``lambdarank_norm``.
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        reduction: ``"mean"`` over the lists that count, ``"sum"`` or ``"none"``.
        label_gain: the gain table (None: ``2^y - 1``).
        metric: ``"ndcg"`` or ``"mrr"``.
        backend: ``"auto"`` (Rust for numpy and CPU tensors, torch elsewhere), ``"rust"`` or
            ``"torch"``.
        validate: the value checks on the torch path (False saves a device sync).

    Returns:
        A scalar (``"mean"``/``"sum"``) or per-list ``[B]`` losses (``"none"``; a scalar for
        a 1-D input) in the dtype of ``scores``: a differentiable tensor for tensors in
        (second derivatives raise RuntimeError), a numpy array for numpy in.
    """
    check_reduction(reduction)
    check_backend(backend)
    k = _check_truncation(truncation_level, allow_none=True)
    metric = _check_metric(metric)
    table = _gain_list(label_gain)
    norm = bool(norm)
    x = lists(scores, targets, mask, validate=False)
    if not x.is_torch:
        sigma = check_scale("sigma", sigma, x.scores.dtype)
        s, y, m = x.numpy()
        if backend != "torch":
            gain = None if table is None else np.asarray(table, dtype=np.float64)
            losses, valid, _ = _core.lambdarank_loss(s, y, m, sigma, k, norm, gain, metric, False)
        else:
            import torch

            from ._lambdarank_op import lambdarank_op

            t = [None if a is None else torch.from_numpy(a) for a in (s, y, m)]
            out = lambdarank_op(*t, sigma, op_count(k), norm, table, metric, True, validate, False)
            losses, valid = out[0].numpy(), out[1].numpy()
        out = reduce(losses, valid, reduction)
        return x.out(out) if reduction == "none" else np.asarray(out).astype(x.dtype)[()]
    import torch

    from ._lambdarank_op import LambdaRankFunction, lambdarank_op

    if not torch.compiler.is_compiling():  # else the op checks it when it runs
        sigma = check_scale("sigma", sigma, x.scores.dtype)
    native = not use_rust(x, backend)
    from ._custom_ops import entry, needs_grad

    need_grad = needs_grad(x.scores)
    losses, valid, _ = entry(LambdaRankFunction, lambdarank_op)(
        x.scores, x.targets, x.mask, sigma, op_count(k), norm, table, metric, native, validate, need_grad
    )
    return reduce(losses, valid, reduction, x)


class _GBDTObjective:
    """Shared by the LightGBM and XGBoost adapters: the options of `lambdarank_gradients`,
    checked once, and per-thread output arrays reused from one boosting round to the next
    (the boosters copy grad and hess at once; reusing them saves allocating and
    page-faulting two fresh arrays each round)."""

    def __init__(
        self,
        *,
        sigma: float = 1.0,
        truncation_level: int = 30,
        norm: bool = True,
        label_gain: Any = None,
        metric: str = "ndcg",
    ) -> None:
        self.sigma = check_scale("sigma", sigma, "float64")
        self.truncation_level = _check_truncation(truncation_level, allow_none=False)
        self.norm = bool(norm)
        self.label_gain = _label_gain(label_gain)
        self.metric = _check_metric(metric)
        self._local = threading.local()

    @property
    def options(self) -> Dict[str, Any]:
        return dict(
            sigma=self.sigma,
            truncation_level=self.truncation_level,
            norm=self.norm,
            label_gain=self.label_gain,
            metric=self.metric,
        )

    def _gradients(self, preds: Any, labels: Any, group: Any, weights: Any) -> Tuple[np.ndarray, np.ndarray]:
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

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sigma={self.sigma}, truncation_level={self.truncation_level}, "
            f"norm={self.norm}, metric={self.metric!r})"
        )
