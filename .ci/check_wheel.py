"""Checks a built rankgrad wheel or sdist.

Wheel: abi3 tag for CPython >= 3.9, the stubs and py.typed inside, and on Linux a manylinux_2_17
(or older) platform tag whose extension uses no glibc symbol newer than 2.17. Both: every file is
source, a stub, `py.typed`, the compiled extension (wheel), packaging metadata, or the license
or readme; anything else (a stray `.orig`, a cache, a plot) fails.

    python .ci/check_wheel.py dist/rankgrad-*.whl dist/rankgrad-*.tar.gz
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

MAX_GLIBC = (2, 17)

# What may ship. Wheel: the package and its dist-info (newer maturin adds a CycloneDX SBOM); sdist: sources, build files, stub, license, readme.
WHEEL_FILES = re.compile(
    r"rankgrad/([\w/]+\.py|_core\.pyi|py\.typed|_core\.(abi3\.so|pyd))"
    r"|rankgrad-[^/]+\.dist-info/(METADATA|WHEEL|RECORD|entry_points\.txt|licenses/LICENSE|sboms/[\w.-]+\.json)"
)
SDIST_FILES = re.compile(
    r"[\w.-]+/([\w/.-]+\.(rs|py|pyi)|python/rankgrad/py\.typed|"
    r"PKG-INFO|pyproject\.toml|Cargo\.toml|Cargo\.lock|rustfmt\.toml|README\.md|LICENSE)"
)


def unexpected(names: list[str], allowed: re.Pattern[str]) -> list[str]:
    return [f"unexpected file {n}" for n in names if not n.endswith("/") and not allowed.fullmatch(n)]


def check_sdist(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if not m.isdir()]
    problems = unexpected(names, SDIST_FILES)
    for want in ("python/rankgrad/py.typed", "python/rankgrad/_core.pyi", "Cargo.toml", "src/lib.rs"):
        if not any(n.endswith("/" + want) for n in names):
            problems.append(f"{want} missing")
    return problems


def check(wheel: Path) -> list[str]:
    if wheel.name.endswith(".tar.gz"):
        return check_sdist(wheel)
    problems = []
    python, abi, platform = wheel.name[: -len(".whl")].split("-")[2:]
    if (python, abi) != ("cp39", "abi3"):
        problems.append(f"tag {python}-{abi}, want cp39-abi3")
    with zipfile.ZipFile(wheel) as z:
        files = z.namelist()
        problems += unexpected(files, WHEEL_FILES)
        for want in ("rankgrad/py.typed", "rankgrad/_core.pyi", "rankgrad/__init__.py"):
            if want not in files:
                problems.append(f"{want} missing")
        core = [f for f in files if f.startswith("rankgrad/_core.") and not f.endswith(".pyi")]
        if platform.startswith(("manylinux", "linux")):
            for tag in platform.split("."):
                m = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag)
                if m and (int(m[1]), int(m[2])) > MAX_GLIBC:
                    problems.append(f"platform tag {tag} is newer than manylinux_2_17")
            if not platform.startswith("manylinux"):
                problems.append(f"platform tag {platform} is not manylinux")
            if core != ["rankgrad/_core.abi3.so"]:
                problems.append(f"extension files {core}, want rankgrad/_core.abi3.so")
                return problems
            with tempfile.TemporaryDirectory() as tmp:
                so = z.extract(core[0], tmp)
                symbols = subprocess.run(["objdump", "-T", so], check=True, capture_output=True, text=True)
            versions = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([\d.]+)", symbols.stdout)}
            newest = max(versions, default=(0,))
            print(f"{wheel.name}: newest glibc symbol version {'.'.join(map(str, newest))}")
            if newest > MAX_GLIBC:
                problems.append(f"uses GLIBC_{'.'.join(map(str, newest))} symbols (> 2.17)")
    return problems


def main() -> int:
    wheels = [Path(a) for a in sys.argv[1:]]
    if not wheels:
        print("usage: check_wheel.py WHEEL_OR_SDIST...", file=sys.stderr)
        return 2
    bad = 0
    for wheel in wheels:
        problems = check(wheel)
        for p in problems:
            print(f"{wheel.name}: {p}", file=sys.stderr)
        bad += bool(problems)
        if not problems:
            print(f"{wheel.name}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
