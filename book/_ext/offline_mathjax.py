"""Serve MathJax from the book itself, so equations render offline.

Jupyter Book 1 points Sphinx at MathJax on a CDN; a reader without a network
(or on this project's offline machines) would see raw TeX.  The
``jupyter-server-mathjax`` package (a JupyterLab dependency, pinned in the
``book`` extra) ships MathJax 2.7: its files are copied into ``_static`` and
``mathjax_path`` points there.
"""
from pathlib import Path


def _use_bundled_mathjax(app, config):
    # Imported when Sphinx configures the build, so that only a book build needs the
    # package.
    import jupyter_server_mathjax  # noqa: PLC0415

    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "MathJax.js").is_file():
        raise RuntimeError(
            f"{static} has no MathJax.js; reinstall jupyter-server-mathjax."
        )
    config.html_static_path.append(str(static))
    # The "-full" TeX + MathML configuration, with the CommonHTML output (no web fonts
    # needed).
    config.mathjax_path = "MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
    # MyST-NB marks notebook sections "tex2jax_ignore" and configures MathJax 3 to
    # process the "math" spans inside them; say the same in MathJax 2's terms.
    config.mathjax3_config = None
    config.mathjax2_config = {
        "tex2jax": {
            "processClass": "tex2jax_process|mathjax_process|math|output_area",
            "ignoreClass": "tex2jax_ignore|mathjax_ignore",
        }
    }


def setup(app):
    # priority 900: after MyST-NB sets MathJax 3
    app.connect("config-inited", _use_bundled_mathjax, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
