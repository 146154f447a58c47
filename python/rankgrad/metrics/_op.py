"""`rankgrad::ranking_metric`: the exact metrics (NDCG, MRR, AP, recall, precision) as a rows op
(`rankgrad._torch_ops`): Rust on CPU, the torch twin (`_native`) elsewhere or with
`native=True`, a fake (meta) implementation, so the metrics work on meta tensors and inside
torch.compile. Not differentiable (scores enter detached)."""

# No `from __future__ import annotations`: torch infers the op's schema from real annotations.
from typing import Optional

import torch

from .. import _core
from .._inputs import check_finite, check_gain_range
from .._torch_ops import np_in, rows_op, use_native, wide_dtype
from . import _native


def _metric(
    s: torch.Tensor,
    y: torch.Tensor,
    m: Optional[torch.Tensor],
    kind: str,
    k: Optional[int],
    scale_gains: bool,
    native: bool,
    validate: bool,
) -> torch.Tensor:
    """Per-list values `[B]`, float64 (float32 on MPS)."""
    if not use_native(s, native):
        values, _ = _core.ranking_metric(kind, np_in(s), np_in(y), np_in(m), k, scale_gains)
        return torch.from_numpy(values)
    if validate:  # the Rust kernels always check; here it may cost a device sync
        check_finite(s, m, "scores")
        check_finite(y, m, "targets")
        if kind == "ndcg" and scale_gains:
            check_gain_range(y, m)
    return _native.metric(kind, s, y, m, k, scale_gains)


def _fake(s, y, m, kind, k, scale_gains, native, validate):  # type: ignore[no-untyped-def]
    return s.new_empty(s.shape[0], dtype=wide_dtype(s.device))


OP = rows_op("ranking_metric", _metric, _fake)
