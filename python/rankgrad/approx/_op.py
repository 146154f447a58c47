"""The approximate-rank family's custom ops (the pattern of `rankgrad._torch_ops`):

- `rankgrad::approx_loss` (`OP`, a LossOp): per-list losses, counts and d losses / d s in one
  pass, Rust on CPU, the torch twin (`_native.loss`) elsewhere; its Hessian-vector product
  `rankgrad::approx_loss_hvp` (Rust on CPU, `_native.hvp` elsewhere) makes second derivatives
  exact, a third raises.
- the ranks themselves, for `approx_ranks`: `rankgrad::approx_ranks` (r),
  `rankgrad::approx_ranks_backward` (`J^T c`) and `rankgrad::approx_ranks_double_backward`
  (d<v, J^T c>/ds), chained by the autograd Functions `Ranks` and `RanksBackward`.

Every op takes the summation `method` ("auto", "fast", "exact") and a `native` flag (the torch
twin on CPU too, for `backend="torch"`).
"""

# No `from __future__ import annotations`: torch infers the ranks ops' schemas from real
# annotation objects.
from typing import Any, Optional, Tuple

import torch

from .. import _core
from .._inputs import check_finite
from .._torch_ops import LossOp, derivative_error, entry, np_in, rows_op, tangent, use_native
from . import _native, _rust_hvp, _rust_loss

OP = LossOp(
    "approx_loss",
    "float temperature, str kind, bool scale_gains, str discount, str method",
    rust=_rust_loss,
    native=_native.loss,
    check=_native.check_targets,
    hvp=(_rust_hvp, _native.hvp),
)


# ---------------------------------------------------------------- the ranks ops
def _like_scores(s, *args):  # type: ignore[no-untyped-def]
    return torch.empty_like(s)


def _approx_ranks(
    s: torch.Tensor, m: Optional[torch.Tensor], temperature: float, method: str, native: bool, validate: bool
) -> torch.Tensor:
    """Approximate ranks `[B, N]`, 0 at padded positions."""
    if not use_native(s, native):
        return torch.from_numpy(_core.approx_ranks(np_in(s), np_in(m), temperature, method))
    if validate:  # the Rust kernel always checks; here it may cost a device sync
        check_finite(s, m, "scores")
    return _native.ranks(s, m, temperature, method)


def _approx_ranks_backward(
    s: torch.Tensor,
    m: Optional[torch.Tensor],
    temperature: float,
    grad_ranks: torch.Tensor,
    method: str,
    native: bool,
) -> torch.Tensor:
    """`J^T grad_ranks` `[B, N]` (0 at padded positions)."""
    if not use_native(s, native):
        g = np_in(grad_ranks.to(s.dtype))
        return torch.from_numpy(_core.approx_ranks_backward(np_in(s), np_in(m), temperature, g, method))
    return _native.vjp(s, m, temperature, grad_ranks, method)


def _approx_ranks_double_backward(
    s: torch.Tensor,
    m: Optional[torch.Tensor],
    temperature: float,
    grad_ranks: torch.Tensor,
    v: torch.Tensor,
    method: str,
    native: bool,
) -> torch.Tensor:
    """d<v, J^T grad_ranks>/ds `[B, N]` (0 at padded positions)."""
    if not use_native(s, native):
        c, vv = np_in(grad_ranks.to(s.dtype)), np_in(v.to(s.dtype))
        return torch.from_numpy(
            _core.approx_ranks_double_backward(np_in(s), np_in(m), temperature, c, vv, method)
        )
    return _native.vjp_grad(s, m, temperature, grad_ranks, v, method)


RANKS = rows_op("approx_ranks", _approx_ranks, _like_scores)
RANKS_BACKWARD = rows_op("approx_ranks_backward", _approx_ranks_backward, _like_scores)
RANKS_DOUBLE_BACKWARD = rows_op("approx_ranks_double_backward", _approx_ranks_double_backward, _like_scores)


class Ranks(torch.autograd.Function):
    """r(s); backward `J^T g` through `RanksBackward`, itself differentiable."""

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        s: torch.Tensor, m: Optional[torch.Tensor], t: float, method: str, native: bool, validate: bool
    ) -> torch.Tensor:
        return RANKS._opoverload(s, m, t, method, native, validate)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        s, m, ctx.t, ctx.method, ctx.native, _ = inputs
        ctx.save_for_backward(s, m)
        ctx.save_for_forward(s, m)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Tuple[Any, ...]:
        s, m = ctx.saved_tensors
        return RanksBackward.apply(s, m, ctx.t, g, ctx.method, ctx.native), None, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, ds: Optional[torch.Tensor], *_: Any) -> torch.Tensor:
        s, m = ctx.saved_tensors  # J ds = J^T ds: J is symmetric
        return RanksBackward.apply(s, m, ctx.t, tangent(ds, s), ctx.method, ctx.native)


class RanksBackward(torch.autograd.Function):
    """`J^T c`; its gradient: with respect to s `approx_ranks_double_backward`, with respect
    to c `J v` (= `J^T v`, J is symmetric). A third derivative raises a RuntimeError."""

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        s: torch.Tensor, m: Optional[torch.Tensor], t: float, c: torch.Tensor, method: str, native: bool
    ) -> torch.Tensor:
        return RANKS_BACKWARD._opoverload(s, m, t, c, method, native)

    @staticmethod
    def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
        s, m, ctx.t, c, ctx.method, ctx.native = inputs
        ctx.save_for_backward(s, m, c)
        ctx.save_for_forward(s, m, c)

    @staticmethod
    def backward(ctx: Any, v: torch.Tensor) -> Tuple[Any, ...]:
        s, m, c = ctx.saved_tensors
        t, method, native = ctx.t, ctx.method, ctx.native
        ds = RANKS_DOUBLE_BACKWARD(s, m, t, c, v, method, native) if ctx.needs_input_grad[0] else None
        dc = RANKS_BACKWARD(s, m, t, v, method, native) if ctx.needs_input_grad[3] else None
        return ds, None, None, dc, None, None

    @staticmethod
    def jvp(ctx: Any, ds: Any, _dm: Any, _dt: Any, dc: Any, *_: Any) -> torch.Tensor:
        s, m, c = ctx.saved_tensors  # d(J^T c)/ds is the Hessian of <c, r(s)>: symmetric
        t, method, native = ctx.t, ctx.method, ctx.native
        return RANKS_DOUBLE_BACKWARD(s, m, t, c, tangent(ds, s), method, native) + RANKS_BACKWARD(
            s, m, t, tangent(dc, s), method, native
        )


# The same formulas on the ops, for torch.compile and callers of torch.ops.rankgrad.* (opcheck).
RANKS.register_autograd(Ranks.backward, setup_context=Ranks.setup_context)
RANKS_BACKWARD.register_autograd(RanksBackward.backward, setup_context=RanksBackward.setup_context)


def _no_third_derivative(ctx: Any, v: torch.Tensor) -> Tuple[Any, ...]:
    raise derivative_error("approx_ranks", "third")


RANKS_DOUBLE_BACKWARD.register_autograd(_no_third_derivative)


def ranks(
    s: torch.Tensor, m: Optional[torch.Tensor], t: float, method: str, native: bool, validate: bool
) -> torch.Tensor:
    """Differentiable (twice) approximate ranks: the op under torch.compile, the Function otherwise."""
    return entry(Ranks, RANKS)(s, m, t, method, native, validate)
