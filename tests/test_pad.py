"""Ragged <-> padded (SPEC section 15): `rankgrad.pad` and `rankgrad.unpad`.

The reference is plain Python: a dict of lists keyed by query id (lists in order of first
appearance, rows in order within a list), or consecutive slices for list sizes. Also checked:
a pure-numpy implementation (`np.unique` + a stable argsort, the baseline the Rust index is
measured against), round trips, every dtype class on numpy and torch, errors naming the
argument, LightGBM's query sizes, and a padded batch feeding a loss like the lists one by one.
"""

from __future__ import annotations

import doctest
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rankgrad
from gbdt_data import DATA, needs_data
from rankgrad import _core

try:
    import torch
except ImportError:  # the numpy tests still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")


# ---------------------------------------------------------------- references
def ref_lists(n, group=None, qid=None):
    """The rows of each list, in order: a dict of lists (qid) or consecutive slices (group)."""
    if group is not None:
        out, lo = [], 0
        for size in group:
            out.append(list(range(lo, lo + int(size))))
            lo += int(size)
        return out
    lists = {}
    for r, q in enumerate(qid):
        lists.setdefault(q, []).append(r)
    return list(lists.values())


def ref_pad(values, group=None, qid=None, fill=0):
    """`(padded, mask)` from `ref_lists`, built slot by slot."""
    values = np.asarray(values)
    rows = ref_lists(len(values), group, qid)
    width = max((len(r) for r in rows), default=0)
    padded = np.full((len(rows), width, *values.shape[1:]), fill, dtype=values.dtype)
    mask = np.zeros((len(rows), width), dtype=bool)
    for b, rs in enumerate(rows):
        for p, r in enumerate(rs):
            padded[b, p] = values[r]
            mask[b, p] = True
    return padded, mask


def list_order(qid):
    """The rows in list order (what `unpad` without qid gives)."""
    return [r for rows in ref_lists(len(qid), qid=list(qid)) for r in rows]


def numpy_pad(values, qid, fill=0):
    """The pure-numpy baseline: lists by `np.unique(return_inverse)`, reordered by first
    appearance, positions by a stable argsort."""
    n = len(qid)
    _, first, inv = np.unique(qid, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    lst = rank[inv]
    perm = np.argsort(lst, kind="stable")
    sizes = np.bincount(lst, minlength=len(first))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.empty(n, dtype=np.int64)
    pos[perm] = np.arange(n) - offsets[lst[perm]]
    width = int(sizes.max()) if n else 0
    out = np.full((len(sizes) * width, *values.shape[1:]), fill, dtype=values.dtype)
    out[lst * width + pos] = values
    return out.reshape(len(sizes), width, *values.shape[1:]), np.arange(width) < sizes[:, None]


def same(a, b):
    """Equal shapes, dtypes and values (NaN equal to NaN, bits for tensors)."""
    if torch is not None and isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, (a, b)
        if a.numel() == 0:
            return
        bits = [x.detach().cpu().reshape(-1).contiguous().view(torch.uint8) for x in (a, b)]
        assert torch.equal(*bits), (a, b)
        return
    assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), (type(a), type(b))
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    if a.dtype.kind in "fc":
        np.testing.assert_array_equal(a, b)
    else:
        assert (a == b).all(), (a, b)


# ---------------------------------------------------------------- strategies
@st.composite
def ragged_qid(draw, max_n=40):
    """(values [n] or [n, d], qid [n]) with few distinct, non-contiguous ids."""
    n = draw(st.integers(0, max_n))
    ids = draw(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=6, unique=True))
    qid = draw(st.lists(st.sampled_from(ids), min_size=n, max_size=n))
    d = draw(st.sampled_from([None, 1, 3]))
    shape = (n,) if d is None else (n, d)
    values = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + 0.5
    return values, np.array(qid, dtype=np.int64)


@st.composite
def ragged_group(draw, max_lists=8):
    """(values [n] or [n, d], group [B]) with empty lists and odd sizes."""
    group = draw(st.lists(st.integers(0, 9), max_size=max_lists))
    n = sum(group)
    d = draw(st.sampled_from([None, 2]))
    shape = (n,) if d is None else (n, d)
    return np.arange(np.prod(shape), dtype=np.int32).reshape(shape) * 3 - 7, group


# ---------------------------------------------------------------- against the references
@settings(max_examples=80, deadline=None)
@given(ragged_qid(), st.sampled_from([0, -1.5, np.nan]))
def test_pad_qid_matches_reference(case, fill):
    values, qid = case
    padded, mask = rankgrad.pad(values, qid=qid, fill=fill)
    want_p, want_m = ref_pad(values, qid=qid.tolist(), fill=fill)
    same(padded, want_p)
    same(mask, want_m)
    same(numpy_pad(values, qid, fill)[0], want_p)
    same(rankgrad.unpad(padded, mask, qid=qid), values)
    same(rankgrad.unpad(padded, mask), values[list_order(qid)])


@settings(max_examples=80, deadline=None)
@given(ragged_group(), st.sampled_from([0, 9]))
def test_pad_group_matches_reference(case, fill):
    values, group = case
    padded, mask = rankgrad.pad(values, group=group, fill=fill)
    want_p, want_m = ref_pad(values, group=group, fill=fill)
    same(padded, want_p)
    same(mask, want_m)
    same(rankgrad.unpad(padded, mask), values)  # group lists are in row order already


@needs_torch
@settings(max_examples=40, deadline=None)
@given(ragged_qid(), st.booleans())
def test_torch_matches_reference(case, tensor_qid):
    values, qid = case
    v = torch.from_numpy(values)
    q = torch.from_numpy(qid) if tensor_qid else qid
    padded, mask = rankgrad.pad(v, qid=q, fill=-2)
    want_p, want_m = ref_pad(values, qid=qid.tolist(), fill=-2)
    same(padded, torch.from_numpy(want_p))
    same(mask, torch.from_numpy(want_m))
    same(rankgrad.unpad(padded, mask, qid=q), v)
    same(rankgrad.unpad(padded, mask.numpy()), v[list_order(qid)])  # a numpy mask follows padded


def test_qid_order_of_first_appearance():
    v = np.array([10, 11, 12, 13, 14, 15, 16])
    padded, mask = rankgrad.pad(v, qid=[5, 2, 5, 9, 2, 5, 9], fill=-1)
    np.testing.assert_array_equal(padded, [[10, 12, 15], [11, 14, -1], [13, 16, -1]])
    np.testing.assert_array_equal(mask.sum(1), [3, 2, 2])
    np.testing.assert_array_equal(rankgrad.unpad(padded, mask), [10, 12, 15, 11, 14, 13, 16])


def test_empty_inputs_and_empty_lists():
    for kw in (dict(qid=[]), dict(group=[]), dict(group=np.zeros(0, np.int64))):
        p, m = rankgrad.pad(np.zeros(0, np.float32), **kw)
        assert p.shape == m.shape == (0, 0) and p.dtype == np.float32 and m.dtype == np.bool_
        assert rankgrad.unpad(p, m).shape == (0,)
    p, m = rankgrad.pad(np.zeros((0, 4)), group=[0, 0, 0])
    assert p.shape == (3, 0, 4) and m.shape == (3, 0)
    p, m = rankgrad.pad(np.arange(3), group=[0, 2, 0, 1, 0])
    np.testing.assert_array_equal(m, [[0, 0], [1, 1], [0, 0], [1, 0], [0, 0]])
    np.testing.assert_array_equal(rankgrad.unpad(p, m), [0, 1, 2])
    p, m = rankgrad.pad(np.zeros((0, 2)), qid=np.zeros(0, np.int8))
    assert p.shape == (0, 0, 2)
    assert rankgrad.unpad(p, m, qid=[]).shape == (0, 2)


def test_one_huge_list():
    n = 200_000
    group = [1, n, 0, 3]
    v = np.arange(n + 4, dtype=np.float32)
    p, m = rankgrad.pad(v, group=group)
    assert p.shape == (4, n)
    assert m.sum() == n + 4 and m[1].all() and not m[2].any()
    np.testing.assert_array_equal(p[1], v[1 : n + 1])
    # the same list given by ids: one id for the long list, the others interleaved
    qid = np.zeros(n + 4, np.int64)
    qid[[0, 5, 17, 400]] = [3, 9, 3, 9]
    p, m = rankgrad.pad(v, qid=qid)
    assert p.shape == (3, n) and m.sum(1).tolist() == [2, n, 2]
    same(rankgrad.unpad(p, m, qid=qid), v)


# ---------------------------------------------------------------- dtypes
NUMPY_VALUE_DTYPES = [
    np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
    np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128,
    np.dtype(">f8"), np.dtype(">i4"), np.dtype("U3"), np.dtype("S2"), np.dtype("datetime64[s]"), object,
]  # fmt: skip


@pytest.mark.parametrize("dtype", NUMPY_VALUE_DTYPES, ids=str)
def test_numpy_value_dtypes_kept(dtype):
    qid = [4, 1, 4, 4, 1]
    v = np.array([1, 0, 1, 1, 0]).astype(dtype) if np.dtype(dtype).kind not in "USMO" else None
    if np.dtype(dtype).kind in "US":
        v = np.array(["a", "bb", "c", "dd", "e"]).astype(dtype)
    elif np.dtype(dtype).kind == "M":
        v = np.arange(5).astype(dtype)
    elif np.dtype(dtype) == object:
        v = np.array([(1,), "x", None, 2.5, {3}], dtype=object)
    p, m = rankgrad.pad(v, qid=qid)
    assert p.dtype == v.dtype and p.shape == (2, 3)
    assert p[1, 2] == np.zeros((), v.dtype)[()]  # fill=0: the dtype's zero
    want, _ = ref_pad(v, qid=qid, fill=np.zeros((), v.dtype)[()])
    assert [repr(x) for x in p.ravel()] == [repr(x) for x in want.ravel()]
    back = rankgrad.unpad(p, m, qid=qid)
    assert back.dtype == v.dtype and [repr(x) for x in back] == [repr(x) for x in v]


def test_numpy_layouts():
    base = np.arange(24.0).reshape(6, 4)
    for v in (base[::2], np.asfortranarray(base), base[:, ::-1], base.T.copy().T):
        p, m = rankgrad.pad(v, group=[1, 0, len(v) - 1])
        same(p, ref_pad(np.ascontiguousarray(v), group=[1, 0, len(v) - 1])[0])
        same(rankgrad.unpad(p, m), np.ascontiguousarray(v))


def torch_dtypes():
    if torch is None:
        return []
    names = [
        "bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
        "float16", "bfloat16", "float32", "float64", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2",
    ]  # fmt: skip
    return [getattr(torch, n) for n in names if hasattr(torch, n)]


@needs_torch
@pytest.mark.parametrize("dtype", torch_dtypes(), ids=str)
def test_torch_value_dtypes_kept(dtype):
    qid = np.array([4, 1, 4, 4, 1, 7])
    v = torch.tensor([1, 0, 1, 1, 0, 1]).to(dtype)
    for fill in (0, 1, True):
        p, m = rankgrad.pad(v, qid=qid, fill=fill)
        assert p.dtype == dtype and p.shape == (3, 3) and m.dtype == torch.bool
        want = torch.tensor([[1, 1, 1], [0, 0, int(fill)], [1, int(fill), int(fill)]]).to(dtype)
        same(p, want)
        same(rankgrad.unpad(p, m, qid=qid), v)
        # rows reordered through their bytes: torch 2.7 has no CPU indexing for uint16/32/64, float8
        want = v.view(torch.uint8).reshape(6, -1)[[0, 2, 3, 1, 4, 5]].reshape(-1).view(dtype)
        same(rankgrad.unpad(p, m), want)


def test_qid_dtypes():
    v = np.arange(6)
    want = [[0, 2, 3], [1, 4, 0], [5, 0, 0]]
    ids = {
        "int64": np.array([9, -(2**40), 9, 9, -(2**40), 0]),
        "high bits only": np.array([1 << 40, 2 << 40, 1 << 40, 1 << 40, 2 << 40, 3 << 40], dtype=np.uint64),
        "uint8": np.array([200, 1, 200, 200, 1, 0], dtype=np.uint8),
        "int8": np.array([-1, 1, -1, -1, 1, 0], dtype=np.int8),
        "big-endian": np.array([5, 6, 5, 5, 6, 7], dtype=">i4"),
        "strided": np.array([5, 0, 6, 0, 5, 0, 5, 0, 6, 0, 7, 0])[::2],
        "float64 with -0.0": np.array([0.0, 1.5, -0.0, 0.0, 1.5, np.inf]),
        "float32": np.array([0.5, 1.5, 0.5, 0.5, 1.5, 2.5], dtype=np.float32),
        "float16": np.array([0.5, 1.5, 0.5, 0.5, 1.5, 2.5], dtype=np.float16),
        "longdouble": np.array([0.5, 1.5, 0.5, 0.5, 1.5, 2.5], dtype=np.longdouble),
        "complex": np.array([1j, 1, 1j, 1j, 1, 2]),
        "str": np.array(["q1", "q2", "q1", "q1", "q2", "q10"]),
        "bytes": np.array([b"q1", b"q2", b"q1", b"q1", b"q2", b"q10"]),
        "datetime": np.array(["2024-01-02", "2023-05-01", "2024-01-02", "2024-01-02", "2023-05-01", "2020-01-01"], dtype="datetime64[D]"),
        "object": np.array([("a", 1), "b", ("a", 1), ("a", 1), "b", 3], dtype=object),
        "python list": [7, 3, 7, 7, 3, 1],
        "python str list": ["x", "y", "x", "x", "y", "z"],
    }  # fmt: skip
    for name, qid in ids.items():
        p, m = rankgrad.pad(v, qid=qid)
        np.testing.assert_array_equal(p, want, err_msg=name)
        np.testing.assert_array_equal(rankgrad.unpad(p, m, qid=qid), v, err_msg=name)
    p, _ = rankgrad.pad(np.arange(3), qid=np.array([True, False, True]))
    np.testing.assert_array_equal(p, [[0, 2], [1, 0]])


@needs_torch
def test_torch_qid_dtypes():
    v = torch.arange(6.0)
    want = torch.tensor([[0.0, 2, 3], [1, 4, 0], [5, 0, 0]])
    for dtype in (
        torch.int64,
        torch.int32,
        torch.uint8,
        torch.float32,
        torch.bfloat16,
        torch.float16,
        torch.bool,
    ):
        qid = torch.tensor([1, 0, 1, 1, 0, 3]).to(dtype)
        if dtype == torch.bool:
            qid = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
            exp = torch.tensor([[0.0, 2, 3], [1, 4, 5]])
        else:
            exp = want
        p, m = rankgrad.pad(v, qid=qid)
        same(p, exp)
        same(rankgrad.unpad(p, m, qid=qid), v)


# ---------------------------------------------------------------- torch specifics
@needs_torch
def test_torch_is_differentiable():
    v = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    qid = [3, 1, 3, 2, 1, 3, 3]
    p, m = rankgrad.pad(v, qid=qid)
    w = torch.randn(p.shape, dtype=torch.float64)
    (g,) = torch.autograd.grad((p * w).sum(), v, retain_graph=True)
    np.testing.assert_array_equal(g.numpy(), rankgrad.unpad(w, m, qid=qid).numpy())  # padding gets none
    back = rankgrad.unpad(p, m, qid=qid)
    (g2,) = torch.autograd.grad((back * v.detach()).sum(), v)
    same(g2, v.detach())
    torch.autograd.gradcheck(lambda x: rankgrad.unpad(*rankgrad.pad(x, group=[2, 0, 5]), qid=None), (v,))


@needs_torch
def test_torch_devices():
    v = torch.randn(5, device="meta")
    p, m = rankgrad.pad(v, qid=[1, 2, 1, 1, 2])
    assert p.device.type == "meta" and p.shape == (2, 3) and m.device.type == "meta"
    if not torch.cuda.is_available():
        return
    v = torch.randn(6, 3, device="cuda", dtype=torch.bfloat16)
    qid = torch.tensor([4, 1, 4, 4, 1, 2], device="cuda")
    p, m = rankgrad.pad(v, qid=qid, fill=1)
    assert p.device == v.device and m.device == v.device and p.dtype == torch.bfloat16
    want, wmask = ref_pad(v.float().cpu().numpy(), qid=qid.tolist(), fill=1)
    same(p.float().cpu(), torch.from_numpy(want))
    same(m.cpu(), torch.from_numpy(wmask))
    same(rankgrad.unpad(p, m, qid=qid), v)
    same(rankgrad.unpad(p, m.cpu().numpy(), qid=qid.cpu()), v)  # a numpy mask follows padded


# ---------------------------------------------------------------- errors name the argument
def raises(exc, arg, call):
    with pytest.raises(exc) as e:
        call()
    assert arg in str(e.value), (arg, str(e.value))


def test_errors_name_the_argument():
    v = np.arange(5.0)
    raises(TypeError, "values", lambda: rankgrad.pad([1.0, 2.0], group=[2]))
    raises(ValueError, "values", lambda: rankgrad.pad(np.array(1.0), group=[1]))
    raises(TypeError, "group", lambda: rankgrad.pad(v))
    raises(TypeError, "qid", lambda: rankgrad.pad(v, group=[5], qid=[1] * 5))
    raises(ValueError, "group", lambda: rankgrad.pad(v, group=[2, 2]))
    raises(ValueError, "group", lambda: rankgrad.pad(v, group=[6, -1]))
    raises(ValueError, "group", lambda: rankgrad.pad(v, group=[[5]]))
    raises(ValueError, "group", lambda: rankgrad.pad(v, group=[2.5, 2.5]))
    raises(ValueError, "qid", lambda: rankgrad.pad(v, qid=[1, 2]))
    raises(ValueError, "qid", lambda: rankgrad.pad(v, qid=np.ones((5, 1))))
    raises(ValueError, "qid", lambda: rankgrad.pad(v, qid=[1.0, np.nan, 1.0, 2.0, 2.0]))
    nat = np.array(["2024-01-01", "NaT", "2024-01-01", "2024-01-01", "NaT"], dtype="M8[D]")
    raises(ValueError, "qid", lambda: rankgrad.pad(v, qid=nat))
    raises(ValueError, "qid", lambda: rankgrad.pad(v, qid=np.array([1j, np.nan, 1j, 1, 1])))
    raises(TypeError, "qid", lambda: rankgrad.pad(v, qid=np.array([{1}, {2}, {1}, {1}, {2}], dtype=object)))
    raises(ValueError, "qid", lambda: _core.pad_index_qid(np.array([np.nan]), True))
    raises(TypeError, "qid", lambda: _core.pad_index_qid(np.array(["a"]), True))
    raises(ValueError, "group", lambda: _core.pad_index_groups(np.array([3]), 2))
    for fill, dtype in ((0.5, np.int32), (np.nan, np.int64), (2, np.bool_), (300, np.uint8), (-1, np.uint64),
                        (1e6, np.float16), (1j, np.float32), (2**70, np.int64)):  # fmt: skip
        raises(ValueError, "fill", lambda: rankgrad.pad(np.zeros(3, dtype), group=[3], fill=fill))
    raises(TypeError, "fill", lambda: rankgrad.pad(v, group=[5], fill="x"))
    raises(TypeError, "fill", lambda: rankgrad.pad(v, group=[5], fill=None))
    raises(ValueError, "fill", lambda: rankgrad.pad(np.zeros(2, "M8[s]"), group=[2], fill="not a date"))

    p, m = rankgrad.pad(v, qid=[1, 2, 1, 1, 2])
    raises(TypeError, "padded", lambda: rankgrad.unpad(p.tolist(), m))
    raises(ValueError, "padded", lambda: rankgrad.unpad(v, m))
    raises(TypeError, "mask", lambda: rankgrad.unpad(p, m.astype(np.int8)))
    raises(TypeError, "mask", lambda: rankgrad.unpad(p, m.tolist()))
    raises(ValueError, "mask", lambda: rankgrad.unpad(p, m[:, :2]))
    raises(ValueError, "mask", lambda: rankgrad.unpad(p, m[:1]))
    raises(ValueError, "qid", lambda: rankgrad.unpad(p, m, qid=[1, 2, 1, 1, 3]))  # 3 lists, mask has 2
    raises(ValueError, "mask", lambda: rankgrad.unpad(p, m, qid=[1, 2, 1, 2, 2]))  # 2 + 3, mask has 3 + 2
    raises(ValueError, "qid", lambda: rankgrad.unpad(p, m, qid=[1, 2, 1, 1]))


@needs_torch
def test_torch_errors_name_the_argument():
    v = torch.arange(4.0)
    raises(ValueError, "fill", lambda: rankgrad.pad(v.to(torch.int16), group=[4], fill=0.5))
    raises(ValueError, "fill", lambda: rankgrad.pad(v.to(torch.bfloat16), group=[4], fill=1e39))
    raises(ValueError, "fill", lambda: rankgrad.pad(v.to(torch.uint8), group=[4], fill=-1))
    raises(TypeError, "values", lambda: rankgrad.pad(v.to_sparse(), group=[4]))
    raises(ValueError, "qid", lambda: rankgrad.pad(v, qid=torch.tensor([1.0, float("nan"), 1.0, 1.0])))
    p, m = rankgrad.pad(v, group=[1, 3])
    raises(TypeError, "mask", lambda: rankgrad.unpad(p.numpy(), m))
    raises(TypeError, "mask", lambda: rankgrad.unpad(p, m.int()))
    raises(ValueError, "mask", lambda: rankgrad.unpad(p, m.t()))
    raises(ValueError, "mask", lambda: rankgrad.unpad(p, m, qid=[1, 1, 2, 2]))


# ---------------------------------------------------------------- real data, losses
@needs_data
def test_lightgbm_query_sizes():
    group = np.loadtxt(DATA / "rank.train.query", dtype=np.int64)
    n = int(group.sum())
    values = np.random.default_rng(0).normal(size=n)
    p, m = rankgrad.pad(values, group=group)
    assert p.shape == (len(group), group.max())
    np.testing.assert_array_equal(m.sum(1), group)
    np.testing.assert_array_equal(p[~m], 0.0)
    same(rankgrad.unpad(p, m), values)
    offsets = np.concatenate([[0], np.cumsum(group)])
    for b in (0, len(group) // 2, len(group) - 1):
        np.testing.assert_array_equal(p[b, : group[b]], values[offsets[b] : offsets[b + 1]])
    # the same lists as ids, shuffled: lists come in order of first appearance
    qid = np.repeat(np.arange(len(group)) * 7919 % 100_003, group)
    perm = np.random.default_rng(1).permutation(n)
    p2, m2 = rankgrad.pad(values[perm], qid=qid[perm])
    same(rankgrad.unpad(p2, m2, qid=qid[perm]), values[perm])
    np.testing.assert_array_equal(np.sort(m2.sum(1)), np.sort(group))


@needs_torch
def test_padded_batch_feeds_a_loss_like_the_lists_one_by_one():
    rng = np.random.default_rng(3)
    qid = rng.integers(0, 9, size=60) * 1000
    scores = torch.tensor(rng.normal(size=60), requires_grad=True)
    labels = torch.tensor(rng.integers(0, 4, size=60).astype(np.float64))
    ps, mask = rankgrad.pad(scores, qid=qid)
    py, _ = rankgrad.pad(labels, qid=qid)
    losses = rankgrad.approx_ndcg_loss(ps, py, mask=mask, reduction="none")
    (grad,) = torch.autograd.grad(losses.sum(), scores)
    per_list, want_grad = [], torch.zeros(60, dtype=torch.float64)
    for rows in ref_lists(60, qid=qid.tolist()):
        s = scores.detach()[rows].clone().requires_grad_(True)
        loss = rankgrad.approx_ndcg_loss(s, labels[rows], reduction="none")
        per_list.append(loss)
        want_grad[rows] = torch.autograd.grad(loss, s)[0]
    torch.testing.assert_close(losses, torch.stack(per_list), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-12)
    # numpy in, numpy out
    out = rankgrad.approx_ndcg_loss(ps.detach().numpy(), py.numpy(), mask=mask.numpy(), reduction="none")
    np.testing.assert_allclose(out, torch.stack(per_list).detach().numpy(), rtol=1e-12)


# ---------------------------------------------------------------- packaging
def test_docstring_examples():
    module = importlib.import_module("rankgrad.pad")
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, "rankgrad.pad") if t.examples]
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, result
    for f in (rankgrad.pad, rankgrad.unpad):
        assert ">>> " in (f.__doc__ or "") and "Args:" in f.__doc__ and "Returns:" in f.__doc__


def test_numpy_only():
    """`pad` and `unpad` on numpy never import torch (SPEC section 9)."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import rankgrad
        p, m = rankgrad.pad(np.arange(5.0), qid=["a", "b", "a", "a", "b"])
        assert rankgrad.unpad(p, m, qid=["a", "b", "a", "a", "b"]).tolist() == [0, 1, 2, 3, 4]
        rankgrad.pad(np.arange(5), group=[2, 3], fill=-1)
        assert "torch" not in sys.modules
        assert {"pad", "unpad"} <= set(rankgrad.__all__)
        """
    )
    env = dict(os.environ)
    root = str(Path(rankgrad.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
