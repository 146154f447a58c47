"""The one op pattern of rankgrad's torch layer (imported only once torch is in use).

Every kernel is a ``torch.library`` custom op in the ``rankgrad`` namespace whose tensor
arguments and outputs all lead with the list dimension ``B`` ("rows" ops), with:

- one implementation that sends CPU tensors to the Rust kernel (``_core``) unless its ``native``
  argument is true, and every other device to the family's torch twin (``<family>/_native.py``);
- a fake (meta) implementation, so meta tensors and ``torch.compile`` (also ``dynamic=True``) see
  the shapes without running a kernel;
- one vmap rule (``register_rows_vmap``): the vmapped dimension folds into ``B``, one kernel call.

Differentiable losses use ``LossOp``: the op returns ``(losses [B], valid [B], grad [B, N])``, the
gradient computed in the same pass (its closed form), and autograd multiplies it by the incoming
gradient. Its derivative is the family's Hessian-vector product op (``rankgrad::<name>_hvp``)
where the family has one (second derivatives exact, a third raises), else a clear RuntimeError
(``derivative_error``). Autograd is an ``autograd.Function`` (``setup_context``, ``jvp``,
``generate_vmap_rule``) that the public functions call eagerly and under ``torch.func``; the same
backward is registered on the op itself, which ``torch.compile`` calls (``entry``) and
``torch.library.opcheck`` checks.

A family's ``_op.py`` only wires its kernels into these; ``rankgrad._ops`` imports every one of
them, which registers all ``torch.ops.rankgrad.*`` at once.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from ._inputs import check_finite, check_weights

Kernel = Callable[..., Any]


# ---------------------------------------------------------------- tensors <-> Rust
def np_in(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """A C-contiguous numpy view (or copy) of a CPU tensor argument; None stays None."""
    return None if t is None else t.detach().contiguous().numpy()


def t_out(a: Optional[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    """A kernel's numpy result as a tensor (an empty one for None)."""
    return like.new_empty(0) if a is None else torch.from_numpy(a)


def use_native(s: torch.Tensor, native: bool) -> bool:
    """The device rule of every op: the Rust kernel for CPU tensors unless `native`."""
    return native or s.device.type != "cpu"


def wide_dtype(device: torch.device) -> torch.dtype:
    """The accumulator dtype of the torch twins: float64 (float32 on MPS, which has none)."""
    return torch.float32 if device.type == "mps" else torch.float64


def chunk_rows(b: int, n: int, device: Any = None, per_row: Optional[int] = None) -> int:
    """Rows per chunk for a torch-native pair loop: one `[B, chunk, N]` temporary (or
    `per_row` elements a row) stays near a fixed element budget, larger on CUDA."""
    budget = (1 << 26) if getattr(device, "type", "cpu") == "cuda" else (1 << 22)
    return max(1, min(max(n, 1), budget // max(1, per_row if per_row is not None else b * n)))


# ---------------------------------------------------------------- rows ops and their vmap rule
def _flatten(x: Any, d: Optional[int], v: int) -> Any:
    """`[V, B, ...]` with the vmapped dim `d` moved first (broadcast when unbatched), as `[V*B, ...]`."""
    if not isinstance(x, torch.Tensor):
        return x
    x = x.movedim(d, 0) if d is not None else x.expand(v, *x.shape)
    return x.reshape(v * x.shape[1], *x.shape[2:])


def register_rows_vmap(op: Any) -> None:
    """The vmap rule of a rows op: rows are independent, so the vmapped dimension folds into
    `B` (one kernel call)."""

    def rule(info: Any, in_dims: tuple, *args: Any) -> tuple:
        v = info.batch_size
        out = op(*[_flatten(a, d, v) for a, d in zip(args, in_dims)])

        def unflat(t: torch.Tensor) -> torch.Tensor:  # an empty placeholder becomes [V, 0]
            return t.reshape(v, t.shape[0] // v if v else 0, *t.shape[1:])

        if isinstance(out, tuple):
            return tuple(unflat(o) for o in out), tuple(0 for _ in out)
        return unflat(out), 0

    torch.library.register_vmap(op, rule)


def rows_op(name: str, fn: Kernel, fake: Kernel, schema: Optional[str] = None) -> Any:
    """`rankgrad::<name>` from `fn` (its schema inferred from the annotations, or `schema`), with
    its fake implementation and the rows vmap rule."""
    op = torch.library.custom_op(f"rankgrad::{name}", fn, mutates_args=(), schema=schema)
    op.register_fake(fake)
    register_rows_vmap(op)
    return op


# ---------------------------------------------------------------- context
def entry(fn: Any, op: Any) -> Any:
    """The op itself (its registered autograd) while torch.compile traces: Dynamo cannot trace
    a Function with a custom jvp. Otherwise the Function: torch.func supports only those."""
    return op if torch.compiler.is_compiling() else fn.apply


def needs_grad(s: torch.Tensor) -> bool:
    """Whether a fused kernel should also return d losses / d s: reverse mode (requires_grad,
    also under torch.func.grad), or forward mode (torch.func.jvp/jacfwd, forward_ad duals)."""
    if not torch.is_grad_enabled():
        return False
    if s.requires_grad or torch.compiler.is_compiling():
        return s.requires_grad
    return torch._C._functorch.is_functorch_wrapped_tensor(s) or (
        torch.autograd.forward_ad.unpack_dual(s).tangent is not None
    )


def checkable(t: torch.Tensor) -> bool:
    """Whether a torch composite may read values for its checks: not while torch.compile traces,
    on meta tensors or under torch.func transforms, where it would break the graph (the ops
    check inside their kernels instead)."""
    return not (
        torch.compiler.is_compiling()
        or t.device.type == "meta"
        or torch._C._functorch.is_functorch_wrapped_tensor(t)
    )


def derivative_error(name: str, order: str = "second") -> RuntimeError:
    """The one message of the derivative guard: `order` derivatives of rankgrad.<name> do not exist."""
    if order == "second":
        return RuntimeError(
            f"rankgrad.{name}: second derivatives are not available (its pair weights are held "
            "constant by definition, so it has no honest Hessian): take first-order gradients only "
            "(no create_graph=True backward through it, no hessian)"
        )
    return RuntimeError(
        f"rankgrad.{name} has no third derivative: third derivatives are not available (its second "
        "derivatives are exact)"
    )


def tangent(x: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A forward-mode tangent, zeros when absent."""
    return torch.zeros_like(like) if x is None else x


# ---------------------------------------------------------------- fused loss ops
class LossOp:
    """`rankgrad::<name>(s, y, m, w, <options>, native, validate, need_grad)
    -> (losses [B], valid [B] bool, grad [B, N] or empty)` with autograd, and with `hvp`
    also `rankgrad::<name>_hvp(s, y, m, w, <options>, native, v) -> [B, N]`. `w` is SPEC 13's
    per-item weights `[B, N]` (or None), in the dtype of `s`, never differentiated: finite and
    >= 0 on real items (the Rust kernels always check, the torch path behind `validate`).

    Args:
        name: the public function's name (`ranknet_loss`), also the op's.
        options: the schema of the options, e.g. `"float sigma, int? k"`; the first one is the
            temperature or sigma.
        rust: `rust(s, y, m, w, *options, need_grad)` on numpy arrays -> `(losses, valid, grad or None)`.
        native: `native(s, y, m, w, *options, need_grad)` on tensors, without autograd -> the same.
        check: extra value checks of the torch path beside NaN/inf (e.g. the gain cap), run when
            `validate` is true: `check(s, y, m, w, *options)`.
        hvp: `(rust, native)`, each `(s, y, m, w, *options, v)` -> per list the Hessian of its
            loss times `v_b` `[B, N]` (rust on numpy arrays, None to use native on CPU too).
    """

    def __init__(
        self,
        name: str,
        options: str,
        *,
        rust: Kernel,
        native: Kernel,
        check: Optional[Kernel] = None,
        hvp: Optional[Tuple[Optional[Kernel], Kernel]] = None,
    ) -> None:
        self.name = name
        head = "Tensor s, Tensor y, Tensor? m, Tensor? w, " + options
        schema = f"({head}, bool native, bool validate, bool need_grad) -> (Tensor, Tensor, Tensor)"

        def impl(s, y, m, w, *rest):  # type: ignore[no-untyped-def]
            *opts, native_, validate, need_grad = rest
            if not use_native(s, native_):
                losses, valid, grad = rust(np_in(s), np_in(y), np_in(m), np_in(w), *opts, need_grad)
                return torch.from_numpy(losses), torch.from_numpy(valid), t_out(grad, s)
            if validate:  # the Rust kernels always check; here it may cost a device sync
                check_finite(s, m, "scores")
                check_finite(y, m, "targets")
                if w is not None:
                    check_weights(w, m)
                if check is not None:
                    check(s, y, m, w, *opts)
            with torch.no_grad():
                losses, valid, grad = native(s.detach(), y, m, w, *opts, need_grad)
            return losses, valid, grad if need_grad and grad is not None else s.new_empty(0)

        def fake(s, y, m, w, *rest):  # type: ignore[no-untyped-def]
            b = s.shape[0]
            grad = torch.empty_like(s) if rest[-1] else s.new_empty(0)
            return s.new_empty(b), s.new_empty(b, dtype=torch.bool), grad

        self.op = rows_op(name, impl, fake, schema)
        self.hvp_op = None
        if hvp is not None:
            hvp_rust, hvp_native = hvp

            def hvp_impl(s, y, m, w, *rest):  # type: ignore[no-untyped-def]
                *opts, native_, v = rest
                v = v.to(s.dtype)
                if hvp_rust is not None and not use_native(s, native_):
                    return torch.from_numpy(hvp_rust(np_in(s), np_in(y), np_in(m), np_in(w), *opts, np_in(v)))
                with torch.no_grad():
                    return hvp_native(s.detach(), y, m, w, *opts, v)

            def hvp_fake(s, *rest):  # type: ignore[no-untyped-def]
                return torch.empty_like(s)

            hvp_schema = f"({head}, bool native, Tensor v) -> Tensor"
            self.hvp_op = rows_op(f"{name}_hvp", hvp_impl, hvp_fake, hvp_schema)
        self.function = _loss_function(self)
        self.op.register_autograd(self.function.backward, setup_context=self.function.setup_context)
        if self.hvp_op is not None:

            def no_third(ctx: Any, grad: torch.Tensor) -> Any:
                raise derivative_error(name, "third")

            self.hvp_op.register_autograd(no_third, setup_context=lambda ctx, inputs, output: None)

    def __call__(
        self,
        s: torch.Tensor,
        y: torch.Tensor,
        m: Optional[torch.Tensor],
        w: Optional[torch.Tensor],
        options: Sequence[Any],
        native: bool,
        validate: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """`(losses [B], valid [B])`, differentiable in `s` (the Function eagerly and under
        torch.func, the op under torch.compile)."""
        losses, valid, _ = entry(self.function, self.op)(
            s, y, m, w, *options, native, validate, needs_grad(s)
        )
        return losses, valid


def _loss_function(spec: LossOp) -> type:
    """The autograd.Function of a LossOp: forward the op; backward `grad * grad_losses`
    (`_grad_function`), differentiable again through the family's HVP op (or raising)."""
    overload = spec.op._opoverload  # what dynamo can trace (a CustomOpDef it cannot wrap)
    grad_fn = _grad_function(spec)
    name = spec.name

    class LossFunction(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*args: Any) -> Any:
            return overload(*args)

        @staticmethod
        def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
            s, y, m, w, *rest = inputs
            ctx.options, ctx.native, ctx.need_grad = tuple(rest[:-3]), rest[-3], rest[-1]
            ctx.n_inputs = len(inputs)
            ctx.save_for_backward(s, y, m, w, output[2])
            ctx.save_for_forward(output[2])
            ctx.mark_non_differentiable(output[1], output[2])

        @staticmethod
        def jvp(ctx: Any, ds: Any, *_: Any) -> Any:
            (g,) = ctx.saved_tensors  # d losses = sum_n G ds
            return (g * ds).sum(-1) if ds is not None else g.new_zeros(g.shape[:1]), None, None

        @staticmethod
        def backward(ctx: Any, grad_losses: torch.Tensor, _valid: Any = None, _grad: Any = None) -> Any:
            s, y, m, w, g = ctx.saved_tensors
            if not ctx.need_grad:
                raise RuntimeError(f"rankgrad.{name}: the forward op was called with need_grad=False")
            ds = grad_fn.apply(s, y, m, w, g, grad_losses, ctx.native, *ctx.options)
            return (ds,) + (None,) * (ctx.n_inputs - 1)

    LossFunction.__name__ = LossFunction.__qualname__ = f"{name}_function"
    return LossFunction


def _grad_function(spec: LossOp) -> type:
    """`g * grad_losses[:, None]` (`g = d losses / d s` from the fused kernel), which keeps `s`
    among its inputs so that differentiating it again reaches `backward`: the HVP op (exact
    second derivatives) or `derivative_error`, never silent zeros."""
    hvp_op = spec.hvp_op
    hvp_fn = None if hvp_op is None else _hvp_function(spec)
    name = spec.name

    class GradFunction(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(s, y, m, w, g, grad_losses, native, *options):  # type: ignore[no-untyped-def]
            return g * grad_losses[:, None].to(g.dtype)

        @staticmethod
        def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
            s, y, m, w, g, gl, native, *options = inputs
            ctx.native, ctx.options = native, tuple(options)
            ctx.n_inputs = len(inputs)
            ctx.save_for_backward(s, y, m, w, g, gl)
            ctx.save_for_forward(s, y, m, w, g, gl)

        @staticmethod
        def backward(ctx: Any, v: torch.Tensor) -> Any:
            if hvp_fn is None:
                raise derivative_error(name)
            s, y, m, w, g, gl = ctx.saved_tensors
            ds = hvp_fn.apply(s, y, m, w, ctx.native, v * gl[:, None].to(v.dtype), *ctx.options)
            return (ds, None, None, None, None, (v * g).sum(-1).to(gl.dtype)) + (None,) * (ctx.n_inputs - 6)

        @staticmethod
        def jvp(ctx: Any, ds: Any, _dy: Any, _dm: Any, _dw: Any, _dg: Any, dgl: Any, *_: Any) -> Any:
            s, y, m, w, g, gl = ctx.saved_tensors  # d(G gl) = H (ds gl) + G dgl
            if ds is None:
                out = torch.zeros_like(g)
            elif hvp_fn is None:
                raise derivative_error(name)
            else:
                out = hvp_fn.apply(s, y, m, w, ctx.native, ds * gl[:, None].to(ds.dtype), *ctx.options)
            return out if dgl is None else out + g * dgl[:, None].to(g.dtype)

    GradFunction.__name__ = GradFunction.__qualname__ = f"{name}_grad_function"
    return GradFunction


def _hvp_function(spec: LossOp) -> type:
    """The HVP op with a backward that raises (a third derivative); works under torch.func."""
    overload = spec.hvp_op._opoverload  # type: ignore[union-attr]
    name = spec.name

    class HvpFunction(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(s, y, m, w, native, v, *options):  # type: ignore[no-untyped-def]
            return overload(s, y, m, w, *options, native, v)

        @staticmethod
        def setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Any) -> None:
            pass

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> Any:
            raise derivative_error(name, "third")

        @staticmethod
        def jvp(ctx: Any, *_: Any) -> Any:
            raise derivative_error(name, "third")

    HvpFunction.__name__ = HvpFunction.__qualname__ = f"{name}_hvp_function"
    return HvpFunction
