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

from typing import TYPE_CHECKING, Any, Optional, overload

import numpy as np

from .. import _core
from .._dispatch import composite_loss, padded_loss
from .._inputs import NumpyLoss, check_count, check_nonnegative, op_count

if TYPE_CHECKING:
    import torch

__all__ = ["lambda_loss", "softmax_loss", "listmle_loss", "WEIGHTINGS"]

WEIGHTINGS = ("ndcg1", "ndcg2", "lambdarank", "ndcg2pp", "ranknet")


def _loss_op():  # type: ignore[no-untyped-def]
    from ._op import OP

    return OP


def _rust(s, y, m, w, sigma, weighting, k, mu, scale_gains, need_grad):  # type: ignore[no-untyped-def]
    return _core.lambda_loss(s, y, m, weighting, sigma, k, mu, scale_gains, need_grad, w)


def check_options(weighting: Any, mu: Any) -> float:
    """`weighting` one of `WEIGHTINGS`; returns `mu` checked (a finite number >= 0)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return check_nonnegative("mu", mu)


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
    weights: Any = ...,
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
    weights: Optional[np.ndarray] = ...,
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
    weights=None,
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
      weights: SPEC 13, keyword-only. ``[B, N]`` (``[N]`` for one list) per-item weights: the
        pair ``y_i > y_j`` is weighted by ``w_i``, its more relevant item's weight (Rax's
        pairwise convention, ``compute_pairs(weights, lambda x, y: x)``); with ``"ndcg1"``,
        whose sum runs over every ordered pair, the pair ``(i, j)`` by ``w_i`` (the item whose
        ``G_i / D_i`` weighs it). The order, ``G``, ``D`` and maxDCG do not change. A list with
        no item of positive weight above the lowest label of its top ``k`` (``"ndcg1"``: of
        positive weight and gain) has loss 0 and does not count. ``[B]`` (a 0-d array for one
        list) per-list weights: each list's loss times its weight, ``"mean"`` the weighted mean
        over the lists that count. Finite and >= 0 on real items (ValueError naming
        ``weights``); padded items' weights are ignored.
      backend: ``"auto"`` (Rust for numpy and CPU tensors, torch-native elsewhere), ``"rust"``
        or ``"torch"``.
      validate: check for NaN/inf (and too large targets) on the torch-native path; the Rust
        kernel always checks.

    Returns:
      A scalar (``"mean"``/``"sum"``) or ``[B]`` (``"none"``) in the input dtype: a tensor
      differentiable once with respect to ``scores`` for tensor input, numpy for numpy input.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.lambda_loss(s, y, reduction="none").round(4)
        array([3.2847, 6.1875])
    """
    mu = check_options(weighting, mu)
    options = (weighting, op_count(check_count("k", k)), mu, bool(scale_gains))
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


# ---------------------------------------------------------------- softmax and ListMLE (torch composites)
@overload
def softmax_loss(
    scores: torch.Tensor,
    targets: Any,
    mask: Any = ...,
    reduction: str = ...,
    *,
    weights: Any = ...,
    normalize: bool = ...,
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
    weights: Optional[np.ndarray] = ...,
    normalize: bool = ...,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
def softmax_loss(
    scores,
    targets,
    mask=None,
    reduction="mean",
    *,
    weights=None,
    normalize=True,
    backend="auto",
    validate=True,
):
    """Softmax cross-entropy (ListNet with a top-1 target)::

        loss = -sum_i p_i * log softmax(s)_i,   p_i = max(y_i, 0) / sum_j max(y_j, 0)

    over the real items of each list: TF-Ranking's ``SoftmaxLoss``, and Rax's ``softmax_loss``
    with ``label_fn=rax.utils.normalize_probabilities``. With ``normalize=False``,
    ``p_i = max(y_i, 0)`` as it is: Rax's default ``softmax_loss``, the normalised loss times
    ``sum_j max(y_j, 0)``.

    Args:
      scores: ``[B, N]`` (or ``[N]``) float tensor (or numpy array).
      targets: relevance, the shape of ``scores``; negative values count 0.
      mask: optional ``[B, N]`` bool, True = real item; padded items get zero gradient.
      reduction: ``"mean"`` over the lists that count (a list with fewer than 2 real items or
        whose targets sum to 0 has loss 0 and does not count), ``"sum"``, or ``"none"`` (``[B]``).
      weights: SPEC 13, keyword-only. ``[B, N]`` (``[N]`` for one list) per-item weights: the
        targets are multiplied by the weights before normalising,
        ``p_i = w_i max(y_i, 0) / sum_j w_j max(y_j, 0)`` (unnormalised with ``normalize=False``),
        as Rax's ``softmax_loss`` does (rax/_src/losses.py: ``labels *= weights`` before
        ``label_fn``); a list whose weighted targets sum to 0 (e.g. every relevant item weighs
        0) has loss 0 and does not count. ``[B]`` (a 0-d array for one list) per-list weights:
        each list's loss times its weight, ``"mean"`` the weighted mean over the lists that
        count, ``sum_b w_b loss_b / sum_b w_b``. Finite and >= 0 on real items (ValueError naming
        ``weights``); padded items' weights are ignored. Rax's reduction differs: its default
        ``reduce_fn=jnp.mean`` also counts lists with no positive target (loss 0 there with
        its default ``label_fn``) and has no per-list weights.
      normalize: divide the targets by their sum (default) or use them as they are.
      backend: accepted for a uniform signature ("auto", "rust" or "torch"); this O(N log N)
        loss is torch-native on every backend.
      validate: check for NaN/inf (and bad weights) on real items (skipped under torch.compile
        and torch.func).

    Returns:
      A scalar or ``[B]`` tensor in the input dtype (numpy for numpy input). Built from
      native torch ops: torch.compile, torch.func and higher-order gradients all work.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.0]])
        >>> y = np.array([[1.0, 0.0, 1.0]])
        >>> round(float(rankgrad.softmax_loss(s, y)), 4)
        1.4076
    """
    normalize = bool(normalize)

    def loss(s, y, m, w):  # type: ignore[no-untyped-def]
        from ._native import softmax

        return softmax(s, y, m, normalize, w)

    return composite_loss(loss, scores, targets, mask, reduction, backend, validate, weights)


@overload
def listmle_loss(
    scores: torch.Tensor,
    targets: Any,
    mask: Any = ...,
    reduction: str = ...,
    *,
    weights: Any = ...,
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
    weights: Optional[np.ndarray] = ...,
    backend: str = ...,
    validate: bool = ...,
) -> NumpyLoss: ...
def listmle_loss(
    scores, targets, mask=None, reduction="mean", *, weights=None, backend="auto", validate=True
):
    """ListMLE (Rax's ``listmle_loss``): the Plackett-Luce negative log-likelihood of the order
    by targets (descending, ties in input order), ``pi``, over the ``n`` real items::

        loss = sum_{i=1..n} [logsumexp(s_pi(i), ..., s_pi(n)) - s_pi(i)]

    Args:
      scores: ``[B, N]`` (or ``[N]``) float tensor (or numpy array).
      targets: relevance (any real numbers), the shape of ``scores``.
      mask: optional ``[B, N]`` bool, True = real item; padded items get zero gradient.
      reduction: ``"mean"`` over the lists that count (a list with fewer than 2 real items has
        loss 0 and does not count), ``"sum"``, or ``"none"`` (``[B]``).
      weights: SPEC 13, keyword-only. ``[B, N]`` (``[N]`` for one list) per-item weights: each
        position's term is multiplied by the weight of the item placed there,
        ``sum_i w_pi(i) [logsumexp(s_pi(i..n)) - s_pi(i)]`` (the order ``pi`` and the suffixes do
        not change; Rax 0.4.0's ``listmle_loss`` takes no ``weights``, so this rule is SPEC 13's);
        a list whose real items all weigh 0 has loss 0 and does not count. ``[B]`` (a 0-d array
        for one list) per-list weights: each list's loss times its weight, ``"mean"`` the
        weighted mean over the lists that count. Finite and >= 0 on real items (ValueError
        naming ``weights``); padded items' weights are ignored.
      backend: accepted for a uniform signature ("auto", "rust" or "torch"); this O(N log N)
        loss is torch-native on every backend.
      validate: check for NaN/inf (and bad weights) on real items (skipped under torch.compile
        and torch.func).

    Returns:
      A scalar or ``[B]`` tensor in the input dtype (numpy for numpy input). Native torch ops,
      O(N log N): torch.compile, torch.func and higher-order gradients all work.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.0]])
        >>> y = np.array([[2.0, 1.0, 0.0]])
        >>> round(float(rankgrad.listmle_loss(s, y)), 4)
        0.7209
    """

    def loss(s, y, m, w):  # type: ignore[no-untyped-def]
        from ._native import listmle

        return listmle(s, y, m, w)

    return composite_loss(loss, scores, targets, mask, reduction, backend, validate, weights)
