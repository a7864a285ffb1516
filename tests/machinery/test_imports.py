"""The package's import graph has no cycles.

A cycle works only while every module in it happens to import names late enough (a function-level
import, an import order that `__init__` fixes); one innocent move breaks it with a partially
initialised module. So every import statement counts, at module level or inside a function,
absolute or relative, and `from pkg import name` counts as importing `pkg.name` when that is a module.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sonify_toolkit", "training_recipe")


def package_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py file of the packages (`pkg.sub` for pkg/sub/__init__.py)."""
    modules: dict[str, Path] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name `from <base> import ...` refers to, relative levels resolved against `module`."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def _own_module(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific of the packages' modules that importing `name` loads (None: a third-party import)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported own module, line) for every import statement in the file, however deeply nested."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _own_module(alias.name, modules)
                if target is not None:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(module, is_package, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in modules else _own_module(base, modules)
                if target is not None:
                    yield target, node.lineno


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}; self-imports (`from . import x` in x) dropped."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(module, path, modules):
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components with more than one module: each holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative, so a deep graph cannot hit the recursion limit
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def one_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, closed (first == last), for the message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                return [*paths[node], start]
            if child in members and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {component}")


def describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)) + f" -> {cycle[-1]}"


def test_the_packages_import_graph_has_no_cycle() -> None:
    graph = import_graph(package_modules())
    cycles = [describe(graph, one_cycle(graph, c)) for c in strongly_connected(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# --- the walker itself ---------------------------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return package_modules(root, ("pkg",))


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    modules = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from .leaf import thing\n",
            "pkg/sub/leaf.py": "thing = 1\n",
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "def f():\n    from .sub import leaf\n",  # inside a function, names a submodule
            "pkg/c.py": "from . import a\nimport json\nfrom pkg.sub import thing\n",  # a package's own name
            "pkg/sub/d.py": "from .. import c as renamed\nfrom ..sub.leaf import thing\n",
        },
    )
    graph = import_graph(modules)
    assert graph["pkg.a"] == {"pkg.b": 1}
    assert graph["pkg.b"] == {"pkg.sub.leaf": 2}
    assert graph["pkg.c"] == {"pkg.a": 1, "pkg.sub": 3}
    assert graph["pkg.sub"] == {"pkg.sub.leaf": 1}
    assert graph["pkg.sub.d"] == {"pkg.c": 1, "pkg.sub.leaf": 2}
    assert strongly_connected(graph) == []


@pytest.mark.parametrize(
    ("b_source", "expected"),
    [
        ("from .a import x\n", ["pkg.a", "pkg.b", "pkg.a"]),  # module level, relative
        ("def f():\n    import pkg.a\n", ["pkg.a", "pkg.b", "pkg.a"]),  # inside a function, absolute
        ("from pkg import a\n", ["pkg.a", "pkg.b", "pkg.a"]),  # a submodule named by `from pkg import`
    ],
)
def test_a_cycle_is_found_and_named(tmp_path: Path, b_source: str, expected: list[str]) -> None:
    modules = _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from . import b\nx = 1\n", "pkg/b.py": b_source})
    graph = import_graph(modules)
    components = strongly_connected(graph)
    assert components == [["pkg.a", "pkg.b"]]
    cycle = one_cycle(graph, components[0])
    assert cycle == expected
    assert describe(graph, cycle).startswith("pkg.a (line 1) -> pkg.b (line ")
