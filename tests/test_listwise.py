"""lambda_loss, softmax_loss, listmle_loss: against independent references (a transcription of
allRank's lambdaLoss formulation, plain per-pair loops, numpy transcriptions of Rax's formulas),
Rust vs torch-native parity, gradients, degenerate lists, errors, torch integration."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rankgrad
from rankgrad.listwise import WEIGHTINGS, lambda_loss, listmle_loss, softmax_loss
from rankgrad.listwise._op import OP as LAMBDA_LOSS_OP
from rankgrad.nn._listwise import LambdaLoss, ListMLELoss, SoftmaxLoss

BACKENDS = ["rust", "torch"]
SHAPES = [(1, 2), (3, 7), (4, 16), (2, 33), (5, 1)]


# ---------------------------------------------------------------- references
def allrank_lambda_loss(y_pred, y_true, weighing_scheme, k=None, sigma=1.0, mu=10.0, eps=1e-10):
    """allRank's lambdaLoss formulation (reduction="sum", binary log), rewritten here: the
    padding value -1 in y_true marks padded items; every pair at once in `[B, N, N]` tensors,
    autograd for the gradient. Two deliberate differences: a stable sort (allRank's sort leaves
    the order of tied scores unspecified) and discounts in the input dtype (allRank's are
    float32). Its eps clamps on sigmoid and on sigmoid^w are kept."""
    pad = y_true == -1
    neg_inf = torch.tensor(-math.inf, dtype=y_pred.dtype)
    sp = torch.where(pad, neg_inf, y_pred)
    st = torch.where(pad, neg_inf, y_true)
    sp_sorted, idx = sp.sort(descending=True, dim=-1, stable=True)
    ideal, _ = st.sort(descending=True, dim=-1)
    t_by_pred = st.gather(1, idx)
    diff_t = t_by_pred[:, :, None] - t_by_pred[:, None, :]
    pairs = torch.isfinite(diff_t)
    if weighing_scheme != "ndcg1":
        pairs = pairs & (diff_t > 0)
    n = y_pred.shape[1]
    topk = torch.zeros(n, n, dtype=torch.bool)
    topk[:k, :k] = True
    t_by_pred, ideal = t_by_pred.clamp(min=0), ideal.clamp(min=0)
    d = torch.log2(1.0 + torch.arange(1, n + 1, dtype=y_pred.dtype))[None, :]
    max_dcg = ((2**ideal - 1) / d)[:, :k].sum(-1).clamp(min=eps)
    g = (2**t_by_pred - 1) / max_dcg[:, None]
    if weighing_scheme == "ndcg1":
        w = (g / d)[:, :, None]
    elif weighing_scheme == "ranknet":
        w = 1.0
    else:
        pos = torch.arange(1, n + 1)
        delta = (pos[:, None] - pos[None, :]).abs()
        dd = d[0]
        nd2 = (1 / dd[(delta - 1).clamp(min=0)] - 1 / dd[delta.clamp(max=n - 1)]).abs()
        nd2.fill_diagonal_(0)
        nd2 = nd2[None] * (g[:, :, None] - g[:, None, :]).abs()
        lr = (1 / d[:, :, None] - 1 / d[:, None, :]).abs() * (g[:, :, None] - g[:, None, :]).abs()
        w = {"ndcg2": nd2, "lambdarank": lr, "ndcg2pp": mu * nd2 + lr}[weighing_scheme]
    diffs = (sp_sorted[:, :, None] - sp_sorted[:, None, :]).clamp(min=-1e8, max=1e8)
    probas = (torch.sigmoid(sigma * diffs).clamp(min=eps) ** w).clamp(min=eps)
    return -torch.log2(probas)[pairs & topk].sum()


def brute_force(s, y, m, weighting, sigma=1.0, k=None, mu=10.0, scale_gains=True, exact=False):
    """Per-list losses and valid flags from the definition (SPEC 11), one pair at a time; with
    `exact`, each pair's `w * softplus(-x) / ln 2` in 60-digit decimal arithmetic (scores at the
    dtype's range: no overflow of `x`, of the products or of the sum; inf where a list's loss
    exceeds float64)."""
    s, y, m = (np.asarray(a, dtype=np.float64) for a in (s, y, m))
    out, valid = np.zeros(len(s)), np.zeros(len(s), dtype=bool)
    for b in range(len(s)):
        idx = np.flatnonzero(m[b])
        sr, yr = s[b, idx], y[b, idx]
        order = sorted(range(len(sr)), key=lambda i: -sr[i])  # stable: ties in input order
        pos = np.empty(len(sr), dtype=int)
        pos[order] = np.arange(len(sr))
        kk = len(sr) if k is None else min(k, len(sr))
        gain = (lambda v: 2.0 ** max(v, 0) - 1) if scale_gains else (lambda v: max(v, 0.0))
        ideal = sorted((gain(v) for v in yr), reverse=True)
        max_dcg = sum(ideal[p] / math.log2(p + 2) for p in range(kk))
        if kk < 2 or max_dcg <= 0:
            continue
        G = [gain(v) / max_dcg for v in yr]
        D = [math.log2(p + 2) for p in pos]
        rho = lambda d: 1 / math.log2(1 + d)  # noqa: E731
        total, pairs = (_exact_term(0.0, 0.0, 0.0, 0.0) if exact else 0.0), 0
        for i in range(len(sr)):
            for j in range(len(sr)):
                if i == j or pos[i] >= kk or pos[j] >= kk:
                    continue
                if weighting != "ndcg1" and not yr[i] > yr[j]:
                    continue
                dp = abs(pos[i] - pos[j])
                nd2 = abs(rho(dp) - rho(dp + 1)) * abs(G[i] - G[j])
                lr = abs(1 / D[i] - 1 / D[j]) * abs(G[i] - G[j])
                w = {
                    "ndcg1": G[i] / D[i],
                    "ndcg2": nd2,
                    "lambdarank": lr,
                    "ndcg2pp": mu * nd2 + lr,
                    "ranknet": 1,
                }
                if exact:
                    total += _exact_term(w[weighting], sigma, sr[i], sr[j])
                else:
                    x = sigma * (sr[i] - sr[j])
                    total += w[weighting] * (max(-x, 0) + math.log1p(math.exp(-abs(x)))) / math.log(2)
                pairs += 1
        if pairs:
            out[b], valid[b] = float(total), True
    return out, valid


def _exact_term(w, sigma, si, sj):
    """`w * softplus(-sigma (si - sj)) / ln 2` in 60-digit decimal arithmetic."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 60
        x = Decimal(sigma) * (Decimal(float(si)) - Decimal(float(sj)))
        tail = Decimal(0) if abs(x) > 10**5 else (1 + (-abs(x)).exp()).ln()
        return Decimal(float(w)) * (max(-x, Decimal(0)) + tail) / Decimal(2).ln()


def random_batch(rng, b, n, levels=3, pad=0.25, ties=True, scale=1.0):
    s = rng.normal(size=(b, n)) * scale
    if ties:
        s = np.round(s * 4) / 4
    y = rng.integers(0, levels + 1, size=(b, n)).astype(np.float64)
    m = rng.random((b, n)) > pad
    m[:, 0] = True
    return s, y, m


def t(*arrays, dtype=torch.float64, grad=False):
    out = [torch.tensor(a, dtype=torch.bool if a.dtype == bool else dtype) for a in arrays]
    if grad:
        out[0].requires_grad_(True)
    return out


# ---------------------------------------------------------------- lambda_loss: values
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("k", [None, 1, 3, 50])
def test_lambda_loss_matches_allrank(weighting, k):
    """Distinct moderate scores (where allRank's eps clamps are inactive) and targets >= 0
    with a relevant item per list (where allRank's eps-clamped maxDCG gives the same pairs)."""
    rng = np.random.default_rng(1)
    for b, n in [(3, 7), (2, 20), (1, 2)]:
        s = rng.normal(size=(b, n)) * 0.5
        y = rng.integers(0, 4, size=(b, n)).astype(np.float64)
        y[:, 0] = 2.0
        m = rng.random((b, n)) > 0.3
        m[:, :2] = True
        y_pad = np.where(m, y, -1.0)
        sp, yp = t(s, y_pad, grad=True)
        ref = allrank_lambda_loss(sp, yp, weighting, k=k, sigma=1.3, mu=4.0)
        if weighting == "ndcg1":  # allRank adds the constant i == j terms -log2(sigmoid(0))^w = G_i / D_i
            kk = np.minimum(m.sum(1), n if k is None else k)
            ref_const = 0.0
            for r in range(b):
                order = np.argsort(-np.where(m[r], s[r], -np.inf), kind="stable")[: kk[r]]
                ideal = np.sort(np.where(m[r], 2.0 ** y[r] - 1, 0))[::-1][: kk[r]]
                mdcg = (ideal / np.log2(np.arange(kk[r]) + 2)).sum()
                ref_const += sum((2.0 ** y[r, i] - 1) / mdcg / math.log2(p + 2) for p, i in enumerate(order))
            ref = ref - ref_const
        (g_ref,) = torch.autograd.grad(ref, sp)
        for backend in BACKENDS:
            st, yt, mt = t(s, y, m, grad=True)
            out = lambda_loss(st, yt, weighting, 1.3, k, 4.0, mask=mt, reduction="sum", backend=backend)
            (g,) = torch.autograd.grad(out, st)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lambda_loss_matches_brute_force(weighting, backend, dtype):
    rng = np.random.default_rng(2)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    for (b, n), (sigma, k, mu, sg) in zip(
        SHAPES * 2, [(1.0, None, 10.0, True), (0.7, 3, 2.0, False), (2.0, 5, 0.0, True)] * 4
    ):
        s, y, m = random_batch(rng, b, n)
        ref, ref_valid = brute_force(s, y, m, weighting, sigma, k, mu, sg)
        st, yt, mt = t(s, y, m, dtype=dtype)
        out = lambda_loss(st, yt, weighting, sigma, k, mu, mt, "none", sg, backend=backend)
        assert out.dtype == dtype and out.shape == (b,)
        np.testing.assert_allclose(out.double().numpy(), ref, rtol=tol, atol=tol)
        mean = lambda_loss(st, yt, weighting, sigma, k, mu, mt, scale_gains=sg, backend=backend)
        np.testing.assert_allclose(float(mean), ref.sum() / max(ref_valid.sum(), 1), rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 10),
    st.sampled_from(WEIGHTINGS),
    st.one_of(st.none(), st.integers(1, 6)),
    st.floats(0.1, 5.0),
    st.integers(0, 2**32 - 1),
)
def test_lambda_loss_property(b, n, weighting, k, sigma, seed):
    """Random shapes, ties, masks and options: both backends equal the brute force."""
    rng = np.random.default_rng(seed)
    s, y, m = random_batch(rng, b, n, levels=int(rng.integers(1, 5)), pad=float(rng.random()) * 0.5)
    ref, _ = brute_force(s, y, m, weighting, sigma, k, 3.0)
    for backend in BACKENDS:
        out = lambda_loss(s, y, weighting, sigma, k, 3.0, mask=m, reduction="none", backend=backend)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


def test_ties_in_scores_take_input_order():
    # three tied scores: positions 0, 1, 2 in input order; the pair (item 2 over item 0)
    s = np.array([[0.0, 0.0, 0.0]])
    y = np.array([[0.0, 1.0, 2.0]])
    for backend in BACKENDS:
        for w in WEIGHTINGS:
            ref, _ = brute_force(s, y, np.ones_like(s, bool), w)
            out = lambda_loss(torch.tensor(s), torch.tensor(y), w, reduction="none", backend=backend)
            np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12)
    # the top-2 by input order holds items 0 and 1: with k=2 only their pair counts
    out = lambda_loss(torch.tensor(s), torch.tensor(y), "ranknet", k=2, reduction="none")
    np.testing.assert_allclose(out.numpy(), [1.0])  # -log2(sigmoid(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_numpy_in_numpy_out_and_low_precision(backend):
    rng = np.random.default_rng(3)
    s, y, m = random_batch(rng, 3, 9)
    out = lambda_loss(s, y, mask=m, reduction="none", backend=backend)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, brute_force(s, y, m, "ndcg2pp")[0], rtol=1e-10)
    scalar = lambda_loss(s.astype(np.float32), y, mask=m, backend=backend)
    assert isinstance(scalar, (np.ndarray, np.generic)) and scalar.dtype == np.float32
    for dt in (torch.float16, torch.bfloat16):
        out = lambda_loss(torch.tensor(s, dtype=dt), torch.tensor(y), mask=torch.tensor(m), backend=backend)
        assert out.dtype == dt
    one = lambda_loss(s[0], y[0], mask=m[0], reduction="none", backend=backend)
    np.testing.assert_allclose(one, out_one := brute_force(s[:1], y[:1], m[:1], "ndcg2pp")[0][0], rtol=1e-10)
    assert np.ndim(one) == 0 and out_one > 0


# ---------------------------------------------------------------- twins and gradients
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rust_and_torch_agree(weighting, dtype):
    rng = np.random.default_rng(4)
    tol = 1e-11 if dtype == torch.float64 else 1e-5
    for (b, n), k in zip(SHAPES + [(2, 300)], [None, 2, 4, None, 1, 17]):
        s, y, m = random_batch(rng, b, n, levels=4)
        s = np.where(m, s, np.nan)  # padding holds NaN: ignored
        res = []
        for backend in BACKENDS:
            st, yt, mt = t(s, y, m, dtype=dtype, grad=True)
            out = lambda_loss(st, yt, weighting, 1.5, k, mask=mt, reduction="none", backend=backend)
            (g,) = torch.autograd.grad(out.sum(), st)
            assert torch.all(g[~mt] == 0) and torch.isfinite(g).all()
            res.append((out, g))
        torch.testing.assert_close(res[0][0], res[1][0], rtol=tol, atol=tol)
        torch.testing.assert_close(res[0][1], res[1][1], rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_gradcheck(backend, weighting):
    rng = np.random.default_rng(5)
    s, y, m = random_batch(rng, 3, 8, ties=False)
    st, yt, mt = t(s, y, m, grad=True)
    assert torch.autograd.gradcheck(
        lambda x: lambda_loss(x, yt, weighting, 0.8, 5, mask=mt, backend=backend), (st,)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_backward_raises(backend):
    st, yt = t(np.array([[0.3, -0.2, 1.0]]), np.array([[1.0, 0.0, 2.0]]), grad=True)
    (g,) = torch.autograd.grad(lambda_loss(st, yt, backend=backend), st, create_graph=True)
    with pytest.raises(RuntimeError, match="second derivatives"):
        torch.autograd.grad(g.sum(), st)


def test_extreme_scores_stay_finite():
    s = np.array([[1e4, -1e4, 0.0, 40.0, -35.0]])
    y = np.array([[0.0, 3.0, 1.0, 2.0, 1.0]])
    for w in WEIGHTINGS:
        ref, _ = brute_force(s, y, np.ones_like(s, bool), w)
        for backend in BACKENDS:
            for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
                st, yt = t(s, y, dtype=dtype, grad=True)
                out = lambda_loss(st, yt, w, reduction="sum", backend=backend)
                (g,) = torch.autograd.grad(out, st)
                assert torch.isfinite(g).all()
                np.testing.assert_allclose(float(out.detach()), ref.sum(), rtol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_scores_with_sigma_above_one(backend, dtype):
    """Issue 17 item 1: lambda_loss([3e38, -3e38], [1, 0], sigma=2) was NaN on both backends (an
    ordered pair, true value ~0): the other direction's overflowed softplus met its zero weight.
    Against 60-digit decimal arithmetic, every weighting, sigma up to the dtype's largest, pairs
    in and against their order, alone and among ordinary items: the true value where it fits
    (inf beyond, never NaN), finite gradients."""
    big = 0.9 * float(torch.finfo(dtype).max)
    fmax = float(torch.finfo(dtype).max)
    top = float(np.sqrt(np.finfo(np.float32 if dtype == torch.float32 else np.float64).max))
    cases = [
        ([big, -big], [1.0, 0.0]),  # the reproducer (at 0.9 max)
        ([-big, big], [1.0, 0.0]),  # against its order: w sigma 1.8 max / ln 2, beyond the range
        ([fmax, -fmax, 0.5], [2.0, 0.0, 1.0]),
        ([big, 0.0, -big, 1.0, -2.0, big / 2], [0.0, 1.0, 3.0, 2.0, 0.0, 1.0]),
        ([1e30, -1e30, 0.25], [0.0, 1.0, 0.0]),  # misordered: a large loss that fits
    ]
    tol = 1e-10 if dtype == torch.float64 else 2e-6
    for weighting in WEIGHTINGS:
        for sigma in (1.5, 2.0, 4.0, top):
            for s, y in cases:
                st, yt = t(np.array([s]), np.array([y]), dtype=dtype, grad=True)
                out = lambda_loss(st, yt, weighting, sigma, reduction="sum", backend=backend)
                (g,) = torch.autograd.grad(out, st)
                sd = st.detach().double().numpy()
                want, _ = brute_force(sd, np.array([y]), np.ones_like(sd, bool), weighting, sigma, exact=True)
                assert torch.isfinite(g).all(), (weighting, sigma, s)
                if want[0] > fmax:
                    assert float(out) == math.inf, (weighting, sigma, s)
                else:
                    assert float(out) == pytest.approx(want[0], rel=tol, abs=1e-30), (weighting, sigma, s)
    # the exact call
    out = rankgrad.lambda_loss(
        torch.tensor([3e38, -3e38]), torch.tensor([1.0, 0.0]), sigma=2.0, backend=backend
    )
    assert 0.0 <= float(out) < 1e-30


def test_same_bits_at_any_thread_count():
    rng = np.random.default_rng(6)
    s, y, m = random_batch(rng, 9, 200, ties=False)
    st, yt, mt = t(s, y, m, dtype=torch.float32)
    before = rankgrad.get_num_threads()
    try:
        outs = []
        for n in (1, 2):
            rankgrad.set_num_threads(n)
            x = st.clone().requires_grad_(True)
            out = lambda_loss(x, yt, mask=mt, reduction="none")
            (g,) = torch.autograd.grad(out.sum(), x)
            outs.append((out, g))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    finally:
        rankgrad.set_num_threads(before)


# ---------------------------------------------------------------- degenerate lists and errors
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_degenerate_lists_count_zero(backend, weighting):
    # 0: labels tied; 1: one real item; 2: nothing real; 3: all gains zero; 4: a real list
    s = np.array([[1.0, 2.0, 3.0], [0.5, 0.1, 0.2], [0.3, 0.4, 0.5], [1.0, 2.0, 3.0], [0.1, 0.9, 0.4]])
    y = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, -1.0, -2.0], [0.0, 1.0, 2.0]])
    m = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 1, 1]], dtype=bool)
    st, yt, mt = t(s, y, m, grad=True)
    out = lambda_loss(st, yt, weighting, mask=mt, reduction="none", backend=backend)
    (g,) = torch.autograd.grad(out.sum(), st)
    ref, valid = brute_force(s, y, m, weighting)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12)
    assert list(valid) == [weighting == "ndcg1", False, False, False, True]
    assert torch.all(g[1:4] == 0)
    mean = lambda_loss(st, yt, weighting, mask=mt, backend=backend)
    np.testing.assert_allclose(float(mean.detach()), ref.sum() / valid.sum(), rtol=1e-12)
    # nothing counts: 0.0 and zero gradient; empty batch and empty lists too
    for shape in ((2, 3), (0, 4), (3, 0)):
        x = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        loss = lambda_loss(x, torch.zeros(shape), weighting, backend=backend)
        (g,) = torch.autograd.grad(loss, x)
        assert float(loss.detach()) == 0.0 and g.shape == shape and torch.all(g == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input(backend):
    s, y = torch.randn(2, 4), torch.randint(0, 3, (2, 4)).float()
    bad_s = s.clone()
    bad_s[1, 2] = math.nan
    with pytest.raises(ValueError, match=r"scores.*list 1"):
        lambda_loss(bad_s, y, backend=backend)
    big = y.clone()
    big[1, 0] = 1001.0
    with pytest.raises(ValueError, match="targets"):
        lambda_loss(s, big, backend=backend)
    lambda_loss(s, big, scale_gains=False, backend=backend)  # linear gains: fine
    for kwargs, err, name in [
        ({"weighting": "ndcg3"}, ValueError, "weighting"),
        ({"mu": -1.0}, ValueError, "mu"),
        ({"mu": math.inf}, ValueError, "mu"),
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": "a"}, TypeError, "sigma"),
        ({"k": 0}, ValueError, "k"),
        ({"reduction": "avg"}, ValueError, "reduction"),
    ]:
        with pytest.raises(err, match=name):
            lambda_loss(s, y, backend=backend, **kwargs)
    with pytest.raises(ValueError, match="targets"):
        lambda_loss(s, y[:, :3], backend=backend)
    with pytest.raises(TypeError, match="mask"):
        lambda_loss(s, y, mask=torch.ones(2, 4), backend=backend)
    x = s.clone()
    lambda_loss(x, y, backend=backend)
    assert torch.equal(x, s)  # no in-place change


# ---------------------------------------------------------------- torch integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_func_vmap_meta(backend):
    """grad, vmap and meta shapes with k=4 (compile: the registry in test_torch_integration)."""
    rng = np.random.default_rng(7)
    s, y, m = random_batch(rng, 3, 6, ties=False)
    st, yt, mt = t(s, y, m, grad=True)

    def f(x):
        return lambda_loss(x, yt, "ndcg2pp", 1.0, 4, mask=mt, backend=backend)

    eager = f(st)
    (g_eager,) = torch.autograd.grad(eager, st)
    torch.testing.assert_close(torch.func.grad(f)(st.detach()), g_eager)
    batch = torch.stack([st.detach(), st.detach() * 2])
    torch.testing.assert_close(torch.func.vmap(f)(batch), torch.stack([f(batch[0]), f(batch[1])]))
    gv = torch.func.vmap(torch.func.grad(f))(batch)
    torch.testing.assert_close(gv[0], g_eager)
    meta = torch.empty(3, 6, device="meta", requires_grad=True)
    meta_backend = "auto" if backend == "rust" else "torch"  # "rust" rejects non-CPU tensors
    out = lambda_loss(meta, torch.empty(3, 6, device="meta"), reduction="none", backend=meta_backend)
    assert out.shape == (3,) and out.device.type == "meta"


def test_opcheck():
    rng = np.random.default_rng(8)
    s, y, m = random_batch(rng, 3, 6)
    st, yt, mt = t(s, y, m, grad=True)
    for native in (False, True):
        args = (st, yt, mt, None, 1.0, "ndcg2pp", None, 10.0, True, native, True, True)
        torch.library.opcheck(LAMBDA_LOSS_OP.op, args)
        args = (st.detach(), yt, None, None, 2.0, "ndcg1", 3, 10.0, False, native, True, False)
        torch.library.opcheck(LAMBDA_LOSS_OP.op, args)


# ---------------------------------------------------------------- softmax and ListMLE
def rax_softmax(s, y, m):
    """Rax's softmax_loss per list (negative labels as 0, as SPEC 11), in numpy."""
    out = np.zeros(len(s))
    for b in range(len(s)):
        p = np.where(m[b], np.maximum(y[b], 0), 0.0)
        if p.sum() == 0:
            continue
        logits = np.where(m[b], s[b], -np.inf)
        top = logits.max()
        logsm = logits - (top + np.log(np.exp(logits - top).sum()))
        out[b] = -(p / p.sum() * np.where(m[b], logsm, 0)).sum()
    return out


def rax_listmle(s, y, m):
    """Plackett-Luce NLL of the order by labels (stable, descending), masked items out."""
    out = np.zeros(len(s))
    for b in range(len(s)):
        idx = np.flatnonzero(m[b])
        if len(idx) < 2:
            continue
        order = idx[np.argsort(-y[b, idx], kind="stable")]
        ss = s[b, order]
        out[b] = sum(np.logaddexp.reduce(ss[i:]) - ss[i] for i in range(len(ss)))
    return out


@pytest.mark.parametrize("fn,ref", [(softmax_loss, rax_softmax), (listmle_loss, rax_listmle)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_softmax_listmle_match_reference(fn, ref, dtype):
    rng = np.random.default_rng(9)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for b, n in SHAPES + [(3, 50)]:
        s, y, m = random_batch(rng, b, n, levels=2, pad=0.3)
        y[0, 0] = -1.0  # negative label: counts 0 for softmax
        want = ref(s, y, m)
        st, yt, mt = t(np.where(m, s, np.nan), y, m, dtype=dtype, grad=True)
        out = fn(st, yt, mt, reduction="none")
        np.testing.assert_allclose(out.detach().double().numpy(), want, rtol=tol, atol=tol)
        (g,) = torch.autograd.grad(out.sum(), st)
        assert torch.all(g[~mt] == 0) and torch.isfinite(g).all()
        valid = (np.where(m, np.maximum(y, 0), 0).sum(1) > 0) if fn is softmax_loss else m.sum(1) >= 2
        mean = fn(st, yt, mt)
        np.testing.assert_allclose(float(mean.detach()), want.sum() / max(valid.sum(), 1), rtol=tol, atol=tol)
        # numpy in, numpy out, typed like the Rust-backed losses: a scalar mean, an array per list
        assert isinstance(fn(s, y, m), np.floating)
        assert isinstance(fn(s, y, m, reduction="none"), np.ndarray)


def test_rax_documented_values():
    # Rax's docstring examples
    np.testing.assert_allclose(
        float(softmax_loss(torch.tensor([2.0, 1.0, 3.0]), torch.tensor([1.0, 0, 0]))), 1.4076059
    )
    s = torch.tensor([[2.0, 1.0, 3.0], [1.0, 0.5, 1.5]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(
        softmax_loss(s, y, reduction="none").numpy(), [1.4076059, 0.68026966], rtol=1e-6
    )


def test_listmle_ties_in_input_order():
    s = torch.tensor([[0.3, 2.0, -1.0]])
    y = torch.tensor([[1.0, 1.0, 1.0]])  # all tied: the order is the input order
    want = rax_listmle(s.numpy(), y.numpy(), np.ones((1, 3), bool))
    swapped = (np.logaddexp.reduce([2.0, 0.3, -1.0]) - 2.0) + (np.logaddexp(0.3, -1.0) - 0.3)
    np.testing.assert_allclose(listmle_loss(s, y, reduction="none").numpy(), want, rtol=1e-6)
    assert abs(want[0] - swapped) > 0.1  # the tie order matters, so the test can fail


@pytest.mark.parametrize("fn", [softmax_loss, listmle_loss])
def test_softmax_listmle_autograd(fn):
    rng = np.random.default_rng(10)
    s, y, m = random_batch(rng, 3, 7, ties=False)
    st, yt, mt = t(s, y, m, grad=True)
    assert torch.autograd.gradcheck(lambda x: fn(x, yt, mt), (st,))
    assert torch.autograd.gradgradcheck(lambda x: fn(x, yt, mt), (st,))
    eager = fn(st, yt, mt)
    (g,) = torch.autograd.grad(eager, st)
    torch.testing.assert_close(torch.func.grad(lambda x: fn(x, yt, mt))(st.detach()), g)
    # degenerate: no real item, all-zero targets (softmax), one item (ListMLE)
    z = fn(
        torch.zeros(2, 3, requires_grad=True),
        torch.zeros(2, 3),
        torch.tensor([[True, False, False], [False] * 3]),
    )
    assert float(z.detach()) == 0.0
    for shape in ((0, 4), (3, 0)):
        assert float(fn(torch.zeros(shape), torch.zeros(shape))) == 0.0
    with pytest.raises(ValueError, match="scores"):
        fn(torch.tensor([[math.nan, 1.0]]), torch.tensor([[1.0, 0.0]]))
    for backend in BACKENDS:  # torch-native on every backend: the same value
        torch.testing.assert_close(fn(st, yt, mt, backend=backend), eager)
    with pytest.raises(ValueError, match="backend"):
        fn(st, yt, mt, backend="cuda")


# ---------------------------------------------------------------- modules
def test_modules_equal_functions_and_show_options():
    rng = np.random.default_rng(11)
    s, y, m = random_batch(rng, 3, 7)
    st, yt, mt = t(s, y, m)
    mod = LambdaLoss(
        "lambdarank", sigma=2.0, k=4, mu=3.0, scale_gains=False, reduction="sum", backend="torch"
    )
    torch.testing.assert_close(
        mod(st, yt, mt), lambda_loss(st, yt, "lambdarank", 2.0, 4, 3.0, mt, "sum", False)
    )
    r = repr(mod)
    for part in (
        "weighting='lambdarank'",
        "sigma=2.0",
        "k=4",
        "mu=3.0",
        "scale_gains=False",
        "reduction='sum'",
    ):
        assert part in r
    torch.testing.assert_close(SoftmaxLoss("none")(st, yt, mt), softmax_loss(st, yt, mt, "none"))
    torch.testing.assert_close(ListMLELoss()(st, yt, mt), listmle_loss(st, yt, mt))
    assert "reduction='none'" in repr(SoftmaxLoss("none"))
    with pytest.raises(ValueError, match="weighting"):
        LambdaLoss("x")
    with pytest.raises(ValueError, match="reduction"):
        ListMLELoss("avg")


def test_positional_arguments_follow_the_spec():
    """SPEC 11: lambda_loss(scores, targets, weighting, sigma, k, mu, mask, reduction)."""
    rng = np.random.default_rng(3)
    s, y = rng.normal(size=(3, 6)), rng.integers(0, 3, size=(3, 6)).astype(float)
    m = rng.random((3, 6)) > 0.3
    want = lambda_loss(s, y, weighting="lambdarank", sigma=0.7, k=4, mu=2.0, mask=m, reduction="none")
    got = lambda_loss(s, y, "lambdarank", 0.7, 4, 2.0, m, "none")
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, lambda_loss(s, y, "lambdarank", 0.7, 4, 2.0, None, "none"))


# ---------------------------------------------------------------- issue 17 items 4, 5, 8
def exact_softmax(s, y, m, normalize=True):
    """Per-list `-sum_i p_i log softmax(s)_i` over the real items in 60-digit decimal arithmetic
    (logsumexp without overflow); inf where a list's loss exceeds float64."""
    from decimal import Decimal, localcontext

    out = np.zeros(len(s))
    with localcontext() as ctx:
        ctx.prec = 60
        for b in range(len(s)):
            idx = np.flatnonzero(m[b])
            p = [Decimal(max(float(y[b, i]), 0.0)) for i in idx]
            if len(idx) < 2 or sum(p) == 0:
                continue
            if normalize:
                p = [v / sum(p) for v in p]
            d = [Decimal(float(s[b, i])) for i in idx]
            top = max(d)
            gaps = [top - v for v in d]  # -log softmax_i = gap_i + ln(sum_j e^-gap_j)
            tail = sum((g.__neg__().exp() if g < 10**5 else Decimal(0)) for g in gaps).ln()
            out[b] = float(sum(pv * (g + tail) for pv, g in zip(p, gaps) if pv > 0))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("normalize", [True, False])
def test_softmax_huge_scores(dtype, normalize):
    """Issue 17 item 4: softmax_loss([3e38, -3e38], [1, 0]) was NaN (0 * log p = 0 * -inf for the
    item far below); true 0. Variants against decimal arithmetic: the relevant item on top or at
    the bottom (then the true loss, or inf where it exceeds the dtype), graded targets, padding,
    both float dtypes and both target scalings; gradients finite (softmax(s) - p)."""
    fmax = float(torch.finfo(dtype).max)
    big = 0.9 * fmax
    cases = [
        ([[3e38, -3e38]] if dtype == torch.float32 else [[big, -big]], [[1.0, 0.0]], None),
        ([[big, -big, 0.0]], [[1.0, 0.0, 0.0]], None),
        ([[-big, big]], [[1.0, 0.0]], None),  # the relevant item 1.8 max below: inf
        ([[-0.4 * fmax, 0.4 * fmax, 0.0]], [[2.0, 0.0, 1.0]], None),  # 0.8 max: fits
        ([[big, -big, fmax, 1.0]], [[3.0, 0.0, 2.0, 1.0]], [[True, True, True, False]]),
        ([[fmax, -fmax, 0.0], [0.5, -big, big]], [[1.0, 1.0, 0.0], [0.0, 0.0, 2.0]], None),
    ]
    for s, y, m in cases:
        s, y = np.array(s), np.array(y)
        m = np.ones_like(s, bool) if m is None else np.array(m)
        st, yt, mt = t(s, y, m, dtype=dtype, grad=True)
        out = softmax_loss(st, yt, mt, reduction="none", normalize=normalize)
        want = exact_softmax(st.detach().double().numpy(), y, m, normalize)
        for got, w in zip(out.detach().double().numpy(), want):
            if w > fmax:
                assert got == math.inf, (s, y)
            else:
                assert got == pytest.approx(w, rel=1e-6 if dtype == torch.float32 else 1e-12, abs=1e-30), (
                    s,
                    y,
                )
        (g,) = torch.autograd.grad(out.sum(), st)
        assert torch.isfinite(g).all() and torch.all(g[~mt] == 0), (s, y)
    # the exact call, numpy in too
    assert float(softmax_loss(torch.tensor([3e38, -3e38]), torch.tensor([1.0, 0.0]))) == 0.0
    assert float(softmax_loss(np.array([1.7e308, -1.7e308]), np.array([1.0, 0.0]))) == 0.0


@pytest.mark.parametrize("fn", [softmax_loss, listmle_loss])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lists_under_two_items_do_not_count(fn, dtype):
    """Issue 17 item 5 (SPEC 2): a list with fewer than 2 real items has loss 0, zero gradient and
    does not count in "mean" (nor does a softmax list whose targets sum to 0)."""
    s = np.array([[0.3, 1.0, -0.5, 2.0], [1.5, 9.0, 9.0, 9.0], [4.0, 5.0, 6.0, 7.0], [0.2, -0.1, 0.7, 0.0]])
    y = np.array([[2.0, 0.0, 1.0, 3.0], [3.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    m = np.array([[True] * 4, [True, False, False, False], [False] * 4, [True] * 4])
    ref = rax_softmax if fn is softmax_loss else rax_listmle
    want = ref(s, y, m)
    counted = [0] if fn is softmax_loss else [0, 3]  # softmax: list 3's targets sum to 0
    for backend in BACKENDS:
        st, yt, mt = t(s, y, m, dtype=dtype, grad=True)
        per = fn(st, yt, mt, reduction="none", backend=backend)
        assert float(per[1]) == 0.0 and float(per[2]) == 0.0
        np.testing.assert_allclose(per.detach().double().numpy(), want, rtol=1e-6, atol=1e-7)
        mean = fn(st, yt, mt, backend=backend)
        np.testing.assert_allclose(float(mean), want[counted].sum() / len(counted), rtol=1e-6)
        # counting the one-item list 1 would change the mean
        assert float(mean) != pytest.approx(want[counted].sum() / (len(counted) + 1), rel=1e-3)
        (g,) = torch.autograd.grad(mean, st)
        assert torch.all(g[1:3] == 0) and torch.all(g[~mt] == 0) and torch.any(g[0] != 0)
        # numpy in, numpy out: the same
        np.testing.assert_allclose(fn(s, y, m, backend=backend), float(mean), rtol=1e-6)
    # a batch of single-item lists only: 0.0, zero gradient
    x = torch.tensor([[1.0], [2.0]], dtype=dtype, requires_grad=True)
    out = fn(x, torch.tensor([[1.0], [3.0]], dtype=dtype))
    (g,) = torch.autograd.grad(out, x)
    assert float(out) == 0.0 and torch.all(g == 0)


def rax_softmax_loss(scores, labels, where=None, label_fn=lambda a, where: a):
    """numpy transcription of Rax's `softmax_loss` (google/rax, rax/_src/losses.py, the current
    version with `label_fn: ... = lambda a, where: a` and `where=`), per list (reduce_fn=None):

        labels = jnp.where(where, labels, 0); scores = jnp.where(where, scores, -inf)
        labels_probabilities = label_fn(labels, where=where)
        scores_log_softmax = jax.nn.log_softmax(scores, axis=-1)
        loss = -jnp.sum(labels_probabilities * scores_log_softmax, axis=-1, where=where)
    """
    if where is not None:
        labels = np.where(where, labels, 0.0)
        scores = np.where(where, scores, -np.inf)
    probs = label_fn(labels, where=where)
    top = scores.max(-1, keepdims=True)
    log_softmax = scores - (top + np.log(np.exp(scores - top).sum(-1, keepdims=True)))
    prod = np.where(where if where is not None else True, probs * log_softmax, 0.0)
    return -prod.sum(-1)


def rax_normalize_probabilities(a, where=None):
    """numpy transcription of Rax's `utils.normalize_probabilities` (rax/_src/utils.py): divide by
    the sum over the valid items; a list whose sum is 0 gets a uniform distribution over them."""
    where = np.ones_like(a, bool) if where is None else where
    total = np.where(where, a, 0.0).sum(-1, keepdims=True)
    count = where.sum(-1, keepdims=True)
    count = np.where(count == 0, a.shape[-1], count)
    safe = np.where(total != 0, total, 1.0)
    return np.where(total != 0, a / safe, 1.0 / count)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_normalize_matches_rax(backend):
    """Issue 17 item 8: `normalize=False` is Rax's default `softmax_loss` (targets as they are),
    `normalize=True` Rax's with `label_fn=normalize_probabilities` (numpy transcriptions of
    google/rax rax/_src/losses.py `softmax_loss` and rax/_src/utils.py
    `normalize_probabilities`). Rax differs only where the SPEC says so: a list whose targets
    sum to 0 gets Rax's uniform target, and rankgrad's loss 0 (not counted)."""
    rng = np.random.default_rng(17)
    for b, n in [(4, 6), (3, 1), (2, 40)]:
        s = rng.normal(size=(b, n)) * 3
        y = rng.integers(0, 4, size=(b, n)).astype(np.float64) * rng.choice([0.5, 1.0, 2.5], size=(b, 1))
        m = rng.random((b, n)) > 0.25
        m[:, 0] = True
        y[:, 0] = np.maximum(y[:, 0], 1.0)  # every list has a positive target
        for normalize in (False, True):
            label_fn = rax_normalize_probabilities if normalize else (lambda a, where: a)
            want = rax_softmax_loss(s, y, m, label_fn=label_fn)
            got = softmax_loss(s, y, m, reduction="none", normalize=normalize, backend=backend)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
            st, yt, mt = t(s, y, m, grad=True)
            out = softmax_loss(st, yt, mt, reduction="sum", normalize=normalize, backend=backend)
            np.testing.assert_allclose(float(out), want.sum(), rtol=1e-12)
        # the two differ by the targets' sum (SPEC 11): not the same loss
        unnorm = softmax_loss(s, y, m, reduction="none", normalize=False)
        norm = softmax_loss(s, y, m, reduction="none", normalize=True)
        np.testing.assert_allclose(unnorm, norm * np.where(m, y, 0).sum(1), rtol=1e-12)
    # Rax's documented example (its default, unnormalised; here the targets sum to 1 anyway)
    s, y = np.array([[2.0, 1.0, 3.0], [1.0, 0.5, 1.5]]), np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    np.testing.assert_allclose(
        softmax_loss(s, y, reduction="none", normalize=False), [1.4076059, 2 * 0.68026966], rtol=1e-6
    )
    # all-zero targets: Rax normalize_probabilities gives a uniform target; rankgrad counts 0 (SPEC 11)
    s0, y0 = np.array([[0.3, 1.2, -0.4]]), np.zeros((1, 3))
    assert rax_softmax_loss(s0, y0, label_fn=rax_normalize_probabilities)[0] > 0
    assert float(softmax_loss(s0, y0, reduction="none", normalize=True)[0]) == 0.0
    assert (
        float(softmax_loss(s0, y0, reduction="none", normalize=False)[0])
        == 0.0
        == rax_softmax_loss(s0, y0)[0]
    )
