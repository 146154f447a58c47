"""pytest plugin for the torch-free environment (make wheel-test, oldest CPython): `-p pytest_no_torch`.

A test module whose import fails because torch is not installed is reported as skipped
("needs torch") instead of as a collection error; every other import error still fails. The
session stops at once if `import rankgrad` itself needs torch, and the modules in MUST_RUN (the
GBDT and packaging tests, which the numpy-only core must pass) are never skipped this way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MUST_RUN = {"test_gbdt_objectives.py", "test_packaging.py"}
# torch itself missing, or rankgrad's own message for a torch-only name used without torch
NEEDS_TORCH = ("ModuleNotFoundError: No module named 'torch'", 'pip install "rankgrad[torch]"')


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise pytest.UsageError("pytest_no_torch: torch is installed in this environment")
    try:
        import rankgrad  # noqa: F401
    except ImportError as e:
        raise pytest.UsageError(f"pytest_no_torch: `import rankgrad` fails without torch: {e!r}") from e


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    if report.failed and isinstance(collector, pytest.Module) and Path(collector.path).name not in MUST_RUN:
        text = str(report.longrepr)
        if any(m in text for m in NEEDS_TORCH):
            report.outcome = "skipped"
            report.longrepr = (str(collector.path), 0, "Skipped: needs torch (not installed here)")
    return report
