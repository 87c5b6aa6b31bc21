"""pyproject.toml, the Makefile and environment.yml must install the same packages.

environment.yml is what Binder and conda users get: it must hold every
dependency and extra of pyproject.toml plus what the Makefile installs beside
them (cleverhans), and, with their own dependencies, everything the library,
the chapters and the tests import.
"""
import ast
import importlib.metadata
import json
import re
import sys
import tomllib

from conftest import REPO
from packaging.requirements import Requirement


def _norm(req):
    return re.sub(r"\s+", "", req).lower()


def environment_yml_packages() -> set[str]:
    # Only the entries under "- pip:" are Python packages (not the channels or conda's python/pip).
    pip_block = (REPO / "environment.yml").read_text().split("- pip:", 1)[1]
    pip_lines = re.findall(r"^\s+-\s+([^#\s].*?)\s*$", pip_block, re.M)
    return {_norm(line) for line in pip_lines} - {"-e."}


def makefile_extras() -> set[str]:
    """What `make setup` installs beside pyproject.toml (with --no-deps): cleverhans."""
    return {_norm(r) for r in re.findall(r'--no-deps\s+"([^"]+)"', (REPO / "Makefile").read_text())}


def test_environment_yml_matches_pyproject_and_makefile():
    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(map(_norm, proj["dependencies"]))
    for extra in proj["optional-dependencies"].values():
        wanted |= set(map(_norm, extra))
    assert "cleverhans==4.0.0" in makefile_extras()
    assert environment_yml_packages() == wanted | makefile_extras()


def test_makefile_installs_every_extra():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = re.search(r'pip install -q -e "\.\[([^\]]+)\]"', (REPO / "Makefile").read_text()).group(1)
    assert set(installed.split(",")) == set(extras)


def _top_level_imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def imported_modules() -> set[str]:
    """Every top-level module the library, the chapters, the tests and the book build import (not stdlib, not ours)."""
    names = set()
    extensions = list((REPO / "book" / "_ext").glob("*.py"))  # the book build's Sphinx extensions
    for path in [*(REPO / "empir_lib").rglob("*.py"), *(REPO / "tests").glob("*.py"), *extensions]:
        names |= _top_level_imports(path.read_text())
    for path in (REPO / "book").glob("*.ipynb"):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                # IPython's magics and shell escapes are not Python.
                code = "\n".join(ln for ln in "".join(cell["source"]).splitlines() if ln.lstrip()[:1] not in "%!")
                names |= _top_level_imports(code)
    ours = {"empir_lib", "conftest"} | {p.stem for p in [*(REPO / "tests").glob("*.py"), *extensions]}
    return names - set(sys.stdlib_module_names) - ours


def _closure(roots: set[str]) -> set[str]:
    """The distributions ``roots`` install, with their dependencies (as installed here), names normalised."""
    def canon(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    seen, todo = set(), [canon(Requirement(r).name) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for r in map(Requirement, requires):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(canon(r.name))
    return seen


def test_environment_yml_installs_everything_the_book_and_tests_import():
    installed = _closure(environment_yml_packages())
    by_module = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(imported_modules()):
        dists = by_module.get(module)
        assert dists, f"no installed distribution provides the module {module!r}; install it and list it"
        if not any(re.sub(r"[-_.]+", "-", d).lower() in installed for d in dists):
            missing[module] = dists
    assert not missing, f"imported but not installed by environment.yml (module: distributions): {missing}"


def test_console_script_points_at_cli():
    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert proj["scripts"]["empir"] == "empir_lib.cli:main"


def test_every_subpackage_is_packaged():
    from setuptools import find_packages

    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packaged = set(find_packages(str(REPO), include=find["include"]))
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "empir_lib").rglob("__init__.py")}
    assert {"empir_lib", "empir_lib.book.exercises", "empir_lib.book.plots"} <= on_disk == packaged
