"""Chapter 10's figure: Table 2's rows, the paper's average beside ours under both protocols."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .style import ROW_COLOURS, book_figure


@book_figure
def figure(panels: Sequence[dict]) -> Figure:
    """One panel per dataset: per row the paper's average (hatched), ours under the paper protocol, the suite's robust.

    ``panels``: ``{"dataset", "labels" (tick labels), "values" (per row: paper,
    ours, suite; None where not measured)}``, as
    :func:`empir_lib.book.chapters.defence_table.figure_panels` makes them.
    Each bar is labelled with its value; a missing value has no bar, only a
    dash at the foot of its slot.
    """
    series = (("average adversarial, *paper*", "tab:gray", True), ("average adversarial, ours (paper protocol)",
              ROW_COLOURS["empir-paper"], False),
              ("robust, ours (worst-case suite)", ROW_COLOURS["empir-adaptive"], False))
    fig = Figure(figsize=(11, 3.6 * len(panels)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1))
    for ax, panel in zip(axes, panels):
        ds, values = panel["dataset"], panel["values"]
        xs, width = np.arange(len(values)), 0.27
        for i, (_, colour, hatched) in enumerate(series):
            for x, v in zip(xs + (i - 1) * width, (vals[i] for vals in values)):
                if v is None:
                    ax.text(x, 1.0, "\u2013", ha="center", va="bottom", color=colour, fontsize=9)
                    continue
                style = (dict(facecolor="none", edgecolor=colour, hatch="///") if hatched else dict(color=colour))
                # Labelled, so that a measured 0% is told apart from a missing value (a dash).
                ax.bar_label(ax.bar(x, v, width * 0.95, **style), [f"{v:.0f}"], fontsize=6, color=colour)
        ax.set_xticks(xs, panel["labels"], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy, %")
        ax.set_title(f"{ds}: Table 2's rows", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor="none", edgecolor=c, hatch="///", label=n.replace("*", "")) if h
               else Patch(color=c, label=n) for n, c, h in series]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3)
    return fig
