"""Exact NDCG@k / MRR@k / AP@k / recall@k / precision@k: both backends against plain
references, and the GBDT eval metrics against LightGBM's and XGBoost's own ndcg@k (trec_eval's
values for all five: tests/test_metrics_trec.py)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rankgrad
from gbdt_data import DATA, needs_data
from rankgrad.gbdt import MRRMetric, NDCGMetric, RankingMetric, ragged_metric

BACKENDS = ["rust", "torch"]


# ---------------------------------------------------------------- plain references (float64)


def ranking(s, real):
    """Real positions by score descending, ties by input position (Python's sort is stable)."""
    return sorted((i for i in range(len(s)) if real[i]), key=lambda i: -s[i])


def ref_ndcg(s, y, real, k=None, scale_gains=True):
    def gain(v):
        v = max(float(v), 0.0)
        return 2.0**v - 1.0 if scale_gains else v

    order = ranking(s, real)
    kk = len(order) if k is None else min(k, len(order))
    dcg = sum(gain(y[i]) / math.log2(p + 2) for p, i in enumerate(order[:kk]))
    ideal = sorted((gain(y[i]) for i in order), reverse=True)
    idcg = sum(g / math.log2(p + 2) for p, g in enumerate(ideal[:kk]))
    return dcg / idcg if idcg > 0 else 0.0


def ref_mrr(s, y, real, k=None):
    for p, i in enumerate(ranking(s, real)):
        if y[i] > 0:
            return 1.0 / (p + 1) if k is None or p < k else 0.0
    return 0.0


def ref_hits(s, y, real, k=None):
    """(relevant flags of the top k in ranked order, R = relevant items in the list)."""
    rel = [y[i] > 0 for i in ranking(s, real)]
    return rel[: len(rel) if k is None else k], sum(rel)


def ref_average_precision(s, y, real, k=None):
    top, total = ref_hits(s, y, real, k)
    precisions = [sum(top[: p + 1]) / (p + 1) for p in range(len(top)) if top[p]]
    return sum(precisions) / total if total else 0.0


def ref_recall(s, y, real, k=None):
    top, total = ref_hits(s, y, real, k)
    return sum(top) / total if total else 0.0


def ref_precision(s, y, real, k=None):
    top, total = ref_hits(s, y, real, k)
    return sum(top) / (sum(map(bool, real)) if k is None else k) if total else 0.0


REFS = {
    "ndcg": ref_ndcg,
    "mrr": ref_mrr,
    "average_precision": ref_average_precision,
    "recall": ref_recall,
    "precision": ref_precision,
}
METRICS = {name: getattr(rankgrad, name) for name in REFS}
NEW = ["average_precision", "recall", "precision"]  # same signature as mrr


def reference(kind, s, y, mask=None, **kw):
    mask = np.ones(np.shape(s), dtype=bool) if mask is None else mask
    return np.array([REFS[kind](s[b], y[b], mask[b], **kw) for b in range(len(s))])


def random_batch(rng, b, n, pad=0.25):
    s = np.round(rng.normal(size=(b, n)) * 2) / 2  # many ties
    y = rng.integers(-1, 4, size=(b, n)).astype(np.float64)  # negatives count as 0
    y[rng.random((b, n)) < 0.4] = 0.0
    mask = rng.random((b, n)) > pad
    if b > 2:
        y[0] = 0.0  # a list with no relevant item
        mask[-1] = False  # an all-padded list
    return s, y, mask


SHAPES = [(1, 1), (1, 2), (1, 9), (3, 7), (6, 16), (4, 1), (2, 40)]
KS = [None, 1, 3, 10]


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_ndcg_and_mrr_match_reference(backend, shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        s, y, mask = random_batch(rng, *shape)
        st_, yt, mt = torch.tensor(s), torch.tensor(y), torch.tensor(mask)
        for k in KS:
            for scale in (True, False):
                got = rankgrad.ndcg(st_, yt, k=k, scale_gains=scale, mask=mt, backend=backend)
                assert got.dtype == torch.float64 and got.shape == (shape[0],)
                np.testing.assert_allclose(
                    got.numpy(), reference("ndcg", s, y, mask, k=k, scale_gains=scale), rtol=1e-13, atol=1e-15
                )
            got = rankgrad.mrr(st_, yt, k=k, mask=mt, backend=backend)
            np.testing.assert_allclose(got.numpy(), reference("mrr", s, y, mask, k=k), rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", NEW)
def test_ap_recall_precision_match_reference(kind, backend, shape):
    rng = np.random.default_rng([sum(shape), len(kind)])
    for _ in range(3):
        s, y, mask = random_batch(rng, *shape)
        st_, yt, mt = torch.tensor(s), torch.tensor(y), torch.tensor(mask)
        for k in KS + [shape[1] + 3]:  # and k beyond the list
            got = METRICS[kind](st_, yt, k=k, mask=mt, backend=backend)
            assert got.dtype == torch.float64 and got.shape == (shape[0],)
            np.testing.assert_allclose(got.numpy(), reference(kind, s, y, mask, k=k), rtol=1e-14, atol=1e-16)
            # numpy in, numpy out; no mask = every item real
            got = METRICS[kind](s, y, k=k, backend=backend)
            assert isinstance(got, np.ndarray)
            np.testing.assert_allclose(got, reference(kind, s, y, k=k), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ap_recall_precision_by_hand(backend):
    # ranked: list 0 -> [r, n, r, n, r]; list 1 ties [1, 1, 0] rank by position: [n, r, n]
    s = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5], [1.0, 1.0, 0.0, -1.0, -1.0]])
    y = torch.tensor([[1.0, 0.0, 2.0, -1.0, 1.0], [0.0, 3.0, 0.0, 0.0, 0.0]])
    m = torch.tensor([[True] * 5, [True, True, True, False, False]])
    ap = lambda k=None: rankgrad.average_precision(s, y, k=k, mask=m, backend=backend).tolist()  # noqa: E731
    assert ap() == pytest.approx([(1 + 2 / 3 + 3 / 5) / 3, 1 / 2])
    assert ap(2) == pytest.approx([1 / 3, 1 / 2])  # divided by R = 3, not min(R, k) = 2
    assert ap(1) == pytest.approx([1 / 3, 0.0])
    rec = lambda k=None: rankgrad.recall(s, y, k=k, mask=m, backend=backend).tolist()  # noqa: E731
    assert (
        rec() == [1.0, 1.0]
        and rec(1) == [pytest.approx(1 / 3), 0.0]
        and rec(3) == [pytest.approx(2 / 3), 1.0]
    )
    prec = lambda k=None: rankgrad.precision(s, y, k=k, mask=m, backend=backend).tolist()  # noqa: E731
    assert prec() == [pytest.approx(3 / 5), pytest.approx(1 / 3)]  # k=None: the list's real items
    assert prec(10) == [pytest.approx(3 / 10), pytest.approx(1 / 10)]  # P@10 divides by 10 (trec_eval's P_10)
    assert prec(2) == [0.5, 0.5]
    # no relevant item (negatives are not relevant) -> 0 for every metric
    for name in NEW:
        assert METRICS[name](s[:, :2], -y[:, :2].abs(), backend=backend).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_and_conventions(backend):
    s = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    y = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, 2.0]])
    # Ties rank by input position: the relevant item is 2nd in list 0, 1st in list 1.
    mrr = rankgrad.mrr(s, y, backend=backend)
    assert mrr.tolist() == [0.5, 1.0, 0.0, pytest.approx(1 / 3)]
    assert rankgrad.mrr(s, y, k=2, backend=backend).tolist() == [0.5, 1.0, 0.0, 0.0]
    nd1 = rankgrad.ndcg(s, y, k=1, backend=backend)
    assert nd1.tolist() == [0.0, 1.0, 0.0, 0.0]  # list 2: no relevant item (negatives count as 0) -> 0
    nd = rankgrad.ndcg(s, y, backend=backend)
    assert nd[3].item() == pytest.approx((3 / 2) / (3 / 1))
    # A padded item never takes a position, whatever its score.
    m = torch.tensor([[False, True, True]] * 4)
    assert rankgrad.mrr(s, y, mask=m, backend=backend).tolist() == [1.0, 0.0, 0.0, 0.5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_types_shapes_dtypes(backend):
    rng = np.random.default_rng(1)
    s, y, mask = random_batch(rng, 4, 6)
    want = reference("ndcg", s, y, mask, k=3)
    # numpy in, numpy out, in the dtype of scores.
    for dtype in (np.float64, np.float32):
        out = rankgrad.ndcg(s.astype(dtype), y.astype(np.int64), k=3, mask=mask, backend=backend)
        assert isinstance(out, np.ndarray) and out.dtype == dtype
        np.testing.assert_allclose(out, want, rtol=1e-6)
    # float16/bfloat16 scores: ranked in float32, values returned in the input dtype.
    for dtype in (torch.float16, torch.bfloat16):
        out = rankgrad.ndcg(
            torch.tensor(s, dtype=dtype), torch.tensor(y), k=3, mask=torch.tensor(mask), backend=backend
        )
        assert out.dtype == dtype
        np.testing.assert_allclose(out.float().numpy(), want, rtol=1e-2)  # s has exact halves: same order
    # Integer scores rank like floats.
    si = np.array([[3, 1, 2]])
    assert rankgrad.mrr(si, np.array([[0, 0, 1]]), backend=backend).tolist() == [0.5]
    # 1-D input: one list, a scalar result.
    one = rankgrad.mrr(torch.tensor([0.2, 0.9, 0.1]), torch.tensor([0, 0, 1]), backend=backend)
    assert one.ndim == 0 and one.item() == pytest.approx(1 / 3)
    one_np = rankgrad.ndcg(np.array([0.2, 0.9]), np.array([1.0, 0.0]), backend=backend)
    assert np.ndim(one_np) == 0
    assert float(one_np) == pytest.approx(1 / math.log2(3))
    # Empty lists and empty batches.
    assert rankgrad.ndcg(torch.zeros(2, 0), torch.zeros(2, 0), backend=backend).tolist() == [0.0, 0.0]
    assert rankgrad.mrr(torch.zeros(0, 3), torch.zeros(0, 3), backend=backend).shape == (0,)
    # Gradients do not flow through an exact metric, but a scores tensor that requires grad is fine.
    sg = torch.tensor(s, requires_grad=True)
    assert not rankgrad.ndcg(sg, torch.tensor(y), backend=backend).requires_grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", NEW)
def test_ap_recall_precision_types(kind, backend):
    f = METRICS[kind]
    rng = np.random.default_rng(9)
    s, y, mask = random_batch(rng, 4, 6)
    want = reference(kind, s, y, mask, k=3)
    for dtype in (np.float64, np.float32):
        out = f(s.astype(dtype), y.astype(np.int64), k=3, mask=mask, backend=backend)
        assert isinstance(out, np.ndarray) and out.dtype == dtype
        np.testing.assert_allclose(out, want, rtol=1e-6)
    for dtype in (torch.float16, torch.bfloat16):
        out = f(torch.tensor(s, dtype=dtype), torch.tensor(y), k=3, mask=torch.tensor(mask), backend=backend)
        assert out.dtype == dtype
        np.testing.assert_allclose(out.float().numpy(), want, rtol=1e-2)
    one = f(torch.tensor([0.2, 0.9, 0.1]), torch.tensor([0, 1, 1]), backend=backend)
    assert one.ndim == 0 and one.item() == pytest.approx(reference(kind, [[0.2, 0.9, 0.1]], [[0, 1, 1]])[0])
    one_np = f(np.array([3, 1, 2]), np.array([0, 0, 1]), k=2, backend=backend)  # integer scores
    assert np.ndim(one_np) == 0 and float(one_np) == pytest.approx(
        {"average_precision": 0.5, "recall": 1.0, "precision": 0.5}[kind]
    )
    assert f(torch.zeros(2, 0), torch.zeros(2, 0), backend=backend).tolist() == [0.0, 0.0]
    assert f(torch.zeros(0, 3), torch.zeros(0, 3), k=2, backend=backend).shape == (0,)
    sg = torch.tensor(s, requires_grad=True)
    assert not f(sg, torch.tensor(y), backend=backend).requires_grad


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 5),
    n=st.integers(0, 20),
    k=st.one_of(st.none(), st.integers(1, 25)),
    seed=st.integers(0, 2**31),
)
def test_rust_and_torch_agree(b, n, k, seed):
    rng = np.random.default_rng(seed)
    s, y, mask = random_batch(rng, b, n)
    st_, yt, mt = torch.tensor(s, dtype=torch.float32), torch.tensor(y), torch.tensor(mask)
    for f in METRICS.values():
        a = f(st_, yt, k=k, mask=mt, backend="rust")
        c = f(st_, yt, k=k, mask=mt, backend="torch")
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)


def test_inputs_untouched_and_padding_ignored():
    rng = np.random.default_rng(2)
    s, y, mask = random_batch(rng, 5, 9)
    copies = (s.copy(), y.copy(), mask.copy())
    s2, y2 = s.copy(), y.copy()
    s2[~mask], y2[~mask] = 100.0, 3.0
    for f in METRICS.values():
        a = f(s, y, k=4, mask=mask)
        assert all(np.array_equal(u, v) for u, v in zip((s, y, mask), copies))
        np.testing.assert_array_equal(f(s2, y2, k=4, mask=mask), a)
        np.testing.assert_array_equal(f(np.asfortranarray(s), np.asfortranarray(y), k=4, mask=mask), a)


def test_same_bits_whatever_the_thread_count():
    rng = np.random.default_rng(3)
    s, y, mask = random_batch(rng, 40, 200)
    try:
        outs = []
        for threads in (1, 2):
            rankgrad.set_num_threads(threads)
            outs.append(b"".join(f(s, y, k=10, mask=mask).tobytes() for f in METRICS.values()))
    finally:
        rankgrad.set_num_threads(None)  # back to the default pool
    assert outs[0] == outs[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    s, y, mask = random_batch(rng, 8, 50)
    args = [torch.tensor(a, device="cuda") for a in (s, y, mask)]
    for kind, f in METRICS.items():
        for k in (None, 5, 60):
            out = f(args[0], args[1], k=k, mask=args[2])
            assert out.device.type == "cuda"
            np.testing.assert_allclose(out.cpu().numpy(), reference(kind, s, y, mask, k=k), rtol=1e-12)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input(backend):
    s, y = torch.randn(2, 3), torch.ones(2, 3)
    for f in METRICS.values():
        for k in (0, -1, 2.5):
            with pytest.raises(ValueError, match="k"):
                f(s, y, k=k, backend=backend)
        for k in ("3", True):
            with pytest.raises(TypeError, match="k"):
                f(s, y, k=k, backend=backend)
        assert f(s, y, k=2.0, backend=backend).shape == (2,)
        with pytest.raises(ValueError, match="targets"):
            f(s, torch.ones(2, 4), backend=backend)
        with pytest.raises(ValueError, match="scores"):
            f(torch.randn(1, 2, 3), torch.ones(1, 2, 3), backend=backend)
        with pytest.raises(ValueError, match="mask"):
            f(s, y, mask=torch.ones(2, 2, dtype=torch.bool), backend=backend)
        bad = s.clone()
        bad[1, 0] = float("nan")
        with pytest.raises(ValueError, match=r"scores.*list 1"):
            f(bad, y, backend=backend)
        bad_y = y.clone()
        bad_y[1, 1] = float("-inf")
        with pytest.raises(ValueError, match=r"targets.*list 1"):
            f(s, bad_y, backend=backend)
    with pytest.raises(ValueError, match=r"targets.*list 1"):
        rankgrad.ndcg(s, torch.tensor([[1.0, 2.0, 3.0], [0.0, 5000.0, 1.0]]), backend=backend)
    assert torch.isfinite(
        rankgrad.ndcg(s, torch.tensor([[0.0, 5000.0, 1.0]] * 2), scale_gains=False, backend=backend)
    ).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_k_and_types(backend):
    """Issue 17 item 10: k of any size (beyond int64 too) is the whole list, precision still
    divides by k; numpy in -> numpy out, tensor in -> tensor out (issue 11 item 4)."""
    s, y = torch.randn(2, 3), torch.ones(2, 3)
    for f in METRICS.values():
        for k in (2**62, 2**63, 10**30, 2.0**70):
            if f is rankgrad.precision:  # hits / k, even for a huge k
                want = torch.full((2,), 3 / float(k))
                torch.testing.assert_close(f(s, y, k=k, backend=backend), want, rtol=1e-6, atol=0)
                got = f(s.numpy(), y.numpy(), k=k, backend=backend)
                np.testing.assert_allclose(got, want.numpy(), rtol=1e-6, atol=0)
            else:
                torch.testing.assert_close(f(s, y, k=k, backend=backend), f(s, y, backend=backend))
        with pytest.raises(ValueError, match="k"):
            f(s, y, k=0, backend=backend)
        with pytest.raises(ValueError, match="k"):
            f(s, y, k=2.5, backend=backend)
        out = f(s.numpy(), y.numpy(), k=2, backend=backend)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2,)
        assert isinstance(f(s, y, backend=backend), torch.Tensor)


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_and_meta(backend, dynamic):
    rng = np.random.default_rng(4)
    cases = [(rankgrad.ndcg, {"k": 3}), (rankgrad.mrr, {}), (rankgrad.ndcg, {"scale_gains": False})]
    cases += [(METRICS[name], {"k": k}) for name in NEW for k in (None, 2, 20)]
    for f, kw in cases:
        torch._dynamo.reset()  # one lambda code object, several closures: start its cache afresh
        fn = lambda s, y, m: f(s, y, mask=m, backend=backend, **kw)  # noqa: E731
        compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic)
        for b, n in ((3, 5), (4, 9)):
            s, y, m = (torch.tensor(a) for a in random_batch(rng, b, n))
            torch.testing.assert_close(compiled(s, y, m), fn(s, y, m), rtol=0, atol=0)
            meta = fn(s.to("meta"), y.to("meta"), m.to("meta"))
            assert meta.shape == (b,) and meta.dtype == s.dtype and meta.device.type == "meta"
    # scores that require grad: the metric is a constant, not an error
    x = torch.randn(2, 4, requires_grad=True)
    assert not rankgrad.ndcg(x, torch.ones(2, 4), backend=backend).requires_grad


@pytest.mark.parametrize("kind", list(METRICS))
def test_ranking_metric_opcheck(kind):
    """torch.library.opcheck: schema, fake (meta) kernel and AOT dispatch of the custom op."""
    from rankgrad.metrics._op import OP as metric_op

    rng = np.random.default_rng(11)
    s, y, mask = (torch.tensor(a) for a in random_batch(rng, 4, 7))
    for native in (False, True):
        for k in (None, 2, 9):
            torch.library.opcheck(metric_op, (s, y, mask, kind, k, True, native, True))


def test_numpy_core_imports_no_torch():
    """SPEC 9: these modules never import torch at their top level (torch only for tensors)."""
    import ast

    root = Path(rankgrad.__file__).parent
    families = ("metrics", "lambdarank", "ranknet", "approx", "listwise", "gbdt")
    modules = ["__init__.py", "_inputs.py", "_dispatch.py", "lightgbm.py", "xgboost.py"]
    modules += [f"{family}/__init__.py" for family in families]
    modules += [str(p.relative_to(root)) for p in (root / "gbdt").glob("*.py")]
    for name in modules:
        tree = ast.parse((root / name).read_text())
        for node in tree.body:  # module level only; TYPE_CHECKING blocks are not run
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] != "torch" for a in node.names), name
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "torch", name
                assert node.module not in ("_op", "_native", "_fast", "_torch_ops", "_ops"), name


def test_core_works_without_torch():
    """SPEC 9 / issue 11 item 1: lambdarank_gradients and the metrics on numpy with torch absent."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["torch"] = None  # import torch raises ImportError
import numpy as np
import rankgrad
s, y = np.array([[0.3, 0.1, 0.2]]), np.array([[1.0, 0.0, 2.0]])
assert abs(float(rankgrad.ndcg(s, y)[0]) - 0.7967075809905066) < 1e-12, rankgrad.ndcg(s, y)
assert float(rankgrad.mrr(s, y)[0]) == 1.0  # 0.3 (relevant) ranks first
assert float(rankgrad.average_precision(s, y, k=1)[0]) == 0.5  # ranked: relevant, relevant, 0
assert float(rankgrad.recall(s, y, k=1)[0]) == 0.5 and float(rankgrad.precision(s, y)[0]) == 2 / 3
g, h = rankgrad.lambdarank_gradients(np.array([0.3, 0.1, 0.2]), np.array([1, 0, 2]), [3])
assert g.shape == (3,) and np.isfinite(h).all()
from rankgrad.ranknet import ranknet_loss  # the module's numpy path needs no torch either
assert ranknet_loss(s, y).shape == ()
"""
    env = {"PYTHONPATH": str(Path(rankgrad.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


# ---------------------------------------------------------------- ragged and GBDT metrics


def ragged_batch(rng, sizes, levels=4):
    n = int(sum(sizes))
    preds = rng.normal(size=n)
    labels = rng.integers(0, levels + 1, size=n).astype(np.float64)
    labels[rng.random(n) < 0.5] = 0
    return preds, labels


def pad(flat, sizes, fill=0.0):
    out = np.full((len(sizes), max(sizes, default=0)), fill)
    mask = np.zeros(out.shape, dtype=bool)
    o = 0
    for g, c in enumerate(sizes):
        out[g, :c], mask[g, :c] = flat[o : o + c], True
        o += c
    return out, mask


def test_ragged_matches_padded():
    rng = np.random.default_rng(5)
    sizes = [3, 1, 0, 12, 7, 2, 30]
    preds, labels = ragged_batch(rng, sizes)
    labels[3 : 3 + 12] = 0  # a group with no relevant item
    ps, mask = pad(preds, sizes)
    ys, _ = pad(labels, sizes)
    for kind, f in METRICS.items():
        for k in (None, 1, 5, 40):
            values, valid = ragged_metric(kind, preds, labels, sizes, k)
            np.testing.assert_array_equal(values, f(ps, ys, k=k, mask=mask))
            has_rel = np.array([(ys[g][mask[g]] > 0).any() for g in range(len(sizes))])
            np.testing.assert_array_equal(valid, has_rel)


def test_gbdt_metric_no_size_cap_and_bad_input():
    rng = np.random.default_rng(6)
    sizes = [25_000, 3]  # LightGBM refuses lists over 10,000 rows; rankgrad does not
    preds, labels = ragged_batch(rng, sizes)
    metric = NDCGMetric(10)
    ps, mask = pad(preds, sizes)
    ys, _ = pad(labels, sizes)
    want = rankgrad.ndcg(ps, ys, k=10, mask=mask)
    assert metric.evaluate(preds, labels, sizes) == pytest.approx(want.mean(), rel=1e-14)
    with pytest.raises(ValueError, match="group"):
        metric.evaluate(preds, labels, [25_000, 2])
    with pytest.raises(ValueError, match="group"):
        metric.evaluate(preds, labels, [25_004, -1])
    with pytest.raises(ValueError, match="group"):
        metric.evaluate(preds, labels, None)
    with pytest.raises(ValueError, match="labels"):
        metric.evaluate(preds, labels[:-1], sizes)
    bad = preds.copy()
    bad[-1] = np.nan
    with pytest.raises(ValueError, match=r"preds.*list 1"):
        metric.evaluate(bad, labels, sizes)
    with pytest.raises(ValueError, match="k"):
        NDCGMetric(0)
    with pytest.raises(ValueError, match="metric"):
        RankingMetric("map")
    with pytest.raises(ValueError, match="weight"):
        metric.evaluate(preds, labels, sizes, weight=np.ones(5))


def test_gbdt_metric_conventions():
    """empty: the score of a query with no relevant item; weights: per query or per row."""
    preds = np.array([0.1, 0.9, 0.3, 0.2, 0.5, 0.4])
    labels = np.array([1, 0, 0, 0, 0, 2])
    sizes = [2, 2, 2]  # values: mrr 0.5, no relevant item, 0.5
    assert MRRMetric(None).evaluate(preds, labels, sizes) == pytest.approx(1 / 3)
    assert MRRMetric(None, empty=1.0).evaluate(preds, labels, sizes) == pytest.approx(2 / 3)
    assert MRRMetric(None, empty=None).evaluate(preds, labels, sizes) == pytest.approx(0.5)
    assert MRRMetric(1).evaluate(preds, labels, sizes) == 0.0
    # Per-query weights, and per-row weights averaged within each query (LightGBM's rule).
    assert MRRMetric(None, empty=1.0).evaluate(preds, labels, sizes, weight=[1, 2, 1]) == pytest.approx(3 / 4)
    rows = np.array([1, 1, 3, 1, 1, 1.0])  # query weights 1, 2, 1
    assert MRRMetric(None, empty=1.0).evaluate(preds, labels, sizes, weight=rows) == pytest.approx(3 / 4)
    m = NDCGMetric(5)
    assert (m.name, m.__name__, NDCGMetric(None).name, MRRMetric(3, name="x").name) == (
        "rankgrad_ndcg@5",
        "rankgrad_ndcg@5",
        "rankgrad_ndcg",
        "x",
    )
    assert "ndcg" in repr(m)
    # The one-query form (y_true, y_score) -> value, as XGBRanker calls it.
    assert MRRMetric(None)(labels[:2], preds[:2]) == 0.5


def test_gbdt_metric_empty_must_be_a_number():
    # `empty` is checked when the metric is made (_inputs.check_real), not at the first evaluation
    for bad in ("x", [1.0], object()):
        with pytest.raises(TypeError, match="empty"):
            NDCGMetric(10, empty=bad)
        with pytest.raises(TypeError, match="empty"):
            MRRMetric(5, empty=bad)
    with pytest.raises(ValueError, match="empty"):
        NDCGMetric(10, empty=float("nan"))
    assert NDCGMetric(10, empty=1).empty == 1.0 and NDCGMetric(10, empty=None).empty is None


def _lgb_data(rng, n_groups, jitter=True):
    sizes = rng.integers(1, 25, size=n_groups)
    n = int(sizes.sum())
    X = rng.normal(size=(n, 6))
    labels = np.clip(np.round(X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n)), 0, 4)
    o = np.cumsum(sizes) - sizes
    for g in range(0, n_groups, 7):  # some queries with no relevant document
        labels[o[g] : o[g] + sizes[g]] = 0
    init = rng.normal(size=n) * 1e-3 if jitter else None  # distinct scores: no ties to break
    return X, labels, sizes, init


def test_ndcg_matches_lightgbm():
    lgb = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(7)
    X, y, sizes, _ = _lgb_data(rng, 80)
    Xv, yv, sv, iv = _lgb_data(rng, 40)
    train = lgb.Dataset(X, y, group=sizes)
    valid = lgb.Dataset(Xv, yv, group=sv, init_score=iv, reference=train)
    seen = []

    def capture(preds, data):
        seen.append(np.array(preds))
        return "capture", 0.0, True

    ks = [1, 3, 5, 10]
    fevals = [NDCGMetric(k, empty=1.0, name=f"rg_ndcg@{k}") for k in ks] + [
        MRRMetric(5, name="rg_mrr@5"),
        capture,
    ]
    result = {}
    params = dict(
        objective="lambdarank",
        metric="ndcg",
        eval_at=ks,
        num_leaves=7,
        learning_rate=0.3,
        min_data_in_leaf=5,
        verbose=-1,
        num_threads=1,
        seed=1,
    )
    lgb.train(
        params,
        train,
        num_boost_round=4,
        valid_sets=[valid],
        valid_names=["valid"],
        feval=fevals,
        callbacks=[lgb.record_evaluation(result)],
    )
    r = result["valid"]
    assert len(seen) == 4
    for k in ks:
        # The feval, with LightGBM's convention (a query with no relevant document scores 1).
        np.testing.assert_allclose(r[f"rg_ndcg@{k}"], r[f"ndcg@{k}"], rtol=1e-12)
        # rankgrad.ndcg on the scores LightGBM evaluated, queries padded, convention applied by hand.
        ps, mask = pad(seen[-1], sv)
        ys, _ = pad(yv, sv)
        per_query = rankgrad.ndcg(ps, ys, k=k, mask=mask)
        has_rel = (ys * mask > 0).any(1)
        assert (~has_rel).sum() >= 5
        ours = np.where(has_rel, per_query, 1.0).mean()
        assert ours == pytest.approx(r[f"ndcg@{k}"][-1], rel=1e-12)
    # The sklearn API's 4-argument form, through LightGBM's own dispatcher.
    from lightgbm.sklearn import _EvalFunctionWrapper

    name, value, higher = _EvalFunctionWrapper(NDCGMetric(5, empty=1.0))(seen[-1], valid)
    assert (name, higher) == ("rankgrad_ndcg@5", True)
    assert value == pytest.approx(r["ndcg@5"][-1], rel=1e-12)


@needs_data
def test_ndcg_matches_lightgbm_on_example_data():
    """LightGBM's lambdarank example data; tied predictions rank by input order in both."""
    lgb = pytest.importorskip("lightgbm")
    train = lgb.Dataset(str(DATA / "rank.train"), params={"verbose": -1})
    valid = lgb.Dataset(str(DATA / "rank.test"), reference=train, params={"verbose": -1})
    result = {}
    params = dict(
        objective="lambdarank",
        metric="ndcg",
        eval_at=[1, 5, 10],
        num_leaves=15,
        verbose=-1,
        num_threads=1,
        seed=1,
    )
    fevals = [NDCGMetric(k, empty=1.0, name=f"rg@{k}") for k in (1, 5, 10)]
    lgb.train(
        params,
        train,
        num_boost_round=3,
        valid_sets=[valid],
        valid_names=["v"],
        feval=fevals,
        callbacks=[lgb.record_evaluation(result)],
    )
    for k in (1, 5, 10):
        np.testing.assert_allclose(result["v"][f"rg@{k}"], result["v"][f"ndcg@{k}"], rtol=1e-12)


def test_metrics_inside_xgboost():
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(8)
    X, y, sizes, _ = _lgb_data(rng, 60)
    Xv, yv, sv, iv = _lgb_data(rng, 30)
    train = xgb.DMatrix(X, y)
    train.set_group(sizes)
    valid = xgb.DMatrix(Xv, yv, base_margin=iv)
    valid.set_group(sv)
    result = {}
    params = {
        "objective": "rank:ndcg",
        "eval_metric": ["ndcg@5"],
        "max_depth": 3,
        "eta": 0.3,
        "nthread": 1,
        "seed": 1,
    }
    metric = RankingMetric("ndcg", 5, empty=1.0, name="rg_ndcg@5")
    booster = xgb.train(
        params,
        train,
        num_boost_round=4,
        evals=[(valid, "valid")],
        evals_result=result,
        custom_metric=metric,
        maximize=True,
        verbose_eval=False,
    )
    r = result["valid"]
    assert len(r["rg_ndcg@5"]) == 4
    # XGBoost's own ndcg@5 (exponential gains; a query with no relevant document scores 1),
    # on float32 predictions; evals_result holds both as printed, to 6 decimals.
    np.testing.assert_allclose(r["rg_ndcg@5"], r["ndcg@5"], rtol=0, atol=1.01e-6)
    margin = booster.predict(valid, output_margin=True)
    assert metric(margin, valid) == ("rg_ndcg@5", pytest.approx(r["rg_ndcg@5"][-1], abs=5.01e-7))
    name, value = MRRMetric(5, empty=None)(margin, valid)
    vals, ok = ragged_metric("mrr", margin, yv, sv, 5)
    assert name == "rankgrad_mrr@5" and value == pytest.approx(vals[ok].mean(), rel=1e-12)
    # XGBRanker's form: one query at a time, (y_true, y_score) -> value, through XGBoost's wrapper.
    from xgboost.sklearn import ltr_metric_decorator

    name, value = ltr_metric_decorator(NDCGMetric(5, empty=1.0), 1)(margin, valid)
    assert name == "rankgrad_ndcg@5"
    vals, ok = ragged_metric("ndcg", margin, yv, sv, 5)
    per_query = np.where(sv == 1, 1.0, np.where(ok, vals, 1.0))  # XGBRanker: 1.0 for one-row queries
    # That wrapper averages the queries weighted by dmatrix.get_group(), i.e. by their sizes.
    assert value == pytest.approx(np.average(per_query, weights=sv), rel=1e-12)
