"""Exact ranking metrics, per list (SPEC section 5).

Items are ranked by score descending, ties by input position (a stable sort). With ``p`` the
0-based position and ``k`` the cut-off (``None``: the whole list):

- ``ndcg``: ``DCG@k / IDCG@k`` with ``DCG@k = sum_{p < k} g(y_(p)) / log2(2 + p)``, gain
  ``g(y) = 2^y - 1`` (``scale_gains=True``) or ``y``, targets below 0 counting as 0, and
  ``IDCG@k`` the DCG@k of the ideal order.
- ``mrr``: ``1 / (1 + p)`` for the first item with ``target > 0`` if ``p < k``, else 0.

A list with no relevant item scores 0 (trec_eval's convention). CPU inputs go to the Rust
kernels (O(N log N) per list, parallel over lists); other devices to a torch implementation.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np
import torch

from . import _core
from ._inputs import _check_finite, check_backend, lists, use_rust

__all__ = ["ndcg", "mrr"]

# Targets above this make 2^y - 1 gains overflow a float64 sum.
_MAX_GAIN_EXPONENT = 1000.0


def check_k(k: Any) -> Optional[int]:
    """``None`` or a positive integer, else a ValueError/TypeError naming ``k``."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, (numbers.Integral, float, np.floating)):
        raise TypeError(f"k must be a positive integer or None, got {type(k).__name__}")
    if isinstance(k, (float, np.floating)) and not float(k).is_integer():
        raise ValueError(f"k must be a positive integer or None, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be a positive integer or None, got {k!r}")
    return int(k)


def _float_scores(scores: Any) -> Any:
    """Integer or bool scores rank like their float64 values."""
    if isinstance(scores, torch.Tensor) and not torch.is_floating_point(scores) and not scores.is_complex():
        return scores.to(torch.float64)
    if isinstance(scores, np.ndarray) and (
        np.issubdtype(scores.dtype, np.integer) or scores.dtype == np.bool_
    ):
        return scores.astype(np.float64)
    return scores


def _order(s: torch.Tensor, m: Optional[torch.Tensor]) -> torch.Tensor:
    """Positions by score descending, ties by position, padded items last."""
    order = torch.sort(s, dim=1, descending=True, stable=True).indices
    if m is not None:
        real_first = torch.sort(
            m.gather(1, order).to(torch.int8), dim=1, descending=True, stable=True
        ).indices
        order = order.gather(1, real_first)
    return order


def _metric_torch(
    kind: str,
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    k: Optional[int],
    scale_gains: bool,
):
    """``(values [B], valid [B])`` in torch ops (any device)."""
    b, n = s.shape
    work = torch.float32 if s.device.type == "mps" else torch.float64
    if n == 0:
        return torch.zeros(b, dtype=work, device=s.device), torch.zeros(b, dtype=torch.bool, device=s.device)
    kk = n if k is None else min(k, n)
    order = _order(s, m)
    y = y.to(work)
    real = torch.ones_like(s, dtype=torch.bool) if m is None else m
    if kind == "ndcg":
        g = y.clamp(min=0)
        if scale_gains:
            g = torch.exp2(g) - 1
        g = torch.where(real, g, torch.zeros((), dtype=work, device=s.device))
        disc = 1.0 / torch.log2(torch.arange(kk, dtype=work, device=s.device) + 2.0)
        dcg = (g.gather(1, order)[:, :kk] * disc).sum(1)
        idcg = (torch.topk(g, kk, dim=1).values * disc).sum(1)
        valid = (g > 0).any(1)
        values = torch.where(
            valid, dcg / torch.where(valid, idcg, torch.ones_like(idcg)), torch.zeros_like(dcg)
        )
        return values, valid
    rel = ((y > 0) & real).gather(1, order)
    valid = rel.any(1)
    pos = rel.to(torch.int8).argmax(1)  # the first relevant position
    values = torch.where(
        valid & (pos < kk), 1.0 / (pos.to(work) + 1.0), torch.zeros((), dtype=work, device=s.device)
    )
    return values, valid


def _metric(kind: str, scores, targets, k, scale_gains, mask, backend, validate):
    k = check_k(k)
    check_backend(backend)
    x = lists(_float_scores(scores), targets, mask, validate=False)
    rust = use_rust(x, backend)
    if rust:
        s, y, m = x.numpy()
        values, _ = _core.ranking_metric(kind, s, y, m, k, bool(scale_gains))
        if x.is_torch:
            values = torch.from_numpy(values)
        return x.out(values)
    if validate:  # the Rust kernels always check; here it may cost a device sync
        _check_finite(x.scores, x.mask, "scores")
        _check_finite(x.targets, x.mask, "targets")
        if kind == "ndcg" and scale_gains:
            big = x.targets > _MAX_GAIN_EXPONENT
            if x.mask is not None:
                big = big & x.mask
            rows = big.any(-1)
            if bool(rows.any()):
                first = int(rows.nonzero()[0, 0]) if x.is_torch else int(np.flatnonzero(rows)[0])
                raise ValueError(
                    f"targets: a value in list {first} is too large for 2^y - 1 gains (scale_gains=True)"
                )
    if x.is_torch:
        s, y, m = x.scores.detach(), x.targets, x.mask
    else:
        s, y, m = (
            None if a is None else torch.from_numpy(np.ascontiguousarray(a))
            for a in (x.scores, x.targets, x.mask)
        )
    values, _ = _metric_torch(kind, s, y, m, k, bool(scale_gains))
    return x.out(values if x.is_torch else values.numpy())


def ndcg(
    scores: Any,
    targets: Any,
    k: Optional[int] = None,
    scale_gains: bool = True,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
):
    """NDCG@k per list: ``DCG@k / IDCG@k``, ``DCG@k = sum_{p<k} g(y_(p)) / log2(2 + p)``.

    ``g(y) = 2^y - 1`` (``scale_gains``) or ``y``; targets below 0 count as 0; ranking by
    score descending, ties by input position; a list with no relevant item gives 0.
    ``scores``/``targets``/``mask`` ``[B, N]`` (or ``[N]``: a scalar result). Returns ``[B]``
    in the dtype of ``scores`` (torch in, torch out on the same device; numpy in, numpy out).
    Not differentiable (see ``approx_ndcg_loss``).
    """
    return _metric("ndcg", scores, targets, k, scale_gains, mask, backend, validate)


def mrr(
    scores: Any,
    targets: Any,
    k: Optional[int] = None,
    mask: Any = None,
    *,
    backend: str = "auto",
    validate: bool = True,
):
    """MRR@k per list: ``1 / (1 + p)`` for the position ``p`` of the first item with
    ``target > 0`` when ``p < k``, else 0; ranking by score descending, ties by input
    position; a list with no relevant item gives 0. Shapes and types as for ``ndcg``.
    """
    return _metric("mrr", scores, targets, k, True, mask, backend, validate)
