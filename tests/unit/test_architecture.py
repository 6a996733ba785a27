"""The shape of the package: no import cycles between its modules, and no module too long to read.

Both read the source with ``ast`` (nothing is imported), so they hold for imports inside functions
too: a lazy import keeps ``edgekit --help`` fast, but it still makes one module depend on another.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "edgekit"
MAX_LINES = 400
# Modules allowed to be longer, each with its reason.
LONG_MODULES = {
    # The runner is copied alone to a device (a Raspberry Pi over SSH) and run there with only the
    # standard library, numpy and the runtime, so it must stay one self-contained file.
    "edgekit/bench/runner.py",
}


def _modules() -> dict[str, Path]:
    """{"edgekit.data.datasets": path, "edgekit.data": .../data/__init__.py, ...}"""
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
                continue
            stack.append(child)
    return found


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module ``name`` lives in (``edgekit.train.TrainConfig`` -> ``edgekit.train``)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the edgekit modules it imports. ``from pkg import name`` imports ``pkg`` (its
    ``__init__`` runs) and, when ``name`` is a submodule, that submodule too."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(kept + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                owner = _owner(target, mods) if target.split(".")[0] == "edgekit" else None
                if owner and owner != mod:
                    graph[mod].add(owner)
        for target in _registrations(ast.parse(path.read_text(), str(path))):
            owner = _owner(target, mods)
            if owner and owner != mod:
                graph[mod].add(owner)
    return graph


def _registrations(tree: ast.AST) -> list[str]:
    """Modules a registry imports by name: ``register("edgekit.formats.onnx:OnnxFormat")``."""
    found = []
    for node in ast.walk(tree):
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if not (is_call and node.func.id == "register"):
            continue
        where = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
        if isinstance(where, str) and where.startswith("edgekit.") and ":" in where:
            found.append(where.partition(":")[0])
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a path that returns to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, set(c), c[0]) for c in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``component`` (breadth first)."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & component):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"{start} is in no cycle of {sorted(component)}")


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones():
    graph = import_graph()
    assert "edgekit.models" in graph["edgekit.models.resolve"]  # inside a function
    assert "edgekit.data.labelled" not in graph["edgekit.measure.metrics"]  # under TYPE_CHECKING only
    # registries import their entries by name: register("edgekit.formats.onnx:OnnxFormat")
    assert {"edgekit.formats.onnx", "edgekit.formats.executorch"} <= graph["edgekit.formats"]
    assert "edgekit.devices.ssh" in graph["edgekit.devices"]


def test_no_import_cycles():
    """A package's __init__ may import its submodules only while none of them imports the
    package back (``from edgekit.data import idx`` inside edgekit/data/ would)."""
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_is_too_long():
    root = PACKAGE.parent
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and name not in LONG_MODULES:
            long[name] = lines
    assert not long, f"modules over {MAX_LINES} lines (split them by concern): {long}"
