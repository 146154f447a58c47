"""The release contract (SPEC section 9) as the installed package shows it.

`make wheel-test` / `make test-min` run the suite against the built wheel with
RANKGRAD_EXPECT_INSTALLED=1 (and RANKGRAD_EXPECT_NO_TORCH=1 / RANKGRAD_EXPECT_MIN=1 in the
torch-free and floors environments), which turns on the checks that only make sense there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import rankgrad
from rankgrad import _core

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(rankgrad.__file__).resolve().parent


def env_flag(name: str) -> bool:
    return os.environ.get(name) == "1"


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def floors(requirements: list[str]) -> dict[str, str]:
    """{"numpy": "1.21.6", ...} from ["numpy>=1.21.6", ...]; every requirement must be a plain floor."""
    out = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", req.replace(" ", ""))
        assert m, f"{req!r}: dependencies are declared as name>=floor"
        out[m[1].lower()] = m[2]
    return out


@pytest.mark.skipif(not env_flag("RANKGRAD_EXPECT_INSTALLED"), reason="source-tree run")
def test_imported_from_site_packages_not_the_source_tree():
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert PACKAGE == site / "rankgrad", (PACKAGE, site)
    assert ROOT / "python" not in PACKAGE.parents
    assert metadata.version("rankgrad") == rankgrad.__version__


def test_version_is_the_declared_one():
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?", rankgrad.__version__)
    assert rankgrad.__version__ == pyproject()["project"]["version"]


def test_typing_markers_ship_with_the_package():
    assert (PACKAGE / "py.typed").is_file()
    assert (PACKAGE / "_core.pyi").is_file()


def test_extension_is_abi3():
    name = Path(_core.__file__).name
    if sys.platform == "win32":
        assert name == "_core.pyd", name  # abi3 on Windows: no interpreter tag in the name
    else:
        assert name == "_core.abi3.so", name


def test_requirements_min_pins_exactly_the_declared_floors():
    project = pyproject()["project"]
    declared = floors(project["dependencies"])
    extras = project["optional-dependencies"]
    for extra in sorted(set(extras) - {"all"}):
        declared.update(floors(extras[extra]))
    assert floors(extras["all"]) == {k: v for k, v in declared.items() if k != "numpy"}
    pins = {}
    for line in (ROOT / "requirements-min.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    assert pins == declared


@pytest.mark.skipif(not env_flag("RANKGRAD_EXPECT_MIN"), reason="not the floors environment")
def test_floors_environment_has_exactly_the_floors():
    for line in (ROOT / "requirements-min.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = (s.strip() for s in line.split("=="))
            assert metadata.version(name).split("+")[0] == version, name


@pytest.mark.skipif(not env_flag("RANKGRAD_EXPECT_NO_TORCH"), reason="torch may be installed")
def test_core_works_without_torch():
    """The numpy-only core: gradients, metrics and the GBDT objectives, with no torch importable."""
    with pytest.raises(ImportError):
        import torch  # noqa: F401
    code = (
        "import sys, numpy as np, rankgrad\n"
        "s = np.array([0.3, 0.1, 0.2, 0.5]); y = np.array([1.0, 0.0, 2.0, 0.0])\n"
        "g, h = rankgrad.lambdarank_gradients(s, y, [2, 2])\n"
        "print(float(np.asarray(rankgrad.ndcg(s[None], y[None])).ravel()[0]), g.shape, h.shape)\n"
        "rankgrad.lightgbm.LambdaRankObjective(); rankgrad.xgboost.LambdaRankObjective()\n"
        "rankgrad.set_num_threads(1)\n"
        "assert not {'torch', 'lightgbm', 'xgboost'} & set(sys.modules), sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    value, *_ = done.stdout.split()
    s, y = np.array([0.3, 0.1, 0.2, 0.5]), np.array([1.0, 0.0, 2.0, 0.0])
    order = np.argsort(-s)
    dcg = ((2 ** y[order] - 1) / np.log2(np.arange(2, 6))).sum()
    ideal = ((2 ** np.sort(y)[::-1] - 1) / np.log2(np.arange(2, 6))).sum()
    assert float(value) == pytest.approx(dcg / ideal)


@pytest.mark.skipif(not env_flag("RANKGRAD_EXPECT_NO_TORCH"), reason="torch may be installed")
def test_torch_names_without_torch_say_what_to_install():
    with pytest.raises(ImportError, match=re.escape('pip install "rankgrad[torch]"')):
        rankgrad.approx_ndcg_loss  # noqa: B018


def _check_wheel_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_wheel", ROOT / ".ci" / "check_wheel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_release_artifacts_hold_only_sources():
    """Issue 15: the wheel and sdist checks refuse anything but source, stub, py.typed, the
    extension, packaging metadata, license and readme (a stray `.orig` once shipped)."""
    cw = _check_wheel_module()
    good_wheel = [
        "rankgrad/__init__.py",
        "rankgrad/approx/_op.py",
        "rankgrad/_core.pyi",
        "rankgrad/py.typed",
        "rankgrad/_core.abi3.so",
        "rankgrad-0.1.0.dist-info/METADATA",
        "rankgrad-0.1.0.dist-info/RECORD",
    ]
    assert cw.unexpected(good_wheel, cw.WHEEL_FILES) == []
    for bad in ("rankgrad/__init__.py.orig", "rankgrad/__pycache__/x.cpython-311.pyc", "rankgrad/plot.png"):
        assert cw.unexpected([*good_wheel, bad], cw.WHEEL_FILES) == [f"unexpected file {bad}"]
    good_sdist = [
        "r-0.1.0/src/lib.rs",
        "r-0.1.0/python/rankgrad/py.typed",
        "r-0.1.0/LICENSE",
        "r-0.1.0/PKG-INFO",
    ]
    assert cw.unexpected(good_sdist, cw.SDIST_FILES) == []
    for bad in (
        "r-0.1.0/benches/results/approx.png",
        "r-0.1.0/Makefile",
        "r-0.1.0/python/rankgrad/a.py.orig",
    ):
        assert cw.unexpected([*good_sdist, bad], cw.SDIST_FILES) == [f"unexpected file {bad}"]
