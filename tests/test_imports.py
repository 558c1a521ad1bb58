"""No import circles in the ``ibtpo`` package (and ``baselines``, which plugs into it).

The graph is read from the source with ``ast``, not by importing anything: one edge per
``import ibtpo...`` / ``from ibtpo... import`` / relative import between modules of the two packages,
with its line and whether it runs at module level (when the importer is imported) or inside a
function (lazily, when the function first runs). ``from pkg import name`` is an edge to ``pkg.name``
when that is a module, else to ``pkg``; importing ``a.b.c`` also runs ``a.b``'s ``__init__``, so it is an
edge to every package above the target that is not already above the importer.

The rule: **no cycle, lazy or not.** A cycle among module-level imports fails
(:func:`test_no_cycle_among_module_level_imports`). A function-level import that closes a cycle
fails too (:func:`test_no_cycle_through_lazy_imports`), because an import moved into a function to
dodge a circle is still a circle -- the two modules still need each other, and only the order of
first calls keeps it working. Lazy imports are for heavy or optional third-party dependencies
(torch, lm-eval, vLLM, datasets), which are not in this graph; an ``ibtpo`` module imported lazily
because it pulls such a dependency is fine as long as it closes no cycle. Should one ever have to,
it goes in :data:`ALLOWED_LAZY` with the reason. Not edges: imports under ``if TYPE_CHECKING:``
(never run) and ``importlib.import_module`` by name (the registry loads its plugins that way,
``ibtpo.registry.PLUGIN_MODULES``, and the job table ``ibtpo/__main__.py``: the plugin depends on
the registry, not the reverse).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ibtpo", "baselines")

# (importer, imported) -> why this lazy import may close a cycle (an optional heavy dependency). None today.
ALLOWED_LAZY: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import between two modules of the packages: ``importer`` imports ``imported`` at ``line``,
    at module level or (``lazy``) inside a function."""

    importer: str
    imported: str
    line: int
    lazy: bool


def module_name(path: str) -> str:
    """``ibtpo/data/sources.py`` -> ``ibtpo.data.sources``; ``ibtpo/eval/__init__.py`` -> ``ibtpo.eval``."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources(root: Path = REPO) -> dict[str, str]:
    """``{repo-relative path: source}`` of every ``.py`` file of :data:`PACKAGES` under ``root``."""
    files = sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))
    return {p.relative_to(root).as_posix(): p.read_text() for p in files}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def imports_of(path: str, source: str, modules: set[str]) -> list[Import]:
    """The imports of one file (``path``, repo-relative) whose targets are among ``modules``."""
    me = module_name(path)
    package = me if path.endswith("__init__.py") else me.rpartition(".")[0]
    out: list[Import] = []

    def add(target: str, line: int, lazy: bool, explicit: bool = True) -> None:
        if target in modules and target != me and (explicit or target not in _ancestors(me)):
            out.append(Import(me, target, line, lazy))

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if node.level:
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:  # the body never runs; an ``else:`` does
                    visit(ast.Module(body=[sub], type_ignores=[]), lazy)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in dict.fromkeys(targets(child)):
                    add(target, child.lineno, lazy)
                    for parent in _ancestors(target):  # importing a.b.c runs a.b's __init__
                        add(parent, child.lineno, lazy, explicit=False)
            visit(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source, filename=path), False)
    return out


def import_graph(sources: dict[str, str]) -> list[Import]:
    """Every import between the modules of ``sources`` (``{repo-relative path: source}``)."""
    modules = {module_name(p) for p in sources}
    return [imp for p, src in sorted(sources.items()) for imp in imports_of(p, src, modules)]


def strongly_connected(edges: list[Import]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (a module cannot import itself
    here: :func:`imports_of` drops self-edges), each sorted, in sorted order."""
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, []).append(e.imported)
        graph.setdefault(e.imported, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def a_cycle(component: list[str], edges: list[Import]) -> list[Import]:
    """A shortest cycle through the first module of a strongly connected ``component``, as its imports."""
    inside = set(component)
    by_importer: dict[str, list[Import]] = {}
    for e in edges:
        if e.importer in inside and e.imported in inside:
            by_importer.setdefault(e.importer, []).append(e)
    start = component[0]
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for e in sorted(by_importer.get(v, []), key=lambda e: (e.imported, e.line)):
                if e.imported == start:
                    return paths[v] + [e]
                if e.imported not in paths:
                    paths[e.imported] = paths[v] + [e]
                    nxt.append(e.imported)
        frontier = nxt
    raise AssertionError(f"{component} is not strongly connected")


def describe(edges: list[Import]) -> str:
    """The cycles of ``edges``, one per strongly connected component, each import with its line and kind."""
    lines = []
    for comp in strongly_connected(edges):
        cycle = a_cycle(comp, edges)
        lines.append(" -> ".join([cycle[0].importer] + [e.imported for e in cycle]) + f"  (modules: {comp})")
        lines += [f"    {e.importer} imports {e.imported} at line {e.line}"
                  + (" (inside a function)" if e.lazy else "") for e in cycle]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return import_graph(package_sources())


def test_the_graph_reads_the_packages(graph):
    found = {(e.importer, e.imported, e.lazy) for e in graph}
    assert ("ibtpo.data.benchmarks", "ibtpo.data.sources", False) in found  # ``from . import sources``
    assert ("ibtpo.config", "ibtpo.schema", False) in found
    assert ("ibtpo.config", "ibtpo.eval.tasks", True) in found and ("ibtpo.config", "ibtpo.eval", True) in found
    assert ("baselines.grpo", "ibtpo.registry", False) in found
    assert not any(e.importer == "ibtpo.logprobs" and e.imported == "ibtpo.trajectories" for e in graph), \
        "an import under `if TYPE_CHECKING:` never runs"


def test_schema_imports_nothing_from_ibtpo(graph):
    assert [e for e in graph if e.importer == "ibtpo.schema"] == []


def test_no_cycle_among_module_level_imports(graph):
    cycles = describe([e for e in graph if not e.lazy])
    assert not cycles, "import cycle among module-level imports:\n" + cycles


def test_no_cycle_through_lazy_imports(graph):
    """Imports inside functions count: a lazy import that closes a circle is still a circle."""
    cycles = describe([e for e in graph if (e.importer, e.imported) not in ALLOWED_LAZY])
    assert not cycles, ("import cycle closed by an import inside a function (move what both need into a "
                        "module of its own; see this file's docstring):\n" + cycles)


def test_cycles_are_found_and_named():
    """The checker on small made-up packages: the shapes it must catch, and those it must not."""
    lazy_circle = {  # the shape of ibtpo.config <-> ibtpo.eval.tasks before ibtpo.schema
        "ibtpo/__init__.py": "",
        "ibtpo/config.py": "def check():\n    from .eval.tasks import spec\n",
        "ibtpo/eval/__init__.py": "from .metrics import avg\n",
        "ibtpo/eval/metrics.py": "",
        "ibtpo/eval/tasks.py": "import json\n\ndef spec():\n    from ..config import schema\n",
    }
    edges = import_graph(lazy_circle)
    assert describe([e for e in edges if not e.lazy]) == ""
    msg = describe(edges)
    assert msg.splitlines()[0].startswith("ibtpo.config -> ibtpo.eval.tasks -> ibtpo.config")
    assert "ibtpo.eval.tasks imports ibtpo.config at line 4 (inside a function)" in msg

    eager = {  # module level, absolute and relative, through a package __init__
        "ibtpo/__init__.py": "", "ibtpo/data/__init__.py": "from .b import x\n",
        "ibtpo/data/a.py": "from . import b\n", "ibtpo/data/b.py": "import ibtpo.data.a\n",
        "ibtpo/c.py": "from ibtpo.data import a\n",
    }
    msg = describe([e for e in import_graph(eager) if not e.lazy])
    assert "ibtpo.data.a -> ibtpo.data.b -> ibtpo.data.a" in msg and "ibtpo.c" not in msg

    fine = {  # a chain, a TYPE_CHECKING import back, and a package importing its own module
        "ibtpo/__init__.py": "", "ibtpo/a.py": "from .b import f\n",
        "ibtpo/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import g\n",
        "ibtpo/p/__init__.py": "def __getattr__(n):\n    from .q import n\n", "ibtpo/p/q.py": "import os\n",
    }
    assert describe(import_graph(fine)) == ""
