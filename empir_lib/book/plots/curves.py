"""Line and scatter figures: clean against adversarial accuracy (Figure 3a), losses along an attack's
path (chapters 5 and 8), accuracy against attack strength (Figure 5) and Eq. 6 against N (Figure 4 c, d).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from .style import ROW_COLOURS, TRADEOFF_STYLE, book_figure


@book_figure
def accuracy_tradeoff(panels: dict, xlabel: str = "clean (unperturbed) accuracy",
                      ylabel: str = "adversarial accuracy") -> Figure:
    """Paper Figure 3a: clean against adversarial accuracy, one panel per dataset.

    ``panels`` maps a title to a list of points ``{"label", "clean", "adv",
    "kind"}`` with ``kind`` in ``TRADEOFF_STYLE`` (blue circles for the
    low-precision members, a black square for the FP member, a red diamond
    for EMPIR).  The top right corner is where a model should be.
    """
    fig = Figure(figsize=(4.6 * len(panels), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, points) in zip(axes, panels.items()):
        for p in points:
            style = dict(TRADEOFF_STYLE[p["kind"]])
            ax.scatter(100 * p["clean"], 100 * p["adv"], s=style.pop("s", 40), zorder=3, **style)
            ax.annotate(p["label"], (100 * p["clean"], 100 * p["adv"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xlabel(xlabel + ", %")
        ax.set_ylabel(ylabel + ", %")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        seen = dict(zip(labels, handles))  # one legend entry per kind
        ax.legend(seen.values(), seen.keys(), fontsize=7, loc="best")
    return fig


@book_figure
def along_attack_path(t: ArrayLike, curves: dict, xlabel: str = "step along the FGSM direction, t") -> Figure:
    """The loss and the gradient size of several attack objectives along one path (chapter 5).

    ``curves`` maps an objective's label to ``{"loss": [...], "grad": [...]}``
    (one value per ``t``, e.g. medians over images), computed by the caller
    with a ``tf.GradientTape``; the gradient panel is on a log scale.
    """
    fig = Figure(figsize=(8.6, 3.3), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for label, c in curves.items():
        ax1.plot(t, c["loss"], "o-", ms=4, label=label)
        ax2.plot(t, c["grad"], "o-", ms=4, label=label)
    ax1.set_ylabel("median cross-entropy loss")
    ax2.set_ylabel("median L1 norm of the input gradient")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    return fig


@book_figure
def objective_paths(t: ArrayLike, curves: dict, xlabel: str = "step along the objective's own FGSM direction, t"
                    ) -> Figure:
    """Loss, gradient size and ensemble accuracy along each objective's attack path (chapter 8).

    ``curves`` maps an objective's label to ``{"loss", "grad", "acc"}``, one
    value per ``t`` (medians over images for the first two, accuracy as a
    fraction), computed by the caller.  Loss and gradient are on log scales:
    the objectives differ by orders of magnitude, which is the point.
    """
    fig = Figure(figsize=(12, 3.5), layout="constrained")
    axes = fig.subplots(1, 3)
    for label, c in curves.items():
        style = dict(marker="o", ms=4, ls="--" if label.startswith("paper") else "-", label=label)
        axes[0].plot(t, np.maximum(c["loss"], 1e-12), **style)
        axes[1].plot(t, np.maximum(c["grad"], 1e-12), **style)
        axes[2].plot(t, 100 * np.asarray(c["acc"]), **style)
    axes[0].set_ylabel("median cross-entropy loss")
    axes[1].set_ylabel("median L1 norm of the input gradient")
    axes[2].set_ylabel("ensemble (vote) accuracy, %")
    for ax in axes[:2]:
        ax.set_yscale("log")
    axes[2].set_ylim(-3, 103)
    for ax in axes:
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7)
    return fig


@book_figure
def strength_sweeps(panels: dict) -> Figure:
    """Paper Figure 5: adversarial accuracy against attack strength, one panel per attack.

    ``panels`` maps a title to ``{"x": [...], "xlabel": str, "series": {label:
    [accuracy in % or None, one per x]}}``.  Only measured points get a
    marker; a line joins consecutive measured points and breaks at a gap.
    """
    fig = Figure(figsize=(4.6 * len(panels), 3.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    colours = {"baseline": ROW_COLOURS["baseline"], "empir": ROW_COLOURS["empir-paper"]}
    for ax, (title, p) in zip(axes, panels.items()):
        for label, ys in p["series"].items():
            y = np.array([np.nan if v is None else v for v in ys], dtype=float)
            colour = next((c for k, c in colours.items() if label.lower().startswith(k)), None)
            ax.plot(p["x"], y, "o-", ms=5, color=colour, label=label)
        ax.set_xlabel(p["xlabel"])
        ax.set_ylabel("adversarial accuracy, %")
        ax.set_ylim(-3, 103)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


@book_figure
def overhead_curves(sweep: dict, measured: dict | None = None, paper: dict | None = None) -> Figure:
    """Figure 4 (c, d) style: Eq. 6 time and storage against N (LP members), one line per M (FP).

    ``sweep`` is ``overhead.sweep(...)``.  ``measured`` maps (M, N) to a
    measured storage ratio (bit-packed zoo members), drawn as crosses on the
    storage panel.  ``paper`` maps a label to (M, N, time, storage), the
    paper's quoted values, drawn as open diamonds and labelled as the paper's.
    """
    fig = Figure(figsize=(10.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    n_max = sweep["time"].shape[0] - 1
    colours = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    w, a = sweep["lp"]
    for ax, key in zip(axes, ("time", "storage")):
        for m in range(n_max + 1):
            ns = np.arange(n_max + 1)
            ax.plot(ns, sweep[key][m], "o-", color=colours[m % len(colours)], label=f"M = {m} FP")
        if paper:
            for label, (_, n, t, s) in paper.items():
                ax.plot(n, t if key == "time" else s, "D", mfc="none", mec="black", ms=9,
                        label=f"paper: {label}")
        if key == "storage" and measured:
            pts = np.array([(n, v) for (m, n), v in measured.items()])
            ax.plot(pts[:, 0], pts[:, 1], "x", color="black", ms=8, mew=2, label="measured (bit-packed zoo)")
        ax.set_xticks(range(n_max + 1))
        ax.set_xlabel(f"N low-precision members (a{a}w{w})")
        ax.set_ylabel(f"{key} / one FP model")
        ax.set_title(f"Eq. 6: {'execution time' if key == 'time' else 'storage'}", fontsize=10)
        ax.grid(alpha=0.3)
    # one legend for both panels, outside them: inside it would hide the M = 3 line's start
    handles, labels = axes[1].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    fig.legend(seen.values(), seen.keys(), fontsize=8, loc="outside right center")
    return fig
