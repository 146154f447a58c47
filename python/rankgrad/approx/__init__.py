"""The approximate-rank family (SPEC section 3): smooth ranks and the listwise losses on them.

    r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)

ApproxNDCG `1 - sum_i g(y_i) / log2(1 + r_i) / IDCG`, ApproxMRR `1 - max_i rel_i / r_i` and
ApproxRankMSE `mean_i w_i (r_i - t_i)^2`. The gradient has a closed form,
`dL/ds_k = (1/T) sum_{i != k} sigmoid'((s_k - s_i)/T) (c_i - c_k)` with `c = dL/dr`, so no
`[B, N, N]` tensor is ever built.

`method` chooses how the pair sums are taken: `"exact"` sums every pair (O(N^2) time, O(N)
memory per list); `"fast"` evaluates the same sums by 1-D fast summation (the sigmoid is
interpolated on cells of width T by Chebyshev nodes and is exactly 0 or 1 in floating point far
away: O(N log N + N p) per list, within 1e-10 relative of the exact sums in float64); `"auto"`
(default) takes "fast" for lists of at least `FAST_MIN_N` real items, "exact" below.

Weights (SPEC 13, keyword `weights=` of every loss here, Rax's conventions; Rax 0.4.0 read for
each rule). A `[B, N]` array (`[N]` for a 1-D input) weighs items; weights change `c = dL/dr`
and its derivative only, never the ranks, so both methods and both backends take them alike:

- ApproxNDCG: each gain is multiplied by its weight, and the IDCG is the DCG of the weighted
  gains in descending order -- Rax's `ndcg_metric(..., weights=w)` (rax/_src/metrics.py,
  `dcg_metric`: `gains *= weights`; `ndcg_metric`: "The ideal dcg is computed by ordering items
  by their (weighted) gains", `ideal_scores = gain_fn(labels) * weights`). So
  `approx_ndcg_loss(s, y, T, weights=w, reduction="none")` equals
  `1 + rax.approx_t12n(rax.ndcg_metric, temperature=T)(s, y, weights=w, reduce_fn=None)` (Rax's
  loss is `-metric`, ours `1 - metric`; same `r_i`, `step_fn = sigmoid(x / T)`). Scaling a
  list's weights by a constant changes nothing.
- ApproxMRR: `1 - max_i w_i min(max(y_i, 0), 1) / r_i`: the weighted relevance, not normalised
  (as Rax's `dcg_metric` multiplies gains; Rax 0.4.0's `mrr_metric` takes no `weights` at all,
  and counts `y >= 1` as relevant where rankgrad clips to [0, 1]). Weights above 1 can make
  the loss negative.
- ApproxRankMSE: each item's term `d(t_i) (r_i - t_i)^2` is multiplied by `w_i`, and the per-list
  mean still divides by the number of real items, not by the weights' sum (Rax's pointwise
  losses: `results *= weights`, then the mean over valid items, `compute_pointwise_loss`).
- A list counts when it has at least 2 real items and something weighted to rank: a positive
  weighted gain (NDCG) or weighted relevance (MRR), a positive weight (RankMSE). Otherwise (for
  example every relevant item weighs 0) its loss is 0, its gradient zero, and it does not count
  in `"mean"`, as SPEC 2's degenerate lists. (Rax keeps such a list in its mean with metric 0.)

A `[B]` array (a 0-d array for a 1-D input) weighs lists: each list's loss is multiplied by its
weight and `"mean"` is `sum_b w_b loss_b / sum_{b counts} w_b` (0 when that sum is 0). Weights
must be finite and >= 0 on real items (a ValueError naming `weights`: numpy always; tensors on the
Rust path always, on the torch path with `validate`, per-list weights not while torch.compile
traces or under torch.func); padded items' weights are ignored, whatever they hold.

Layout (every family's): this package holds the public functions (numpy-only at import); `_op`
the custom ops (`rankgrad::approx_loss`, its HVP, and the ranks ops) with their fake, vmap and
autograd rules; `_native` the torch twin (CUDA, or `backend="torch"`) and `_fast` its fast
summation. numpy arrays and CPU tensors go to the Rust kernels (`src/approx/`), which compute
each list's loss and gradient in one pass; second derivatives are exact on both paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union, overload

import numpy as np

from .. import _core
from .._dispatch import padded_loss
from .._inputs import (
    NumpyLoss,
    as_tensors,
    check_backend,
    check_method,
    check_scale,
    lists,
    use_rust,
)

if TYPE_CHECKING:
    import torch

__all__ = ["approx_ranks", "approx_ndcg_loss", "approx_mrr_loss", "approx_rank_mse_loss"]

DISCOUNTS = (None, "log2", "reciprocal")


def check_discount(discount: Any) -> Optional[str]:
    if discount not in DISCOUNTS:
        raise ValueError(f"discount must be None, 'log2' or 'reciprocal', got {discount!r}")
    return discount  # type: ignore[no-any-return]


# The Rust kernels (src/approx), called by the numpy path here and by the ops on CPU tensors.


def _loss_op():  # type: ignore[no-untyped-def]
    from ._op import OP

    return OP


def _rust_loss(s, y, m, w, temperature, kind, scale_gains, discount, method, need_grad):  # type: ignore[no-untyped-def]
    disc = None if discount == "none" else discount
    return _core.approx_loss(kind, s, y, m, temperature, need_grad, scale_gains, disc, method, w)


def _rust_hvp(s, y, m, w, temperature, kind, scale_gains, discount, method, v):  # type: ignore[no-untyped-def]
    disc = None if discount == "none" else discount
    return _core.approx_loss_hvp(kind, s, y, m, temperature, v, scale_gains, disc, method, w)


def _loss(
    kind: str,
    scores: Any,
    targets: Any,
    mask: Any,
    temperature: float,
    reduction: str,
    method: str,
    backend: str,
    validate: bool,
    weights: Any,
    scale_gains: bool = True,
    discount: Optional[str] = None,
) -> Any:
    options = (kind, bool(scale_gains), discount or "none", check_method(method))
    return padded_loss(
        _loss_op,
        _rust_loss,
        scores,
        targets,
        mask,
        reduction,
        backend,
        validate,
        ("temperature", temperature),
        options,
        weights,
    )


# ---------------------------------------------------------------- public functions
@overload
def approx_ranks(
    scores: np.ndarray,
    temperature: float = ...,
    mask: Optional[np.ndarray] = ...,
    *,
    method: str = ...,
    backend: str = ...,
    validate: bool = ...,
) -> np.ndarray: ...
@overload
def approx_ranks(
    scores: torch.Tensor,
    temperature: float = ...,
    mask: Optional[torch.Tensor] = ...,
    *,
    method: str = ...,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
def approx_ranks(
    scores: Any,
    temperature: float = 1.0,
    mask: Any = None,
    *,
    method: str = "auto",
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """Smooth ranks `r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` over the real items.

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        temperature: `T > 0`; smaller is closer to the exact ranks.
        mask: `[B, N]` bool, True = real item (None: all real).
        method: "auto" (fast summation for lists of at least `FAST_MIN_N` real items, the pair
            sum below), "fast" or "exact" (see the package docstring for the error bound).
        backend: "auto" (Rust for numpy and CPU tensors, torch-native otherwise), "rust" or "torch".
        validate: check for NaN/inf on the torch-native path (inside the op: it syncs a CUDA
            device once; the Rust path always checks).

    Returns:
        Ranks of the shape and dtype of `scores` (0 at padded positions), a tensor for a
        tensor (differentiable, twice) and an array for an array.

    Example:
        >>> import numpy as np, rankgrad
        >>> rankgrad.approx_ranks(np.array([3.0, 1.0, 2.0])).round(4)
        array([1.3881, 2.6119, 2.    ])
    """
    check_backend(backend)
    method = check_method(method)
    x = lists(scores, None, mask, targets_required=False, validate=False)
    t = check_scale("temperature", temperature, x.scores.dtype)
    if x.is_torch:
        from ._op import ranks

        r = ranks(x.scores, x.mask, t, method, not use_rust(x, backend), validate).to(x.dtype)
    elif backend != "torch":
        s, _, m = x.numpy()
        r = _core.approx_ranks(s, m, t, method).astype(x.dtype)
    else:
        import torch

        from ._op import ranks

        xt = as_tensors(x)
        with torch.no_grad():
            r = ranks(xt.scores, xt.mask, t, method, True, validate).numpy().astype(x.dtype)
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
    weights: Optional[np.ndarray] = ...,
    method: str = ...,
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
    weights: Union[torch.Tensor, np.ndarray, None] = ...,
    method: str = ...,
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
    weights: Any = None,
    method: str = "auto",
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """ApproxNDCG: `1 - sum_i g(y_i) / log2(1 + r_i) / IDCG` per list, `g(y) = 2^y - 1`
    (`y` when `scale_gains=False`), targets below 0 counting as 0, IDCG the exact ideal DCG
    (with per-item `weights`, `g(y_i) w_i` everywhere, the IDCG that of the weighted gains).

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        targets: graded relevance of the same shape (at most the gain cap, 1000, on real
            items when `scale_gains`).
        temperature: `T > 0` of the approximate ranks.
        scale_gains: `2^y - 1` gains (True) or linear gains `y`.
        mask: `[B, N]` bool, True = real item; padded items change nothing.
        reduction: "mean" over the lists that count (those with a relevant item and at
            least 2 real items; 0.0 if none), "sum", or "none" (`[B]`, a scalar for `[N]`).
        weights: None, `[B, N]` per-item weights (each gain times its weight, the IDCG that of
            the weighted gains: Rax's `ndcg_metric(weights=)`) or `[B]` per-list weights (a
            weighted mean over the lists); finite and >= 0. See the package docstring.
        method: "auto" (fast summation for lists of at least `FAST_MIN_N` real items, the pair
            sum below), "fast" or "exact" (see the package docstring for the error bound).
        backend: "auto" (Rust for numpy and CPU tensors, torch-native otherwise), "rust" or "torch".
        validate: check for NaN/inf on the torch-native path (inside the op: it syncs a CUDA
            device once; the Rust path always checks).

    Returns:
        The loss in the dtype of `scores`: a tensor for a tensor, numpy for numpy.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.approx_ndcg_loss(s, y, reduction="none").round(4)
        array([0.2068, 0.3829])
        >>> import torch
        >>> st = torch.tensor(s, requires_grad=True)
        >>> rankgrad.approx_ndcg_loss(st, torch.tensor(y), temperature=0.5).backward()
        >>> st.grad.shape
        torch.Size([2, 3])
        >>> w = np.array([[1.0, 1.0, 3.0], [2.0, 1.0, 1.0]])  # per-item weights
        >>> rankgrad.approx_ndcg_loss(s, y, weights=w, reduction="none").round(4)
        array([0.182 , 0.3829])
    """
    return _loss(
        "ndcg",
        scores,
        targets,
        mask,
        temperature,
        reduction,
        method,
        backend,
        validate,
        weights,
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
    weights: Optional[np.ndarray] = ...,
    method: str = ...,
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
    weights: Union[torch.Tensor, np.ndarray, None] = ...,
    method: str = ...,
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
    weights: Any = None,
    method: str = "auto",
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """ApproxMRR: `1 - max_i min(max(y_i, 0), 1) / r_i` per list (`1 - max_i w_i min(max(y_i, 0), 1)
    / r_i` with per-item weights).

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        targets: relevance of the same shape (above 0 = relevant, clipped to [0, 1]).
        temperature: `T > 0` of the approximate ranks.
        mask: `[B, N]` bool, True = real item; padded items change nothing.
        reduction: "mean" over the lists with a relevant item and at least 2 real items
            (0.0 if none), "sum", or "none" (`[B]`, a scalar for `[N]`).
        weights: None, `[B, N]` per-item weights (the value is `max_i w_i rel_i / r_i`,
            unnormalised: Rax's `mrr_metric` has no weights) or `[B]` per-list weights;
            finite and >= 0. See the package docstring.
        method: "auto", "fast" or "exact" (see `approx_ranks`).
        backend: "auto", "rust" or "torch" (see `approx_ndcg_loss`).
        validate: check for NaN/inf on the torch-native path.

    Returns:
        The loss in the dtype of `scores`: a tensor for a tensor, numpy for numpy.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.approx_mrr_loss(s, y, reduction="none").round(4)
        array([0.311, 0.518])
    """
    return _loss("mrr", scores, targets, mask, temperature, reduction, method, backend, validate, weights)


@overload
def approx_rank_mse_loss(
    scores: np.ndarray,
    targets: np.ndarray,
    temperature: float = ...,
    discount: Optional[str] = ...,
    mask: Optional[np.ndarray] = ...,
    reduction: str = ...,
    *,
    weights: Optional[np.ndarray] = ...,
    method: str = ...,
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
    weights: Union[torch.Tensor, np.ndarray, None] = ...,
    method: str = ...,
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
    weights: Any = None,
    method: str = "auto",
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """ApproxRankMSE: per list, `mean_i w_i (r_i - t_i)^2` over the real items, `t_i` the
    1-based rank by targets descending (ties in input order), `w_i` the discount (times the
    item's weight with per-item `weights`).

    Args:
        scores: `[B, N]` or `[N]` float tensor or array.
        targets: any real numbers of the same shape (e.g. teacher scores).
        temperature: `T > 0` of the approximate ranks.
        discount: `w_i` = 1 (None), `1/log2(t_i + 1)` ("log2") or `1/t_i` ("reciprocal").
        mask: `[B, N]` bool, True = real item; padded items change nothing.
        reduction: "mean" over the lists with at least 2 real items (0.0 if none), "sum",
            or "none" (`[B]`, a scalar for `[N]`).
        weights: None, `[B, N]` per-item weights (each term times its weight, still divided by
            the number of real items, as Rax's pointwise losses) or `[B]` per-list weights;
            finite and >= 0. See the package docstring.
        method: "auto", "fast" or "exact" (see `approx_ranks`).
        backend: "auto", "rust" or "torch" (see `approx_ndcg_loss`).
        validate: check for NaN/inf on the torch-native path.

    Returns:
        The loss in the dtype of `scores`: a tensor for a tensor, numpy for numpy.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.approx_rank_mse_loss(s, y, reduction="none").round(4)
        array([0.3973, 0.7203])
    """
    return _loss(
        "rank_mse",
        scores,
        targets,
        mask,
        temperature,
        reduction,
        method,
        backend,
        validate,
        weights,
        discount=check_discount(discount),
    )
