"""Bar charts: Table 2 ours beside the paper's, accuracy per attack objective, and ensemble overheads.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .style import TABLE2_COLUMNS, book_figure


@book_figure
def table2_bars(panels: dict, columns: Sequence[str] = TABLE2_COLUMNS) -> Figure:
    """Table 2 as grouped bars, ours beside the paper's, one panel per dataset.

    ``panels`` maps a panel title to a list of series, each a dict with
    ``label``, ``values`` ({column: accuracy in %, or None}), ``colour`` and
    ``paper`` (True for the paper's own numbers, drawn unfilled and hatched
    so they are never mistaken for ours).  A missing value gets no bar, only
    a dash at the foot of its slot, so a gap in the results stays visible.
    """
    fig = Figure(figsize=(5.2 * len(panels), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (title, series) in zip(axes, panels.items()):
        k = max(len(series), 1)
        width = 0.8 / k
        xs = np.arange(len(columns))
        for i, s in enumerate(series):
            pos = xs - 0.4 + width * (i + 0.5)
            vals = [s["values"].get(c) for c in columns]
            have = [v is not None for v in vals]
            heights = [v if v is not None else 0.0 for v in vals]
            style = (dict(facecolor="none", edgecolor=s["colour"], hatch="///", linewidth=1.0) if s.get("paper")
                     else dict(color=s["colour"]))
            ax.bar(pos[have], np.asarray(heights)[have], width * 0.95, **style)
            for p, h in zip(pos, have):
                if not h:
                    ax.text(p, 1.0, "\u2013", ha="center", va="bottom", color=s["colour"], fontsize=9)
        ax.set_xticks(xs, [c if c in ("clean", "average") else c.upper() for c in columns])
        ax.set_ylim(0, 105)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("accuracy, %")
    # legend patches drawn from the styles, so a series with no bar yet still shows its colour
    first = next(iter(panels.values()), [])
    handles = [Patch(facecolor="none", edgecolor=s["colour"], hatch="///", label=s["label"]) if s.get("paper")
               else Patch(color=s["colour"], label=s["label"]) for s in first]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=min(len(handles), 3))
    return fig


@book_figure
def objective_bars(accuracies: dict, title: str = "", reference: float | None = None,
                   reference_label: str = "") -> Figure:
    """One bar per attack objective (accuracy in %), the lowest in a darker shade (chapter 8).

    ``accuracies`` maps an objective's label to an adversarial accuracy in %;
    ``reference`` draws a dashed horizontal line (e.g. the clean accuracy).
    """
    labels = list(accuracies)
    vals = np.array([accuracies[k] for k in labels], dtype=float)
    fig = Figure(figsize=(1.1 * len(labels) + 2.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    worst = int(np.nanargmin(vals)) if np.isfinite(vals).any() else -1
    colours = ["tab:red" if label.startswith("paper") else "tab:blue" for label in labels]
    bars = ax.bar(range(len(labels)), vals, color=colours, alpha=0.55)
    if worst >= 0:
        bars[worst].set_alpha(1.0)
        bars[worst].set_edgecolor("black")
    ax.bar_label(bars, [f"{v:.0f}" for v in vals], fontsize=8)
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=1, label=reference_label or None)
        if reference_label:
            ax.legend(fontsize=7, loc="upper right")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("adversarial accuracy, %")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig


@book_figure
def overhead_bars(panels: dict, reference: float | None = None, reference_label: str = "") -> Figure:
    """Ensemble overheads as grouped bars, one panel per quantity (e.g. storage, time).

    ``panels`` maps a panel title to ``{ensemble label: {estimate label: value}}``,
    values in multiples of one FP model (computed by :mod:`empir_lib.hardware.overhead`).
    The first estimate of each group is drawn hatched and unfilled (the
    formula), the others filled.  ``reference`` draws a dashed line, e.g. the
    paper's stated bound, which the caller labels as the paper's.
    """
    fig = Figure(figsize=(5.4 * len(panels), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    colours = ["tab:gray", "tab:blue", "tab:orange", "tab:green"]
    for ax, (title, groups) in zip(axes, panels.items()):
        estimates = list(dict.fromkeys(k for g in groups.values() for k in g))
        width = 0.8 / max(len(estimates), 1)
        xs = np.arange(len(groups))
        for i, est in enumerate(estimates):
            vals = np.array([g.get(est, np.nan) for g in groups.values()], dtype=float)
            style = (dict(facecolor="none", edgecolor=colours[0], hatch="///") if i == 0
                     else dict(color=colours[i % len(colours)]))
            bars = ax.bar(xs - 0.4 + width * (i + 0.5), vals, width * 0.95, label=est, **style)
            ax.bar_label(bars, [f"{v:.3g}" if np.isfinite(v) else "" for v in vals], fontsize=7)
        if reference is not None:
            ax.axhline(reference, color="black", ls="--", lw=1, label=reference_label or None)
        ax.set_xticks(xs, list(groups), fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("multiples of one FP model")
    axes[0].set_ylim(0, None)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=min(len(labels), 4))
    return fig
