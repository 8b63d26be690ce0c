"""The package's shape: a small public API, and Pillow-only modules apart from the worker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bot.imaging

PACKAGE = Path(bot.imaging.__file__).parent
ASYNC_OR_IO = {"asyncio", "aiohttp", "discord"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    "path",
    [p for p in PACKAGE.glob("*.py") if p.name not in ("worker.py", "__init__.py")],
    ids=lambda p: p.name,
)
def test_imaging_modules_are_synchronous_and_know_nothing_of_discord_or_http(path: Path) -> None:
    assert not _imported_roots(path) & ASYNC_OR_IO


def test_public_api_is_exported() -> None:
    for name in bot.imaging.__all__:
        assert hasattr(bot.imaging, name), name
    assert {"normalize_image", "normalize_edit", "probe", "ImageWorker"} <= set(bot.imaging.__all__)
