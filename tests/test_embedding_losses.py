"""Embedding losses (SPEC section 6) against plain references written here, in float64."""

import decimal
import inspect
import math
import typing

import pytest
import torch

import rankgrad.nn as rnn
from rankgrad.nn import _similarity

SIMS = ("cosine", "dot", "euclidean", "manhattan", "euclidean_sim", "manhattan_sim")


# --------------------------------------------------------------------------- references


def ref_sim(u, v, kind):
    """One similarity from its definition; a zero distance is a constant (subgradient 0)."""
    if kind == "cosine":
        return (u * v).sum() / (torch.sqrt((u * u).sum()) * torch.sqrt((v * v).sum()))
    if kind == "dot":
        return (u * v).sum()
    if torch.equal(u.detach(), v.detach()):
        return torch.full((), 0.0 if kind.endswith("_sim") else 1.0, dtype=u.dtype)
    if kind == "euclidean":
        return 1.0 / (1.0 + torch.sqrt(((u - v) ** 2).sum()))
    if kind == "manhattan":
        return 1.0 / (1.0 + (u - v).abs().sum())
    if kind == "euclidean_sim":  # sentence-transformers' util.euclidean_sim: -||u - v||_2
        return -torch.sqrt(((u - v) ** 2).sum())
    return -(u - v).abs().sum()  # "manhattan_sim": util.manhattan_sim, -||u - v||_1


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
def test_mnrl_second_derivatives(kind):
    """The custom backwards (dot, distances, the log-sum-exp) are differentiable ops."""
    gen = torch.Generator().manual_seed(9)
    a, p, n = rand(3, 4, gen=gen), rand(3, 4, gen=gen), rand(3, 2, 4, gen=gen)
    p[0] = a[0] + 1e-3  # a near pair, recomputed from its difference
    loss = rnn.MultipleNegativesRankingLoss(scale=2.5, similarity=kind, symmetric=True)
    xs = [x.requires_grad_(True) for x in (a, p, n)]
    assert torch.autograd.gradgradcheck(lambda *x: loss(*x), xs, eps=1e-7, atol=1e-5, rtol=1e-4)


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


@pytest.mark.parametrize("kind", ["euclidean", "manhattan", "euclidean_sim", "manhattan_sim"])
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
        # equal rows are at distance 0 (recomputed from the differences, not ||a||^2 + ||b||^2 - 2ab)
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


@pytest.mark.parametrize("kind", ["euclidean", "euclidean_sim"])
def test_euclidean_near_pairs_in_chunks(monkeypatch, kind):
    """Every positive and negative sits close to its anchor, so their distances are
    recomputed from the differences, here in blocks of a few pairs."""
    monkeypatch.setattr(_similarity, "_CHUNK_ELEMENTS", 2 * 3)
    gen = torch.Generator().manual_seed(5)
    a = rand(5, 3, gen=gen)
    p, n = a + 0.01 * rand(5, 3, gen=gen), a[:, None, :] + 0.01 * rand(5, 1, 3, gen=gen)
    loss = rnn.MultipleNegativesRankingLoss(scale=4.0, similarity=kind, symmetric=True)
    got, got_g = grads(lambda *x: loss(*x), a, p, n)
    want, want_g = grads(lambda *x: ref_mnrl(*x, 4.0, kind, True), a, p, n)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
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


# ------------------------------------------- finite in, finite out (issue 17, items 5, 14)
#
# Independent references: `dec_rows` transcribes the loss in 50-digit decimal arithmetic
# from the exact input values (no overflow, no underflow), and the float64 `ref_mnrl`
# above is used on inputs rescaled by exact powers of two where the math allows it
# (cosine is scale-free; `(2**-k a).(2**-k c) * s 2**2k` is the same dot-product logit).


def dec_rows(a, p, n, scale, kind, symmetric):
    """Per-anchor loss terms [B] (float64, +inf beyond its range) in decimal arithmetic."""
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 50, 10**6, -(10**6)

        def rows_of(x):
            return [
                [decimal.Decimal(v) for v in row]
                for row in x.detach().double().reshape(-1, x.shape[-1]).tolist()
            ]

        def sim(u, v):
            if kind == "cosine":
                nu, nv = sum(x * x for x in u).sqrt(), sum(x * x for x in v).sqrt()
                return (
                    decimal.Decimal(0) if nu == 0 or nv == 0 else sum(x * y for x, y in zip(u, v)) / (nu * nv)
                )
            if kind == "dot":
                return sum(x * y for x, y in zip(u, v))
            if kind.startswith("euclidean"):
                d = sum((x - y) ** 2 for x, y in zip(u, v)).sqrt()
            else:
                d = sum(abs(x - y) for x, y in zip(u, v))
            return -d if kind.endswith("_sim") else 1 / (1 + d)

        def ce(z, target):
            m = max(z)
            return m + sum((x - m).exp() for x in z).ln() - z[target]

        s = decimal.Decimal(scale)
        A, P = rows_of(a), rows_of(p)
        cands = P + ([] if n is None else rows_of(n))
        out = []
        for i, u in enumerate(A):
            term = ce([s * sim(u, c) for c in cands], i)
            if symmetric:
                term = (term + ce([s * sim(P[i], v) for v in A], i)) / 2
            out.append(float(term))
    return torch.tensor(out, dtype=torch.float64)


def pow2(x, power):
    """x * 2**power in two exact steps (2.0**power alone may overflow a Python float)."""
    return x * 2.0 ** (power // 2) * 2.0 ** (power - power // 2)


def triplet(gen, dtype, power, b=4, k=2, d=6):
    """Random (a, p, n) times 2**power in `dtype` (entries round, subnormals lose bits)."""
    out = tuple(pow2(rand(*s, gen=gen), power).to(dtype) for s in ((b, d), (b, d), (b, k, d)))
    assert all(torch.isfinite(x).all() for x in out)
    return out


def exact_scaled(xs, power):
    """The inputs' exact values in float64, times 2**power."""
    return [pow2(x.double(), power) for x in xs]


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize(
    "dtype, power, grads_fit",
    [
        (torch.float64, -45, True),  # norms ~1e-13: F.normalize's eps made this 1.40 instead of 4.2
        (torch.float64, 664, True),  # ~1e200: squares overflow
        (torch.float64, -1030, False),  # subnormal entries; the gradient (~2**1030) overflows
        (torch.float32, -45, True),
        (torch.float32, 64, True),  # ~1.8e19: the float32 norm overflowed (the loss was log(B))
        (torch.float32, 120, True),  # ~1e36
        (torch.float32, -140, False),  # subnormal float32
    ],
)
def test_cosine_is_scale_free(dtype, power, grads_fit, symmetric):
    gen = torch.Generator().manual_seed(40 + power % 97)
    xs = triplet(gen, dtype, power)
    loss = rnn.MultipleNegativesRankingLoss(20.0, "cosine", symmetric, reduction="none")
    got, got_g = grads(lambda *x: loss(*x).sum(), *xs)
    # cosine(2**power x, 2**power y) = cosine(x, y): the reference sees the unscaled values
    want, want_g = grads(
        lambda *x: ref_mnrl_rows(*x, 20.0, "cosine", symmetric).sum(), *exact_scaled(xs, -power)
    )
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    torch.testing.assert_close(got.double(), want, **tol)
    for g in got_g:
        assert not torch.isnan(g).any()
    if grads_fit:
        for g, w in zip(got_g, want_g):  # d/dx f(2**-power x) = 2**-power f'
            torch.testing.assert_close(g.double(), w * 2.0**-power, **tol)


def test_cosine_issue_reproducer_is_scale_free():
    gen = torch.Generator().manual_seed(13)
    a, p = rand(4, 8, gen=gen), rand(4, 8, gen=gen)
    loss = rnn.MultipleNegativesRankingLoss(similarity="cosine")
    want = ref_mnrl(a, p, None, 20.0, "cosine", False)
    for factor in (1e-13, 1e-200, 1e200, 1e-310):
        torch.testing.assert_close(loss(a * factor, p * factor), want, rtol=1e-9, atol=1e-9)
    for factor in (1e-20, 1e19, 1e30, 1e-40):
        got = loss((a * factor).float(), (p * factor).float())
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("symmetric", [False, True])
def test_cosine_zero_vector_is_cosine_zero_with_zero_gradient(symmetric):
    """The convention of F.normalize and sentence-transformers' cos_sim, without their
    gradient of 1/eps: a zero row's cosine is 0 and its gradient is 0."""
    gen = torch.Generator().manual_seed(5)
    a, p, n = rand(4, 5, gen=gen), rand(4, 5, gen=gen), rand(4, 1, 5, gen=gen)
    a[1] = 0.0
    n[2, 0] = 0.0

    def sim(u, v, kind):
        if not u.detach().any() or not v.detach().any():
            return torch.zeros((), dtype=u.dtype)
        return ref_sim(u, v, kind)

    loss = rnn.MultipleNegativesRankingLoss(20.0, "cosine", symmetric)
    got, got_g = grads(lambda *x: loss(*x), a, p, n)
    want, want_g = grads(lambda *x: ref_mnrl(*x, 20.0, "cosine", symmetric, sim=sim), a, p, n)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)
    assert torch.equal(got_g[0][1], torch.zeros(5, dtype=torch.float64))
    assert torch.equal(got_g[2][2, 0], torch.zeros(5, dtype=torch.float64))
    # the value agrees with F.normalize-based cosine (sentence-transformers' cos_sim)
    st = (
        torch.nn.functional.normalize(a, dim=1)
        @ torch.nn.functional.normalize(torch.cat([p, n[:, 0]]), dim=1).T
    )
    want_st = torch.nn.functional.cross_entropy(20.0 * st, torch.arange(4))
    if not symmetric:
        torch.testing.assert_close(got, want_st, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize(
    "dtype, power, scale_power", [(torch.float32, 100, -200), (torch.float64, 530, -1058)]
)
def test_dot_with_overflowing_products_but_moderate_logits(dtype, power, scale_power, symmetric, k):
    """x.y overflows the dtype (~1e60 in float32, ~1e319 in float64) while scale * x.y is
    ordinary: the loss is the ordinary one (it was NaN)."""
    gen = torch.Generator().manual_seed(70 + k + symmetric)
    xs = triplet(gen, dtype, power, k=k)[: 3 if k else 2]
    scale = 2.0**scale_power
    loss = rnn.MultipleNegativesRankingLoss(scale, "dot", symmetric, reduction="none")
    got, got_g = grads(lambda *x: loss(*x).sum(), *xs)
    # scale * (2**power x).(2**power y) = (scale 2**(2 power)) * x.y, all exact
    s = 2.0 ** (scale_power + 2 * power)
    want, want_g = grads(
        lambda a_, p_, n_=None: ref_mnrl_rows(a_, p_, n_, s, "dot", symmetric).sum(),
        *exact_scaled(xs, -power),
    )
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    torch.testing.assert_close(got.double(), want, **tol)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g.double(), w * 2.0**-power, **tol)
    n = xs[2] if k else None
    torch.testing.assert_close(loss(*xs).double(), dec_rows(xs[0], xs[1], n, scale, "dot", symmetric), **tol)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("magnitude", [1e19, 1e30])
def test_dot_loss_beyond_float32_is_inf_never_nan(magnitude, symmetric):
    """The true terms are 0 (the positive wins by ~1e60) or ~1e60 (beyond float32): 0 or
    +inf, never NaN; the gradient is the true one (the softmax one-hot at the winner)."""
    gen = torch.Generator().manual_seed(int(math.log10(magnitude)) + symmetric)
    a, p, n = (x.float() for x in triplet(gen, torch.float64, 0))
    a, p, n = a * magnitude, p * magnitude, n * magnitude
    p[0] = 3 * a[0]  # anchor 0's positive wins
    loss = rnn.MultipleNegativesRankingLoss(1.0, "dot", symmetric, reduction="none")
    weights = torch.rand(4, generator=gen, dtype=torch.float64)
    _, got_g = grads(lambda *x: (loss(*x) * weights).sum(), a, p, n)
    rows = dec_rows(a, p, n, 1.0, "dot", symmetric)
    v = loss(a, p, n)
    assert not torch.isnan(v).any()
    torch.testing.assert_close(v, rows.float(), rtol=1e-5, atol=1e-30)  # 0 or inf alike
    assert v[0] == 0.0 and torch.isinf(v).any()
    # float64 holds these logits: its gradient is the reference
    _, want_g = grads(
        lambda *x: (ref_mnrl_rows(*x, 1.0, "dot", symmetric) * weights).sum(),
        a.double(),
        p.double(),
        n.double(),
    )
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-30)


def test_dot_loss_beyond_float64_is_inf_never_nan():
    gen = torch.Generator().manual_seed(17)
    a, p, n = triplet(gen, torch.float64, 600)
    p[0] = 3 * a[0]
    loss = rnn.MultipleNegativesRankingLoss(1.0, "dot", True, reduction="none")
    _, got_g = grads(lambda *x: loss(*x).sum(), a, p, n)
    v = loss(a, p, n)
    torch.testing.assert_close(v, dec_rows(a, p, n, 1.0, "dot", True), rtol=1e-10, atol=1e-300)
    assert v[0] == 0.0 and torch.isinf(v).any()
    for g in got_g:
        assert torch.isfinite(g).all()


DISTANCES = ("euclidean", "manhattan", "euclidean_sim", "manhattan_sim")


@pytest.mark.parametrize("kind", DISTANCES)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("dtype, power", [(torch.float32, 66), (torch.float32, 126), (torch.float64, 530)])
def test_distances_do_not_overflow(kind, dtype, power, symmetric):
    """Entries ~2**power: squared norms (and at 2**126 the distances) overflow. Positive 0
    equals its anchor and a hard negative equals another anchor (zero distances)."""
    gen = torch.Generator().manual_seed(SIMS.index(kind) + power + symmetric)
    a, p, n = triplet(gen, dtype, power)
    p[0] = a[0]
    n[1, 0] = a[2]
    scale = 20.0
    if kind.endswith("_sim"):  # -d logits: a scale that keeps the gaps moderate
        scale = 2.0 ** (-power) * 3.0
    loss = rnn.MultipleNegativesRankingLoss(scale, kind, symmetric, reduction="none")
    _, got_g = grads(lambda *x: loss(*x).sum(), a, p, n)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    torch.testing.assert_close(loss(a, p, n).double(), dec_rows(a, p, n, scale, kind, symmetric), **tol)
    for g in got_g:
        assert torch.isfinite(g).all()
    if kind.endswith("_sim"):  # -d(2**power x, 2**power y) * scale = -d(x, y) * scale 2**power
        _, want_g = grads(
            lambda *x: ref_mnrl_rows(*x, scale * 2.0**power, kind, symmetric).sum(),
            *exact_scaled((a, p, n), -power),
        )
        for g, w in zip(got_g, want_g):
            torch.testing.assert_close(g.double(), w * 2.0**-power, **tol)


def test_euclidean_issue_reproducer_is_not_a_zero_distance():
    """float32 at 1e20: ||a||^2 + ||b||^2 - 2 a.b overflowed and every distance read as 0
    (the loss was log(B) = 1.386); the positives equal the anchors, the other distances
    are ~1e20, so the true loss is ~(B - 1) e^-20."""
    gen = torch.Generator().manual_seed(8)
    a = (rand(4, 8, gen=gen) * 1e20).float()
    loss = rnn.MultipleNegativesRankingLoss(similarity="euclidean")
    got = loss(a, a.clone())
    want = dec_rows(a, a, None, 20.0, "euclidean", False).mean()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)
    assert float(got) < 1e-7


def test_mnrl_one_huge_row_among_ordinary_ones():
    """Rows 2**100 apart in one float32 batch: each row is rescaled on its own."""
    gen = torch.Generator().manual_seed(19)
    a, p, n = triplet(gen, torch.float32, 0)
    a[3] *= 2.0**100
    p[1] *= 2.0**-60
    for kind in SIMS:
        scale = 2.0**-100 if kind in ("dot", "euclidean_sim", "manhattan_sim") else 20.0
        for symmetric in (False, True):
            loss = rnn.MultipleNegativesRankingLoss(scale, kind, symmetric, reduction="none")
            got = loss(a, p, n)
            want = dec_rows(a, p, n, scale, kind, symmetric)
            torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-5, msg=f"{kind} {symmetric}")


@pytest.mark.parametrize("kind", SIMS)
@pytest.mark.parametrize("scale", [1e30, 1e300])
def test_huge_scale_gives_the_true_loss_or_inf_never_nan(kind, scale):
    """float32 embeddings, scale 1e30 (terms ~1e29, finite) or 1e300 (beyond float32):
    the terms are the true ones, 0 or +inf, never NaN."""
    gen = torch.Generator().manual_seed(23)
    a, p, n = (x.float() for x in triplet(gen, torch.float64, 0))
    p[0] = a[0]
    loss = rnn.MultipleNegativesRankingLoss(scale, kind, True, reduction="none")
    _, got_g = grads(lambda *x: loss(*x).sum(), a, p, n)
    got = loss(a, p, n)
    want = dec_rows(a, p, n, scale, kind, True)
    assert not torch.isnan(got).any()
    torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-30)
    if scale == 1e30:  # the true gradient, ~scale, fits float32
        for g in got_g:
            assert torch.isfinite(g).all()


# -------------------------------------------------------- sentence-transformers' MNRL


def st_similarity(name):
    """sentence_transformers/util/similarity.py (UKPLab/sentence-transformers), transcribed:
    cos_sim normalizes with `torch.nn.functional.normalize(p=2, dim=1)` then `a @ b.T`;
    dot_score is `a @ b.T`; euclidean_sim is `-torch.cdist(a, b, p=2.0)`; manhattan_sim
    is `-torch.cdist(a, b, p=1.0)`."""
    f = torch.nn.functional
    return {
        "cos_sim": lambda a, b: f.normalize(a, p=2, dim=1) @ f.normalize(b, p=2, dim=1).T,
        "dot_score": lambda a, b: a @ b.T,
        "euclidean_sim": lambda a, b: -torch.cdist(a, b, p=2.0),
        "manhattan_sim": lambda a, b: -torch.cdist(a, b, p=1.0),
    }[name]


def st_mnrl(a, p, n, scale, similarity_fct, symmetric):
    """sentence_transformers/losses/MultipleNegativesRankingLoss.py, transcribed:
    `scores = similarity_fct(anchors, torch.cat([positives, negatives_1, ..])) * scale`,
    `cross_entropy(scores, range(B))`, each hard-negative column a block of B candidates;
    MultipleNegativesSymmetricRankingLoss adds `cross_entropy(scores[:, :B].T, labels)`
    and halves the sum."""
    cols = [p] + ([] if n is None else [n[:, j] for j in range(n.shape[1])])
    scores = similarity_fct(a, torch.cat(cols)) * scale
    labels = torch.arange(a.shape[0])
    forward = torch.nn.functional.cross_entropy(scores, labels)
    if not symmetric:
        return forward
    backward = torch.nn.functional.cross_entropy(scores[:, : a.shape[0]].T, labels)
    return (forward + backward) / 2


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("cosine", "cos_sim"),
        ("dot", "dot_score"),
        ("euclidean_sim", "euclidean_sim"),
        ("manhattan_sim", "manhattan_sim"),
    ],
)
@pytest.mark.parametrize("k", [None, 1, 3])
@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_sentence_transformers_mnrl(ours, theirs, k, symmetric):
    gen = torch.Generator().manual_seed(500 + 10 * (k or 0) + symmetric)
    a, p = rand(6, 5, gen=gen), rand(6, 5, gen=gen)
    n = None if k is None else rand(6, k, 5, gen=gen)
    scale = 20.0 if ours == "cosine" else 1.3
    args = (a, p) if n is None else (a, p, n)
    loss = rnn.MultipleNegativesRankingLoss(scale, ours, symmetric)
    got, got_g = grads(lambda *x: loss(*x), *args)
    fct = st_similarity(theirs)
    want, want_g = grads(lambda a_, p_, n_=None: st_mnrl(a_, p_, n_, scale, fct, symmetric), *args)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    for g, w in zip(got_g, want_g):
        torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)


def test_quaterion_euclidean_is_not_sentence_transformers_euclidean_sim():
    """similarity="euclidean"/"manhattan" keep quaterion's 1/(1 + d); sentence-transformers'
    -d is "euclidean_sim"/"manhattan_sim"."""
    gen = torch.Generator().manual_seed(6)
    a, p = rand(5, 4, gen=gen), rand(5, 4, gen=gen)
    for ours, theirs in (("euclidean", "euclidean_sim"), ("manhattan", "manhattan_sim")):
        st = st_mnrl(a, p, None, 20.0, st_similarity(theirs), False)
        assert not torch.allclose(rnn.MultipleNegativesRankingLoss(20.0, ours)(a, p), st)
        torch.testing.assert_close(rnn.MultipleNegativesRankingLoss(20.0, theirs)(a, p), st)
    doc = rnn.MultipleNegativesRankingLoss.__doc__
    assert "euclidean_sim" in doc and "1/(1 + ||u - v||_2)" in doc


def test_ldexp_is_exact_and_saturates_only_beyond_the_range():
    from rankgrad.nn._similarity import ldexp

    for dtype in (torch.float32, torch.float64):
        info = torch.finfo(dtype)
        xs = torch.tensor([1.0, -1.5, 0.75, info.tiny, info.smallest_normal / 8, 3.0, 0.0], dtype=dtype)
        span = 300 if dtype == torch.float32 else 2200
        for e in range(-span, span + 1, 7):
            got = ldexp(xs, torch.full_like(xs, e, dtype=torch.int32))
            want = torch.tensor([exact_ldexp(float(x), e) for x in xs], dtype=torch.float64).to(dtype)
            assert torch.equal(got, want), (dtype, e, got, want)


def exact_ldexp(x, e):
    try:
        return math.ldexp(x, e)  # correctly rounded in float64 (0.0 below its range)
    except OverflowError:
        return math.copysign(math.inf, x)


# ------------------------------------------------ regularizers: finite in, finite out


def dec_penalty(x, kind, weight):
    """`weight * penalty(x)` in decimal arithmetic from the exact input values (float64,
    +inf beyond its range)."""
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 50, 10**6, -(10**6)
        rows = [[decimal.Decimal(v) for v in r] for r in x.double().reshape(-1, x.shape[-1]).tolist()]
        n = len(rows)
        if kind == "l1":
            value = sum(sum(abs(v) for v in r) for r in rows) / n
        elif kind == "l2":
            value = sum(sum(v * v for v in r).sqrt() for r in rows) / n
        else:
            value = sum((sum(abs(r[j]) for r in rows) / n) ** 2 for j in range(len(rows[0])))
        return float(decimal.Decimal(weight) * value)


REG_CASES = {
    # name: (dtype, rows, weight): the issue's case, huge (some penalties overflow: inf is
    # right), row norms or sums beyond the dtype under a small weight, a row mean whose sum
    # overflows, subnormal entries (squares underflow), and a weight that overflows.
    "issue_1e20": (torch.float32, lambda g: torch.full((2, 4), 1e20), 1e-4),
    "f32_1e30": (torch.float32, lambda g: rand(3, 5, gen=g) * 2.0**100, 1e-4),
    "f32_near_max": (torch.float32, lambda g: rand(3, 5, gen=g).clamp(-1.9, 1.9) * 2.0**126, 1e-4),
    "f32_row_sum_overflows": (
        torch.float32,
        lambda g: torch.tensor([[3e38, 0.0, 0.0], [3e38, 0.0, 0.0]]),
        1.0,
    ),
    "f32_subnormal": (torch.float32, lambda g: rand(3, 5, gen=g) * 2.0**-140, 1.0),
    "f64_1e210": (torch.float64, lambda g: rand(3, 5, gen=g) * 2.0**700, 1e-4),
    "f64_subnormal": (torch.float64, lambda g: rand(3, 5, gen=g) * 2.0**-535 * 2.0**-535, 1.0),
    "f32_weight_overflows": (torch.float32, lambda g: rand(3, 5, gen=g) * 2.0**100, 1e10),
}


@pytest.mark.parametrize("kind", REGS)
@pytest.mark.parametrize("case", REG_CASES)
def test_regularizers_are_finite_where_the_true_value_is(kind, case):
    dtype, make, weight = REG_CASES[case]
    gen = torch.Generator().manual_seed(len(case))
    q = make(gen).to(dtype)
    d = q.clone() if case == "issue_1e20" else (make(gen) * 0.5).to(dtype)
    assert torch.isfinite(q).all() and torch.isfinite(d).all()
    info = torch.finfo(dtype)
    tiny = 8 * info.tiny * info.eps  # a few units of the smallest subnormal
    reg = REGS[kind](query_weight=weight, doc_weight=weight)
    got, got_g = grads(lambda q_, d_: reg(q_, d_), q, d)
    want = dec_penalty(q, kind, weight) + dec_penalty(d, kind, weight)
    assert not torch.isnan(got)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64).to(dtype), rtol=1e-5, atol=tiny)
    if case == "issue_1e20" and kind == "l2":
        assert float(got) == pytest.approx(4e16, rel=1e-6)
    if dtype == torch.float32:  # float64 holds these: its gradient is the reference
        _, want_g = grads(
            lambda q_, d_: weight * (ref_penalty(q_, kind) + ref_penalty(d_, kind)), q.double(), d.double()
        )
        for g, w in zip(got_g, want_g):
            torch.testing.assert_close(g, w.to(dtype), rtol=1e-5, atol=tiny)
    elif kind != "flops":  # L1 and L2 gradients do not depend on the rows' scale
        s = -700 if case == "f64_1e210" else 1070
        _, want_g = grads(
            lambda q_, d_: weight * (ref_penalty(q_, kind) + ref_penalty(d_, kind)), *exact_scaled((q, d), s)
        )
        for g, w in zip(got_g, want_g):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=0)


# ------------------------------------------------------- sparse and quantized inputs


def odd_layouts(x):
    """x as a sparse COO, a sparse CSR (2-D) and a quantized tensor."""
    out = {"sparse_coo": x.to_sparse()}
    if x.dim() == 2:
        out["sparse_csr"] = x.to_sparse_csr()
    out["quantized"] = torch.quantize_per_tensor(x.float(), 0.1, 0, torch.quint8)
    return out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sparse_and_quantized_embeddings_are_refused_up_front():
    a, p, n = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 2, 4)
    loss = rnn.MultipleNegativesRankingLoss()
    for pos, name in enumerate(("anchors", "positives", "negatives")):
        args = [a, p, n]
        for layout, bad in odd_layouts(args[pos]).items():
            args[pos] = bad
            with pytest.raises(TypeError, match=f"{name} must be a dense tensor, got a {layout} tensor"):
                loss(*args)
    for cls in REGS.values():
        for layout, bad in odd_layouts(a).items():
            with pytest.raises(TypeError, match=f"query_embeddings must be a dense tensor, got a {layout}"):
                cls()(bad, p)
            with pytest.raises(TypeError, match=f"doc_embeddings must be a dense tensor, got a {layout}"):
                cls()(a, bad)
