"""Chapter 11's figures, part 1: accuracy against eps per precision and quantised codes flipped against eps
(data from :mod:`empir_lib.book.chapters.beyond`; the stochastic ensemble's figures are in ``stochastic``).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .style import bits_colour, book_figure

# Line style per weight bits, colour per activation bits: a precision reads the same in every panel.
_WEIGHT_STYLE = {1: ":", 2: "--", 4: "-."}


def _style(label: str) -> dict:
    """'FP' in thick black; 'a<k>w<m>' coloured by abits, dashed by wbits; others by their leading bits."""
    if label == "FP":
        return {"color": "black", "lw": 2.2, "ls": "-"}
    if label.startswith("a") and "w" in label:
        a, w = (int(v) for v in label[1:].split("w"))
        return {"color": bits_colour(a), "ls": _WEIGHT_STYLE.get(w, "-"), "lw": 1.4}
    if "min(" in label:  # a formula: dashed, no markers
        bits = int(label.split("-")[0])
        return {"color": bits_colour(bits), "ls": "--", "lw": 1.0, "marker": ""}
    digits = "".join(ch for ch in label.split("=")[-1].split("-")[0] if ch.isdigit())
    return {"color": bits_colour(int(digits)) if digits else None, "lw": 1.6}


_MARKERS = ("o", "s", "^", "D", "v")


def _panels(panels: dict, ylabel: str, ylim: tuple | None) -> Figure:
    fig = Figure(figsize=(4.4 * len(panels), 3.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (title, p) in zip(axes, panels.items()):
        seen: dict = {}
        for label, ys in p["series"].items():
            style = {"marker": "o", "ms": 3, **_style(label)}
            if style["marker"]:  # measured lines of one colour (a network's layers) get their own markers
                k = seen[style["color"]] = seen.get(style["color"], -1) + 1
                style["marker"] = _MARKERS[k % len(_MARKERS)]
            ax.plot(p["x"], ys, label=label, **style)
        if not p["series"]:
            ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("eps (L-inf, [0, 1] pixels)")
        ax.grid(alpha=0.3)
        if ylim:
            ax.set_ylim(*ylim)
    axes[0].set_ylabel(ylabel)
    handles, labels = [], []
    for ax in axes:  # one legend for every panel's lines
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
    return fig


@book_figure
def precision_sweeps(panels: dict, attack: str) -> Figure:
    """Accuracy against eps per precision: white-box and transferred from the FP member (one panel each)."""
    titled = {f"{attack.upper()}, {mode}": p for mode, p in panels.items()}
    return _panels(titled, "accuracy, %", (-3, 103))


@book_figure
def flip_curves(panels: dict) -> Figure:
    """The share of quantised codes a perturbation of size eps changes, per panel of :func:`flip_panels`."""
    return _panels(panels, "codes changed, %", (-3, 103))
