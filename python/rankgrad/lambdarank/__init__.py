"""LambdaRank (SPEC section 4): LightGBM's lambdarank objective for GBDTs, and as a torch loss.

This package is numpy-only at import: ``lambdarank_loss`` imports torch (its custom op
``rankgrad::lambdarank_loss`` in ``_op``, the torch twin in ``_native``) only when handed a tensor
or ``backend="torch"``. The GBDT objectives built on ``lambdarank_gradients`` live in
``rankgrad.gbdt``.

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
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, overload

import numpy as np

from .. import _core
from .._dispatch import padded_loss
from .._inputs import NumpyLoss, check_count, check_scale, flat, group_sizes, op_count

if TYPE_CHECKING:
    import torch

__all__ = ["lambdarank_gradients", "lambdarank_loss"]

_METRICS = ("ndcg", "mrr")


def check_metric(metric) -> str:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    return metric


def check_truncation(truncation_level, allow_none: bool) -> Optional[int]:
    return check_count("truncation_level", truncation_level, allow_none)


def label_gain_table(label_gain) -> Optional[np.ndarray]:
    if label_gain is None:
        return None
    g = flat(label_gain, "label_gain")
    if g.size == 0:
        raise ValueError("label_gain must not be empty")
    if not np.isfinite(g).all():
        raise ValueError("label_gain must hold finite numbers")
    return g


def gain_list(label_gain) -> Optional[list]:
    """`label_gain` as a list of floats (plain Python for lists of numbers, so torch.compile
    traces it), checked like `label_gain_table`."""
    if label_gain is None:
        return None
    if isinstance(label_gain, (list, tuple)) and all(type(v) in (int, float) for v in label_gain):
        vals = [float(v) for v in label_gain]
        if not vals:
            raise ValueError("label_gain must not be empty")
        if not all(abs(v) < math.inf for v in vals):  # (not math.isfinite: dynamo traces this)
            raise ValueError("label_gain must hold finite numbers")
        return vals
    return [float(v) for v in label_gain_table(label_gain)]


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

    Example:
        >>> import numpy as np, rankgrad
        >>> preds = np.array([0.5, 0.2, 0.9, 0.1])  # one query of 4 rows
        >>> grad, hess = rankgrad.lambdarank_gradients(preds, np.array([2, 0, 1, 0]), group=[4])
        >>> grad.round(4)
        array([-0.5398,  0.1892,  0.1533,  0.1973])
    """
    sigma = check_scale("sigma", sigma, "float64")
    k = check_truncation(truncation_level, allow_none=False)
    metric = check_metric(metric)
    p = flat(preds, "preds", keep_float=True)
    n = p.shape[0]
    y = flat(labels, "labels", n, keep_float=True)
    g = group_sizes(group, n)
    w = None if weights is None else flat(weights, "weights", n)
    if out is not None:
        out = _check_out(out, n, (p, y, w))
    return _core.lambdarank_gradients(
        p, y, g, sigma, k, bool(norm), label_gain_table(label_gain), w, metric, out
    )


def _loss_op():  # type: ignore[no-untyped-def]
    from ._op import OP

    return OP


def _rust(s, y, m, w, sigma, k, norm, gain, metric, need_grad):
    table = None if gain is None else np.asarray(gain, dtype=np.float64)
    return _core.lambdarank_loss(s, y, m, sigma, k, norm, table, metric, need_grad, w)


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
# needs it: the kernel's custom op lives in `_op`, its torch twin in `_native`.


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
    weights: Any = ...,
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
    weights: Optional[np.ndarray] = ...,
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
    weights: Any = None,
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
        weights: SPEC 13, keyword-only. ``[B, N]`` (``[N]`` for one list) per-item weights: each
            pair's term (and so its lambda) is multiplied by ``w_h``, the weight of its
            higher-labelled item (Rax's pairwise convention, ``compute_pairs(weights, lambda x,
            y: x)`` on the pairs ``y_i > y_j``); ``delta``, the pairs and norm's factor (its ``S``
            summed over the unweighted lambdas, as LightGBM applies its weights after the norm)
            do not change. These are not ``lambdarank_gradients``' per-row weights, which
            multiply each row's whole gradient (a pair's two lambdas by two different weights).
            A list none of whose pairs has a positive weight has loss 0 and does not count.
            ``[B]`` (a 0-d array for one list) per-list weights: each list's loss times its
            weight, ``"mean"`` the weighted mean over the lists that count. Finite and >= 0 on
            real items (ValueError naming ``weights``); padded items' weights are ignored.
        backend: ``"auto"`` (Rust for numpy and CPU tensors, torch elsewhere), ``"rust"`` or
            ``"torch"``.
        validate: the value checks on the torch path (False saves a device sync).

    Returns:
        A scalar (``"mean"``/``"sum"``) or per-list ``[B]`` losses (``"none"``; a scalar for
        a 1-D input) in the dtype of ``scores``: a differentiable tensor for tensors in
        (second derivatives raise RuntimeError), a numpy array for numpy in.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.lambdarank_loss(s, y, reduction="none").round(4)
        array([0.1861, 0.4965])
    """
    k = check_truncation(truncation_level, allow_none=True)
    options = (op_count(k), bool(norm), gain_list(label_gain), check_metric(metric))
    return padded_loss(
        _loss_op,
        _rust,
        scores,
        targets,
        mask,
        reduction,
        backend,
        validate,
        ("sigma", sigma),
        options,
        weights,
    )
