"""The numpy-only core (SPEC section 9): with torch unimportable, `import rankgrad` works,
pulls in neither torch nor lightgbm/xgboost, the numpy functions and GBDT objectives work,
and a torch name raises an ImportError that says how to install it.

Each check runs in a fresh interpreter whose import system refuses `torch` (a meta-path
finder), importing rankgrad from wherever this test process found it (source tree or an
installed wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rankgrad

_BLOCK = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def _run(body: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    root = str(Path(rankgrad.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = _BLOCK + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def _ok(body: str) -> str:
    res = _run(body)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_import_loads_no_torch_lightgbm_or_xgboost():
    out = _ok(
        """
        import rankgrad
        heavy = sorted(m for m in ("torch", "lightgbm", "xgboost") if m in sys.modules)
        print("heavy:", heavy)
        assert not heavy, heavy
        names = set(dir(rankgrad))
        assert set(rankgrad.__all__) <= names, set(rankgrad.__all__) - names
        """
    )
    assert "heavy: []" in out


def test_numpy_core_works_without_torch():
    _ok(
        """
        import numpy as np
        import rankgrad

        s = np.array([[0.3, 0.1, 0.9, 0.4], [1.0, 2.0, 0.5, 0.0]])
        y = np.array([[0.0, 1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 3.0]])
        v = rankgrad.ndcg(s, y)
        assert isinstance(v, np.ndarray) and v.shape == (2,), v
        # list 0: order 2, 3, 0, 1: DCG = 3 + 1/log2(5); IDCG = 3 + 1/log2(3)
        assert abs(v[0] - (3 + 1 / np.log2(5)) / (3 + 1 / np.log2(3))) < 1e-12, v
        assert np.allclose(rankgrad.mrr(s, y), [1.0, 0.5])
        preds, labels, group = s.ravel(), y.ravel(), np.array([4, 4])
        g, h = rankgrad.lambdarank_gradients(preds, labels, group)
        assert g.shape == (8,) and np.isfinite(g).all() and (h >= 0).all() and g.any()
        obj = rankgrad.lightgbm.LambdaRankObjective(truncation_level=4)
        g2, h2 = obj(labels, preds, None, group)
        assert np.allclose(g2, rankgrad.lambdarank_gradients(preds, labels, group, truncation_level=4)[0])
        xobj = rankgrad.xgboost.LambdaRankObjective()
        assert callable(xobj)
        rankgrad.set_num_threads(2)
        assert rankgrad.get_num_threads() >= 1
        assert "torch" not in sys.modules
        """
    )


def test_torch_names_raise_a_helpful_import_error():
    _ok(
        """
        import rankgrad

        for name in ("approx_ndcg_loss", "approx_ranks", "ranknet_loss", "lambdarank_loss", "nn",
                     "negative_cache"):
            try:
                getattr(rankgrad, name)
            except ImportError as e:
                assert 'pip install "rankgrad[torch]"' in str(e), (name, e)
            else:
                raise AssertionError(f"rankgrad.{name} did not raise without torch")
        try:
            from rankgrad import approx_mrr_loss  # noqa: F401
        except ImportError as e:
            assert "rankgrad[torch]" in str(e), e
        else:
            raise AssertionError("from rankgrad import approx_mrr_loss did not raise")
        try:
            import rankgrad.nn  # noqa: F401
        except ImportError as e:
            assert "rankgrad[torch]" in str(e), e
        else:
            raise AssertionError("import rankgrad.nn did not raise without torch")
        try:
            rankgrad.no_such_name
        except AttributeError:
            pass
        """
    )


def test_torch_names_load_on_first_use():
    """With torch available, the lazy names are the real functions and modules."""
    pytest.importorskip("torch")
    import rankgrad.approx

    assert rankgrad.approx_ndcg_loss is rankgrad.approx.approx_ndcg_loss
    assert rankgrad.nn.ApproxNDCGLoss.__module__.startswith("rankgrad.nn")
    for name in rankgrad.__all__:
        assert getattr(rankgrad, name) is not None
    assert set(rankgrad.__all__) <= set(dir(rankgrad))
