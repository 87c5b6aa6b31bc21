"""Markdown tables and table cells for the chapters.

A chapter shows a table with ``display(Markdown(tables.markdown_table(...)))``:
text, not HTML, so that nbval can compare it and the book renders it with the
theme's table style.  Numbers come from the library; this module only lays
them out.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import EmpirError

DASH = "\u2014"


def markdown_table(rows: Iterable[dict], columns: Sequence[str], headers: Sequence[str] | None = None,
                   formats: dict[str, str] | None = None) -> str:
    """A Markdown pipe table of ``rows`` (dicts).

    ``formats`` maps a column to a format spec (e.g. ``{'test_accuracy': '.2%'}``).
    """
    headers = headers or columns
    formats = formats or {}
    if len(headers) != len(columns):
        raise EmpirError(f"{len(headers)} headers for {len(columns)} columns.")

    def cell(row: dict, c: str) -> str:
        v = row.get(c, "")
        return format(v, formats[c]) if c in formats and v != "" else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(columns)) + "|"]
    lines += ["| " + " | ".join(cell(r, c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def percent_cell(value: float | None, signed: bool = False) -> str:
    """A table cell in %: the number to two decimals (with its sign if ``signed``), or a dash when None."""
    if value is None:
        return DASH
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def missing_line(what: str, missing: Iterable[str], command: str) -> str:
    """One Markdown line saying how many ``what`` are missing, naming one and the command that makes them.

    Empty when nothing is missing, so a chapter can display it unconditionally.
    """
    missing = list(missing)
    if not missing:
        return ""
    return f"{DASH} {len(missing)} {what} not produced yet (e.g. `{missing[0]}`); `{command}` writes them."
