"""Adversarial examples and their perturbations, image by image (chapter 2).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from .style import book_figure, show_image


@book_figure
def adversarial_examples(x: ArrayLike, adversarial: dict, clean_pred: ArrayLike, adv_pred: dict,
                         labels: ArrayLike | None = None) -> Figure:
    """Clean images (top row) and their adversarial versions, one row per attack.

    ``adversarial`` and ``adv_pred`` map an attack name to the adversarial
    images and the model's predictions on them; each image is titled with the
    prediction, in red where it differs from the true label (``labels``) or,
    without labels, from the clean prediction.
    """
    x = np.asarray(x)
    truth = np.asarray(labels if labels is not None else clean_pred)
    rows = [("clean", x, np.asarray(clean_pred))] + [(a, np.asarray(adversarial[a]), np.asarray(adv_pred[a]))
                                                     for a in adversarial]
    fig = Figure(figsize=(1.3 * len(x) + 0.6, 1.45 * len(rows)), layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), len(x), squeeze=False))
    for i, (name, imgs, pred) in enumerate(rows):
        for j in range(len(x)):
            ax = axes[i, j]
            show_image(ax, imgs[j], vmin=0, vmax=1)
            ax.set_title(f"pred {pred[j]}", fontsize=8, color="black" if pred[j] == truth[j] else "tab:red")
            if j == 0:
                ax.set_ylabel(name.upper() if name != "clean" else "clean", fontsize=9)
    return fig


@book_figure
def perturbations(x: ArrayLike, adversarial: dict) -> Figure:
    """The perturbations x_adv - x, one row per attack, on a symmetric red-blue scale.

    Each row has its own scale, +-max|delta| of that attack, shown on its
    colour bar: the L-inf attacks fill +-eps, CW's L2 perturbation is
    concentrated on a few pixels.
    """
    x = np.asarray(x)
    names = list(adversarial)
    fig = Figure(figsize=(1.3 * len(x) + 1.2, 1.4 * len(names)), layout="constrained")
    axes = np.asarray(fig.subplots(len(names), len(x), squeeze=False))
    for i, name in enumerate(names):
        delta = np.asarray(adversarial[name]) - x
        lim = float(np.abs(delta).max()) or 1.0
        for j in range(len(x)):
            d = delta[j].mean(-1) if delta.shape[-1] == 3 else delta[j]
            show_image(axes[i, j], d, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[i, 0].set_ylabel(name.upper(), fontsize=9)
        fig.colorbar(axes[i, -1].images[0], ax=axes[i, :].tolist(), shrink=0.9, aspect=8)
    return fig
