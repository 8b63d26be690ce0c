"""The Discord layer's shape: no import circles inside it, nothing below it reaching up into it.

Every import counts, also those under ``TYPE_CHECKING`` and inside functions: a circle hidden
there is still a circle for whoever reads or changes the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bot

ROOT = Path(bot.__file__).parent


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """The bot modules ``path`` imports (``from a import b`` counts ``a.b`` when it is one)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found & known


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    known = set(paths)
    return {
        name: imports(path, known) - {name}
        for name, path in paths.items()
        if name == package or name.startswith(package + ".")
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in graph.get(name, set()) & set(graph):
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == name:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_the_discord_layer_has_no_import_circles() -> None:
    """The client builds the features and hands them their collaborators; no feature module
    imports the client back (it once did, for its type, and reached through it)."""
    assert circles(import_graph(ROOT, "bot.discord")) == []


def test_operations_code_does_not_reach_up_into_the_discord_layer() -> None:
    """``check`` is handed the Discord identity lookup by the command that runs it."""
    graph = import_graph(ROOT, "bot.ops")
    reaching = {
        name: sorted(d for d in deps if d.startswith("bot.discord")) for name, deps in graph.items()
    }
    assert {name: deps for name, deps in reaching.items() if deps} == {}
