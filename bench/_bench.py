"""What every benchmark script shares: a project import path and the ``--quick`` switch.

``python bench/<script>.py`` puts bench/ first on the import path, where a script named like a
standard module shadows it (bench/queue.py once broke every ``import queue``, so the README's
``python bench/normalize.py`` failed). Each script imports this module first and calls
:func:`use_project_imports` before anything else is imported. Not a benchmark itself: the
leading underscore keeps it out of CI's ``bench/[!_]*.py`` loop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def use_project_imports() -> None:
    """Take bench/ off the import path and put the project root (``bot``, ``tests``) on it."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))


def quick_mode(doc: str | None) -> bool:
    """Parse the command line; True for ``--quick`` (few iterations: does it still work?)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n", 1)[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds with few iterations, to prove the script works (figures not valid)",
    )
    return bool(parser.parse_args().quick)
