"""pytest collects every chapter notebook here through nbval (``pytest --nbval-lax tests book``).

Build output and editor debris are not chapters: keep them out of the run even
if someone builds or saves them under book/.
"""
collect_ignore_glob = ["_build/*", "**/_build/*", "**/.ipynb_checkpoints/*", "**/handouts/*"]
