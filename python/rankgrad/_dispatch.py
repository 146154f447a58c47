"""The call path of every padded-batch loss (numpy-only at import; torch is imported when a
tensor, or `backend="torch"`, needs it).

    public function (its family's __init__)   option checks, then `padded_loss(...)`
      -> `_inputs.lists`                        shapes, dtypes, layouts (one rule)
      -> `_inputs.check_scale`                  temperature / sigma for the compute dtype
      numpy, backend "auto"/"rust"            -> the Rust kernel (`_core`), numpy out
      numpy, backend "torch"                  -> the family's op on CPU tensors (native), numpy out
      tensor                                  -> the family's op (`<family>/_op.py`, a LossOp):
                                                 Rust on CPU, its torch twin elsewhere
      -> `_inputs.reduce`                       the reduction, in the input dtype
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Tuple

from ._inputs import (
    as_tensors,
    check_backend,
    check_reduction,
    check_scale,
    lists,
    reduce,
    use_rust,
    weights_of,
)

RustLoss = Callable[..., Tuple[Any, Any, Any]]


def padded_loss(
    op: Callable[[], Any],
    rust: RustLoss,
    scores: Any,
    targets: Any,
    mask: Any,
    reduction: str,
    backend: str,
    validate: bool,
    scale: Tuple[str, Any],
    options: Sequence[Any] = (),
    weights: Any = None,
) -> Any:
    """The loss of a padded batch, reduced, on the backend the inputs ask for.

    Args:
        op: returns the family's LossOp (`<family>/_op.py`; a function with a plain import
            statement, which torch.compile traces and which registers the op on first use).
        rust: `rust(s, y, m, w, scale, *options, need_grad)` on numpy arrays ->
            `(losses, valid, grad or None)`, the Rust kernel.
        scale: `(name, value)` of the temperature or sigma, checked for the compute dtype and
            passed first among the options.
        options: the other options, already checked, in the op's order.
        weights: SPEC 13's weights (`_inputs.weights_of`): per item (`[B, N]`) to the kernel as
            its `w`, per list (`[B]`) to the reduction. The ops check per-item values themselves
            (the Rust kernels always, the torch twins behind `validate`); per-list values are
            checked here, except while torch.compile traces or under torch.func (no value reads).
    """
    check_reduction(reduction)
    check_backend(backend)
    x = lists(scores, targets, mask, validate=False)
    opts = (check_scale(scale[0], scale[1], x.scores.dtype), *options)
    w, lw = _weights(weights, x, validate)
    if x.is_torch:
        losses, valid = op()(x.scores, x.targets, x.mask, w, opts, not use_rust(x, backend), validate)
        return reduce(losses, valid, reduction, x, lw)
    if backend != "torch":
        s, y, m = x.numpy()
        losses, valid, _ = rust(s, y, m, w, *opts, False)
        return reduce(losses, valid, reduction, x, lw)
    import torch

    xt = as_tensors(x)
    wt = None if w is None else torch.from_numpy(w)
    with torch.no_grad():
        losses, valid = op()(xt.scores, xt.targets, xt.mask, wt, opts, True, validate)
    return reduce(losses.numpy(), valid.numpy(), reduction, x, lw)


def _weights(weights: Any, x: Any, validate: bool) -> Tuple[Any, Any]:
    """`weights_of` for a loss op: numpy weights checked here (always), tensors' per-item weights
    left to the op, per-list ones checked where values may be read (`checkable`)."""
    if weights is None:
        return None, None
    if not x.is_torch:
        return weights_of(weights, x, validate)
    from ._torch_ops import checkable

    return weights_of(weights, x, validate and checkable(x.scores), check_items=False)


def composite_loss(
    loss: Callable[..., Tuple[Any, Any]],
    scores: Any,
    targets: Any,
    mask: Any,
    reduction: str,
    backend: str,
    validate: bool,
    weights: Any = None,
) -> Any:
    """A loss written in torch ops on every backend (autograd to any order): numpy inputs become
    CPU tensors and the result numpy again. `loss(s, y, m, w)` -> `(losses [B], valid [B])`, on
    the compute-dtype batch with a full mask, `w` the per-item weights `[B, N]` or None (SPEC 13;
    per-list weights `[B]` go to the reduction). Values (NaN/inf, weights) are checked where
    `validate`, except while torch.compile traces or under torch.func."""
    import torch

    from ._torch_ops import checkable

    check_reduction(reduction)
    check_backend(backend)
    x = lists(scores, targets, mask, validate=False)
    xt = x if x.is_torch else as_tensors(x)
    check = validate and checkable(xt.scores)
    if check:
        xt.check_finite()
    w, lw = weights_of(weights, x, check)
    if w is not None and not x.is_torch:
        w = torch.from_numpy(w)
    m = torch.ones_like(xt.scores, dtype=torch.bool) if xt.mask is None else xt.mask
    losses, valid = loss(xt.scores, xt.targets, m, w)
    if x.is_torch:
        return reduce(losses, valid, reduction, x, lw)
    return reduce(losses.detach().numpy(), valid.numpy(), reduction, x, lw)
