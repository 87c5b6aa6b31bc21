"""Colours and styles the chapters' figures share, so a precision or a row looks the same everywhere.
"""
from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from numpy.typing import ArrayLike

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
