"""`rankgrad::lambda_loss`: the LambdaLoss kernel as a `LossOp` (`rankgrad._torch_ops`): Rust on
CPU, the torch twin (`_native`) elsewhere. Second derivatives raise a RuntimeError: the pair
weights are held constant by definition and no Hessian is implemented."""

from __future__ import annotations

from .._torch_ops import LossOp
from . import _native, _rust

OP = LossOp(
    "lambda_loss",
    "float sigma, str weighting, int? k, float mu, bool scale_gains",
    rust=_rust,
    native=_native.lambda_loss,
    check=_native.check_gains,
)
