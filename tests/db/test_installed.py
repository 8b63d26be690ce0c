"""A non-editable install (``pip install .``) can migrate its database: the wheel carries the
migrations to where :func:`bot.db.migrate.migrations_dir` looks when no checkout is beside it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bot.db.migrate import INSTALLED_MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]


def test_a_non_editable_install_carries_every_migration() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data_files = pyproject["tool"]["setuptools"].get("data-files", {})
    carried = {
        Path(target) / path.name
        for target, patterns in data_files.items()
        for pattern in patterns
        for path in ROOT.glob(pattern)
    }
    needed = {
        INSTALLED_MIGRATIONS / path.relative_to(ROOT / "migrations")
        for path in (ROOT / "migrations").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert needed, "no migrations found"
    assert needed <= carried, f"not in the wheel: {sorted(map(str, needed - carried))}"
