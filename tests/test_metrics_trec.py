"""The exact metrics against trec_eval itself (through pytrec_eval, a test dependency; skipped
when absent), on random runs with ties, padding, lists with no relevant item and odd sizes.

How each rankgrad value maps onto a trec_eval measure:

- ``ndcg(k, scale_gains=False)``: ``ndcg_cut_k`` (``ndcg`` for k=None); trec_eval's gain is the
  label itself, negative labels counting 0, discount ``log2(2 + p)``.
- ``mrr()``: ``recip_rank``.
- ``average_precision(k)``: ``map_cut_k`` (``map`` for k=None), divided by the query's number of
  relevant documents.
- ``recall(k)``: ``recall_k`` (``set_recall`` for k=None); ``precision(k)``: ``P_k``, divided by
  k even when the list is shorter (``set_P``, relevant / retrieved, for k=None).

Relevant = label >= 1 for trec_eval, label > 0 for rankgrad: the same on integer labels. trec_eval
breaks score ties by document id descending, so the item at input position i of a list of n gets
id ``d{n - 1 - i}`` (zero-padded): ties rank in input order in both. Padded items are left out of
both the run and the qrels.
"""

import numpy as np
import pytest
import torch

import rankgrad

pytrec_eval = pytest.importorskip("pytrec_eval")

KS = [1, 2, 3, 5, 10, 1000]  # 1000: beyond every list
SHAPES = [(1, 1), (3, 2), (4, 7), (6, 13), (5, 31), (2, 120)]
# rankgrad name, its keyword arguments, trec_eval measure at k (None: the uncut measure)
MEASURES = [
    ("ndcg", {"scale_gains": False}, "ndcg_cut_{}", "ndcg"),
    ("mrr", {}, None, "recip_rank"),
    ("average_precision", {}, "map_cut_{}", "map"),
    ("recall", {}, "recall_{}", "set_recall"),
    ("precision", {}, "P_{}", "set_P"),
]
CUTS = ",".join(map(str, KS))
TREC = {"ndcg", f"ndcg_cut.{CUTS}", "recip_rank", "map", f"map_cut.{CUTS}"}
TREC |= {"set_recall", f"recall.{CUTS}", "set_P", f"P.{CUTS}"}


def random_run(rng, b, n):
    s = np.round(rng.normal(size=(b, n)) * 2) / 2  # many ties, exact in float32
    y = rng.integers(-1, 4, size=(b, n)).astype(np.float64)
    y[rng.random((b, n)) < 0.4] = 0.0
    mask = rng.random((b, n)) > 0.2
    if b > 2:
        y[0] = np.minimum(y[0], 0)  # no relevant item (a judged -1 is not relevant)
        mask[-1] = False  # an all-padded list: no query for trec_eval
    return s, y, mask


def trec_eval(runs):
    """``[{list index: {measure: value}}]`` per run, for the lists with at least one real item.

    One evaluator for all runs: pytrec_eval (0.5.11) was seen to hang on its ~70th
    ``RelevanceEvaluator`` of small qrels in one process, never on one big one.
    """
    qrels, run = {}, {}
    for j, (s, y, mask) in enumerate(runs):
        n = s.shape[1]
        for b in range(s.shape[0]):
            real = np.flatnonzero(mask[b])
            if real.size == 0:
                continue
            ids = {i: f"d{n - 1 - i:05d}" for i in real}
            qrels[f"{j}.{b}"] = {ids[i]: int(y[b, i]) for i in real}
            run[f"{j}.{b}"] = {ids[i]: float(s[b, i]) for i in real}
    out = pytrec_eval.RelevanceEvaluator(qrels, TREC).evaluate(run)
    per_run = [{} for _ in runs]
    for q, values in out.items():
        j, b = map(int, q.split("."))
        per_run[j][b] = values
    return per_run


TIES = (np.array([[1.0, 1.0, 1.0, 0.0]]), np.array([[0.0, 0.0, 1.0, 1.0]]), np.ones((1, 4), dtype=bool))


@pytest.fixture(scope="module")
def runs():
    rng = np.random.default_rng(2024)
    data = [random_run(rng, *shape) for shape in SHAPES for _ in range(5)] + [TIES]
    return data, trec_eval(data)


def test_tie_break_mapping(runs):
    """The id scheme makes trec_eval rank ties in input order (else this file's mapping fails)."""
    got = runs[1][-1][0]
    assert got["recip_rank"] == pytest.approx(1 / 3)  # input order: the relevant item is third
    assert got["map"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert rankgrad.mrr(*TIES[:2])[0] == pytest.approx(got["recip_rank"])


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize("tensor", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_metrics_match_trec_eval(runs, backend, tensor, dtype):
    checked = 0  # values strictly between 0 and 1
    for (s, y, mask), want in zip(*runs):
        ins = (s.astype(dtype), y, mask)
        if tensor:
            ins = tuple(torch.from_numpy(a) for a in ins)
        for name, kw, cut, uncut in MEASURES:
            f = getattr(rankgrad, name)
            for k in [None] + (KS if cut else []):
                got = f(ins[0], ins[1], k=k, mask=ins[2], backend=backend, **kw)
                got = got.numpy() if tensor else got
                assert got.dtype == dtype and got.shape == (s.shape[0],)
                measure = uncut if k is None else cut.format(k)
                ref = np.array([want[b][measure] if b in want else 0.0 for b in range(s.shape[0])])
                np.testing.assert_allclose(
                    got, ref, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=0, err_msg=f"{name} k={k}"
                )
                checked += int(((ref > 0) & (ref < 1)).sum())
    assert checked > 800
