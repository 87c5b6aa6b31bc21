"""pyproject.toml and environment.yml must list the same dependencies."""
import re
import tomllib

from conftest import REPO


def _norm(req):
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_matches_pyproject():
    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = set(map(_norm, proj["dependencies"]))
    for extra in proj["optional-dependencies"].values():
        wanted |= set(map(_norm, extra))
    # Only the entries under "- pip:" are Python packages (not the channels or conda's python/pip).
    pip_block = (REPO / "environment.yml").read_text().split("- pip:", 1)[1]
    pip_lines = re.findall(r"^\s+-\s+([^#\s].*?)\s*$", pip_block, re.M)
    listed = {_norm(line) for line in pip_lines} - {"-e."}
    assert listed == wanted


def test_console_script_points_at_cli():
    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert proj["scripts"]["empir"] == "empir_lib.cli:main"


def test_every_subpackage_is_packaged():
    from setuptools import find_packages

    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packaged = set(find_packages(str(REPO), include=find["include"]))
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "empir_lib").rglob("__init__.py")}
    assert {"empir_lib", "empir_lib.exercises", "empir_lib.plots"} <= on_disk == packaged
