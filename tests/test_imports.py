"""No import cycle in src/: every module's imports of the package, read from the source.

Every ``import mfr_analysis...`` and ``from mfr_analysis... import ...`` counts, wherever it
stands: at module level, inside a function (a lazy import hides a cycle from Python, not
from a reader) and under ``if TYPE_CHECKING`` (the two modules still depend on each other).
``from package import name`` points at the submodule ``package.name`` when there is one,
else at the package itself (its ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "mfr_analysis"



def module_names(src: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of ``package`` under ``src``."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool, known: Iterable[str]) -> list[str]:
    """The modules of the package that one import statement loads."""
    known = set(known)
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's own package, up level - 1 packages
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    if base not in known:
        return []
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
            for alias in node.names]


def import_graph(src: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (anywhere in its source)."""
    modules = module_names(src, package)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[module] = {target for node in ast.walk(tree)
                         for target in _imported(node, module, is_package, modules)
                         if target != module}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle (a path back to its start) per group of modules that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: Mapping[str, set[str]], group: set[str]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strong component


def test_no_import_cycle_in_src() -> None:
    found = cycles(import_graph(SRC))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_engines_have_one_direction() -> None:
    """The shared modules know no engine; the pandas engine's pipeline runs the Dask engine;
    claims at scale build on both."""
    graph = import_graph(SRC)
    engines = {"mfr_analysis.pipeline", "mfr_analysis.dask_clean", "mfr_analysis.dask_claims"}
    for shared in ("read", "clean", "io", "derive", "pseudonymise"):
        assert not graph[f"mfr_analysis.{shared}"] & engines, shared
    assert "mfr_analysis.dask_clean" in graph["mfr_analysis.pipeline"]
    assert "mfr_analysis.pipeline" not in graph["mfr_analysis.dask_clean"]
    assert {"mfr_analysis.pipeline", "mfr_analysis.dask_clean"} <= graph[
        "mfr_analysis.dask_claims"]
    assert "mfr_analysis.scale" not in graph  # "scale" read like a 0-10 rating scale


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_the_walk_finds_lazy_relative_and_type_only_imports(tmp_path: Path) -> None:
    src = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "def f():\n    from pkg.b import g\n",  # lazy, inside a function
        "b.py": "from . import c\n",  # relative
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
        "d.py": "from pkg import __version__\nimport os\n",  # the package itself
        "e.py": "from pkg.a import f\n",  # imports into a cycle: not part of it
    })
    graph = import_graph(src, "pkg")
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"},
                     "pkg.d": {"pkg"}, "pkg.e": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


@pytest.mark.parametrize("edges", [
    {"x": {"y"}, "y": {"x"}},
    {"x": {"y"}, "y": {"z"}, "z": {"y", "w"}, "w": set()},
])
def test_each_cycle_is_named_once(edges: dict[str, set[str]]) -> None:
    found = cycles(edges)
    assert len(found) == 1
    assert found[0][0] == found[0][-1] and len(found[0]) == 3
