"""Shared autograd plumbing of the pairwise losses' custom ops.

Each forward op (`rankgrad::lambdarank_loss`; `rankgrad::ranknet_loss` too, which adds an
exact second derivative on top in `_ranknet_op`) takes
`(scores, targets, mask, *options, need_grad)` and returns per-list losses `[B]`, whether each
list counts `[B]` and, with `need_grad` (the last option), the per-list gradient
`G = d losses_b / d scores_b` `[B, N]` from the same kernel pass (else an empty placeholder).
The backward is the custom op `rankgrad::list_grad`: `dL/ds = G * grad_losses[:, None]`. It
takes `scores` as an input so that a `create_graph=True` backward records a node depending on
them; differentiating that node (a second derivative) raises a RuntimeError naming the loss,
never silently giving zeros.

`register_autograd` is set on every op (eager autograd, torch.compile, opcheck). The public
functions call the ops through `loss_function(op)`, an `autograd.Function` with
`setup_context` and a generated vmap rule, because the autograd.Function that
`register_autograd` generates does not work under `torch.func.grad` (pytorch#168393).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["list_grad", "forward_vmap", "register_loss_autograd", "loss_function", "loss_jvp"]


@torch.library.custom_op("rankgrad::list_grad", mutates_args=())
def list_grad_op(s: torch.Tensor, grad: torch.Tensor, grad_losses: torch.Tensor, loss: str) -> torch.Tensor:
    """`grad * grad_losses[:, None]`, `[B, N]` (`s` only anchors the autograd node)."""
    return grad * grad_losses[:, None].to(grad.dtype)


@list_grad_op.register_fake
def _(s, grad, grad_losses, loss):
    return torch.empty_like(grad)


def _no_second_derivative(loss: str):
    return RuntimeError(
        f"rankgrad.{loss}: second derivatives are not available (its gradient is a closed-form kernel): "
        "take first-order gradients only (no create_graph=True backward through it, no hessian)."
    )


def _list_grad_setup(ctx, inputs, output):
    ctx.loss = inputs[3]


def _list_grad_backward(ctx, grad_out):
    raise _no_second_derivative(ctx.loss)


list_grad_op.register_autograd(_list_grad_backward, setup_context=_list_grad_setup)


def flatten_batch(x: torch.Tensor, dim: Any, size: int) -> torch.Tensor:
    """`x` with its vmapped dimension `dim` (None: not batched) moved first and merged with
    the list dimension: `[V, B, ...]` -> `[V * B, ...]`."""
    x = x.expand(size, *x.shape) if dim is None else x.movedim(dim, 0)
    return x.reshape(size * x.shape[1], *x.shape[2:])


@torch.library.register_vmap("rankgrad::list_grad")
def _list_grad_vmap(info, in_dims, s, grad, grad_losses, loss):
    v, d_g = info.batch_size, in_dims[1]
    b = grad.shape[0] if d_g is None else grad.movedim(d_g, 0).shape[1]
    s2, g2, l2 = (flatten_batch(x, d, v) for x, d in zip((s, grad, grad_losses), in_dims))
    out = list_grad_op(s2, g2, l2, loss)
    return out.reshape(v, b, *out.shape[1:]), 0


class _ListGrad(torch.autograd.Function):
    """`list_grad_op` whose own backward raises (works under torch.func too)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s, grad, grad_losses, loss):
        return torch.ops.rankgrad.list_grad.default(s, grad, grad_losses, loss)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.loss = inputs[3]

    @staticmethod
    def backward(ctx, grad_out):
        raise _no_second_derivative(ctx.loss)


def list_grad(s: torch.Tensor, grad: torch.Tensor, grad_losses: torch.Tensor, loss: str) -> torch.Tensor:
    return _ListGrad.apply(s, grad, grad_losses, loss)


def forward_vmap(op, info, in_dims, s, y, m, *options):
    """A vmap rule for a loss op: the vmapped dimension is merged into the list dimension."""
    v, d_s = info.batch_size, in_dims[0]
    b = s.shape[0] if d_s is None else s.movedim(d_s, 0).shape[1]
    s2, y2 = flatten_batch(s, d_s, v), flatten_batch(y, in_dims[1], v)
    m2 = None if m is None else flatten_batch(m, in_dims[2], v)
    losses, valid, grad = op(s2, y2, m2, *options)
    if grad.dim() == 2:  # else the empty placeholder of a call without gradient
        return (losses.reshape(v, b), valid.reshape(v, b), grad.reshape(v, b, *grad.shape[1:])), (0, 0, 0)
    return (losses.reshape(v, b), valid.reshape(v, b), grad), (0, 0, None)


def _setup(ctx, inputs, output):
    ctx.n_inputs = len(inputs)
    ctx.need_grad = inputs[-1]
    ctx.save_for_backward(inputs[0], output[2])


def _make_backward(name: str):
    def backward(ctx, grad_losses, _grad_valid=None, _grad_grad=None):
        s, g = ctx.saved_tensors
        if not ctx.need_grad:
            raise RuntimeError(f"rankgrad.{name}: the forward op was called with need_grad=False")
        return (list_grad(s, g, grad_losses, name),) + (None,) * (ctx.n_inputs - 1)

    return backward


def register_loss_autograd(op, name: str) -> None:
    """Autograd and vmap rules of a loss op (see the module docstring)."""
    op.register_autograd(_make_backward(name), setup_context=_setup)

    def vmap_rule(info, in_dims, s, y, m, *options):
        return forward_vmap(op, info, in_dims, s, y, m, *options)

    torch.library.register_vmap(op._qualname if hasattr(op, "_qualname") else op, vmap_rule)


def loss_jvp(ctx, ds, *_):
    """Forward mode of a fused loss op `(losses, valid, G)` (G saved with save_for_forward):
    `d losses = sum_n G ds`."""
    (g,) = ctx.saved_tensors
    return (g * ds).sum(-1) if ds is not None else g.new_zeros(g.shape[:1]), None, None


def loss_function(op, name: str) -> type:
    """The `autograd.Function` the public function calls `op` through (torch.func-safe)."""
    backward = _make_backward(name)
    overload = op._opoverload  # what dynamo can trace (a CustomOpDef it cannot wrap)

    class LossFunction(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(*args):
            return overload(*args)

        @staticmethod
        def setup_context(ctx, inputs, output):
            _setup(ctx, inputs, output)
            ctx.save_for_forward(output[2])
            ctx.mark_non_differentiable(output[1], output[2])

        jvp = staticmethod(loss_jvp)

        @staticmethod
        def backward(ctx, grad_losses, _grad_valid, _grad_grad):
            return backward(ctx, grad_losses)

    LossFunction.__name__ = LossFunction.__qualname__ = f"{name}_function"
    return LossFunction
