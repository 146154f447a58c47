"""The runnable examples in the public docstrings (issue 15): every public function's example is
run by doctest here, as rax's are, so the reference never shows a call that does not work.

Modules whose examples need an optional library (torch, lightgbm) are skipped without it; in a
module that mixes numpy-only and torch functions (ranknet, lambdarank) the examples of the torch
functions (`rankgrad._TORCH_NAMES`) are left out without torch, and the others still run.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util

import pytest

MODULES = {
    "rankgrad.approx": "torch",
    "rankgrad.ranknet": None,
    "rankgrad.lambdarank": None,
    "rankgrad.listwise": "torch",
    "rankgrad.metrics": None,
    "rankgrad.pad": None,
    "rankgrad.nn._approx": "torch",
    "rankgrad.nn._ranknet": "torch",
    "rankgrad.nn._lambdarank": "torch",
    "rankgrad.nn._listwise": "torch",
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_docstring_examples(name):
    if MODULES[name]:
        pytest.importorskip(MODULES[name])
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    import rankgrad

    have_torch = importlib.util.find_spec("torch") is not None
    tests = [
        t
        for t in finder.find(module, name)
        if t.examples and (have_torch or t.name.rsplit(".", 1)[-1] not in rankgrad._TORCH_NAMES)
    ]
    if not tests:
        pytest.skip(f"every example in {name} needs torch")
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_every_public_function_has_an_example():
    import rankgrad

    names = [
        "approx_ranks",
        "approx_ndcg_loss",
        "approx_mrr_loss",
        "approx_rank_mse_loss",
        "ranknet_loss",
        "lambdarank_loss",
        "lambdarank_gradients",
        "lambda_loss",
        "softmax_loss",
        "listmle_loss",
        "ndcg",
        "mrr",
        "average_precision",
        "recall",
        "precision",
        "pad",
        "unpad",
    ]
    pytest.importorskip("torch")
    missing = [n for n in names if ">>> " not in (getattr(rankgrad, n).__doc__ or "")]
    assert not missing, missing
