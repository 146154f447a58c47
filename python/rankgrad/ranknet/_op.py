"""`rankgrad::ranknet_loss` (and `rankgrad::ranknet_loss_hvp`): the RankNet kernels as a
`LossOp` (`rankgrad._torch_ops`): Rust on CPU, the torch twin (`_native`) elsewhere, exact
second derivatives through the closed-form Hessian-vector product (torch ops on every
device), a third derivative raises."""

from __future__ import annotations

from .._torch_ops import LossOp
from . import _native, _rust

OP = LossOp(
    "ranknet_loss",
    "float sigma",
    rust=_rust,
    native=_native.ranknet,
    hvp=(None, _native.ranknet_hvp),
)
