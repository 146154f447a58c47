"""Shared plumbing for rankgrad's `torch.library` custom ops (the pattern approx.py
describes): numpy views of op arguments for the Rust kernels, and one vmap
rule for every op whose tensor arguments and outputs all lead with the list dimension `B`, the
entry point (`entry`: the op under torch.compile, the autograd.Function otherwise) and the
context tests (`needs_grad`, `checkable`).

Imported only on first use of a torch name (it imports torch).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch


def np_in(t: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """A C-contiguous numpy view (or copy) of a CPU tensor argument, None stays None."""
    return None if t is None else t.detach().contiguous().numpy()


def t_out(a: Optional[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    """A kernel's numpy result as a tensor (an empty one for None)."""
    return like.new_empty(0) if a is None else torch.from_numpy(a)


def _flatten(x: Any, d: Optional[int], v: int) -> Any:
    """`[V, B, ...]` with the vmapped dim `d` moved first (broadcast when unbatched), as `[V*B, ...]`."""
    if not isinstance(x, torch.Tensor):
        return x
    x = x.movedim(d, 0) if d is not None else x.expand(v, *x.shape)
    return x.reshape(v * x.shape[1], *x.shape[2:])


def register_rows_vmap(op: Any) -> None:
    """vmap rule for a "rows" op: every tensor argument and output is `[B, ...]` and rows
    are independent, so the vmapped dimension folds into `B` (one kernel call)."""

    def rule(info: Any, in_dims: tuple, *args: Any) -> tuple:
        v = info.batch_size
        flat = [_flatten(a, d, v) for a, d in zip(args, in_dims)]
        out = op(*flat)

        def unflat(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(v, t.shape[0] // v if v else 0, *t.shape[1:]) if t.dim() else t

        if isinstance(out, tuple):
            return tuple(unflat(o) for o in out), tuple(0 for _ in out)
        return unflat(out), 0

    if hasattr(torch.library, "register_vmap"):  # older torch: everything but torch.func.vmap works
        torch.library.register_vmap(op, rule)


def custom_op_rows(
    name: str, fake: Callable[..., Any], device_types: Any = None
) -> Callable[[Callable], Any]:
    """`torch.library.custom_op("rankgrad::<name>")` with its fake (meta) implementation and
    the rows vmap rule registered: decorate the kernel with it."""

    def wrap(fn: Callable) -> Any:
        op = torch.library.custom_op(f"rankgrad::{name}", mutates_args=(), device_types=device_types)(fn)
        op.register_fake(fake)
        register_rows_vmap(op)
        return op

    return wrap


def entry(fn: Any, op: Any) -> Any:
    """The op itself (its registered autograd) while torch.compile traces: Dynamo cannot trace
    a Function with a custom jvp. Otherwise the Function: torch.func supports only those."""
    return op if torch.compiler.is_compiling() else fn.apply


def needs_grad(s: torch.Tensor) -> bool:
    """Whether the fused kernel should also return d losses / d s: reverse mode (requires_grad,
    also under torch.func.grad), or forward mode (torch.func.jvp/jacfwd, forward_ad duals)."""
    if not torch.is_grad_enabled():
        return False
    if s.requires_grad or torch.compiler.is_compiling():
        return s.requires_grad
    return torch._C._functorch.is_functorch_wrapped_tensor(s) or (
        torch.autograd.forward_ad.unpack_dual(s).tangent is not None
    )


def checkable(t: torch.Tensor) -> bool:
    """Value checks read data: skipped while tracing (torch.compile), on meta tensors and under
    torch.func transforms, where they would break the graph (as with validate=False)."""
    return not (
        torch.compiler.is_compiling()
        or t.device.type == "meta"
        or torch._C._functorch.is_functorch_wrapped_tensor(t)
    )
