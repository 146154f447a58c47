"""Embedding losses (SPEC section 6) against plain references written here, in float64."""

import inspect
import math
import typing

import pytest
import torch

import rankgrad.nn as rnn
from rankgrad.nn import _similarity

SIMS = ("cosine", "dot", "euclidean", "manhattan")


# --------------------------------------------------------------------------- references


def ref_sim(u, v, kind):
    """One similarity from its definition; a zero distance is a constant (subgradient 0)."""
    if kind == "cosine":
        return (u * v).sum() / (torch.sqrt((u * u).sum()) * torch.sqrt((v * v).sum()))
    if kind == "dot":
        return (u * v).sum()
    if torch.equal(u.detach(), v.detach()) and kind in ("euclidean", "manhattan"):
        return torch.ones((), dtype=u.dtype)
    if kind == "euclidean":
        return 1.0 / (1.0 + torch.sqrt(((u - v) ** 2).sum()))
    return 1.0 / (1.0 + (u - v).abs().sum())


def ref_ce(logits, target):
    """-log softmax(logits)[target] with an explicit max-shifted log-sum-exp."""
    m = max(float(x.detach()) for x in logits)
    lse = m + torch.log(sum(torch.exp(x - m) for x in logits))
    return lse - logits[target]


def ref_mnrl(a, p, n, scale, kind, symmetric, sim=ref_sim):
    b = a.shape[0]
    cands = [p[j] for j in range(b)]
    if n is not None:
        cands += [n[j, k] for j in range(b) for k in range(n.shape[1])]
    fwd = sum(ref_ce([scale * sim(a[i], c, kind) for c in cands], i) for i in range(b)) / b
    if not symmetric:
        return fwd
    bwd = sum(ref_ce([scale * sim(p[i], a[j], kind) for j in range(b)], i) for i in range(b)) / b
    return (fwd + bwd) / 2


def rand(*shape, gen, dtype=torch.float64):
    return torch.randn(*shape, generator=gen, dtype=dtype)


def grads(fn, *xs):
    xs = [x.detach().clone().requires_grad_(True) for x in xs if x is not None]
    out = fn(*xs)
    return out.detach(), torch.autograd.grad(out, xs)


# ------------------------------------------------------------------------------- MNRL


@pytest.mark.parametrize("kind", SIMS)
@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mnrl_matches_reference(kind, k, symmetric):
    gen = torch.Generator().manual_seed(100 * SIMS.index(kind) + 10 * (k or 0) + symmetric)
    b, d = 5, 7
    a, p = rand(b, d, gen=gen), rand(b, d, gen=gen)
    n = None if k is None else rand(b, k, d, gen=gen)
    scale = 3.7 if kind == "dot" else 20.0
    loss = rnn.MultipleNegativesRankingLoss(scale=scale, similarity=kind, symmetric=symmetric)

    args = (a, p) if n is None else (a, p, n)
    got, got_g = grads(lambda *x: loss(*x), *args)
    want, want_g = grads(lambda a_, p_, n_=None: ref_mnrl(a_, p_, n_, scale, kind, symmetric), *args)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", SIMS)
def test_mnrl_gradcheck(kind):
    gen = torch.Generator().manual_seed(7)
    a, p, n = rand(3, 4, gen=gen), rand(3, 4, gen=gen), rand(3, 2, 4, gen=gen)
    loss = rnn.MultipleNegativesRankingLoss(scale=2.5, similarity=kind, symmetric=True)
    xs = [x.requires_grad_(True) for x in (a, p, n)]
    assert torch.autograd.gradcheck(lambda *x: loss(*x), xs, eps=1e-6, atol=1e-6)


def test_mnrl_large_scale_is_stable():
    gen = torch.Generator().manual_seed(3)
    a, p = rand(6, 5, gen=gen), rand(6, 5, gen=gen)
    loss = rnn.MultipleNegativesRankingLoss(scale=1e4, similarity="dot")
    a.requires_grad_(True)
    v = loss(a.float(), p.float())
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(a.grad).all()
    want = ref_mnrl(a.detach(), p, None, 1e4, "dot", False)
    torch.testing.assert_close(v.double(), want, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("kind", ["euclidean", "manhattan"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_distance_gradient_is_finite(kind, dtype):
    gen = torch.Generator().manual_seed(11)
    a = rand(4, 6, gen=gen, dtype=dtype)
    p = a.clone()
    p[1] = a[2]  # a zero distance off the diagonal too
    n = torch.stack([a, a[[3, 0, 1, 2]]], dim=1)  # hard negatives equal to anchors
    loss = rnn.MultipleNegativesRankingLoss(scale=5.0, similarity=kind, symmetric=True)
    got, got_g = grads(lambda *x: loss(*x), a, p, n)
    for g in got_g:
        assert torch.isfinite(g).all()
    if dtype == torch.float64:
        # ||a||^2 + ||b||^2 - 2ab leaves distances at the rounding level (~1e-8 ||a||) for equal rows
        want, want_g = grads(lambda *x: ref_mnrl(*x, 5.0, kind, True), a, p, n)
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-7)
        for g, w in zip(got_g, want_g):
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7)


def test_manhattan_backward_in_chunks(monkeypatch):
    """Blocks of a few rows give the same gradient as the reference."""
    monkeypatch.setattr(_similarity, "_CHUNK_ELEMENTS", 2 * 11 * 3)
    gen = torch.Generator().manual_seed(5)
    a, p, n = rand(5, 3, gen=gen), rand(5, 3, gen=gen), rand(5, 1, 3, gen=gen)
    loss = rnn.MultipleNegativesRankingLoss(scale=4.0, similarity="manhattan", symmetric=True)
    got, got_g = grads(lambda *x: loss(*x), a, p, n)
    want, want_g = grads(lambda *x: ref_mnrl(*x, 4.0, "manhattan", True), a, p, n)
    torch.testing.assert_close(got, want)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w)


def test_target_is_own_positive_closed_form():
    # anchor i's positive scores low, its own hard negative high: the loss is large.
    d = 4
    a = torch.eye(d, dtype=torch.float64)[:2]
    p = torch.stack([-a[0], -a[1]])
    n = torch.stack([a, a], dim=0).transpose(0, 1).contiguous()[:, :1]  # n[i, 0] = a[i]
    loss = rnn.MultipleNegativesRankingLoss(scale=10.0, similarity="cosine")
    v = loss(a, p, n)
    # logits of anchor i: positives (-10, 0), negatives (10, 0)
    want = -10.0 - math.log(math.exp(-10) + 1 + math.exp(10) + 1)
    torch.testing.assert_close(v, torch.tensor(-want, dtype=torch.float64))


@pytest.mark.parametrize("k", [None, 2])
@pytest.mark.parametrize("symmetric", [False, True])
def test_quaterion_cosine_convention(k, symmetric):
    """quaterion's cosine is (cos + 1) / 2: its scale s equals rankgrad's scale s / 2."""

    def quaterion_sim(u, v, kind):
        return (ref_sim(u, v, "cosine") + 1.0) / 2.0

    gen = torch.Generator().manual_seed(21)
    a, p = rand(6, 5, gen=gen), rand(6, 5, gen=gen)
    n = None if k is None else rand(6, k, 5, gen=gen)
    args = (a, p) if n is None else (a, p, n)
    s = 20.0
    ours = rnn.MultipleNegativesRankingLoss(scale=s / 2, similarity="cosine", symmetric=symmetric)
    got, got_g = grads(lambda *x: ours(*x), *args)
    want, want_g = grads(
        lambda a_, p_, n_=None: ref_mnrl(a_, p_, n_, s, "cosine", symmetric, sim=quaterion_sim),
        *args,
    )
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)
    # and the same scale is not the same loss
    same = rnn.MultipleNegativesRankingLoss(scale=s, similarity="cosine", symmetric=symmetric)
    assert not torch.allclose(same(*args), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", SIMS)
def test_mnrl_half_precision_computed_in_float32(dtype, kind):
    gen = torch.Generator().manual_seed(2)
    a, p, n = (rand(*s, gen=gen, dtype=torch.float32).to(dtype) for s in ((5, 8), (5, 8), (5, 2, 8)))
    loss = rnn.MultipleNegativesRankingLoss(scale=2.0, similarity=kind, symmetric=True)
    a.requires_grad_(True)
    v = loss(a, p, n)
    assert v.dtype == dtype
    want = loss(a.detach().float(), p.float(), n.float())
    assert want.dtype == torch.float32
    torch.testing.assert_close(v.float(), want.to(dtype).float(), rtol=0, atol=0)
    v.backward()
    assert a.grad.dtype == dtype and torch.isfinite(a.grad.float()).all()


def test_mnrl_mixed_dtypes_promote():
    gen = torch.Generator().manual_seed(4)
    a = rand(3, 4, gen=gen)
    p = rand(3, 4, gen=gen, dtype=torch.float32)
    v = rnn.MultipleNegativesRankingLoss()(a, p)
    assert v.dtype == torch.float64
    torch.testing.assert_close(v, ref_mnrl(a, p.double(), None, 20.0, "cosine", False))


def test_gather_without_process_group_is_one_process():
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    gen = torch.Generator().manual_seed(9)
    a, p, n = rand(4, 3, gen=gen), rand(4, 3, gen=gen), rand(4, 2, 3, gen=gen)
    for sym in (False, True):
        g = rnn.MultipleNegativesRankingLoss(symmetric=sym, gather_across_devices=True)
        plain = rnn.MultipleNegativesRankingLoss(symmetric=sym)
        torch.testing.assert_close(g(a, p, n), plain(a, p, n), rtol=0, atol=0)


def test_mnrl_is_module_with_repr():
    loss = rnn.MultipleNegativesRankingLoss(scale=5, similarity="dot", symmetric=True)
    assert isinstance(loss, torch.nn.Module)
    assert "similarity='dot'" in repr(loss) and "scale=5.0" in repr(loss)
    for name in (
        "MultipleNegativesRankingLoss",
        "L1Regularization",
        "L2Regularization",
        "FLOPSRegularization",
    ):
        assert name in rnn.__all__


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        ({"scale": 0.0}, ValueError, "scale"),
        ({"scale": -1.0}, ValueError, "scale"),
        ({"scale": float("nan")}, ValueError, "scale"),
        ({"scale": "big"}, TypeError, "scale"),
        ({"similarity": "hamming"}, ValueError, "similarity"),
        ({"similarity": None}, TypeError, "similarity"),
        ({"symmetric": "yes"}, TypeError, "symmetric"),
        ({"gather_across_devices": 1}, TypeError, "gather_across_devices"),
    ],
)
def test_mnrl_bad_options(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        rnn.MultipleNegativesRankingLoss(**kwargs)


@pytest.mark.parametrize(
    "shapes, exc, name",
    [
        (((4, 3), (5, 3), None), ValueError, "positives"),  # batch mismatch
        (((4, 3), (4, 2), None), ValueError, "positives"),  # dimension mismatch
        (((4,), (4,), None), ValueError, "anchors"),  # wrong rank
        (((2, 4, 3), (2, 4, 3), None), ValueError, "anchors"),
        (((4, 3), (4, 3, 1), None), ValueError, "positives"),
        (((0, 3), (0, 3), None), ValueError, "anchors"),
        (((4, 3), (4, 3), (4, 3)), ValueError, "negatives"),  # [B, D] negatives
        (((4, 3), (4, 3), (3, 2, 3)), ValueError, "negatives"),
        (((4, 3), (4, 3), (4, 2, 5)), ValueError, "negatives"),
    ],
)
def test_mnrl_bad_shapes(shapes, exc, name):
    xs = [None if s is None else torch.randn(*s) for s in shapes]
    with pytest.raises(exc, match=name):
        rnn.MultipleNegativesRankingLoss()(*xs)


def test_mnrl_bad_types():
    loss = rnn.MultipleNegativesRankingLoss()
    with pytest.raises(TypeError, match="anchors"):
        loss([[1.0, 2.0]], torch.randn(1, 2))
    with pytest.raises(TypeError, match="positives"):
        loss(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="negatives"):
        loss(torch.randn(2, 3), torch.randn(2, 3), torch.ones(2, 1, 3, dtype=torch.int32))


# ------------------------------------------------------------------------ regularizers


def ref_penalty(x, kind):
    d = x.shape[-1]
    rows = x.reshape(-1, d)
    r = rows.shape[0]
    if kind == "l1":
        return sum(sum(abs(rows[i, j]) for j in range(d)) for i in range(r)) / r
    if kind == "l2":
        return sum(torch.sqrt(sum(rows[i, j] ** 2 for j in range(d))) for i in range(r)) / r
    return sum((sum(abs(rows[i, j]) for i in range(r)) / r) ** 2 for j in range(d))


REGS = {"l1": rnn.L1Regularization, "l2": rnn.L2Regularization, "flops": rnn.FLOPSRegularization}


@pytest.mark.parametrize("kind", REGS)
@pytest.mark.parametrize("qshape, dshape", [((3, 5), (4, 5)), ((2, 3, 5), (5,)), ((2, 1, 3, 4), (3, 2, 4))])
def test_regularizers_match_formula(kind, qshape, dshape):
    gen = torch.Generator().manual_seed(len(qshape) * 10 + len(dshape))
    q, d = rand(*qshape, gen=gen), rand(*dshape, gen=gen)
    reg = REGS[kind](query_weight=0.3, doc_weight=1.7)
    got, got_g = grads(lambda q_, d_: reg(q_, d_), q, d)
    want, want_g = grads(lambda q_, d_: 0.3 * ref_penalty(q_, kind) + 1.7 * ref_penalty(d_, kind), q, d)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert got.dtype == torch.float64


@pytest.mark.parametrize("kind", REGS)
def test_regularizers_gradcheck_and_defaults(kind):
    gen = torch.Generator().manual_seed(1)
    q = rand(3, 2, 4, gen=gen).requires_grad_(True)
    d = rand(5, 4, gen=gen).requires_grad_(True)
    reg = REGS[kind]()
    assert reg.query_weight == 1e-4 and reg.doc_weight == 1e-4
    assert isinstance(reg, torch.nn.Module)
    assert torch.autograd.gradcheck(lambda a, b: REGS[kind](2.0, 0.5)(a, b), (q, d))
    torch.testing.assert_close(reg(q, d), 1e-4 * (ref_penalty(q, kind) + ref_penalty(d, kind)))


def test_l2_is_not_squared_and_zero_rows_have_zero_gradient():
    q = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    d = torch.tensor([[0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    v = rnn.L2Regularization(1.0, 1.0)(q, d)
    torch.testing.assert_close(v, torch.tensor(2.5, dtype=torch.float64))
    v.backward()
    torch.testing.assert_close(q.grad, torch.tensor([[0.3, 0.4], [0.0, 0.0]], dtype=torch.float64))
    assert torch.equal(d.grad, torch.zeros_like(d))


def test_flops_is_square_of_mean_not_mean_of_square():
    q = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    d = torch.tensor([[0.0, -2.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    v = rnn.FLOPSRegularization(1.0, 1.0)(q, d)
    torch.testing.assert_close(v, torch.tensor(0.25 + 4.0))


def test_regularizer_empty_rows_and_half_precision():
    reg = rnn.FLOPSRegularization(1.0, 1.0)
    q = torch.zeros(0, 4, requires_grad=True)
    d = torch.ones(2, 4, dtype=torch.bfloat16)
    v = reg(q, d)
    assert v.dtype == torch.float32  # promoted from float32 and bfloat16
    torch.testing.assert_close(v, torch.tensor(4.0))
    v.backward()
    assert q.grad.shape == (0, 4)
    h = rnn.L1Regularization(1.0, 1.0)(d, d)
    assert h.dtype == torch.bfloat16 and float(h) == 8.0


@pytest.mark.parametrize("cls", list(REGS.values()))
def test_regularizer_bad_input(cls):
    with pytest.raises(ValueError, match="query_weight"):
        cls(query_weight=-1.0)
    with pytest.raises(ValueError, match="doc_weight"):
        cls(doc_weight=float("inf"))
    with pytest.raises(TypeError, match="doc_weight"):
        cls(doc_weight="x")
    reg = cls()
    with pytest.raises(ValueError, match="query_embeddings"):
        reg(torch.tensor(1.0), torch.randn(2, 3))
    with pytest.raises(TypeError, match="doc_embeddings"):
        reg(torch.randn(2, 3), torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="query_embeddings"):
        reg([1.0], torch.randn(2, 3))
    assert float(cls(0.0, 0.0)(torch.randn(2, 3), torch.randn(2, 3))) == 0.0


# ------------------------------------------------------------- reduction, repr, signature


def ref_mnrl_rows(a, p, n, scale, kind, symmetric):
    """Per-anchor terms [B] of the reference loss (the symmetric average per index i)."""
    b = a.shape[0]
    cands = [p[j] for j in range(b)]
    if n is not None:
        cands += [n[j, k] for j in range(b) for k in range(n.shape[1])]
    rows = []
    for i in range(b):
        term = ref_ce([scale * ref_sim(a[i], c, kind) for c in cands], i)
        if symmetric:
            term = (term + ref_ce([scale * ref_sim(p[i], a[j], kind) for j in range(b)], i)) / 2
        rows.append(term)
    return torch.stack(rows)


@pytest.mark.parametrize("kind", SIMS)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_mnrl_reduction_matches_reference(kind, symmetric, reduction):
    gen = torch.Generator().manual_seed(300 + 10 * SIMS.index(kind) + symmetric)
    b, k, d = 5, 2, 6
    a, p, n = rand(b, d, gen=gen), rand(b, d, gen=gen), rand(b, k, d, gen=gen)
    scale = 1.3 if kind == "dot" else 7.0
    loss = rnn.MultipleNegativesRankingLoss(scale, kind, symmetric, reduction=reduction)
    red = {"none": lambda x: x, "sum": lambda x: x.sum(), "mean": lambda x: x.mean()}[reduction]
    weights = rand(b, gen=gen) if reduction == "none" else torch.ones(())  # a non-uniform VJP

    got, got_g = grads(lambda *x: (loss(*x) * weights).sum(), a, p, n)
    want, want_g = grads(lambda *x: (red(ref_mnrl_rows(*x, scale, kind, symmetric)) * weights).sum(), a, p, n)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)
    out = loss(a, p, n)
    assert out.shape == ((b,) if reduction == "none" else ())
    if reduction == "mean":  # the default is the mean
        default = rnn.MultipleNegativesRankingLoss(scale, kind, symmetric)
        torch.testing.assert_close(default(a, p, n), out, rtol=0, atol=0)


def test_mnrl_reduction_none_keeps_the_input_dtype():
    gen = torch.Generator().manual_seed(8)
    a, p = rand(4, 3, gen=gen).half(), rand(4, 3, gen=gen).half()
    out = rnn.MultipleNegativesRankingLoss(reduction="none")(a, p)
    assert out.dtype == torch.float16 and out.shape == (4,)
    want = ref_mnrl_rows(a.double(), p.double(), None, 20.0, "cosine", False)
    torch.testing.assert_close(out.double(), want, rtol=2e-3, atol=2e-3)


def test_mnrl_reduction_is_keyword_only_and_checked():
    with pytest.raises(TypeError):
        rnn.MultipleNegativesRankingLoss(20.0, "cosine", False, False, "sum")
    with pytest.raises(ValueError, match="reduction"):
        rnn.MultipleNegativesRankingLoss(reduction="avg")
    with pytest.raises(TypeError, match="reduction"):
        rnn.MultipleNegativesRankingLoss(reduction=None)
    # the documented arguments stay positional (SPEC section 6)
    loss = rnn.MultipleNegativesRankingLoss(5.0, "dot", True, False)
    assert (loss.scale, loss.similarity, loss.symmetric, loss.gather_across_devices) == (
        5.0,
        "dot",
        True,
        False,
    )


@pytest.mark.parametrize(
    "module",
    [
        rnn.MultipleNegativesRankingLoss(3.0, "manhattan", True, True, reduction="sum"),
        rnn.L1Regularization(0.5, 0.25),
        rnn.L2Regularization(0.5, 0.25),
        rnn.FLOPSRegularization(0.5, 0.25),
    ],
)
def test_extra_repr_shows_every_constructor_option(module):
    text = repr(module)
    params = inspect.signature(type(module).__init__).parameters
    names = [name for name in params if name != "self"]
    assert names  # the signature really lists options
    for name in names:
        value = getattr(module, name)
        assert f"{name}={value!r}" in text, (name, text)


@pytest.mark.parametrize("kind", REGS)
def test_regularizers_refuse_zero_dimension_and_mismatched_dimensions(kind):
    reg = REGS[kind](1.0, 1.0)
    with pytest.raises(ValueError, match=r"query_embeddings has shape \(3, 0\).*D must be >= 1"):
        reg(torch.zeros(3, 0), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"doc_embeddings has shape \(0,\).*D must be >= 1"):
        reg(torch.zeros(2, 4), torch.zeros(0))
    with pytest.raises(ValueError, match="doc_embeddings has D=5 but query_embeddings has D=4"):
        reg(torch.zeros(2, 4), torch.zeros(3, 5))
    # zero rows with D >= 1 is an empty batch, not an error: 0
    assert float(reg(torch.zeros(0, 4), torch.zeros(2, 0, 4))) == 0.0


def test_mnrl_refuses_zero_dimension():
    with pytest.raises(ValueError, match=r"anchors has shape \(3, 0\).*D must be >= 1"):
        rnn.MultipleNegativesRankingLoss()(torch.zeros(3, 0), torch.zeros(3, 0))


@pytest.mark.parametrize("cls", [*REGS.values(), rnn.MultipleNegativesRankingLoss])
def test_forward_is_annotated_to_return_a_tensor(cls):
    hints = typing.get_type_hints(cls.forward)
    assert hints["return"] is torch.Tensor
    assert all(v is not typing.Any for v in hints.values())
