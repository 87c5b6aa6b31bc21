"""Every annotated grid the chapters draw, through one function, :func:`heatmap`.

The wbits x abits grids (Figure 1), the member-count grids (Figure 4 a, b),
Eq. 6 over a precision grid, and confusion matrices (Figure 3b).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from numpy.typing import ArrayLike

from ...core.errors import FULL_PRECISION
from .style import book_figure


def heatmap(ax: Axes, values: ArrayLike, rows: Sequence, cols: Sequence, title: str = "", fmt: str = "{:.1f}",
            cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None, origin: str = "lower",
            fontsize: float = 8, notes: dict | None = None, show: Callable[[float], bool] = np.isfinite
            ) -> AxesImage:
    """One annotated heatmap: ``values[i, j]`` drawn at row ``rows[i]``, column ``cols[j]``.

    Every cell for which ``show(value)`` holds gets its number (``fmt``), in
    black on a light cell and white on a dark one (read from the colour map
    itself, so any ``cmap`` works).  A NaN cell stays blank.  ``notes`` maps
    (row, col) to an extra line under the number (for example the paper's
    value, labelled as such by the caller); a blank cell with a note shows
    "-" and the note.
    """
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 100.0)
    im = ax.imshow(arr, cmap=cmap, origin=origin, vmin=lo, vmax=max(hi, lo + 1e-9))
    for i in range(len(rows)):
        for j in range(len(cols)):
            v, note = arr[i, j], (notes or {}).get((rows[i], cols[j]))
            if not (np.isfinite(v) and show(v)) and note is None:
                continue
            text = fmt.format(v) if np.isfinite(v) else "-"
            if note is not None:
                text += f"\n{note}"
            r, g, b, _ = im.cmap(im.norm(v)) if np.isfinite(v) else (1.0, 1.0, 1.0, 1.0)
            light = 0.299 * r + 0.587 * g + 0.114 * b > 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize if note is None else fontsize - 1,
                    color="black" if light else "white")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    if title:
        ax.set_title(title, fontsize=9)
    return im


def in_percent(values: dict, rows: Sequence, cols: Sequence) -> np.ndarray:
    """``{(row, col): fraction}`` as an array in %, NaN where a cell is absent."""
    arr = np.full((len(rows), len(cols)), np.nan)
    for (r, c), v in values.items():
        if r in rows and c in cols and v is not None:
            arr[rows.index(r), cols.index(c)] = 100 * v
    return arr


@book_figure
def accuracy_grid(entries: dict, dataset: str, bits: Sequence[int] = (1, 2, 4), seed: int = 1) -> Figure:
    """Clean full-test accuracy of the wbits x abits grid (paper Figure 1's question).

    ``entries`` is ``zoo.members(dataset)``; cells whose member is not in the
    zoo stay blank.  The full-precision member's accuracy is in the title, so
    the cost of quantisation can be read off directly.
    """
    bits = list(bits)
    acc, fp = {}, None
    for e in entries.values():
        if e["dataset"] != dataset or e["seed"] != seed:
            continue
        if (e["wbits"], e["abits"]) == (FULL_PRECISION, FULL_PRECISION):
            fp = e["test_accuracy"]
        else:
            acc[(e["abits"], e["wbits"])] = e["test_accuracy"]
    fig = Figure(figsize=(4.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    im = heatmap(ax, in_percent(acc, bits, bits), bits, bits, fontsize=9)
    ax.set_xlabel("weight bits (wbits)")
    ax.set_ylabel("activation bits (abits)")
    fp_text = f"FP member {100 * fp:.1f}%" if fp is not None else "no FP member"
    ax.set_title(f"{dataset}: clean accuracy, % ({fp_text})", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


@book_figure
def precision_grid_panels(panels: dict, bits: Sequence[int] = (1, 2, 4), suptitle: str = "") -> Figure:
    """Paper Figure 1: accuracies of the wbits x abits grid of low-precision members, one panel each.

    ``panels`` maps a panel title (e.g. "clean accuracy (manifest, 10,000
    images)") to ``{(wbits, abits): accuracy}`` as fractions; missing cells
    stay blank.  Rows are abits, columns wbits, as in :func:`accuracy_grid`.
    """
    fig = Figure(figsize=(3.9 * len(panels), 3.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, values) in zip(axes, panels.items()):
        by_cell = {(a, w): v for (w, a), v in values.items()}
        im = heatmap(ax, in_percent(by_cell, list(bits), list(bits)), list(bits), list(bits), title)
        fig.colorbar(im, ax=ax, shrink=0.8, label="%")
        ax.set_xlabel("weight bits (wbits)")
        ax.set_ylabel("activation bits (abits)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


@book_figure
def member_count_panels(panels: dict, counts: Sequence[int] = (0, 1, 2, 3), notes: dict | None = None) -> Figure:
    """Paper Figure 4 (a, b): accuracy against the number of FP (rows) and LP (columns) members.

    ``panels`` maps a panel title to ``{(n_fp, n_lp): accuracy}`` (fractions);
    ``notes`` maps the same title to ``{(n_fp, n_lp): text}`` printed under a
    cell's number (the chapter uses it for the paper's quoted values, labelled
    "paper").  The empty ensemble (0, 0) stays blank.
    """
    fig = Figure(figsize=(4.3 * len(panels), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, values) in zip(axes, panels.items()):
        im = heatmap(ax, in_percent(values, list(counts), list(counts)), list(counts), list(counts), title,
                     notes=(notes or {}).get(title))
        fig.colorbar(im, ax=ax, shrink=0.8, label="%")
        ax.set_xlabel("low-precision members (N)")
        ax.set_ylabel("full-precision members (M)")
    return fig


@book_figure
def overhead_heatmaps(panels: Sequence[tuple[str, np.ndarray]], bits: Sequence[int]) -> Figure:
    """Eq. 6 terms of one low-precision member over a wbits x abits grid, one panel per model.

    ``panels`` is a list of (title, array indexed [abits, wbits]) from
    ``overhead.member_grid``; values are fractions of one FP model.
    """
    fig = Figure(figsize=(3.4 * len(panels), 3.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, arr) in zip(axes, panels):
        heatmap(ax, arr, list(bits), list(bits), title, fmt="{:.3g}", cmap="magma_r", vmin=0,
                vmax=max(1.0, float(np.nanmax(arr))))
        ax.set_xlabel("weight bits (wbits)")
        ax.set_ylabel("activation bits (abits)")
    return fig


@book_figure
def confusion_matrices(matrices: dict, class_names: Sequence[str] | None = None) -> Figure:
    """Paper Figure 3b: true label (rows) against predicted label (columns), one panel per model.

    ``matrices`` maps a title to a square matrix of image counts (as
    ``evaluate.adversarial_accuracy`` returns under ``"confusion"``).  Each
    panel has its own colour scale, since panels may count different numbers
    of images; every cell shows its count.
    """
    fig = Figure(figsize=(4.6 * len(matrices), 4.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(matrices)))
    for ax, (title, m) in zip(axes, matrices.items()):
        m = np.asarray(m)
        k = len(m)
        names = class_names or [str(i) for i in range(k)]
        im = heatmap(ax, m, names, names, fmt="{:.0f}", cmap="Blues", vmin=0, vmax=float(m.max()), origin="upper",
                     fontsize=6 if m.max() >= 1000 else 7, show=lambda v: v != 0)
        ax.set_xticks(range(k), names, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("true label")
        ax.set_title(f"{title}\n(accuracy {np.trace(m) / m.sum():.1%} of {m.sum():,} images)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, label="images")
    return fig
