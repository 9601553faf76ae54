"""The modules of wal/ import each other without cycles, not even under TYPE_CHECKING (
the flusher, preparer and snapshot writer reach their log through callbacks, not back-pointers)."""

from __future__ import annotations

import ast
from pathlib import Path

import spitfire.wal

WAL = Path(spitfire.wal.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Every wal module -> the wal modules it imports anywhere (top level, functions, TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(WAL.glob("*.py")):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:  # from . import x
                    deps.update(alias.name for alias in node.names)
        graph[name] = deps - {name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path of module names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_wal_modules_import_each_other_without_cycles() -> None:
    graph = _imports()
    assert {"log", "flusher", "preparer", "snapshot", "storage"} <= graph.keys()
    assert "log" in graph["storage"] and "flusher" in graph["log"]  # the walk sees real imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_wal_module_needs_type_checking_imports() -> None:
    users = [p.name for p in sorted(WAL.glob("*.py")) if "TYPE_CHECKING" in p.read_text()]
    assert users == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
