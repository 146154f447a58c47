"""RankNet loss: both backends against a plain float64 reference, gradients, dtypes, errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rankgrad
import rankgrad.ranknet._native as ranknet_mod
from rankgrad.nn import RankNetLoss

BACKENDS = ["rust", "torch"]


# ---------------------------------------------------------------- plain reference (float64)


def softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def reference(scores, targets, mask=None, sigma=1.0):
    """Per-list losses, valid flags and d(loss_b)/d(scores), by explicit loops over pairs."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    m = np.ones(s.shape, dtype=bool) if mask is None else np.asarray(mask)
    b, n = s.shape
    losses, valid, grad = np.zeros(b), np.zeros(b, dtype=bool), np.zeros((b, n))
    for r in range(b):
        total, pairs = 0.0, 0
        for i in range(n):
            for j in range(n):
                if m[r, i] and m[r, j] and y[r, i] > y[r, j]:
                    x = sigma * (s[r, i] - s[r, j])
                    total += softplus(-x)
                    lam = sigma / (1.0 + math.exp(min(x, 700.0)))  # sigma * sigmoid(-x)
                    grad[r, i] -= lam
                    grad[r, j] += lam
                    pairs += 1
        if pairs:
            losses[r], valid[r] = total / pairs, True
            grad[r] /= pairs
    return losses, valid, grad


def random_batch(rng, b, n, levels=3, pad=0.25, tie_scores=True):
    s = rng.normal(size=(b, n)) * 2
    if tie_scores:
        s = np.round(s * 2) / 2  # ties in scores
    y = rng.integers(0, levels + 1, size=(b, n)).astype(np.float64)  # ties in labels
    mask = rng.random((b, n)) > pad
    if b > 2:
        mask[-1] = False  # an all-padded row
    return s, y, mask


SHAPES = [(1, 1), (1, 2), (1, 9), (3, 7), (5, 16), (4, 1), (2, 33)]


# ---------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(backend, dtype, shape):
    rng = np.random.default_rng(hash(shape) % 2**32)
    for sigma in (0.5, 1.0, 3.0):
        s, y, mask = random_batch(rng, *shape)
        want_l, want_v, want_g = reference(s, y, mask, sigma)
        st_ = torch.tensor(s, dtype=dtype, requires_grad=True)
        losses = rankgrad.ranknet_loss(
            st_, torch.tensor(y), sigma, torch.tensor(mask), reduction="none", backend=backend
        )
        assert losses.dtype == dtype and losses.shape == (shape[0],)
        losses.sum().backward()
        tol = 1e-12 if dtype == torch.float64 else 2e-5
        np.testing.assert_allclose(losses.detach().numpy(), want_l, rtol=tol, atol=tol)
        np.testing.assert_allclose(st_.grad.numpy(), want_g, rtol=tol, atol=tol)
        assert np.all(st_.grad.numpy()[~mask] == 0.0), "padded items get exactly zero gradient"
        assert np.all(losses.detach().numpy()[~want_v] == 0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reductions(backend):
    rng = np.random.default_rng(1)
    s, y, mask = random_batch(rng, 6, 8)
    y[1] = 2.0  # all tied: no pair, does not count
    want_l, want_v, want_g = reference(s, y, mask)
    assert want_v.sum() < 6
    for reduction, want, scale in [
        ("mean", want_l.sum() / want_v.sum(), 1.0 / want_v.sum()),
        ("sum", want_l.sum(), 1.0),
    ]:
        st_ = torch.tensor(s, requires_grad=True)
        out = rankgrad.ranknet_loss(
            st_, torch.tensor(y), mask=torch.tensor(mask), reduction=reduction, backend=backend
        )
        assert out.shape == ()
        out.backward()
        np.testing.assert_allclose(out.item(), want, rtol=1e-12)
        np.testing.assert_allclose(st_.grad.numpy(), want_g * scale, rtol=1e-12, atol=1e-15)
    # Without autograd (no_grad, or scores that do not require grad): the same values.
    with torch.no_grad():
        out = rankgrad.ranknet_loss(
            st_, torch.tensor(y), mask=torch.tensor(mask), reduction="none", backend=backend
        )
    assert not out.requires_grad
    np.testing.assert_allclose(out.numpy(), want_l, rtol=1e-12)
    out = rankgrad.ranknet_loss(torch.tensor(s), torch.tensor(y), mask=torch.tensor(mask), backend=backend)
    np.testing.assert_allclose(out.item(), want_l.sum() / want_v.sum(), rtol=1e-12)
    # Weighted upstream gradient: backward is grad * grad_out[:, None].
    st_ = torch.tensor(s, requires_grad=True)
    w = torch.arange(6, dtype=torch.float64)
    (
        rankgrad.ranknet_loss(
            st_, torch.tensor(y), mask=torch.tensor(mask), reduction="none", backend=backend
        )
        * w
    ).sum().backward()
    np.testing.assert_allclose(st_.grad.numpy(), want_g * w.numpy()[:, None], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_list_counts(backend):
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0] * 4, [0.0, 1.0, 2.0, 3.0], [2.0, 2.0, 0.0, 1.0]])
    mask = torch.tensor([[True] * 4, [True, False, False, False], [False] * 4])
    for reduction in ("mean", "sum"):
        out = rankgrad.ranknet_loss(s, y, mask=mask, reduction=reduction, backend=backend)
        assert out.item() == 0.0
        (g,) = torch.autograd.grad(out, s)
        assert torch.all(g == 0)
    empty = torch.zeros(0, 5, requires_grad=True)
    out = rankgrad.ranknet_loss(empty, torch.zeros(0, 5), backend=backend)
    assert out.item() == 0.0 and not torch.isnan(out)
    out.backward()
    none = rankgrad.ranknet_loss(torch.zeros(2, 0), torch.zeros(2, 0), reduction="none", backend=backend)
    assert none.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    rng = np.random.default_rng(7)
    s, y, mask = random_batch(rng, 4, 6, tie_scores=False)
    mask[:, 0] = True
    yt, mt = torch.tensor(y), torch.tensor(mask)
    st_ = torch.tensor(s, requires_grad=True)
    for reduction in ("none", "mean", "sum"):
        f = lambda x: rankgrad.ranknet_loss(x, yt, 1.7, mt, reduction=reduction, backend=backend)  # noqa: E731
        assert torch.autograd.gradcheck(f, (st_,), eps=1e-6, atol=1e-8)
    f1 = lambda x: rankgrad.ranknet_loss(x, yt[0], 0.6, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(f1, (st_[0].detach().clone().requires_grad_(),), eps=1e-6, atol=1e-8)


def test_matches_autograd_of_brute_force():
    """The lambda-form gradient equals autograd through a naive [B, N, N] expression."""
    rng = np.random.default_rng(3)
    s, y, mask = random_batch(rng, 3, 10)
    s_t = torch.tensor(s, requires_grad=True)
    yt, mt = torch.tensor(y), torch.tensor(mask)
    pair = (yt[:, :, None] > yt[:, None, :]) & mt[:, :, None] & mt[:, None, :]
    x = 2.0 * (s_t[:, :, None] - s_t[:, None, :])
    per = (torch.nn.functional.softplus(-x, threshold=1e9) * pair).sum((1, 2)) / pair.sum((1, 2)).clamp(min=1)
    (g_want,) = torch.autograd.grad(per.sum(), s_t)
    for backend in BACKENDS:
        out = rankgrad.ranknet_loss(s_t, yt, 2.0, mt, reduction="none", backend=backend)
        torch.testing.assert_close(out, per, rtol=1e-12, atol=1e-14)
        (g,) = torch.autograd.grad(out.sum(), s_t)
        torch.testing.assert_close(g, g_want, rtol=1e-12, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 4),
    n=st.integers(0, 12),
    levels=st.integers(0, 4),
    sigma=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**31),
)
def test_rust_and_torch_agree(b, n, levels, sigma, seed):
    rng = np.random.default_rng(seed)
    s, y, mask = random_batch(rng, b, n, levels=levels)
    results = []
    for backend in BACKENDS:
        st_ = torch.tensor(s, requires_grad=True)
        out = rankgrad.ranknet_loss(
            st_, torch.tensor(y), sigma, torch.tensor(mask), reduction="none", backend=backend
        )
        out.sum().backward()
        results.append((out.detach(), st_.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


def _budget(elements):
    """`_inputs.chunk_rows` with a budget of `elements` per temporary."""

    def rows(b, n, device=None, per_row=None):
        return max(1, min(max(n, 1), elements // max(1, per_row if per_row is not None else b * n)))

    return rows


def test_torch_backend_chunks(monkeypatch):
    """Blocks of lists and blocks of pair-matrix rows give the unchunked result."""
    rng = np.random.default_rng(11)
    s, y, mask = random_batch(rng, 5, 9)
    want_l, _, want_g = reference(s, y, mask)
    for chunk in (1, 7, 30, 200):
        monkeypatch.setattr(ranknet_mod, "chunk_rows", _budget(chunk))
        st_ = torch.tensor(s, requires_grad=True)
        out = rankgrad.ranknet_loss(
            st_, torch.tensor(y), mask=torch.tensor(mask), reduction="none", backend="torch"
        )
        out.sum().backward()
        np.testing.assert_allclose(out.detach().numpy(), want_l, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(st_.grad.numpy(), want_g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_margins(backend):
    s = torch.tensor(
        [[500.0, -500.0, 0.0, 30.0], [1e4, -1e4, 0.0, 0.0]], dtype=torch.float64, requires_grad=True
    )
    y = torch.tensor([[0.0, 2.0, 1.0, 1.0], [1.0, 0.0, 2.0, 0.0]])
    want_l, _, want_g = reference(s.detach().numpy(), y.numpy())
    out = rankgrad.ranknet_loss(s, y, reduction="none", backend=backend)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(s.grad).all()
    np.testing.assert_allclose(out.detach().numpy(), want_l, rtol=1e-12)
    np.testing.assert_allclose(s.grad.numpy(), want_g, rtol=1e-12, atol=1e-300)
    s32 = s.detach().float().requires_grad_()
    out32 = rankgrad.ranknet_loss(s32, y, reduction="none", backend=backend)
    out32.sum().backward()
    assert torch.isfinite(out32).all() and torch.isfinite(s32.grad).all()
    np.testing.assert_allclose(out32.detach().numpy(), want_l, rtol=1e-6)


# ---------------------------------------------------------------- dtypes, numpy, shapes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(backend, dtype):
    rng = np.random.default_rng(5)
    s, y, mask = random_batch(rng, 3, 8)
    s_lp = torch.tensor(s, dtype=dtype, requires_grad=True)
    out = rankgrad.ranknet_loss(
        s_lp, torch.tensor(y), mask=torch.tensor(mask), reduction="none", backend=backend
    )
    assert out.dtype == dtype
    out.sum().backward()
    assert s_lp.grad.dtype == dtype
    # Computed in float32 from the low-precision values.
    s32 = s_lp.detach().float().requires_grad_()
    ref = rankgrad.ranknet_loss(
        s32, torch.tensor(y), mask=torch.tensor(mask), reduction="none", backend=backend
    )
    ref.sum().backward()
    torch.testing.assert_close(out, ref.to(dtype))
    torch.testing.assert_close(s_lp.grad, s32.grad.to(dtype))
    mean = rankgrad.ranknet_loss(s_lp, torch.tensor(y), mask=torch.tensor(mask), backend=backend)
    assert mean.dtype == dtype


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_numpy_in_numpy_out(backend, dtype):
    rng = np.random.default_rng(2)
    s, y, mask = random_batch(rng, 4, 6)
    s = s.astype(dtype)
    want_l, want_v, _ = reference(s.astype(np.float64), y, mask)
    y_int = y.astype(np.int64)
    out = rankgrad.ranknet_loss(s, y_int, mask=mask, reduction="none", backend=backend)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (4,)
    tol = {np.float64: 1e-12, np.float32: 1e-5, np.float16: 1e-3}[dtype]
    np.testing.assert_allclose(out, want_l, rtol=tol, atol=tol)
    mean = rankgrad.ranknet_loss(s, y_int, mask=mask, backend=backend)
    assert isinstance(mean, (np.generic, np.ndarray)) and np.ndim(mean) == 0 and mean.dtype == dtype
    np.testing.assert_allclose(float(mean), want_l.sum() / want_v.sum(), rtol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_list(backend):
    s = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 0, 2, 1])
    want_l, _, want_g = reference(s.detach().numpy()[None], y.numpy()[None])
    out = rankgrad.ranknet_loss(s, y, reduction="none", backend=backend)
    assert out.shape == () and out.ndim == 0
    out.backward()
    np.testing.assert_allclose(out.item(), want_l[0], rtol=1e-12)
    np.testing.assert_allclose(s.grad.numpy(), want_g[0], rtol=1e-12)
    for reduction in ("mean", "sum"):
        assert rankgrad.ranknet_loss(s, y, reduction=reduction, backend=backend).shape == ()
    n1 = rankgrad.ranknet_loss(np.array([1.0]), np.array([1.0]), reduction="none", backend=backend)
    assert np.ndim(n1) == 0 and float(n1) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_untouched_and_padding_ignored(backend):
    rng = np.random.default_rng(9)
    s, y, mask = random_batch(rng, 3, 7)
    st_, yt, mt = torch.tensor(s), torch.tensor(y), torch.tensor(mask)
    copies = [t.clone() for t in (st_, yt, mt)]
    a = rankgrad.ranknet_loss(st_, yt, mask=mt, reduction="none", backend=backend)
    for t, c in zip((st_, yt, mt), copies):
        assert torch.equal(t, c)
    s2, y2 = s.copy(), y.copy()
    s2[~mask] = rng.normal(size=(~mask).sum()) * 100
    y2[~mask] = 7.0
    b = rankgrad.ranknet_loss(torch.tensor(s2), torch.tensor(y2), mask=mt, reduction="none", backend=backend)
    assert torch.equal(a, b)


def test_non_contiguous_and_integer_targets():
    rng = np.random.default_rng(4)
    s = torch.tensor(rng.normal(size=(6, 4)))
    y = torch.tensor(rng.integers(0, 3, size=(6, 4)))
    want = rankgrad.ranknet_loss(s.T.contiguous(), y.T.contiguous(), reduction="none")
    got = rankgrad.ranknet_loss(s.T, y.T, reduction="none")
    assert torch.equal(got, want)
    sn, yn = s.numpy().T, y.numpy().T.astype(np.float64)  # Fortran-ordered: a transposed view
    assert sn.flags.f_contiguous and not sn.flags.c_contiguous
    a = rankgrad._core.ranknet_loss(sn, yn, None, 1.0, True)
    b = rankgrad._core.ranknet_loss(np.ascontiguousarray(sn), np.ascontiguousarray(yn), None, 1.0, True)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    yb = y > 0  # bool targets are relevance too
    torch.testing.assert_close(rankgrad.ranknet_loss(s, yb), rankgrad.ranknet_loss(s, yb.double()))


def test_same_bits_whatever_the_thread_count():
    rng = np.random.default_rng(8)
    s, y, mask = random_batch(rng, 16, 64)
    outs = []
    try:
        for threads in (1, 2, 3):
            rankgrad.set_num_threads(threads)
            st_ = torch.tensor(s, dtype=torch.float32, requires_grad=True)
            out = rankgrad.ranknet_loss(
                st_, torch.tensor(y), mask=torch.tensor(mask), reduction="none", backend="rust"
            )
            out.sum().backward()
            outs.append((out.detach().numpy().tobytes(), st_.grad.numpy().tobytes()))
    finally:
        rankgrad.set_num_threads(None)  # back to the default pool
    assert outs[0] == outs[1] == outs[2]


def test_module():
    loss = RankNetLoss(sigma=2.0, reduction="sum")
    assert "sigma=2.0" in repr(loss)
    s = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (2, 5))
    m = torch.ones(2, 5, dtype=torch.bool)
    torch.testing.assert_close(loss(s, y, mask=m), rankgrad.ranknet_loss(s, y, 2.0, m, reduction="sum"))
    loss(s, y).backward()
    assert s.grad is not None
    with pytest.raises(ValueError, match="sigma"):
        RankNetLoss(sigma=0)
    with pytest.raises(ValueError, match="reduction"):
        RankNetLoss(reduction="avg")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(12)
    s, y, mask = random_batch(rng, 8, 50)
    sc = torch.tensor(s, device="cuda", requires_grad=True)
    out = rankgrad.ranknet_loss(
        sc, torch.tensor(y, device="cuda"), mask=torch.tensor(mask, device="cuda"), reduction="none"
    )
    assert out.device.type == "cuda"
    out.sum().backward()
    want_l, _, want_g = reference(s, y, mask)
    np.testing.assert_allclose(out.detach().cpu().numpy(), want_l, rtol=1e-10)
    np.testing.assert_allclose(sc.grad.cpu().numpy(), want_g, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="CPU"):
        rankgrad.ranknet_loss(sc, torch.tensor(y, device="cuda"), backend="rust")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input(backend):
    s, y = torch.randn(2, 3), torch.ones(2, 3)
    y[0, 0] = 0

    def call(*args, **kw):
        return rankgrad.ranknet_loss(*args, backend=backend, **kw)

    with pytest.raises(ValueError, match="targets"):
        call(s, torch.ones(2, 4))
    with pytest.raises(ValueError, match="scores"):
        call(torch.randn(2, 3, 1), torch.ones(2, 3, 1))
    with pytest.raises(ValueError, match="mask"):
        call(s, y, mask=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask"):
        call(s, y, mask=torch.ones(2, 3))
    with pytest.raises(TypeError, match="scores"):
        call(torch.ones(2, 3, dtype=torch.int64), y)
    with pytest.raises(TypeError, match="scores"):
        call([[1.0, 2.0]], [[1.0, 0.0]])
    with pytest.raises(TypeError, match="targets"):
        call(s.numpy(), y)
    with pytest.raises(TypeError, match="targets"):
        call(s, None)
    bad = s.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"scores.*list 1"):
        call(bad, y)
    bad_y = y.clone()
    bad_y[1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"targets.*list 1"):
        call(s, bad_y)
    # A NaN at a padded position is ignored.
    m = torch.ones(2, 3, dtype=torch.bool)
    m[1, 2] = False
    assert torch.isfinite(call(bad, y, mask=m))
    with pytest.raises(ValueError, match=r"scores.*list 1"):
        call(bad.numpy(), y.numpy())
    for sigma in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            call(s, y, sigma=sigma)
    with pytest.raises(TypeError, match="sigma"):
        call(s, y, sigma=None)
    with pytest.raises(ValueError, match="reduction"):
        call(s, y, reduction="avg")


def test_bad_backend_and_validate_flag():
    s, y = torch.randn(2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match="backend"):
        rankgrad.ranknet_loss(s, y, backend="cuda")
    bad = s.clone()
    bad[0, 0] = float("nan")
    y[0, 1] = 0.0
    # The torch path may skip value checks (they cost a device sync); the Rust path never does.
    out = rankgrad.ranknet_loss(bad, y, backend="torch", validate=False)
    assert torch.isnan(out)
    with pytest.raises(ValueError, match="scores"):
        rankgrad.ranknet_loss(bad, y, backend="rust", validate=False)


def test_rust_errors_do_not_panic():
    """The bindings reject bad arrays with a Python exception, never a crash."""
    core = rankgrad._core
    s = np.zeros((2, 3), dtype=np.float64)
    with pytest.raises(TypeError, match="targets"):
        core.ranknet_loss(s, np.zeros((2, 3), dtype=np.float32), None, 1.0, True)
    with pytest.raises(ValueError, match="targets"):
        core.ranknet_loss(s, np.zeros((3, 3)), None, 1.0, True)
    with pytest.raises(ValueError, match="sigma"):
        core.ranknet_loss(s, s, None, -1.0, True)
    with pytest.raises(TypeError, match="scores"):
        core.ranknet_loss(np.zeros((2, 3), dtype=np.int32), s, None, 1.0, True)


# ---------------------------------------------------------------- torch integration (issue 9)


def _op_inputs(seed=3, b=3, n=6):
    rng = np.random.default_rng(seed)
    s, y, mask = random_batch(rng, b, n, tie_scores=False)
    mask[:, :2] = True
    return torch.tensor(s), torch.tensor(y), torch.tensor(mask)


@pytest.mark.parametrize("native", [False, True])
def test_custom_op_opcheck(native):
    from rankgrad.ranknet._op import OP

    s, y, m = _op_inputs()
    for args in [
        (s.requires_grad_(), y, m, None, 1.3, native, True, True),
        (s.detach(), y, None, None, 0.5, native, False, False),
    ]:
        torch.library.opcheck(OP.op, args)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_meta_tensors(backend):
    s, y, m = (t.to("meta") for t in _op_inputs())
    assert rankgrad.ranknet_loss(s, y, mask=m, reduction="none", backend=backend).shape == (3,)
    assert rankgrad.ranknet_loss(s, y, mask=m, backend=backend).shape == ()
    x = torch.empty(5, device="meta", dtype=torch.float32, requires_grad=True)
    out = rankgrad.ranknet_loss(x, torch.empty(5, device="meta"), backend=backend)
    assert out.shape == () and out.dtype == torch.float32 and out.device.type == "meta"


@pytest.mark.parametrize("backend", BACKENDS)
def test_func_grad_and_vmap(backend):
    s, y, m = _op_inputs()
    x = s.clone().requires_grad_()
    rankgrad.ranknet_loss(x, y, mask=m, reduction="sum", backend=backend).backward()
    f = lambda s, y, m: rankgrad.ranknet_loss(s, y, mask=m, reduction="sum", backend=backend)  # noqa: E731
    torch.testing.assert_close(torch.func.grad(f)(s, y, m), x.grad, rtol=1e-12, atol=0)
    # vmap over lists of 1-D inputs equals the batched call, and per-list gradients too
    per = torch.func.vmap(lambda s, y, m: rankgrad.ranknet_loss(s, y, mask=m, backend=backend))(s, y, m)
    torch.testing.assert_close(per, rankgrad.ranknet_loss(s, y, mask=m, reduction="none", backend=backend))
    grads = torch.func.vmap(torch.func.grad(f))(s, y, m)
    torch.testing.assert_close(grads, x.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_and_exact_second_derivative(backend):
    """Decision: RankNet's second derivative is exact (closed-form Hessian-vector product,
    op rankgrad::ranknet_hvp, torch ops on both backends); a third derivative raises."""
    s, y, m = _op_inputs()
    s.requires_grad_()
    w = torch.linspace(0.5, 1.5, 3, dtype=torch.float64)
    f = lambda s: rankgrad.ranknet_loss(s, y, 0.9, m, reduction="none", backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(f, (s,), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(f, (s,), eps=1e-6, atol=1e-8)

    def brute(s):  # the [B, N, N] autograd formula
        x = 0.9 * (s[:, :, None] - s[:, None, :])
        pair = (y[:, :, None] > y[:, None, :]) & m[:, :, None] & m[:, None, :]
        total = torch.where(pair, torch.nn.functional.softplus(-x), 0.0).sum((1, 2))
        return total / pair.sum((1, 2)).clamp(min=1)

    want = torch.func.hessian(lambda s: (brute(s) * w).sum())(s.detach())
    got = torch.func.jacrev(torch.func.jacrev(lambda s: (f(s) * w).sum()))(s.detach())
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad((f(s) * w).sum(), s, create_graph=True)
    (h,) = torch.autograd.grad((g * g).sum(), s, create_graph=True)
    with pytest.raises(RuntimeError, match="ranknet_loss has no third derivative"):
        torch.autograd.grad(h.sum(), s)


def test_hvp_opcheck():
    from rankgrad.ranknet._op import OP

    s, y, m = _op_inputs()
    v = torch.randn(s.shape, dtype=s.dtype)
    utils = ("test_schema", "test_faketensor")
    torch.library.opcheck(OP.hvp_op, (s, y, m, None, 0.7, False, v), test_utils=utils)
    torch.library.opcheck(OP.hvp_op, (s, y, None, None, 1.1, True, v), test_utils=utils)


def test_issue_regressions():
    """Issue 10 items 4 and 6: finite results from finite inputs, errors naming the argument."""
    s, y = torch.tensor([[3e38, -3e38, 0.0, 1.0]]), torch.tensor([[1.0, 1, 0, 2]])
    out = rankgrad.ranknet_loss(s, y, backend="torch")
    assert torch.isfinite(out) and out.item() == pytest.approx(6e38 / 5, rel=1e-6)
    s64 = torch.tensor([[1e308, -1e308, 0.0, 1.0]], dtype=torch.float64)
    assert torch.isfinite(rankgrad.ranknet_loss(s64, y.double(), backend="torch"))
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="sigma"):
            rankgrad.ranknet_loss(torch.rand(2, 3), torch.rand(2, 3), sigma=1e39, backend=backend)
        with pytest.raises(ValueError, match="sigma"):
            rankgrad.ranknet_loss(torch.rand(2, 3), torch.rand(2, 3), sigma=1e-40, backend=backend)
    # float64 accepts what float32 refuses
    assert torch.isfinite(rankgrad.ranknet_loss(torch.rand(2, 3).double(), torch.rand(2, 3), sigma=1e30))
    with pytest.raises(ValueError, match="sigma"):
        RankNetLoss(sigma=1e200)
    assert "backend='auto'" in repr(RankNetLoss()) and "validate=True" in repr(RankNetLoss())
    with pytest.raises(TypeError):
        RankNetLoss(1.0, "mean", "torch")  # backend is keyword-only


# ---------------------------------------------------------------- issue 17 item 3


def exact_mean(scores, targets, sigma):
    """One list's RankNet loss in 60-digit decimal arithmetic: no overflow anywhere (the
    float64 reference above overflows its gaps and sums at these scores). inf where the mean
    exceeds float64."""
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = 60
        s = [Decimal(float(v)) for v in scores]
        total, pairs = Decimal(0), 0
        for i in range(len(s)):
            for j in range(len(s)):
                if targets[i] > targets[j]:
                    z = -Decimal(sigma) * (s[i] - s[j])  # softplus(z) = max(z, 0) + ln(1 + e^-|z|)
                    tail = Decimal(0) if abs(z) > 10**5 else (1 + (-abs(z)).exp()).ln()
                    total += max(z, Decimal(0)) + tail
                    pairs += 1
        return float(total / pairs)


def _overflowing_pair(n, big):
    """n items: +big (label 0) and -big (label 1), the rest small scores ordered like their
    labels 2, 3, ...: the pair (1 over 0) costs 2 sigma big, each (c over 0) sigma big, while
    the ~n^2 / 2 pairs among the rest cost little."""
    s = np.arange(n, dtype=np.float64) / 100
    y = np.r_[0.0, 1.0, np.arange(2, n, dtype=np.float64)]
    s[0], s[1] = big, -big
    return s, y


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_fits_although_pair_terms_overflow(backend):
    """Issue 17 item 3: each pair term was formed (float32: sigma * gap; float64 torch: the sum of
    half-losses) before the division by the pair count, so a mean that fits came out inf. Now
    each term is divided first: the true mean (60-digit decimal reference), inf only beyond."""
    f32max = float(np.finfo(np.float32).max)
    for n in (100, 30):
        for sigma in (2.0, 4.0, 1e10):
            for dtype, big in ((torch.float32, 3e38), (torch.float64, 0.9 * np.finfo(np.float64).max)):
                s, y = _overflowing_pair(n, big)
                x = torch.tensor(s, dtype=dtype, requires_grad=True)
                out = rankgrad.ranknet_loss(x, torch.tensor(y, dtype=dtype), sigma=sigma, backend=backend)
                want = exact_mean(x.detach().double().numpy(), y, sigma)
                limit = f32max if dtype == torch.float32 else math.inf
                if want > limit:
                    assert float(out) == math.inf, (n, sigma, dtype)
                else:
                    tol = 1e-6 if dtype == torch.float32 else 1e-12
                    assert float(out) == pytest.approx(want, rel=tol), (n, sigma, dtype)
                (g,) = torch.autograd.grad(out, x)
                # the float64 reference on s / 4 with sigma * 4 (the same pair margins, no
                # overflow): its gradient is 4 times ours
                _, _, want_g = reference(x.detach().double().numpy()[None] / 4, y[None], sigma=4 * sigma)
                assert torch.isfinite(g).all()
                np.testing.assert_allclose(g.double().numpy(), want_g[0] / 4, rtol=1e-5, atol=1e-12)
    # float64: three misordered pairs of 1.2e308 each, mean 1.2e308 (the torch path gave inf)
    s, y = np.array([6e307] * 3 + [-6e307]), np.array([0.0, 0, 0, 1])
    assert float(rankgrad.ranknet_loss(s, y, backend=backend)) == pytest.approx(1.2e308, rel=1e-12)
    for sigma in (2.0, 3.0):  # mean 2.4e308, 3.6e308: inf, never NaN
        x = torch.tensor(s, requires_grad=True)
        out = rankgrad.ranknet_loss(x, torch.tensor(y), sigma=sigma, reduction="none", backend=backend)
        (g,) = torch.autograd.grad(out, x)
        assert float(out) == math.inf and torch.isfinite(g).all()
    # padded and batched: the mean over lists of per-list means, each exact
    s, y = _overflowing_pair(40, 3e38)
    sb = torch.tensor(np.stack([s, s[::-1].copy()]), dtype=torch.float32)
    yb = torch.tensor(np.stack([y, y[::-1].copy()]), dtype=torch.float32)
    mb = torch.ones(2, 40, dtype=torch.bool)
    mb[1, :5] = False
    per = rankgrad.ranknet_loss(sb, yb, sigma=2.0, mask=mb, reduction="none", backend=backend)
    want0 = exact_mean(sb[0].double().numpy(), y, 2.0)
    want1 = exact_mean(sb[1, 5:].double().numpy(), yb[1, 5:].numpy(), 2.0)
    np.testing.assert_allclose(per.double().numpy(), [want0, want1], rtol=1e-6)
