"""The library's imports run one way, bottom to top: no cycle, and no import hidden in a function.

Every ``empir_lib/**/*.py`` is parsed (not imported), every import of another
empir_lib module is collected at any depth (inside functions too), and the
graph they make must have no cycle.  An import of an empir_lib module inside a
function is refused outright: that is how a cycle hides.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

from empir_lib import LAYERS

PACKAGE = "empir_lib"
ROOT = REPO / PACKAGE


def module_name(path: Path, root: Path = ROOT) -> str:
    """'empir_lib/book/exercises/ch01.py' -> 'exercises.ch01'; a package's __init__ is the package; root is ''."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package_of(module: str, is_package: bool) -> list[str]:
    parts = module.split(".") if module else []
    return parts if is_package else parts[:-1]


def imports_of(path: Path, modules: set[str], root: Path = ROOT) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function?) for every import of a module in ``modules``."""
    module = module_name(path, root)
    package = _package_of(module, path.name == "__init__.py")
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def add(target: str, node: ast.AST, in_function: bool) -> None:
        if target in modules and target != module:
            found.append((target, node.lineno, in_function))

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name[len(PACKAGE) + 1:], node, in_function)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                base_name = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                base_name = node.module[len(PACKAGE) + 1:]
            else:
                base_name = None
            if base_name is not None:
                # `from . import zoo` imports the module empir_lib.nets.zoo; `from .zoo import load` imports
                # empir_lib.nets.zoo; `from . import __version__` imports the package itself.
                named = [f"{base_name}.{a.name}" if base_name else a.name for a in node.names]
                named = [m for m in named if m in modules]
                for target in named if named and not node.module else [base_name, *named]:
                    add(target, node, in_function)
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    """The module graph {module: modules it imports}, and every function-level import of a library module."""
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    graph, hidden = {m: set() for m in modules}, []
    for p in paths:
        for target, line, in_function in imports_of(p, modules, root):
            graph[module_name(p, root)].add(target)
            if in_function:
                hidden.append(f"{p.relative_to(root.parent)}:{line} imports {PACKAGE}.{target} inside a function")
    return graph, hidden


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (cycle := dfs(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := dfs(m)):
            return cycle
    return None


def test_the_library_has_no_import_cycle():
    graph, _ = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(f"{PACKAGE}.{m}" if m else PACKAGE for m in cycle)


def test_no_library_module_is_imported_inside_a_function():
    _, hidden = import_graph()
    assert not hidden, "imports hidden in functions (move them to the top):\n" + "\n".join(hidden)


def test_the_graph_sees_the_imports_it_should():
    graph, _ = import_graph()
    assert {"nets.ensemble", "core.settings"} <= graph["attack.attacks"]
    assert {"nets.zoo", "core.settings"} <= graph["nets.ensemble"]
    assert "book.exercises.ch01" in graph["book.exercises"] and "core.settings" in graph["book.exercises.ch01"]


def layer_of(module: str, layers: tuple[str, ...]) -> int:
    """The index of a module's layer in ``layers``; the package and modules outside every layer (cli) are on top."""
    head = module.split(".")[0]
    return layers.index(head) if head in layers else len(layers)


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    """Every import of a module in a higher layer than the importer's, as 'a imports b'."""
    return [f"{m or PACKAGE} ({layer_of(m, layers)}) imports {t} ({layer_of(t, layers)})"
            for m, targets in sorted(graph.items()) for t in sorted(targets)
            if m and layer_of(t, layers) > layer_of(m, layers)]


def test_every_module_is_in_a_layer_folder():
    graph, _ = import_graph()
    loose = [m for m in graph if m and m.split(".")[0] not in LAYERS and m != "cli"]
    assert not loose, f"modules outside the layer folders {LAYERS}: {loose}"


def test_imports_run_down_the_layers_only():
    graph, _ = import_graph()
    upward = upward_imports(graph, LAYERS)
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_a_planted_upward_import_is_caught(tmp_path):
    pkg = tmp_path / PACKAGE
    for layer in ("low", "high"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "high" / "h.py").write_text("from ..low import l\n")
    (pkg / "low" / "l.py").write_text("from ..high import h\n")  # the planted upward import
    graph, _ = import_graph(pkg)
    # `from ..high import h` imports both the package high and the module high.h
    assert upward_imports(graph, ("low", "high")) == ["low.l (0) imports high (1)", "low.l (0) imports high.h (1)"]
    assert upward_imports(graph, ("high", "low")) == ["high.h (0) imports low (1)", "high.h (0) imports low.l (1)"]


def test_find_cycle_finds_a_cycle_and_names_it():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.fixture
def tiny_package(tmp_path):
    """A package with a cycle (a -> b -> a) hidden by a function-level import, like the one this test guards."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g\n    return g\n")
    (pkg / "c.py").write_text("import empir_lib.a\n")
    (pkg / "sub" / "__init__.py").write_text("from .x import y\n")
    (pkg / "sub" / "x.py").write_text("from .. import c\ny = 1\n")
    return pkg


def test_a_cycle_hidden_in_a_function_is_caught(tiny_package):
    graph, hidden = import_graph(tiny_package)
    assert graph["a"] == {"b"} and graph["b"] == {"a"} and graph["c"] == {"a"}
    assert graph["sub"] == {"sub.x"} and graph["sub.x"] == {"c"}
    assert find_cycle(graph) == ["a", "b", "a"]
    assert len(hidden) == 1 and "b.py:2 imports empir_lib.a inside a function" in hidden[0]
