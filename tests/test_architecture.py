"""The layout's rules, read from the source: the core never imports a built-in, a
built-in never imports another built-in (shared code lives in ``workbench.toolkit``
or the public ``workbench`` face), and the package's import graph has no cycle.

Every import counts, function-level ones included; only imports under
``if TYPE_CHECKING:`` (annotations, never executed) are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"workbench": ROOT / "workbench", "workbench_builtins": ROOT / "plugins" / "workbench_builtins"}
KINDS = ("generators", "classifiers", "templates", "intervals", "diagnostics")


def _modules() -> dict[str, Path]:
    out = {}
    for top, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([top, *parts])] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> set[str]:
    """The package modules ``module`` imports (resolved to modules, not names)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := resolve(alias.name)) is not None:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_pkg else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = full if full in MODULES else resolve(base)
                if target is not None:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _plugin_of(module: str) -> str | None:
    """``workbench_builtins.<kind>.<plugin>`` -> that prefix (a plugin is a module or a folder)."""
    parts = module.split(".")
    if parts[0] != "workbench_builtins" or len(parts) < 3 or parts[1] not in KINDS:
        return None
    return ".".join(parts[:3])


def test_the_layout_is_what_the_rules_read():
    """Guard the guard: the graph sees the packages, the kinds and real edges."""
    assert "workbench.pipeline" in GRAPH and "workbench_builtins.generators.simulator" in GRAPH
    assert {m.split(".")[1] for m in GRAPH if m.startswith("workbench_builtins.")} >= set(KINDS)
    assert "workbench.plugin.protocols" in GRAPH["workbench.pipeline"]


def test_core_never_imports_a_builtin():
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if m.startswith("workbench.")
                 or m == "workbench" for t in ts if t.startswith("workbench_builtins"))
    assert not bad, "the core imports built-ins:\n" + "\n".join(bad)


def test_builtins_import_no_other_builtin():
    """A built-in uses the core (``workbench``, ``workbench.toolkit``) and its own modules only."""
    bad = []
    for module, targets in GRAPH.items():
        own = _plugin_of(module)
        if not module.startswith("workbench_builtins"):
            continue
        for target in targets:
            if not target.startswith("workbench_builtins") or target == "workbench_builtins":
                continue
            if own is None or _plugin_of(target) != own:
                bad.append(f"{module} -> {target}")
    assert not bad, "built-ins import each other (move shared code to workbench.toolkit):\n" + \
        "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_import_graph_has_no_cycle():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_folder_is_a_package(kind):
    assert (PACKAGES["workbench_builtins"] / kind / "__init__.py").exists()


def test_plugins_use_the_public_face_for_core_names():
    """Built-ins import core names from ``workbench`` (or a documented subpackage), never
    from a private module (``workbench.x._y``)."""
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if m.startswith("workbench_builtins")
                 for t in ts if any(part.startswith("_") for part in t.split(".")[1:]))
    assert not bad, "\n".join(bad)
