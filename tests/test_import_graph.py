"""lbva's import graph keeps the layer order of docs/architecture.md ("Layers and what may import what").

Every module under ``lbva/`` is parsed with :mod:`ast` (nothing is imported). Each ``import lbva.x`` /
``from lbva.x import y`` / relative import becomes an edge between *units*: a top-level module (``lbva.errors``)
or a subpackage (``lbva.inference``). A verb module ``lbva/<package>/cli.py`` is its own unit in the ``cli`` layer:
it is the command-line front of its package and may reach any layer, and no library module may import it.

An edge is *module-level* (runs on import), *lazy* (inside a function) or *typing* (under ``if TYPE_CHECKING:``,
never run). Two checks:

(a) no cycle between units over module-level and lazy edges, except lazy edges listed in :data:`LAZY_CYCLE_EDGES`;
(b) no edge from a lower layer to a higher one (module-level, lazy or typing) except those in :data:`UPWARD`.

Run ``python tests/test_import_graph.py`` to print today's graph between units.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lbva"

# Bottom to top; a unit may import units of its own layer or of a lower one. docs/architecture.md lists the same.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("lbva", "lbva.errors", "lbva.strict_json", "lbva.atomic_io", "lbva.cli_args",
                    "lbva.policy_like")),
    ("embodiment", ("lbva.embodiment",)),
    ("config", ("lbva.config",)),
    ("models", ("lbva.models",)),
    ("objectives", ("lbva.objectives",)),
    ("data", ("lbva.data",)),
    ("inference", ("lbva.inference",)),
    ("serving", ("lbva.serving",)),
    ("eval", ("lbva.eval",)),
    ("training", ("lbva.training",)),
    ("interop", ("lbva.interop",)),
    ("robots", ("lbva.robots",)),
    ("bench", ("lbva.bench",)),
    ("demo", ("lbva.demo", "lbva.demo_variants", "lbva.demo_figures", "lbva.demo_report", "lbva.demo_evidence",
              "lbva.doctor")),
    ("cli", ("lbva.cli", "lbva.__main__")),  # plus every verb module lbva.<package>.cli (see unit_of)
]

# Imports that point up the layer order, by (importing module, imported module), each with its reason.
UPWARD: dict[tuple[str, str], str] = {
    ("lbva.inference.bundle", "lbva.interop.lerobot"):
        "load_policy also opens LeRobot lingbot_va folders; their reader lives in interop and builds inference's "
        "PolicyBundle, so the import is deferred to the call",
}

# Function-level imports that close a cycle between units, each with why it is imported late instead of moved.
LAZY_CYCLE_EDGES: dict[tuple[str, str], str] = {
    ("lbva.inference.bundle", "lbva.interop.lerobot"):
        "interop.lerobot imports interop.lerobot_folder, whose LeRobotFolderError subclasses inference.bundle's "
        "PolicyFolderError, at module level; bundle reaches back only when load_policy is handed a LeRobot folder "
        "(see UPWARD)",
    ("lbva.demo_evidence", "lbva.demo"):
        "the opt-in evidence run reuses the demo's phases (collecting and preparing, training, evaluating) and its "
        "EVAL_SEED_OFFSET; lbva.demo in turn imports lbva.demo_evidence only when --peers/--seeds/--demo-counts ask "
        "for it (both are the demo layer)",
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, e.g. lbva.inference.bundle
    target: str  # imported module (or name), e.g. lbva.interop.lerobot
    kind: str  # "module", "lazy" or "typing"
    where: str  # path:line


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _resolve(name: str) -> str:
    """The longest prefix of ``name`` that is a module or package of lbva (``from lbva import __version__`` → lbva)."""
    parts = name.split(".")
    while len(parts) > 1 and not _is_module(".".join(parts)):
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> list[Edge]:
    source = module_name(path)
    package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
    edges: list[Edge] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            base = ".".join(package[: len(package) - (node.level - 1)] + ([node.module] if node.module else []))
        return [f"{base}.{a.name}" for a in node.names]  # resolved to the module it names by _resolve

    def walk(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for t in targets(child):
                    if t == "lbva" or t.startswith("lbva."):
                        edges.append(Edge(source, _resolve(t), kind, f"{path.relative_to(ROOT)}:{child.lineno}"))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    walk(ast.Module(body=[stmt], type_ignores=[]), "typing")
                for stmt in child.orelse:
                    walk(ast.Module(body=[stmt], type_ignores=[]), kind)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                walk(child, "typing" if kind == "typing" else "lazy")
            else:
                walk(child, kind)

    walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), "module")
    return edges


def unit_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 and parts[2] == "cli":
        return ".".join(parts[:3])  # a verb module: its own unit, in the cli layer
    return ".".join(parts[:2])


def layer_of(unit: str) -> int:
    if unit.count(".") == 2 and unit.endswith(".cli"):
        return len(LAYERS) - 1
    for i, (_, units) in enumerate(LAYERS):
        if unit in units:
            return i
    raise AssertionError(f"{unit} is in no layer of LAYERS; add it (and to docs/architecture.md)")


def all_edges() -> list[Edge]:
    edges: dict[Edge, None] = {}  # ``from lbva.x import a, b`` gives one edge, not two
    for path in sorted(PACKAGE.rglob("*.py")):
        edges.update((e, None) for e in imports_of(path) if unit_of(e.source) != unit_of(e.target))
    return list(edges)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return None


def test_every_module_parses_and_imports_are_found():
    edges = all_edges()
    assert any(e.source == "lbva.inference.bundle" and e.target == "lbva.interop.lerobot" for e in edges)
    assert any(e.kind == "module" for e in edges) and any(e.kind == "lazy" for e in edges)


def test_every_unit_has_a_layer():
    for e in all_edges():
        layer_of(unit_of(e.source))
        layer_of(unit_of(e.target))


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = defaultdict(set)
    for e in all_edges():
        if e.kind == "typing" or (e.kind == "lazy" and (e.source, e.target) in LAZY_CYCLE_EDGES):
            continue
        graph[unit_of(e.source)].add(unit_of(e.target))
    cycle = find_cycle(graph)
    assert cycle is None, (
        f"import cycle between units: {' -> '.join(cycle)}; move the shared code down a layer, or (for an import "
        "inside a function) list it in LAZY_CYCLE_EDGES with its reason and in docs/architecture.md")


def test_no_upward_import():
    upward = sorted(
        f"{e.where}: {e.source} -> {e.target} ({LAYERS[layer_of(unit_of(e.source))][0]} imports "
        f"{LAYERS[layer_of(unit_of(e.target))][0]})"
        for e in all_edges()
        if layer_of(unit_of(e.target)) > layer_of(unit_of(e.source)) and (e.source, e.target) not in UPWARD
    )
    assert not upward, "imports up the layer order of docs/architecture.md:\n" + "\n".join(upward)


def test_no_library_module_imports_a_verb_module():
    bad = [f"{e.where}: {e.source} -> {e.target}" for e in all_edges()
           if unit_of(e.target).endswith(".cli") and layer_of(unit_of(e.source)) != len(LAYERS) - 1]
    assert not bad, bad


def test_allow_lists_name_real_imports():
    """An exception that no longer happens is removed from the lists (and from docs/architecture.md)."""
    present = {(e.source, e.target) for e in all_edges()}
    stale = sorted(set(UPWARD) - present) + sorted(set(LAZY_CYCLE_EDGES) - present)
    assert not stale, f"allow-listed imports that no longer exist: {stale}"
    lazy = {(e.source, e.target) for e in all_edges() if e.kind == "lazy"}
    assert set(LAZY_CYCLE_EDGES) <= lazy, "LAZY_CYCLE_EDGES may only excuse imports made inside functions"


def test_architecture_page_lists_the_same_layers_and_exceptions():
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name, units in LAYERS:
        for unit in units:
            assert f"`{unit}`" in page, f"docs/architecture.md does not name the unit {unit} (layer {name})"
    for source, target in list(UPWARD) + list(LAZY_CYCLE_EDGES):
        assert f"`{source}` → `{target}`" in page, f"docs/architecture.md does not list {source} → {target}"


def main() -> None:
    by_pair: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for e in all_edges():
        by_pair[(unit_of(e.source), unit_of(e.target), e.kind)].append(e.where)
    for (s, t, kind), where in sorted(by_pair.items()):
        arrow = "UP " if layer_of(t) > layer_of(s) else "   "
        print(f"{arrow}{s} -> {t} [{kind}] x{len(where)}: {', '.join(where[:3])}{' ...' if len(where) > 3 else ''}")


if __name__ == "__main__":
    sys.exit(main())
