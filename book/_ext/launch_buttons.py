"""Launch buttons that work or are not shown.

``repository.url`` in ``_config.yml`` is the one setting the Binder, Colab
and repository buttons are built from.  While it is the placeholder
(``empir_lib.book.launch.PLACEHOLDER_URL``) this extension removes those buttons
from every page, so a reader never clicks through to a page that does not
exist.  Set the real URL and they appear, with no other change.
"""
from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.config import Config

from empir_lib.book.launch import is_placeholder


def _hide_buttons_without_a_repository(app: Sphinx, config: Config) -> None:
    options = config.html_theme_options
    if is_placeholder(options.get("repository_url")):
        options["launch_buttons"] = {}
        options["use_repository_button"] = False
        options["use_issues_button"] = False
        options["use_edit_page_button"] = False


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _hide_buttons_without_a_repository)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
