"""RankNet: the pairwise logistic loss (SPEC section 4).

Per list, over its real items, with ``P`` the number of ordered pairs ``y_i > y_j`` (ties
are not pairs)::

    L = (1/P) * sum_{y_i > y_j} log(1 + exp(-sigma * (s_i - s_j)))

The gradient comes in lambda form, ``dL/ds_k = (1/P) (sum_j lambda_kj - sum_j lambda_jk)``
with ``lambda_ij = -sigma * sigmoid(-sigma * (s_i - s_j))``. numpy arrays and CPU tensors go
to the Rust kernel (one O(N^2)-time, O(N)-memory pass per list for the loss and the
gradient); other devices (or ``backend="torch"``) to a torch-native twin (``_native``) that
works through the pairs in chunks, never holding a ``[B, N, N]`` tensor. Tensors go through
the custom op ``rankgrad::ranknet_loss`` (``_op``: torch.compile, torch.func, meta tensors);
second derivatives are exact (a third derivative raises RuntimeError). This module imports
torch only when handed a tensor or ``backend="torch"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, overload

import numpy as np

from .. import _core
from .._dispatch import padded_loss
from .._inputs import NumpyLoss

if TYPE_CHECKING:
    import torch

__all__ = ["ranknet_loss"]


def _loss_op():  # type: ignore[no-untyped-def]
    from ._op import OP

    return OP


def _rust(s: Any, y: Any, m: Any, w: Any, sigma: float, need_grad: bool) -> Any:
    return _core.ranknet_loss(s, y, m, sigma, need_grad, w)


@overload
def ranknet_loss(
    scores: torch.Tensor,
    targets: Any,
    sigma: float = ...,
    mask: Any = ...,
    reduction: str = ...,
    *,
    weights: Any = ...,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def ranknet_loss(
    scores: np.ndarray,
    targets: Any,
    sigma: float = ...,
    mask: Any = ...,
    reduction: str = ...,
    *,
    weights: Optional[np.ndarray] = ...,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
def ranknet_loss(
    scores: Any,
    targets: Any,
    sigma: float = 1.0,
    mask: Any = None,
    reduction: str = "mean",
    *,
    weights: Any = None,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """RankNet loss: per list, ``mean_{y_i > y_j} log(1 + exp(-sigma (s_i - s_j)))`` (each pair
    times ``w_i`` with per-item ``weights``).

    Ties are not pairs; a list with no ordered pair has loss 0, zero gradient and does not
    count in ``"mean"``.

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) float tensor or numpy array.
        targets: graded relevance, the shape of ``scores``.
        sigma: the sigmoid's scale, ``> 0`` (within ``[1.1e-19, 1.8e19]`` for float32 and
            ``[1.5e-154, 1.3e154]`` for float64: its square and reciprocal stay finite).
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        reduction: ``"mean"`` over the lists that count, ``"sum"`` or ``"none"``.
        weights: SPEC 13, keyword-only. ``[B, N]`` (``[N]`` for one list) per-item weights: a
            pair ``y_i > y_j`` is weighted by ``w_i``, the weight of the more relevant item, and
            the per-list mean still divides by the number of pairs ``P`` (Rax's
            ``pairwise_logistic_loss(weights=w)``: ``pair_losses *= compute_pairs(weights,
            lambda x, y: x)``, then the mean over the valid pairs); a list none of whose pairs
            has a positive weight has loss 0 and does not count. ``[B]`` (a 0-d array for one
            list) per-list weights: each list's loss times its weight, ``"mean"`` the weighted
            mean ``sum_b w_b loss_b / sum_b w_b`` over the lists that count. Finite and >= 0 on
            real items (ValueError naming ``weights``); padded items' weights are ignored.
            Rax's reductions differ: its default ``reduce_fn=jnp.mean`` averages over every
            valid pair of the whole batch at once (``jnp.sum``: the sum over pairs), where
            rankgrad averages per list, then over lists; ``reduce_fn=None`` and a mean per list
            give rankgrad's ``reduction="none"``.
        backend: ``"auto"`` (Rust for numpy and CPU tensors, torch elsewhere), ``"rust"`` or
            ``"torch"``.
        validate: check for NaN/inf on real items on the torch path (the Rust kernel always
            checks); False saves a device sync.

    Returns:
        A scalar (``"mean"``/``"sum"``) or per-list ``[B]`` losses (``"none"``; a scalar for
        a 1-D input), in the dtype of ``scores``: a differentiable tensor for tensors in
        (exact second derivatives), a numpy array for numpy in.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        >>> rankgrad.ranknet_loss(s, y, reduction="none").round(4)
        array([0.4963, 0.7713])
    """
    return padded_loss(
        _loss_op, _rust, scores, targets, mask, reduction, backend, validate, ("sigma", sigma), (), weights
    )
