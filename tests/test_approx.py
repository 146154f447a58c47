"""The approximate-rank family: both paths against a plain reference of SPEC section 3."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rankgrad
from conftest import BACKENDS, gain, ideal_dcg, make_batch, ref_approx_ranks, true_ranks, twins
from rankgrad import approx_mrr_loss, approx_ndcg_loss, approx_rank_mse_loss, approx_ranks

LOSSES = {
    "ndcg": lambda s, y, **kw: approx_ndcg_loss(s, y, **kw),
    "ndcg_linear": lambda s, y, **kw: approx_ndcg_loss(s, y, scale_gains=False, **kw),
    "mrr": lambda s, y, **kw: approx_mrr_loss(s, y, **kw),
    "mse": lambda s, y, **kw: approx_rank_mse_loss(s, y, **kw),
    "mse_log2": lambda s, y, **kw: approx_rank_mse_loss(s, y, discount="log2", **kw),
    "mse_recip": lambda s, y, **kw: approx_rank_mse_loss(s, y, discount="reciprocal", **kw),
}


# ---------------------------------------------------------------- plain reference (float64)
ref_ranks = ref_approx_ranks


def ref_list_loss(name, s, y, t):
    """(loss, counts) of one list of real items, straight from SPEC section 3."""
    n = len(s)
    if n < 2:
        return 0.0, False
    r = ref_ranks(s, t)
    if name.startswith("ndcg"):
        g = [gain(v, name == "ndcg") for v in y]
        idcg = ideal_dcg(g)
        if idcg <= 0:
            return 0.0, False
        return 1.0 - sum(g[i] / math.log2(1 + r[i]) for i in range(n)) / idcg, True
    if name == "mrr":
        if all(v <= 0 for v in y):
            return 0.0, False
        return 1.0 - max(min(max(y[i], 0.0), 1.0) / r[i] for i in range(n)), True
    true = true_ranks(y)
    w = {"mse": lambda q: 1.0, "mse_log2": lambda q: 1.0 / math.log2(q + 1), "mse_recip": lambda q: 1.0 / q}[
        name
    ]
    return sum(w(true[i]) * (r[i] - true[i]) ** 2 for i in range(n)) / n, True


def ref_batch(name, s, y, mask, t):
    """Per-list losses and validity of a padded batch (numpy float64 inputs)."""
    out, valid = [], []
    for b in range(s.shape[0]):
        keep = mask[b] if mask is not None else np.ones(s.shape[1], bool)
        loss, ok = ref_list_loss(name, list(s[b][keep]), list(y[b][keep]), t)
        out.append(loss)
        valid.append(ok)
    return np.array(out), np.array(valid)


def ref_grad(name, s, y, mask, t, eps=1e-6):
    """Central finite differences of the reference per-list losses, summed."""
    g = np.zeros_like(s)
    for idx in np.ndindex(*s.shape):
        if mask is not None and not mask[idx]:
            continue
        hi, lo = s.copy(), s.copy()
        hi[idx] += eps
        lo[idx] -= eps
        g[idx] = (ref_batch(name, hi, y, mask, t)[0].sum() - ref_batch(name, lo, y, mask, t)[0].sum()) / (
            2 * eps
        )
    return g


# ---------------------------------------------------------------- values and gradients
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("t", [0.3, 1.0, 2.5])
def test_matches_reference(backend, name, t):
    rng = np.random.default_rng(abs(hash((backend, name, t))) % 2**32)
    for b, n, ties in [(3, 7, False), (1, 1, False), (4, 6, True), (2, 2, False), (5, 13, True)]:
        s, y, mask = make_batch(rng, b, n, ties=ties, empty_row=True)
        if name.startswith("mse"):
            y = y + rng.normal(size=y.shape)  # teacher scores: any real numbers
        st_ = torch.tensor(s, requires_grad=True)
        out = LOSSES[name](
            st_, torch.tensor(y), temperature=t, mask=torch.tensor(mask), reduction="none", backend=backend
        )
        want, valid = ref_batch(name, s, y, mask, t)
        np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-10, atol=1e-12)
        out.sum().backward()
        if not (name == "mrr" and ties):  # tied maxima: MRR has a kink there
            np.testing.assert_allclose(st_.grad.numpy(), ref_grad(name, s, y, mask, t), rtol=1e-5, atol=1e-7)
        assert np.all(st_.grad.numpy()[~mask] == 0.0)
        mean = LOSSES[name](
            torch.tensor(s), torch.tensor(y), temperature=t, mask=torch.tensor(mask), backend=backend
        )
        expect_mean = want.sum() / max(valid.sum(), 1)
        assert mean.item() == pytest.approx(expect_mean, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_approx_ranks_match_reference(backend):
    rng = np.random.default_rng(3)
    s, _, mask = make_batch(rng, 4, 9, ties=True, empty_row=True)
    r = approx_ranks(torch.tensor(s), 0.7, torch.tensor(mask), backend=backend).numpy()
    for b in range(4):
        got = r[b][mask[b]]
        np.testing.assert_allclose(got, ref_ranks(list(s[b][mask[b]]), 0.7), rtol=1e-12)
        assert np.all(r[b][~mask[b]] == 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(backend, name):
    rng = np.random.default_rng(11)
    s, y, mask = make_batch(rng, 3, 8, empty_row=True)
    y[0, :] = np.arange(8) % 3  # at least one list that counts
    yt, mt = torch.tensor(y), torch.tensor(mask)
    st_ = torch.tensor(s, requires_grad=True)
    for reduction in ("none", "mean"):
        assert torch.autograd.gradcheck(
            lambda x: LOSSES[name](x, yt, temperature=0.8, mask=mt, reduction=reduction, backend=backend),
            (st_,),
            eps=1e-6,
            atol=1e-7,
            rtol=1e-5,
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_approx_ranks(backend):
    s = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 6) > 0.3
    assert torch.autograd.gradcheck(lambda x: approx_ranks(x, 0.5, mask, backend=backend), (s,))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rust_equals_torch_native(name, dtype):
    rng = np.random.default_rng(5)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for b, n, t in [(8, 37, 1.0), (1, 1, 1.0), (3, 100, 0.05), (6, 5, 10.0), (2, 300, 0.5)]:
        for levels in (2, 5):  # sparse and dense relevance take different kernel paths
            # (MRR's max has a kink at tied maxima: both paths take the first one, but in float32
            # rounding can break an exact tie differently)
            s, y, mask = make_batch(rng, b, n, ties=name != "mrr", levels=levels, empty_row=True)
            outs, grads = [], []
            for backend in BACKENDS:
                st_ = torch.tensor(s, dtype=dtype, requires_grad=True)
                out = LOSSES[name](
                    st_,
                    torch.tensor(y, dtype=dtype),
                    temperature=t,
                    mask=torch.tensor(mask),
                    reduction="sum",
                    backend=backend,
                )
                out.backward()
                outs.append(out.item())
                grads.append(st_.grad.double().numpy())
            assert outs[0] == pytest.approx(outs[1], rel=tol, abs=tol)
            scale = max(np.abs(grads[1]).max(), 1e-30)
            np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=tol * 10 * scale)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 4),
    n=st.integers(1, 12),
    t=st.floats(0.05, 5.0),
    seed=st.integers(0, 2**31),
    name=st.sampled_from(sorted(LOSSES)),
)
def test_property_rust_vs_reference(b, n, t, seed, name):
    rng = np.random.default_rng(seed)
    s, y, mask = make_batch(rng, b, n, ties=seed % 2 == 0, levels=3)
    out = LOSSES[name](s, y, temperature=t, mask=mask, reduction="none")  # numpy in, numpy out
    assert isinstance(out, np.ndarray) and out.shape == (b,)
    np.testing.assert_allclose(out, ref_batch(name, s, y, mask, t)[0], rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- SPEC section 2 semantics
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_padding_changes_nothing(backend, name):
    rng = np.random.default_rng(2)
    s, y, mask = make_batch(rng, 4, 10, pad=0.4)
    s2, y2 = s.copy(), y.copy()
    s2[~mask] = rng.normal(size=(~mask).sum()) * 100
    s2[~mask][::2] = np.nan  # NaN in padding is ignored too
    y2[~mask] = 7
    outs = []
    for ss, yy in ((s, y), (s2, y2)):
        st_ = torch.tensor(ss, requires_grad=True)
        out = LOSSES[name](st_, torch.tensor(yy), mask=torch.tensor(mask), reduction="none", backend=backend)
        out.sum().backward()
        assert torch.all(st_.grad[~torch.tensor(mask)] == 0)
        outs.append((out.detach().numpy(), st_.grad[torch.tensor(mask)].numpy()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-12)
    np.testing.assert_allclose(outs[0][1], outs[1][1], rtol=1e-10, atol=1e-15)
    # the real items of a list alone give the same loss as the padded list
    b = 1
    alone = LOSSES[name](
        torch.tensor(s[b][mask[b]]), torch.tensor(y[b][mask[b]]), reduction="none", backend=backend
    )
    assert alone.item() == pytest.approx(outs[0][0][b], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_lists(backend):
    s = torch.tensor(
        [[0.3, 0.1, 0.2], [0.5, 0.4, 0.9], [1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True
    )
    y = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, False, False], [True, True, True]])
    for f in (approx_ndcg_loss, approx_mrr_loss):
        out = f(s, y, mask=mask, reduction="none", backend=backend)
        assert torch.all(out == 0)  # no relevant item; one real item; only negative targets
        total = f(s, y, mask=mask, backend=backend)
        assert total.item() == 0.0 and not torch.isnan(total)
        total.backward()
        assert torch.all(s.grad == 0)
        s.grad = None
    # rank-MSE: a list with fewer than 2 real items does not count in the mean
    y2 = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    per = approx_rank_mse_loss(s, y2, mask=mask, reduction="none", backend=backend)
    assert per[1] == 0
    mean = approx_rank_mse_loss(s, y2, mask=mask, backend=backend)
    assert mean.item() == pytest.approx((per[0] + per[2]).item() / 2, rel=1e-12)
    allpad = torch.zeros(2, 4, dtype=torch.bool)
    z = approx_ndcg_loss(
        torch.randn(2, 4, requires_grad=True), torch.ones(2, 4), mask=allpad, backend=backend
    )
    assert z.item() == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_reductions_and_one_dimensional_input(backend):
    rng = np.random.default_rng(8)
    s, y, mask = make_batch(rng, 5, 9)
    st_, yt, mt = torch.tensor(s), torch.tensor(y), torch.tensor(mask)
    none = approx_ndcg_loss(st_, yt, mask=mt, reduction="none", backend=backend)
    assert none.shape == (5,)
    assert approx_ndcg_loss(st_, yt, mask=mt, reduction="sum", backend=backend).item() == pytest.approx(
        none.sum().item()
    )
    one = approx_ndcg_loss(st_[2], yt[2], mask=mt[2], reduction="none", backend=backend)
    assert one.shape == () and one.item() == pytest.approx(none[2].item(), rel=1e-12)
    r = approx_ranks(st_[2], backend=backend)
    assert r.shape == (9,)
    with pytest.raises(ValueError, match="reduction"):
        approx_ndcg_loss(st_, yt, reduction="avg", backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(backend, dtype):
    torch.manual_seed(0)
    s = torch.randn(4, 20).to(dtype).requires_grad_()
    y = torch.randint(0, 4, (4, 20))  # integer targets are fine
    out = approx_ndcg_loss(s, y, backend=backend)
    assert out.dtype == dtype
    out.backward()
    assert s.grad.dtype == dtype and torch.isfinite(s.grad.float()).all()
    ref = approx_ndcg_loss(s.detach().float(), y.float(), backend=backend)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}.get(dtype, 1e-6)
    assert out.float().item() == pytest.approx(ref.item(), abs=tol)
    assert approx_ranks(s, backend=backend).dtype == dtype


def test_numpy_in_numpy_out_and_no_in_place_change():
    rng = np.random.default_rng(1)
    s, y, mask = make_batch(rng, 3, 6)
    s32 = s.astype(np.float32)
    keep = (s32.copy(), y.copy(), mask.copy())
    for backend in ("auto", "torch"):
        out = approx_ndcg_loss(s32, y, mask=mask, backend=backend)
        assert isinstance(out, (np.ndarray, np.generic)) and out.dtype == np.float32
        r = approx_ranks(s32, mask=mask, backend=backend)
        assert isinstance(r, np.ndarray) and r.dtype == np.float32 and r.shape == s.shape
    np.testing.assert_array_equal(s32, keep[0])
    np.testing.assert_array_equal(y, keep[1])
    out16 = approx_ndcg_loss(s.astype(np.float16), y, mask=mask)
    assert out16.dtype == np.float16
    # a non-contiguous view works and gives the same result as its copy
    big = rng.normal(size=(3, 12))
    assert approx_ndcg_loss(big[:, ::2], y) == pytest.approx(
        approx_ndcg_loss(big[:, ::2].copy(), y), rel=1e-14
    )


def test_same_bits_with_one_and_two_threads():
    rng = np.random.default_rng(4)
    s = torch.tensor(rng.normal(size=(9, 257)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 5, size=(9, 257)), dtype=torch.float32)
    mask = torch.tensor(rng.random((9, 257)) > 0.1)
    results = []
    try:
        for threads in (1, 2):
            rankgrad.set_num_threads(threads)
            assert rankgrad.get_num_threads() == threads
            row = []
            for name in sorted(LOSSES):
                x = s.clone().requires_grad_()
                out = LOSSES[name](x, y, mask=mask, reduction="none", backend="rust")
                out.sum().backward()
                row.append((out.detach().numpy().tobytes(), x.grad.numpy().tobytes()))
            row.append(approx_ranks(s, mask=mask).numpy().tobytes())
            results.append(row)
    finally:
        rankgrad.set_num_threads(None)  # back to the default pool
    assert results[0] == results[1]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input(backend):
    s, y = torch.randn(2, 3), torch.ones(2, 3)
    cases = [
        (lambda: approx_ndcg_loss(s, torch.ones(2, 4), backend=backend), ValueError, "targets"),
        (
            lambda: approx_ndcg_loss(s, y, mask=torch.ones(3, 3, dtype=torch.bool), backend=backend),
            ValueError,
            "mask",
        ),
        (
            lambda: approx_ndcg_loss(torch.randn(2, 3, 4), torch.ones(2, 3, 4), backend=backend),
            ValueError,
            "scores",
        ),
        (
            lambda: approx_ndcg_loss(torch.tensor([[0.0, float("nan"), 1.0], [0, 1, 2]]), y, backend=backend),
            ValueError,
            r"scores.*list 0",
        ),
        (
            lambda: approx_ndcg_loss(torch.tensor([[0.0, 1, 2], [0, float("inf"), 2]]), y, backend=backend),
            ValueError,
            r"scores.*list 1",
        ),
        (
            lambda: approx_ndcg_loss(s, torch.tensor([[0.0, 1, 2], [0, float("nan"), 2]]), backend=backend),
            ValueError,
            r"targets.*list 1",
        ),
        (lambda: approx_ndcg_loss(s, y, temperature=0.0, backend=backend), ValueError, "temperature"),
        (lambda: approx_ndcg_loss(s, y, temperature=-1.0, backend=backend), ValueError, "temperature"),
        (
            lambda: approx_ndcg_loss(s, y, temperature=float("nan"), backend=backend),
            ValueError,
            "temperature",
        ),
        (lambda: approx_ranks(s, temperature=0, backend=backend), ValueError, "temperature"),
        (lambda: approx_ndcg_loss(s, y, mask=torch.ones(2, 3), backend=backend), TypeError, "mask"),
        (
            lambda: approx_ndcg_loss(torch.ones(2, 3, dtype=torch.int64), y, backend=backend),
            TypeError,
            "scores",
        ),
        (lambda: approx_ndcg_loss([[0.1, 0.2]], [[1, 0]], backend=backend), TypeError, "scores"),
        (lambda: approx_ndcg_loss(s, None, backend=backend), TypeError, "targets"),
        (lambda: approx_rank_mse_loss(s, y, discount="log10", backend=backend), ValueError, "discount"),
        (lambda: approx_ndcg_loss(s, y, reduction="max", backend=backend), ValueError, "reduction"),
        (lambda: approx_ndcg_loss(s, y, backend="cuda"), ValueError, "backend"),
        (lambda: approx_ndcg_loss(s.numpy(), torch.ones(2, 3), backend=backend), TypeError, "targets"),
    ]
    for call, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            call()


def test_rust_kernel_errors_are_value_errors():
    from rankgrad import _core

    s = np.zeros((2, 3))
    with pytest.raises(ValueError, match="targets"):
        _core.approx_loss("ndcg", s, np.zeros((2, 4)), None, 1.0, True)
    with pytest.raises(TypeError, match="targets"):
        _core.approx_loss("ndcg", s, np.zeros((2, 3), np.float32), None, 1.0, True)
    with pytest.raises(TypeError, match="scores"):
        _core.approx_loss("ndcg", np.zeros((2, 3), np.int32), s, None, 1.0, True)
    with pytest.raises(ValueError, match="temperature"):
        _core.approx_ranks(s, None, -1.0)
    with pytest.raises(ValueError, match="targets.*list 1"):
        approx_ndcg_loss(s, np.array([[1.0, 0, 0], [0, 5000.0, 0]]))  # 2^5000 - 1 overflows
    # a padded position is not checked: it changes nothing
    pad = np.array([[True, True, True], [True, False, True]])
    y = np.array([[1.0, 0, 0], [0, 5000.0, 1]])
    assert np.isfinite(approx_ndcg_loss(s, y, mask=pad))


def test_modules():
    torch.manual_seed(0)
    s = torch.randn(3, 8, requires_grad=True)
    y = torch.randint(0, 3, (3, 8)).float()
    m = torch.rand(3, 8) > 0.2
    pairs = [
        (
            rankgrad.nn.ApproxNDCGLoss(temperature=0.5, scale_gains=False),
            lambda: approx_ndcg_loss(s, y, 0.5, False, m),
        ),
        (rankgrad.nn.ApproxMRRLoss(reduction="sum"), lambda: approx_mrr_loss(s, y, mask=m, reduction="sum")),
        (
            rankgrad.nn.ApproxRankMSELoss(discount="log2"),
            lambda: approx_rank_mse_loss(s, y, discount="log2", mask=m),
        ),
    ]
    for module, call in pairs:
        assert torch.equal(module(s, y, m), call())
    for module, options in (
        (
            rankgrad.nn.ApproxNDCGLoss(0.5, False, "sum", backend="torch", validate=False),
            ["temperature=0.5", "scale_gains=False", "reduction='sum'", "backend='torch'", "validate=False"],
        ),
        (
            rankgrad.nn.ApproxMRRLoss(2.0),
            ["temperature=2.0", "reduction='mean'", "backend='auto'", "validate=True"],
        ),
        (rankgrad.nn.ApproxRankMSELoss(discount="reciprocal"), ["discount='reciprocal'", "temperature=1.0"]),
    ):
        for option in options:
            assert option in repr(module), (option, repr(module))
    with pytest.raises(TypeError):
        rankgrad.nn.ApproxNDCGLoss(1.0, True, "mean", "torch")  # backend is keyword-only
    with pytest.raises(TypeError):
        approx_ndcg_loss(s, y, 1.0, True, m, "mean", "torch")
    with pytest.raises(ValueError, match="backend"):
        rankgrad.nn.ApproxMRRLoss(backend="gpu")
    native = rankgrad.nn.ApproxNDCGLoss(0.5, backend="torch")(s, y, m)
    assert native.item() == pytest.approx(approx_ndcg_loss(s, y, 0.5, mask=m).item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        rankgrad.nn.ApproxNDCGLoss(temperature=0)
    with pytest.raises(ValueError, match="discount"):
        rankgrad.nn.ApproxRankMSELoss(discount="cubic")


def test_training_improves_ndcg():
    """A linear scorer trained with approx_ndcg_loss learns the true order."""
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(6, generator=g)
    x = torch.randn(32, 20, 6, generator=g)
    y = (x @ w_true).argsort(-1).argsort(-1).float() / 5  # graded by the true score
    w = torch.zeros(6, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = approx_ndcg_loss(x @ w + 1e-3 * torch.randn(32, 20, generator=g), y, temperature=0.5)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.5
    assert torch.nn.functional.cosine_similarity(w.detach(), w_true, dim=0) > 0.9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_cuda_matches_cpu(name):
    rng = np.random.default_rng(9)
    s, y, mask = make_batch(rng, 6, 300, ties=True, empty_row=True)
    res = []
    for device in ("cpu", "cuda"):
        st_ = torch.tensor(s, device=device, requires_grad=True)
        out = LOSSES[name](
            st_, torch.tensor(y, device=device), mask=torch.tensor(mask, device=device), reduction="sum"
        )
        out.backward()
        assert out.device.type == device
        res.append((out.item(), st_.grad.cpu().numpy()))
    assert res[0][0] == pytest.approx(res[1][0], rel=1e-10)
    np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="scores"):
        approx_ndcg_loss(torch.full((2, 3), float("nan"), device="cuda"), torch.ones(2, 3, device="cuda"))
    with pytest.raises(ValueError, match="rust"):
        approx_ndcg_loss(torch.ones(2, 3, device="cuda"), torch.ones(2, 3, device="cuda"), backend="rust")


def test_fortran_ordered_and_transposed_inputs():
    rng = np.random.default_rng(21)
    s = rng.normal(size=(7, 5))
    y = rng.integers(0, 3, size=(7, 5)).astype(float)
    want = approx_ndcg_loss(s.T.copy(), y.T.copy(), reduction="none")
    np.testing.assert_array_equal(approx_ndcg_loss(s.T, y.T, reduction="none"), want)
    np.testing.assert_array_equal(approx_ndcg_loss(np.asfortranarray(s.T), y.T, reduction="none"), want)
    t = torch.tensor(s).T.requires_grad_()
    out = approx_ndcg_loss(t, torch.tensor(y).T, reduction="none")
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-15)
    np.testing.assert_array_equal(approx_ranks(s.T), approx_ranks(s.T.copy()))


def test_torch_compile_fullgraph():
    """The Rust loss is a torch.library custom op: torch.compile keeps it in one graph."""
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 1).double()
    x = torch.randn(4, 10, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (4, 10)).double()
    m = torch.rand(4, 10) > 0.2

    def step(x, y, m):
        return approx_ndcg_loss(net(x).squeeze(-1), y, temperature=0.5, mask=m)

    eager = step(x, y, m)
    eager.backward()
    want = net.weight.grad.clone()
    net.zero_grad()
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(x, y, m)
    compiled.backward()
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-14)
    torch.testing.assert_close(net.weight.grad, want, rtol=1e-12, atol=1e-14)
    torch.library.opcheck(
        torch.ops.rankgrad.approx_loss.default,
        (
            torch.randn(3, 5, dtype=torch.float64, requires_grad=True),
            y[:3, :5],
            m[:3, :5],
            None,
            1.0,
            "ndcg",
            True,
            "none",
            "exact",
            False,
            True,
            True,
        ),
    )


@pytest.mark.parametrize("step", [1, 3, 64])
def test_torch_path_in_chunks(monkeypatch, step):
    """Row chunks (the large-list path, recomputed in the backward) give the same result."""
    import rankgrad.approx._native as ops

    monkeypatch.setattr(ops, "chunk_rows", lambda b, n, device=None, per_row=None: step)
    rng = np.random.default_rng(step)
    s, y, mask = make_batch(rng, 3, 50, ties=True, empty_row=True)
    for name in ("ndcg", "mse_log2"):
        res = []
        for backend in BACKENDS:
            st_ = torch.tensor(s, requires_grad=True)
            out = LOSSES[name](
                st_, torch.tensor(y), mask=torch.tensor(mask), reduction="sum", backend=backend
            )
            out.backward()
            res.append((out.item(), st_.grad.numpy()))
        assert res[0][0] == pytest.approx(res[1][0], rel=1e-12)
        np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-10, atol=1e-14)
    st_ = torch.tensor(s[:, :9], requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x: approx_ranks(x, 0.5, torch.tensor(mask[:, :9]), backend="torch"), (st_,)
    )


# ---------------------------------------------------------------- twins on extreme inputs (issue 10)
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e6, 1e300])
def test_padded_targets_of_any_value_change_nothing(name, bad):
    s = torch.tensor([[0.1, 0.2, 0.3], [0.5, -0.2, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0, 2.0], [2.0, 1.0, 0.0]], dtype=torch.float64)
    m = torch.tensor([[True, True, False], [True, True, True]])
    y_bad = y.clone()
    y_bad[0, 2] = bad
    clean = twins(lambda be: LOSSES[name](s, y, mask=m, reduction="none", backend=be))
    got = twins(lambda be: LOSSES[name](s, y_bad, mask=m, reduction="none", backend=be))
    np.testing.assert_allclose(got, clean, rtol=1e-12)
    mean = twins(lambda be: LOSSES[name](s, y_bad, mask=m, backend=be))
    assert mean == pytest.approx(clean.mean(), rel=1e-12)  # both lists still count


def test_mrr_nan_padded_target_issue_example():
    s = torch.tensor([[0.1, 0.2, 0.3]])
    y = torch.tensor([[1.0, 0, math.nan]])
    m = torch.tensor([[True, True, False]])
    rust = approx_mrr_loss(s, y, mask=m)
    native = approx_mrr_loss(s, y, mask=m, backend="torch")
    r0 = 1 + 1 / (1 + math.exp(-0.1))  # rank of item 0 among the two real items
    assert rust.item() == pytest.approx(1 - 1 / r0, rel=1e-6)
    assert native.item() == pytest.approx(rust.item(), rel=1e-6)


@pytest.mark.parametrize("top", [127.0, 128.0, 300.0, 999.0, 1000.0])
def test_float32_targets_up_to_the_gain_cap(top):
    rng = np.random.default_rng(int(top))
    s = rng.normal(size=(3, 6))
    y = rng.integers(0, 4, size=(3, 6)).astype(np.float64)
    y[:, 1] = top
    y[1, 4] = top - 1
    want = ref_batch("ndcg", s, y, None, 1.0)[0]  # float64 reference: 2^1000 is finite there
    for dtype in (torch.float32, torch.float64):
        st_ = torch.tensor(s, dtype=dtype, requires_grad=True)
        got = twins(
            lambda be: approx_ndcg_loss(st_, torch.tensor(y, dtype=dtype), reduction="none", backend=be)
        )
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6)
        for be in BACKENDS:
            st_.grad = None
            approx_ndcg_loss(st_, torch.tensor(y, dtype=dtype), backend=be).backward()
            assert torch.isfinite(st_.grad).all()
    over = y.copy()
    over[2, 0] = 1000.5
    err = twins(lambda be: approx_ndcg_loss(torch.tensor(s), torch.tensor(over), backend=be))
    assert isinstance(err, ValueError) and "list 2" in str(err)


@pytest.mark.parametrize("shape", [(3, 0), (0, 4), (0, 0), (0,)])
@pytest.mark.parametrize("name", sorted(LOSSES) + ["ranks"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_empty_lists_and_batches(shape, name, reduction):
    def call(backend):
        s = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
        if name == "ranks":
            out = approx_ranks(s, backend=backend)
        else:
            out = LOSSES[name](s, torch.zeros(shape), reduction=reduction, backend=backend)
        assert not torch.isnan(out).any()
        out.sum().backward()
        assert s.grad.shape == s.shape
        return out.detach().reshape(-1) if out.dim() else out.detach().reshape(1)

    out = twins(call)
    if name == "ranks":
        want = int(np.prod(shape))
    elif reduction == "none":
        want = shape[0] if len(shape) == 2 else 1
    else:
        want = 1
    assert out.shape == (want,)
    assert np.all(out == 0)
    for backend in BACKENDS:  # numpy in, numpy out
        got = LOSSES["ndcg"](np.zeros(shape), np.zeros(shape), reduction=reduction, backend=backend)
        assert np.all(np.asarray(got) == 0)


@pytest.mark.parametrize(
    "t,dtype,ok",
    [
        (1e-40, torch.float32, False),  # subnormal in float32: 1/T overflows
        (1e39, torch.float32, False),
        (1e-40, torch.float64, True),
        (1e39, torch.float64, True),
        (1e-300, torch.float64, False),
    ],
)
def test_temperature_range_is_the_same_on_both_backends(t, dtype, ok):
    s = torch.tensor([[0.0, 0.0, 1.0], [2.0, 2.0, -1.0]], dtype=dtype)  # ties
    y = torch.tensor([[1.0, 0, 2], [0, 1, 1]], dtype=dtype)
    for call in (
        lambda be: approx_ndcg_loss(s, y, temperature=t, backend=be),
        lambda be: approx_rank_mse_loss(s, y, temperature=t, backend=be),
        lambda be: approx_ranks(s, temperature=t, backend=be),
    ):
        out = twins(call)
        if ok:
            assert np.all(np.isfinite(out))
        else:
            assert isinstance(out, ValueError) and "temperature" in str(out)


def test_unusual_numpy_layouts_agree_across_backends():
    rng = np.random.default_rng(17)
    s, y, mask = make_batch(rng, 4, 9, ties=True)
    want = approx_ndcg_loss(s, y, mask=mask, reduction="none")
    variants = {
        "negative stride": (s[:, ::-1], y[:, ::-1], mask[:, ::-1]),
        "big-endian": (s.astype(">f8"), y.astype(">f8"), mask),
        "longdouble": (s.astype(np.longdouble), y.astype(np.longdouble), mask),
        "fortran": (np.asfortranarray(s), np.asfortranarray(y), np.asfortranarray(mask)),
    }
    for label, (ss, yy, mm) in variants.items():
        for f in (approx_ndcg_loss, approx_mrr_loss, approx_rank_mse_loss):
            got = twins(lambda be: f(ss, yy, mask=mm, reduction="none", backend=be))
            assert not isinstance(got, Exception), (label, got)
            ref = f(
                np.ascontiguousarray(ss, dtype=np.float64),
                np.ascontiguousarray(yy, dtype=np.float64),
                mask=np.ascontiguousarray(mm),
                reduction="none",
            )
            np.testing.assert_allclose(got, ref, rtol=1e-12, err_msg=label)
        r = twins(lambda be: approx_ranks(ss, mask=mm, backend=be))
        assert r.shape == s.shape
        if label == "longdouble":  # computed in float64, returned as float64
            assert approx_ndcg_loss(ss, yy).dtype == np.float64
    np.testing.assert_allclose(variants["negative stride"][0][:, ::-1], s)  # inputs untouched
    assert want.shape == (4,)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_hessian_vector_products_agree_and_are_not_zero(name):
    """Issue 9: the Rust path's second derivative was silently zero. Both paths against
    central differences of the first derivative."""
    rng = np.random.default_rng(31)
    s, y, mask = make_batch(rng, 3, 9, empty_row=True)
    y[0, :2] = [2.0, 1.0]
    if name.startswith("mse"):
        y = y + rng.normal(size=y.shape)
    yt, mt = torch.tensor(y), torch.tensor(mask)
    v = torch.tensor(rng.normal(size=s.shape))

    def grad(x, backend, create_graph=False):
        x = x.detach().requires_grad_() if not create_graph else x
        loss = LOSSES[name](x, yt, temperature=0.7, mask=mt, backend=backend)
        return torch.autograd.grad(loss, x, create_graph=create_graph)[0]

    eps = 1e-6
    st_ = torch.tensor(s)
    fd = (grad(st_ + eps * v, "torch") - grad(st_ - eps * v, "torch")) / (2 * eps)
    assert fd.abs().max() > 1e-4
    for backend in BACKENDS:
        x = torch.tensor(s, requires_grad=True)
        (hv,) = torch.autograd.grad((grad(x, backend, create_graph=True) * v).sum(), x)
        np.testing.assert_allclose(hv.numpy(), fd.numpy(), rtol=1e-5, atol=1e-8, err_msg=backend)
        assert torch.all(hv[~mt] == 0)


EXTREME = {
    torch.float32: [3e38, -3e38, 0.0, 1e-45, 5.0],
    torch.float64: [1e308, -1e308, 0.0, 5e-324, -2.0],
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["ranks", "ndcg", "mrr", "mse_log2"])
def test_extreme_scores_finite_and_twins(dtype, name):
    """Every triple of extreme finite scores (ties included, a padded fourth item): both
    backends give the same finite losses and gradients (MRR's tied maxima: the first one)."""
    y = torch.tensor([[2.0, 0.0, 1.0, 1.0]], dtype=dtype)
    m = torch.tensor([[True, True, True, False]])
    for combo in itertools.product(EXTREME[dtype], repeat=3):
        s = torch.tensor([[*combo, 0.5]], dtype=dtype)

        def call(backend):
            x = s.clone().requires_grad_()
            if name == "ranks":
                out = approx_ranks(x, 0.5, m, backend=backend)
            else:
                out = LOSSES[name](x, y, temperature=0.5, mask=m, reduction="none", backend=backend)
            out.sum().backward()
            return torch.cat([out.detach().reshape(-1), x.grad.reshape(-1)])

        got = twins(call, rtol=1e-4, atol=1e-5)
        assert not isinstance(got, Exception) and np.all(np.isfinite(got)), (combo, got)
