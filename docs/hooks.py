"""mkdocs hook: the benchmark plots (benches/results/*.png) become site files under results/, so
the benchmarks page shows the plots `make bench` last wrote without copying them into docs/."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "benches" / "results"


def on_files(files, config):  # type: ignore[no-untyped-def]
    for png in sorted(RESULTS.glob("*.png")):
        files.append(
            File(f"results/{png.name}", str(RESULTS.parent), config["site_dir"], config["use_directory_urls"])
        )
    return files
