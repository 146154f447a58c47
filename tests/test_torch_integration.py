"""torch integration of every differentiable function (SPEC section 10, issue 9).

One registry, `ENTRIES`: to cover a new function append one `Entry(...)` line. Each entry is
checked on both backends for: gradcheck and (per `double`) gradgradcheck or a clear
RuntimeError in float64, torch.func.grad and torch.func.vmap (also vmap of grad) against
eager autograd, meta tensors (shapes), and torch.compile(fullgraph=True), static and
dynamic shapes, against eager (for entries with `compile=True`; compiling is slow). `OPS`
lists the custom ops for torch.library.opcheck.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest
import torch

import rankgrad
import rankgrad._ops  # registers every torch.ops.rankgrad custom op (also done by the first torch name)
import rankgrad.listwise as listwise
from conftest import BACKENDS, make_batch

Inputs = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # scores [B, N], targets, mask


def padded_inputs(seed: int = 0, b: int = 3, n: int = 7) -> Inputs:
    """float64 (scores, targets, mask) with ties in the targets, a padded tail and one list
    that surely counts."""
    s, y, m = make_batch(np.random.default_rng(seed), b, n, pad=0.2)
    y[0, :3] = [2.0, 0.0, 1.0]
    m[0, :3] = True
    return torch.tensor(s), torch.tensor(y), torch.tensor(m)


def item_weights(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per-item weights (SPEC 13) for `y`: 0, 0.75, 1.5, 2.25 by target, NaN on padded items."""
    return torch.where(m, 0.75 * (y % 4), torch.full_like(y, float("nan")))


def list_weights(m: torch.Tensor) -> torch.Tensor:
    """Per-list weights `[B]`: 0.5 + a quarter of each list's real-item count (one list may be 0.5)."""
    return 0.5 + 0.25 * m.sum(-1).to(torch.float64)


@dataclass
class Entry:
    """`call(scores, targets, mask, backend=...)` -> a tensor differentiable in scores;
    `double[backend]` is "exact" (gradgradcheck passes) or "raises" (RuntimeError when the
    second derivative is taken)."""

    name: str
    call: Callable[..., torch.Tensor]
    double: Dict[str, str] = field(default_factory=lambda: {"rust": "exact", "torch": "exact"})
    inputs: Callable[..., Inputs] = padded_inputs
    compile: bool = False

    def __repr__(self) -> str:
        return self.name


ENTRIES = [
    Entry("approx_ranks", lambda s, y, m, **kw: rankgrad.approx_ranks(s, 0.7, m, **kw), compile=True),
    Entry(
        "approx_ndcg_loss",
        lambda s, y, m, **kw: rankgrad.approx_ndcg_loss(s, y, 0.8, mask=m, reduction="none", **kw),
        compile=True,
    ),
    Entry(
        "approx_ndcg_loss_mean_linear",
        lambda s, y, m, **kw: rankgrad.approx_ndcg_loss(s, y, 1.3, scale_gains=False, mask=m, **kw),
    ),
    Entry(
        "approx_ranks_fast",
        lambda s, y, m, **kw: rankgrad.approx_ranks(s, 0.7, m, method="fast", **kw),
        compile=True,
    ),
    Entry(
        "approx_ndcg_loss_fast",
        lambda s, y, m, **kw: rankgrad.approx_ndcg_loss(
            s, y, 0.8, mask=m, reduction="none", method="fast", **kw
        ),
        compile=True,
    ),
    Entry(
        "approx_rank_mse_loss_fast",
        lambda s, y, m, **kw: rankgrad.approx_rank_mse_loss(s, y, 1.0, None, m, "sum", method="fast", **kw),
    ),
    Entry(
        "approx_mrr_loss",
        lambda s, y, m, **kw: rankgrad.approx_mrr_loss(s, y, 0.5, mask=m, reduction="sum", **kw),
    ),
    Entry(
        "approx_rank_mse_loss",
        lambda s, y, m, **kw: rankgrad.approx_rank_mse_loss(s, y, 1.0, "log2", m, "none", **kw),
    ),
    Entry(
        "ranknet_loss",
        lambda s, y, m, **kw: rankgrad.ranknet_loss(s, y, 0.9, m, reduction="none", **kw),
        compile=True,
    ),
    Entry(
        "lambdarank_loss",
        lambda s, y, m, **kw: rankgrad.lambdarank_loss(s * 3, y, mask=m, reduction="sum", **kw),
        double={"rust": "raises", "torch": "raises"},
    ),
    Entry(
        "lambda_loss",
        lambda s, y, m, **kw: listwise.lambda_loss(s, y, "ndcg2pp", 1.0, 5, mask=m, reduction="none", **kw),
        double={"rust": "raises", "torch": "raises"},
        compile=True,
    ),
    Entry("softmax_loss", lambda s, y, m, **kw: listwise.softmax_loss(s, y, m, "none", **kw)),
    Entry("listmle_loss", lambda s, y, m, **kw: listwise.listmle_loss(s, y, m, "none", **kw)),
    # SPEC 13's weights, made from the inputs (so every shape, device and vmap sees matching ones)
    Entry(
        "approx_ndcg_loss_item_weights",
        lambda s, y, m, **kw: rankgrad.approx_ndcg_loss(
            s, y, 0.8, mask=m, reduction="none", weights=item_weights(y, m), **kw
        ),
        compile=True,
    ),
    Entry(
        "approx_mrr_loss_list_weights",
        lambda s, y, m, **kw: rankgrad.approx_mrr_loss(s, y, 0.5, mask=m, weights=list_weights(m), **kw),
        compile=True,
    ),
    Entry(
        "approx_rank_mse_loss_item_weights_fast",
        lambda s, y, m, **kw: rankgrad.approx_rank_mse_loss(
            s, y, 1.0, "reciprocal", m, "sum", weights=item_weights(y, m), method="fast", **kw
        ),
    ),
    Entry(
        "softmax_loss_item_weights",
        lambda s, y, m, **kw: listwise.softmax_loss(s, y, m, "none", weights=item_weights(y, m), **kw),
        compile=True,
    ),
    Entry(
        "ranknet_loss_item_weights",
        lambda s, y, m, **kw: rankgrad.ranknet_loss(s, y, 1.3, m, "none", weights=item_weights(y, m), **kw),
        compile=True,
    ),
    Entry(
        "lambdarank_loss_list_weights",
        lambda s, y, m, **kw: rankgrad.lambdarank_loss(s * 3, y, mask=m, weights=list_weights(m), **kw),
        double={"rust": "raises", "torch": "raises"},
    ),
    Entry(
        "lambda_loss_item_weights",
        lambda s, y, m, **kw: listwise.lambda_loss(
            s, y, "ndcg1", 1.0, 5, mask=m, reduction="none", weights=item_weights(y, m), **kw
        ),
        double={"rust": "raises", "torch": "raises"},
        compile=True,
    ),
    Entry(
        "listmle_loss_list_weights",
        lambda s, y, m, **kw: listwise.listmle_loss(s, y, m, weights=list_weights(m), **kw),
        compile=True,
    ),
]


def _op_args_ranks(native: bool, method: str = "exact") -> Tuple[Any, ...]:
    s, _, m = padded_inputs(1)
    return (s.requires_grad_(), m, 0.7, method, native, True)


def _op_args_ranks_backward(native: bool, method: str = "exact") -> Tuple[Any, ...]:
    s, _, m = padded_inputs(2)
    c = torch.randn(s.shape, dtype=s.dtype, requires_grad=True)
    return (s.requires_grad_(), m, 0.7, c, method, native)


def _op_args_ranks_double_backward(native: bool, method: str = "exact") -> Tuple[Any, ...]:
    s, m, t, c, method, native = _op_args_ranks_backward(native, method)
    return (s, m, t, c, torch.randn(s.shape, dtype=s.dtype), method, native)


def _op_args_loss(kind: str, native: bool, method: str = "exact", weighted: bool = False) -> Tuple[Any, ...]:
    s, y, m = padded_inputs(3)
    w = item_weights(y, m) if weighted else None
    return (s.requires_grad_(), y, m, w, 0.9, kind, True, "reciprocal", method, native, True, True)


def _op_args_pairwise(name: str, native: bool, weighted: bool = False) -> Tuple[Any, ...]:
    s, y, m = padded_inputs(5)
    s.requires_grad_()
    w = item_weights(y, m) if weighted else None
    if name == "ranknet_loss":
        return (s, y, m, w, 0.9, native, True, True)
    if name == "lambdarank_loss":
        return (s, y, m, w, 1.0, 4, True, None, "ndcg", native, True, True)
    return (s, y, m, w, 1.0, "ndcg2pp", 5, 10.0, True, native, True, True)


DEFAULT_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
NO_BACKWARD_OPS = {"approx_ranks_double_backward"}
OPS = [
    *[
        (op, lambda args=args, native=native, method=method: args(native, method))
        for op, args in (
            ("approx_ranks", _op_args_ranks),
            ("approx_ranks_backward", _op_args_ranks_backward),
            ("approx_ranks_double_backward", _op_args_ranks_double_backward),
        )
        for native in (False, True)
        for method in ("exact", "fast")
    ],
    *[
        ("approx_loss", lambda kind=kind, native=native, method=method: _op_args_loss(kind, native, method))
        for kind in ("ndcg", "mrr", "rank_mse")
        for native in (False, True)
        for method in ("exact", "fast")
    ],
    *[
        ("approx_loss", lambda kind=kind, native=native: _op_args_loss(kind, native, "exact", weighted=True))
        for kind in ("ndcg", "mrr", "rank_mse")
        for native in (False, True)
    ],
    *[
        (name, lambda name=name, native=native, weighted=weighted: _op_args_pairwise(name, native, weighted))
        for name in ("ranknet_loss", "lambdarank_loss", "lambda_loss")
        for native in (False, True)
        for weighted in (False, True)
    ],
]


@pytest.mark.parametrize("name,args", OPS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPS)])
def test_opcheck(name, args):
    # the double backward's own backward raises on purpose (no third derivative)
    utils = ("test_schema", "test_faketensor") if name in NO_BACKWARD_OPS else DEFAULT_UTILS
    torch.library.opcheck(getattr(torch.ops.rankgrad, name).default, args(), test_utils=utils)


def test_third_derivative_raises_clearly():
    s, _, m = padded_inputs(4)
    s.requires_grad_()
    (g,) = torch.autograd.grad(rankgrad.approx_ranks(s, 0.7, m).pow(2).sum(), s, create_graph=True)
    (h,) = torch.autograd.grad(g.pow(2).sum(), s, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivatives"):
        torch.autograd.grad(h.sum(), s)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", ENTRIES, ids=repr)
def test_gradcheck_and_double_backward(entry, backend):
    s, y, m = entry.inputs()
    s.requires_grad_()

    def f(x):
        return entry.call(x, y, m, backend=backend)

    assert torch.autograd.gradcheck(f, (s,), eps=1e-6, atol=1e-7, rtol=1e-5)
    if entry.double[backend] == "exact":
        assert torch.autograd.gradgradcheck(f, (s,), eps=1e-6, atol=1e-6, rtol=1e-4)
    else:
        (g,) = torch.autograd.grad(f(s).sum(), s, create_graph=True)  # first order still works
        assert g.requires_grad
        with pytest.raises(RuntimeError, match="second derivatives"):
            torch.autograd.grad(g.sum(), s)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", ENTRIES, ids=repr)
def test_func_grad_and_vmap(entry, backend):
    s, y, m = entry.inputs()
    x = s.clone().requires_grad_()
    entry.call(x, y, m, backend=backend).sum().backward()
    g = torch.func.grad(lambda x: entry.call(x, y, m, backend=backend).sum())(s)
    torch.testing.assert_close(g, x.grad, rtol=1e-12, atol=1e-14)
    # vmap over a leading batch of score matrices (targets and mask shared), and of grad
    stack = torch.stack([s, s.flip(-1), 2 * s])
    out = torch.func.vmap(lambda x: entry.call(x, y, m, backend=backend))(stack)
    want = torch.stack([entry.call(v, y, m, backend=backend) for v in stack])
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-14)
    grads = torch.func.vmap(torch.func.grad(lambda x: entry.call(x, y, m, backend=backend).sum()))(stack)
    want_g = torch.stack(
        [
            torch.autograd.grad(entry.call(v.requires_grad_(), y, m, backend=backend).sum(), v)[0]
            for v in stack
        ]
    )
    torch.testing.assert_close(grads, want_g, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("entry", ENTRIES, ids=repr)
def test_meta_tensors(entry, backend):
    s, y, m = entry.inputs()
    want = entry.call(s, y, m, backend=backend)
    meta = entry.call(*(t.to("meta") for t in (s, y, m)), backend=backend)
    assert meta.device.type == "meta" and meta.shape == want.shape and meta.dtype == want.dtype


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.compile], ids=repr)
def test_compile_fullgraph(entry, backend, dynamic):
    torch._dynamo.reset()
    s, y, m = entry.inputs()

    def step(x, y, m):
        return entry.call(x, y, m, backend=backend)

    fn = torch.compile(step, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    for b, n in ((3, 7), (2, 5)):  # a second shape: recompiles (static) or reuses (dynamic)
        res = []
        for f in (step, fn):
            x = s[:b, :n].clone().requires_grad_()
            out = f(x, y[:b, :n], m[:b, :n])
            out.sum().backward()
            res.append((out.detach(), x.grad))
        for a, w in zip(*res):
            torch.testing.assert_close(a, w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("entry", ENTRIES, ids=repr)
def test_forward_mode_jacfwd_and_hessian(entry, backend):
    """Forward-mode AD (the Functions' jvp): jacfwd equals jacrev, and torch.func.hessian
    (forward over reverse) equals jacrev of grad, where second derivatives are exact."""
    s, y, m = entry.inputs()

    def f(x):
        return entry.call(x, y, m, backend=backend)

    torch.testing.assert_close(torch.func.jacfwd(f)(s), torch.func.jacrev(f)(s), rtol=1e-10, atol=1e-13)
    if entry.double[backend] == "exact":
        w = torch.linspace(0.5, 1.5, f(s).numel(), dtype=s.dtype).reshape(f(s).shape)

        def total(x):  # weighted: the plain sum of approx ranks is a constant
            return (f(x) * w).sum()

        h = torch.func.hessian(total)(s)
        torch.testing.assert_close(h, torch.func.jacrev(torch.func.grad(total))(s), rtol=1e-10, atol=1e-13)
        assert h.abs().max() > 1e-6
