"""Exact ranking metrics, per list (SPEC sections 5 and 12).

Items are ranked by score descending, ties by input position (a stable sort). With ``p`` the
0-based position and ``k`` the cut-off (``None``: the whole list):

- ``ndcg``: ``DCG@k / IDCG@k`` with ``DCG@k = sum_{p < k} g(y_(p)) / log2(2 + p)``, gain
  ``g(y) = 2^y - 1`` (``scale_gains=True``) or ``y``, targets below 0 counting as 0, and
  ``IDCG@k`` the DCG@k of the ideal order.
- ``mrr``: ``1 / (1 + p)`` for the first item with ``target > 0`` if ``p < k``, else 0.
- ``average_precision``: ``sum_{p < k, rel(p)} hits@(p + 1) / (p + 1)`` divided by ``R``, the
  list's number of relevant items (``target > 0``), as trec_eval's ``map_cut``.
- ``recall``: ``hits@k / R``; ``precision``: ``hits@k / k`` (trec_eval's ``P_k``: divided by
  ``k`` even when the list is shorter; ``k=None``: the list's length).

A list with no relevant item scores 0 (trec_eval's convention). ``k`` is an integer >= 1 of any
size (an integral float is accepted too); beyond the list it means the whole list, except that
precision still divides by ``k``. CPU inputs go to the Rust kernels (O(N log N) per list,
parallel over lists); other devices to the torch twin (``_native``). Tensors go through the
custom op ``rankgrad::ranking_metric`` (``_op``: meta tensors, torch.compile); this package
imports torch only when handed a tensor or ``backend="torch"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, overload

import numpy as np

from .. import _core
from .._inputs import as_tensors, check_backend, check_count, is_tensor, lists, op_count, use_rust

if TYPE_CHECKING:
    import torch

__all__ = ["ndcg", "mrr", "average_precision", "recall", "precision"]


def check_k(k: Any) -> Optional[int]:
    """A metric's cut-off: ``check_count`` (None or an integer >= 1 of any size), and an integral
    float such as ``10.0`` is that integer; else a ValueError/TypeError naming ``k``."""
    if isinstance(k, (float, np.floating)):
        if not float(k).is_integer():
            raise ValueError(f"k must be a positive integer or None, got {k!r}")
        k = int(k)
    return check_count("k", k)


def _float_scores(scores: Any) -> Any:
    """Integer or bool scores rank like their float64 values."""
    if is_tensor(scores):
        if not scores.is_floating_point() and not scores.is_complex():
            import torch

            return scores.to(torch.float64)
    elif isinstance(scores, np.ndarray) and (
        np.issubdtype(scores.dtype, np.integer) or scores.dtype == np.bool_
    ):
        return scores.astype(np.float64)
    return scores


def _metric(kind: str, scores, targets, k, scale_gains, mask, backend, validate):
    k = check_k(k)
    check_backend(backend)
    x = lists(_float_scores(scores), targets, mask, validate=False)
    kk = op_count(k)  # None: the whole list (what a count beyond the list means)
    if x.is_torch:
        from ._op import OP

        values = OP(
            x.scores.detach(),
            x.targets,
            x.mask,
            kind,
            kk,
            bool(scale_gains),
            not use_rust(x, backend),
            validate,
        )
    elif backend != "torch":
        s, y, m = x.numpy()
        values, _ = _core.ranking_metric(kind, s, y, m, kk, bool(scale_gains))
    else:
        import torch

        from ._op import OP

        xt = as_tensors(x)
        with torch.no_grad():
            values = OP(xt.scores, xt.targets, xt.mask, kind, kk, bool(scale_gains), True, validate).numpy()
    if kind == "precision" and k is not None and kk is None:  # hits / k with k beyond int64
        real = x.scores.shape[-1] if x.mask is None else x.mask.sum(-1)
        values = values * real / float(k)
    return x.out(values)


@overload
def ndcg(
    scores: torch.Tensor,
    targets: Any,
    k: Optional[int] = ...,
    scale_gains: bool = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def ndcg(
    scores: np.ndarray,
    targets: Any,
    k: Optional[int] = ...,
    scale_gains: bool = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> np.ndarray: ...
def ndcg(
    scores: Any,
    targets: Any,
    k: Optional[int] = None,
    scale_gains: bool = True,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """NDCG@k per list: ``DCG@k / IDCG@k``, ``DCG@k = sum_{p<k} g(y_(p)) / log2(2 + p)``.

    Ranking by score descending, ties by input position; a list with no relevant item gives 0.
    Not differentiable (see ``approx_ndcg_loss``).

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) tensor or numpy array (integers rank as floats).
        targets: graded relevance, the shape of ``scores``; below 0 counts as 0.
        k: the cut-off, a positive integer (None: the whole list).
        scale_gains: ``g(y) = 2^y - 1`` (targets up to 1000) if True, else ``g(y) = y``.
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        backend: ``"auto"`` (Rust for numpy and CPU tensors, torch elsewhere), ``"rust"`` or
            ``"torch"``.
        validate: NaN/inf and gain-range checks on the torch path (False saves a device sync).

    Returns:
        Per-list values ``[B]`` (a scalar for a 1-D input) in the dtype of ``scores``: a tensor
        on the same device for a tensor in, a numpy array for numpy in.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.ndcg(s, y).round(4)
        array([0.9639, 0.5   ])
    """
    return _metric("ndcg", scores, targets, k, scale_gains, mask, backend, validate)


@overload
def mrr(
    scores: torch.Tensor,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def mrr(
    scores: np.ndarray,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> np.ndarray: ...
def mrr(
    scores: Any,
    targets: Any,
    k: Optional[int] = None,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """MRR@k per list: ``1 / (1 + p)`` for the 0-based position ``p`` of the first item with
    ``target > 0`` when ``p < k``, else 0; ranking by score descending, ties by input position;
    a list with no relevant item gives 0. Not differentiable (see ``approx_mrr_loss``).

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) tensor or numpy array.
        targets: the shape of ``scores``; ``target > 0`` is relevant.
        k: the cut-off, a positive integer (None: the whole list).
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        backend: ``"auto"``, ``"rust"`` or ``"torch"``, as for ``ndcg``.
        validate: NaN/inf checks on the torch path.

    Returns:
        Per-list values ``[B]`` (a scalar for a 1-D input) in the dtype of ``scores``, tensor in
        -> tensor out, numpy in -> numpy out.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.mrr(s, y).round(4)
        array([1.    , 0.3333])
    """
    return _metric("mrr", scores, targets, k, True, mask, backend, validate)


@overload
def average_precision(
    scores: torch.Tensor,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def average_precision(
    scores: np.ndarray,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> np.ndarray: ...
def average_precision(
    scores: Any,
    targets: Any,
    k: Optional[int] = None,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """AP@k per list: ``sum_{p<k, rel(p)} hits@(p + 1) / (p + 1)`` divided by ``R``.

    ``rel(p)``: the item at 0-based position ``p`` has ``target > 0``; ``hits@j``: relevant
    items in the top ``j``; ``R``: relevant items in the whole list, not ``min(R, k)``
    (trec_eval's ``map_cut``; its mean over lists is MAP@k). Ranking by score descending, ties
    by input position; a list with no relevant item gives 0. Not differentiable.

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) tensor or numpy array (integers rank as floats).
        targets: the shape of ``scores``; ``target > 0`` is relevant.
        k: the cut-off, a positive integer (None: the whole list).
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        backend: ``"auto"``, ``"rust"`` or ``"torch"``, as for ``ndcg``.
        validate: NaN/inf checks on the torch path.

    Returns:
        Per-list values ``[B]`` (a scalar for a 1-D input) in the dtype of ``scores``, tensor in
        -> tensor out, numpy in -> numpy out.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.average_precision(s, y).round(4)
        array([0.8333, 0.3333])
    """
    return _metric("average_precision", scores, targets, k, True, mask, backend, validate)


@overload
def recall(
    scores: torch.Tensor,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def recall(
    scores: np.ndarray,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> np.ndarray: ...
def recall(
    scores: Any,
    targets: Any,
    k: Optional[int] = None,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """Recall@k per list: ``hits@k / R``, the share of the list's relevant items
    (``target > 0``) ranked in the top ``k`` (trec_eval's ``recall_k``). Ranking by score
    descending, ties by input position; a list with no relevant item gives 0. Not
    differentiable.

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) tensor or numpy array (integers rank as floats).
        targets: the shape of ``scores``; ``target > 0`` is relevant.
        k: the cut-off, a positive integer (None: the whole list).
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        backend: ``"auto"``, ``"rust"`` or ``"torch"``, as for ``ndcg``.
        validate: NaN/inf checks on the torch path.

    Returns:
        Per-list values ``[B]`` (a scalar for a 1-D input) in the dtype of ``scores``, tensor in
        -> tensor out, numpy in -> numpy out.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.recall(s, y, k=1)
        array([0.5, 0. ])
    """
    return _metric("recall", scores, targets, k, True, mask, backend, validate)


@overload
def precision(
    scores: torch.Tensor,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> torch.Tensor: ...
@overload
def precision(
    scores: np.ndarray,
    targets: Any,
    k: Optional[int] = ...,
    mask: Any = ...,
    *,
    backend: str = ...,
    validate: bool = ...,
) -> np.ndarray: ...
def precision(
    scores: Any,
    targets: Any,
    k: Optional[int] = None,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
) -> Any:
    """Precision@k per list: ``hits@k / k``, relevant items (``target > 0``) in the top ``k``
    over ``k``, even when the list has fewer than ``k`` real items (trec_eval's ``P_k``);
    ``k=None`` divides by the list's number of real items. Ranking by score descending, ties
    by input position; a list with no relevant item gives 0. Not differentiable.

    Args:
        scores: ``[B, N]`` (or ``[N]``, one list) tensor or numpy array (integers rank as floats).
        targets: the shape of ``scores``; ``target > 0`` is relevant.
        k: the cut-off, a positive integer (None: the whole list).
        mask: bool, the shape of ``scores``, True = real item (None: all real).
        backend: ``"auto"``, ``"rust"`` or ``"torch"``, as for ``ndcg``.
        validate: NaN/inf checks on the torch path.

    Returns:
        Per-list values ``[B]`` (a scalar for a 1-D input) in the dtype of ``scores``, tensor in
        -> tensor out, numpy in -> numpy out.

    Example:
        >>> import numpy as np, rankgrad
        >>> s = np.array([[2.0, 1.0, 0.5], [0.1, 0.3, 0.2]])  # scores [B, N]
        >>> y = np.array([[2.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # graded relevance
        >>> rankgrad.precision(s, y, k=2)
        array([0.5, 0. ])
    """
    return _metric("precision", scores, targets, k, True, mask, backend, validate)
