"""Where the book's launch buttons point, and the lines that set a notebook up on Colab.

The repository URL is one setting: ``repository.url`` in ``_config.yml``.
While it is the placeholder (:data:`PLACEHOLDER_URL`), the book build leaves
out the Binder, Colab and repository buttons (``book/_ext/launch_buttons.py``),
so no reader clicks through to a page that does not exist.

Binder builds ``binder/environment.yml`` and then installs the repository
(``binder/postBuild``), so a chapter runs there as it does locally.  Colab
installs nothing, and the library cannot install itself: a chapter's first
cell needs the lines :func:`setup_lines` returns, which clone the repository
(library, model zoo, embedded samples) and install it from the package
registry, on Colab only; anywhere else they do nothing.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..core import files

CONFIG = files.REPO / "_config.yml"
PLACEHOLDER_URL = "https://github.com/OWNER/REPOSITORY"
COLAB_DIR = "/content/empir-book"

_URL = re.compile(r"^repository:[ \t]*\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*[\"']?([^\s\"'#]*)", re.M)
_BRANCH = re.compile(r"^repository:[ \t]*\n(?:[ \t]+.*\n)*?[ \t]+branch:[ \t]*[\"']?([^\s\"'#]*)", re.M)


def is_placeholder(url: str | None) -> bool:
    """True for no URL or the placeholder, whose pages do not exist."""
    return not url or url.rstrip("/") == PLACEHOLDER_URL


def repository_url(config: str | Path = CONFIG) -> str | None:
    """``repository.url`` from ``_config.yml``, or None while it is the placeholder."""
    m = _URL.search(Path(config).read_text(encoding="utf-8"))
    url = m.group(1).rstrip("/") if m else None
    return None if is_placeholder(url) else url


def repository_branch(config: str | Path = CONFIG) -> str:
    """``repository.branch`` from ``_config.yml`` (default ``main``)."""
    m = _BRANCH.search(Path(config).read_text(encoding="utf-8"))
    return m.group(1) if m and m.group(1) else "main"


def setup_lines(url: str, branch: str = "main") -> str:
    """The lines that open a chapter's first cell once the repository is public.

    On Colab (``google.colab`` is imported there) they clone the repository
    once into :data:`COLAB_DIR` and install it with its dependencies from the
    package registry; everywhere else the condition is false and they do
    nothing.  ``sys.path`` gets the clone because an editable install only
    takes effect in a new process.
    """
    if is_placeholder(url):
        raise ValueError("set repository.url in _config.yml first: the placeholder has no repository to clone")
    return (
        "import sys\n\n"
        'if "google.colab" in sys.modules:  # Colab only: fetch and install the book\'s repository (once)\n'
        f"    !test -d {COLAB_DIR} || git clone -q --depth 1 --branch {branch} {url} {COLAB_DIR}\n"
        f"    %pip install -q -e {COLAB_DIR}\n"
        f'    sys.path.insert(0, "{COLAB_DIR}")\n'
    )
