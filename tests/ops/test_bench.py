"""The benchmark scripts run as the README says, and the README shows their figures.

CI (.ci/run) runs every bench script in quick mode; these tests keep the cheap part in the suite:
each script starts (its imports are where `bench/queue.py` once broke `import queue`), and the
README names every script and shows tables, not a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "bench").glob("[!_]*.py"))  # bench/_bench.py is their helper
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_there_are_benchmarks() -> None:
    assert len(SCRIPTS) >= 3


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_each_script_starts_from_the_repository_root_as_the_readme_says(script: Path) -> None:
    """`python bench/NAME.py --help`: the whole import chain runs, then argparse exits."""
    result = subprocess.run(
        [sys.executable, f"bench/{script.name}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


def test_the_readme_shows_every_benchmark_and_no_traceback() -> None:
    benchmarks = README.split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    assert "Traceback" not in README and "Error:" not in benchmarks
    for script in SCRIPTS:
        assert f"`python bench/{script.name}`" in benchmarks, script.name
    assert benchmarks.count("|---") >= len(SCRIPTS)  # a table per script


def test_ci_runs_every_bench_script_in_quick_mode() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "for script in bench/[!_]*.py" in ci and '"$script" --quick' in ci
