"""Colours and styles the chapters' figures share, so a precision or a row looks the same everywhere.

One figure style for the book: every figure function is decorated with
:func:`book_figure`, which makes the text of the figure it returns legible at
the rendered page's width (:func:`legible`): a notebook shows a figure at
:data:`DPI` and the page scales a wider image down to :data:`PAGE_PX`, so a
font's height on the page depends on the figure's width as well as its size.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from numpy.typing import ArrayLike

# The book's content column at a 1280 px window (tests/test_book_browser.py renders it there), the
# inline backend's resolution, and the smallest text a reader can read on that page, in pixels.
PAGE_PX = 730
DPI = 100
MIN_TEXT_PX = 9.0


def rendered_px(fig: Figure, fontsize_pt: float) -> float:
    """How many pixels high a ``fontsize_pt`` font of ``fig`` is on the page (the image scaled to fit)."""
    scale = min(1.0, PAGE_PX / (fig.get_figwidth() * DPI))
    return fontsize_pt / 72 * DPI * scale


def min_fontsize(fig: Figure) -> float:
    """The smallest font size (points) that :func:`rendered_px` keeps at :data:`MIN_TEXT_PX` or more."""
    return MIN_TEXT_PX / rendered_px(fig, 1.0)


def texts(fig: Figure) -> list[Text]:
    """Every visible, non-empty text of ``fig`` (titles, labels, ticks, legends, annotations)."""
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def legible(fig: Figure) -> Figure:
    """``fig`` with every text raised to :func:`min_fontsize` (none is made smaller); returns ``fig``."""
    low = min_fontsize(fig)
    for t in texts(fig):
        if t.get_fontsize() < low:
            t.set_fontsize(low)
    return fig


def book_figure(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorate a figure function: the figure it returns passes through :func:`legible`."""
    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> Figure:
        return legible(fn(*args, **kwargs))
    wrapper.book_figure = True
    return wrapper

BITS_COLOURS = {1: "tab:red", 2: "tab:orange", 3: "tab:olive", 4: "tab:green", 8: "tab:blue"}


def bits_colour(bits: int) -> str:
    """The colour of a precision in every figure (grey for one without its own)."""
    return BITS_COLOURS.get(bits, "tab:gray")


TABLE2_COLUMNS = ("clean", "cw", "fgsm", "bim", "pgd", "average")


ROW_COLOURS = {"baseline": "tab:gray", "empir-paper": "tab:red", "empir-adaptive": "tab:blue"}


TRADEOFF_STYLE = {"lp": dict(marker="o", color="tab:blue", label="individual low-precision member"),
                  "fp": dict(marker="s", color="black", label="full-precision member (baseline)"),
                  "empir": dict(marker="D", color="tab:red", label="EMPIR ensemble", s=70)}


def show_image(ax: Axes, img: ArrayLike, **kw: object) -> None:
    """One image on ``ax``, without ticks (grey for a single channel)."""
    img = np.asarray(img).squeeze()
    ax.imshow(img, cmap=kw.pop("cmap", "gray" if img.ndim == 2 else None), **kw)
    ax.set_xticks([])
    ax.set_yticks([])
