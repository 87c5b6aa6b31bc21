"""Launch buttons work or are not shown; Binder and Colab get the same environment as `make setup`.

``repository.url`` in ``_config.yml`` is the one setting.  The build hook
(``book/_ext/launch_buttons.py``) drops the buttons while it is the
placeholder and keeps them once it is set; the rendered pages are checked in
``tests/test_book_browser.py``.  Chapters may open with
``launch.setup_lines(url)`` (Colab only); if one does, it must clone the
repository that ``_config.yml`` names.
"""
from __future__ import annotations

import json
import re
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO
from IPython.core.inputtransformer2 import TransformerManager

from empir_lib.book import launch

sys.path.insert(0, str(REPO / "book" / "_ext"))
import launch_buttons  # noqa: E402  (the book's Sphinx extension, found as Sphinx finds it)

REAL = "https://github.com/someone/empir-book"


def _config(url: str | None) -> SimpleNamespace:
    return SimpleNamespace(html_theme_options={
        "repository_url": url, "use_repository_button": True,
        "launch_buttons": {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com"}})


@pytest.mark.parametrize("url", [launch.PLACEHOLDER_URL, launch.PLACEHOLDER_URL + "/", "", None])
def test_build_hook_drops_the_buttons_while_the_url_is_a_placeholder(url):
    config = _config(url)
    launch_buttons._hide_buttons_without_a_repository(None, config)
    assert config.html_theme_options["launch_buttons"] == {}
    assert config.html_theme_options["use_repository_button"] is False


def test_build_hook_keeps_the_buttons_for_a_real_repository():
    config = _config(REAL)
    launch_buttons._hide_buttons_without_a_repository(None, config)
    assert config.html_theme_options == _config(REAL).html_theme_options


def test_the_url_is_read_from_config_yml(tmp_path):
    text = (REPO / "_config.yml").read_text()
    assert launch.repository_url() is None, "the placeholder is still in _config.yml"
    assert launch.repository_branch() == "main"
    real = tmp_path / "_config.yml"
    real.write_text(text.replace(launch.PLACEHOLDER_URL, REAL + "  # set"))
    assert launch.repository_url(real) == REAL


def test_setup_lines_do_nothing_off_colab_and_clone_the_repository_on_it():
    lines = launch.setup_lines(REAL, "main")
    python = TransformerManager().transform_cell(lines)  # what IPython runs: the shell escapes become calls
    assert f"git clone -q --depth 1 --branch main {REAL} {launch.COLAB_DIR}" in python
    assert "run_line_magic('pip', 'install -q -e /content/empir-book')" in python
    ran = []
    namespace = {"get_ipython": lambda: SimpleNamespace(system=ran.append, run_line_magic=lambda *a: ran.append(a))}
    before = list(sys.path)
    exec(python, namespace)  # here, as on any machine but Colab, google.colab is not imported
    assert ran == [] and sys.path == before
    with pytest.raises(ValueError, match="set repository.url"):
        launch.setup_lines(launch.PLACEHOLDER_URL)


def test_chapters_that_set_themselves_up_clone_the_configured_repository():
    url = launch.repository_url()
    for path in sorted((REPO / "book").glob("[0-9][0-9]_*.ipynb")):
        first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        source = "".join(first["source"])
        if "google.colab" not in source:
            continue
        assert url is not None, f"{path.name} clones a repository, but _config.yml's is still the placeholder"
        assert source.startswith(launch.setup_lines(url, launch.repository_branch())), path.name


def test_binder_builds_the_conda_environment_then_installs_the_repository():
    # repo2docker builds binder/environment.yml before it copies the repository, so `-e .` would fail
    # there; binder/postBuild installs the repository afterwards, as the Makefile does.
    def pip_entries(path):
        block = path.read_text().split("- pip:", 1)[1]
        return [re.sub(r"\s+", "", m) for m in re.findall(r"^\s+-\s+([^#\s].*?)\s*$", block, re.M)]

    root, binder = pip_entries(REPO / "environment.yml"), pip_entries(REPO / "binder" / "environment.yml")
    assert "-e." in root
    assert binder == [e for e in root if e != "-e."], (
        "binder/environment.yml must list what environment.yml lists, less '-e .': copy the pip entries over")
    post = (REPO / "binder" / "postBuild").read_text()
    assert re.search(r"^pip install .*-e \.$", post, re.M) and post.startswith("#!")
