"""One figure style for the book: every figure function's text is legible at the rendered page's width."""
import ast

import numpy as np
import pytest
from conftest import REPO
from matplotlib.figure import Figure

from empir_lib.book import plots
from empir_lib.book.chapters import defence_table
from empir_lib.book.plots import style

PLOTS = REPO / "empir_lib" / "book" / "plots"


def _figure_functions() -> list[tuple[str, str, list[str]]]:
    out = []
    for path in sorted(PLOTS.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.FunctionDef) and not node.name.startswith("_") and node.returns is not None
                    and ast.unparse(node.returns) == "Figure" and path.name != "style.py"):
                out.append((path.name, node.name, [ast.unparse(d) for d in node.decorator_list]))
    return out


def test_every_figure_function_of_the_book_has_the_books_style():
    found = _figure_functions()
    assert len(found) >= 25  # the parser sees the figure functions (a broken scan would pass vacuously)
    bare = [f"{file}: {name}" for file, name, decorators in found if "book_figure" not in decorators]
    assert not bare, "figure functions without @book_figure: " + ", ".join(bare)


def _min_px(fig: Figure) -> float:
    return min(style.rendered_px(fig, t.get_fontsize()) for t in style.texts(fig))


def test_legible_raises_small_text_of_a_wide_figure_to_the_minimum():
    fig = Figure(figsize=(11, 3))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="a legend entry")
    ax.legend(fontsize=6)
    ax.set_title("a title", fontsize=14)
    ax.tick_params(labelsize=5)
    assert _min_px(fig) < style.MIN_TEXT_PX  # as drawn, 5 pt on an 11-inch figure is about 5 px on the page
    style.legible(fig)
    assert _min_px(fig) >= style.MIN_TEXT_PX - 1e-9
    assert ax.title.get_fontsize() == 14  # larger text is left as it is


def test_a_figure_that_fits_the_page_needs_smaller_fonts_than_a_wide_one():
    narrow, wide = Figure(figsize=(6, 3)), Figure(figsize=(12, 3))
    assert style.min_fontsize(narrow) == pytest.approx(style.MIN_TEXT_PX * 72 / style.DPI)
    assert style.min_fontsize(wide) == pytest.approx(style.min_fontsize(narrow) * 12 * style.DPI / style.PAGE_PX)


def test_the_books_figures_are_legible_on_the_page():
    grid = np.arange(9.0).reshape(3, 3) / 10
    figures = [defence_table.figure(),  # chapter 10's, 11 inches wide
               plots.overhead_heatmaps([("time", grid), ("storage", grid), ("energy", grid)], [1, 2, 4])]  # ch. 6
    for fig in figures:
        assert _min_px(fig) >= style.MIN_TEXT_PX - 1e-9
