"""RankNet: the pairwise logistic loss (SPEC section 4).

Per list, over its real items, with ``P`` the number of ordered pairs ``y_i > y_j`` (ties
are not pairs)::

    L = (1/P) * sum_{y_i > y_j} log(1 + exp(-sigma * (s_i - s_j)))

The gradient comes in lambda form, ``dL/ds_k = (1/P) (sum_j lambda_kj - sum_j lambda_jk)``
with ``lambda_ij = -sigma * sigmoid(-sigma * (s_i - s_j))``. numpy arrays and CPU tensors go
to the Rust kernel (one O(N^2)-time, O(N)-memory pass per list for the loss and the
gradient); other devices (or ``backend="torch"``) to a torch-native twin that works through
the pairs in chunks, never holding a ``[B, N, N]`` tensor. Tensors go through the custom op
``rankgrad::ranknet_loss`` (torch.compile, torch.func, meta tensors); second derivatives
are exact (reverse mode: ``create_graph=True``, ``jacrev(jacrev(...))``; a third derivative
raises RuntimeError). This module imports torch only when handed a tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

import numpy as np

from . import _core
from ._inputs import NumpyLoss, check_backend, check_reduction, check_scale, lists, reduce, use_rust

if TYPE_CHECKING:
    import torch

__all__ = ["ranknet_loss"]


@overload
def ranknet_loss(
    scores: torch.Tensor,
    targets: Any,
    sigma: float = ...,
    mask: Any = ...,
    reduction: str = ...,
    *,
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
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """RankNet loss: per list, ``mean_{y_i > y_j} log(1 + exp(-sigma (s_i - s_j)))``.

    Ties are not pairs; a list with no ordered pair has loss 0, zero gradient and does not
    count in ``"mean"``.

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) float tensor or numpy array.
        targets: graded relevance, the shape of ``scores``.
        sigma: the sigmoid's scale, ``> 0`` (and within ``_inputs.scale_range`` of the dtype).
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        reduction: ``"mean"`` over the lists that count, ``"sum"`` or ``"none"``.
        backend: ``"auto"`` (Rust for numpy and CPU tensors, torch elsewhere), ``"rust"`` or
            ``"torch"``.
        validate: check for NaN/inf on real items on the torch path (the Rust kernel always
            checks); False saves a device sync.

    Returns:
        A scalar (``"mean"``/``"sum"``) or per-list ``[B]`` losses (``"none"``; a scalar for
        a 1-D input), in the dtype of ``scores``: a differentiable tensor for tensors in
        (exact second derivatives), a numpy array for numpy in.
    """
    check_reduction(reduction)
    check_backend(backend)
    x = lists(scores, targets, mask, validate=False)
    if not x.is_torch:
        sigma = check_scale("sigma", sigma, x.scores.dtype)
        s, y, m = x.numpy()
        if backend != "torch":
            losses, valid, _ = _core.ranknet_loss(s, y, m, sigma, False)
        else:
            import torch

            from ._ranknet_op import ranknet_op

            t = [None if a is None else torch.from_numpy(a) for a in (s, y, m)]
            losses, valid, _ = (a.numpy() for a in ranknet_op(*t, sigma, True, validate, False))
        out = reduce(losses, valid, reduction)
        return x.out(out) if reduction == "none" else np.asarray(out).astype(x.dtype)[()]
    import torch

    from ._ranknet_op import RankNetFunction, ranknet_op

    if not torch.compiler.is_compiling():  # else the op checks it when it runs
        sigma = check_scale("sigma", sigma, x.scores.dtype)
    native = not use_rust(x, backend)
    from ._custom_ops import entry, needs_grad

    need_grad = needs_grad(x.scores)
    losses, valid, _ = entry(RankNetFunction, ranknet_op)(
        x.scores, x.targets, x.mask, sigma, native, validate, need_grad
    )
    return reduce(losses, valid, reduction, x)
