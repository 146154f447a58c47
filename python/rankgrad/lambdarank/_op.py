"""`rankgrad::lambdarank_loss`: the LambdaRank loss kernel as a `LossOp` (`rankgrad._torch_ops`):
Rust on CPU, the torch twin (`_native`) elsewhere. Second derivatives raise a RuntimeError:
delta and the norm factor are held constant by definition, so the loss's Hessian is not
LambdaRank's hessian (`lambdarank_gradients` gives that)."""

from __future__ import annotations

from .._torch_ops import LossOp
from . import _native, _rust

OP = LossOp(
    "lambdarank_loss",
    "float sigma, int? k, bool norm, float[]? gain, str metric",
    rust=_rust,
    native=_native.lambdarank,
    check=_native.check_targets,
)
