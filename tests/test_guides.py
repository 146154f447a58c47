"""The guides under docs/guides run (issue 18): each page's ```python blocks are executed in
order, in one namespace per page, as a reader would paste them. A page names the optional
libraries it needs in a `<!-- requires: torch, lightgbm -->` comment; without them it skips."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "guides"
PAGES = sorted(GUIDES.glob("*.md"))


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_guides_exist():
    with_code = [p.name for p in PAGES if _blocks(p.read_text())]
    assert len(with_code) >= 3, f"guides with code under {GUIDES}: {with_code}"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_guide_runs(page, tmp_path, monkeypatch):
    text = page.read_text()
    m = re.search(r"<!-- requires: ([\w\-, ]+) -->", text)
    for module in m[1].split(",") if m else []:
        pytest.importorskip(module.strip().replace("-", "_"))
    blocks = _blocks(text)
    if not blocks:
        pytest.skip(f"{page.name} has no python code (a page of tables)")
    monkeypatch.chdir(tmp_path)  # a guide that writes files writes them here
    # a real module in sys.modules: torch.compile (2.7) imports the module of a function's globals
    module = types.ModuleType("guide_" + page.stem.replace("-", "_"))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - the message points at the block
            raise AssertionError(f"{page.name}, code block {i} failed: {e!r}\n{code}") from e
