"""No import circles in the package but the known ones, and those only shrink.

Why: an import circle is hidden, not removed, by moving one of its imports into a function; the
modules still cannot be understood, tested or split apart without each other, and the next
module-level import among them fails at import time in whatever order a caller happens to use.
So the graph is read statically from every `import` statement of `cascade/` (those inside
functions too), and each strongly connected component of more than one module must be one of
`KNOWN_CIRCLES` exactly: a new circle, or a module joining an old one, fails; so does an entry
whose circle is gone, which must then be deleted from the list.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cascade"

#: Today's circles, each to be removed by moving what its modules share into one they all
#: import (and then deleted here):
KNOWN_CIRCLES = [
    # config checks settings against the datasets' label ranges and the regressors' engines and
    # feature modes, and those modules read the settings back (config.backbone_settings, ...)
    {"cascade.config", "cascade.data.datasets", "cascade.regress.engine_env", "cascade.regress.engines",
     "cascade.regress.features"},
    # the plan hashes the leakage audit's exclusions, the audit splits stages with
    # execute.stage_split, and execute runs plans (Plan.leakage is typed `object` to dodge it)
    {"cascade.stages.execute", "cascade.stages.leakage", "cascade.stages.plan"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports}.  `from pkg import name` counts as importing
    the submodule `pkg.name` where one exists, else `pkg` itself."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                edges.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                             for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}:{node.lineno}: relative import; the package imports absolutely")
        graph[name] = edges - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "cascade.stages.plan" in graph["cascade.verify"]             # verify.rebuild's import
    assert "cascade.models.keras_h5" in graph["cascade.models.importers"]


def test_circles_are_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_but_the_known_ones():
    found = circles(import_graph())
    new = [sorted(c) for c in found if c not in KNOWN_CIRCLES]
    gone = [sorted(c) for c in KNOWN_CIRCLES if c not in found]
    assert not new, f"import circles not in KNOWN_CIRCLES (tests/test_imports_graph.py): {new}"
    assert not gone, f"these KNOWN_CIRCLES are gone (or changed): delete them from the list: {gone}"
