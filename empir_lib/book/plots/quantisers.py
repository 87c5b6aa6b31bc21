"""Figures of the DoReFa quantisers (paper Eq. 5): transfer curves, the straight-through gradient,
weight histograms, and images as a low-precision member sees them (chapters 3 and 4).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from ...core.errors import FULL_PRECISION, EmpirError
from ...nets import quantize
from .style import bits_colour, book_figure


@book_figure
def quantizer_transfer(kind: str = "activations", bits: Sequence[int] = (1, 2, 4), lo: float | None = None,
                       hi: float | None = None,
                       n: int = 2001) -> Figure:
    """Transfer curves of the DoReFa quantisers of paper Eq. 5, one line per k.

    ``kind='activations'`` plots ``a_k = quantize_k(clip(a, 0, 1))`` over
    [-0.5, 1.5], so the clip is visible; ``kind='weights'`` plots
    ``w_k = 2 quantize_k(tanh(w) / (2 max|tanh w|) + 1/2) - 1`` over [-3, 3].
    The weight rule divides by the largest |tanh w| of the whole tensor, so the
    curve depends on the range plotted: here that tensor is the plotted range
    itself, as if a layer's weights spanned [lo, hi].
    """
    if kind not in ("activations", "weights"):
        raise EmpirError(f"unknown kind {kind!r}; choose 'activations' or 'weights'.")
    if kind == "activations":
        lo, hi = (-0.5 if lo is None else lo), (1.5 if hi is None else hi)
        fn = quantize.quantize_activations
    else:
        lo, hi = (-3.0 if lo is None else lo), (3.0 if hi is None else hi)
        fn = quantize.quantize_weights
    x = np.linspace(lo, hi, n, dtype=np.float32)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    if kind == "activations":
        ax.plot(x, np.clip(x, 0, 1), color="black", lw=1, ls="--", label="clip(a, 0, 1)")
    else:
        t = np.tanh(x)
        ax.plot(x, t / np.abs(t).max(), color="black", lw=1, ls="--", label="tanh(w) / max|tanh w|")
    for k in bits:
        ax.plot(x, np.asarray(fn(x, k)), color=bits_colour(k), lw=1.8, label=f"k = {k}")
    sym = "a" if kind == "activations" else "w"
    ax.set_xlabel(f"input {sym}")
    ax.set_ylabel(f"quantised {sym}$_k$")
    ax.set_title(f"DoReFa {kind} quantiser (Eq. 5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


@book_figure
def forward_and_gradient(x: ArrayLike, y: ArrayLike, grad: ArrayLike, bits: int) -> Figure:
    """The forward pass of a quantiser beside the gradient the STE lets through.

    ``y`` and ``grad`` are computed by the caller (a ``tf.GradientTape`` over
    ``quantize_activations``): this function only draws them, so the figure
    shows what TensorFlow really returned.
    """
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(x, y, color=bits_colour(bits), lw=1.8)
    ax1.set_title(f"forward: a$_{{{bits}}}$ = quantize$_{{{bits}}}$(clip(a, 0, 1))")
    ax2.plot(x, grad, color="black", lw=1.8)
    ax2.set_title("backward: d a$_k$ / d a (straight-through)")
    ax2.set_ylim(-0.1, 1.2)
    for ax in (ax1, ax2):
        ax.set_xlabel("a")
        ax.grid(alpha=0.3)
    return fig


@book_figure
def weight_histograms(kernel: ArrayLike, wbits: int, title: str = "") -> Figure:
    """Histogram of a layer's full-precision weights and of the same weights after Eq. 5.

    The right panel is a bar per quantisation level: the k-bit rule maps the
    whole tensor onto 2^k values in [-1, 1], with no zero level.
    """
    w = np.asarray(kernel, dtype=np.float32)
    wq = np.asarray(quantize.quantize_weights(w, wbits)).ravel()
    lv = quantize.levels(wbits, "weights")
    counts = np.array([np.sum(np.isclose(wq, v, atol=1e-6)) for v in lv])
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.hist(w.ravel(), bins=80, color="tab:gray")
    ax1.set_title("stored (full-precision) weights")
    ax1.set_xlabel("w")
    ax1.set_ylabel("count")
    width = 0.8 * (lv[1] - lv[0]) if len(lv) > 1 else 0.5
    bars = ax2.bar(lv, counts, width=width, color=bits_colour(wbits))
    # a level with a handful of weights is invisible as a bar: print the counts
    ax2.bar_label(bars, [str(c) for c in counts], fontsize=7)
    ax2.set_xticks(lv, [f"{v:+.2f}" for v in lv], fontsize=8, rotation=45 if len(lv) > 4 else 0)
    ax2.set_title(f"after {wbits}-bit DoReFa quantisation")
    ax2.set_xlabel("w$_k$")
    if title:
        fig.suptitle(title)
    return fig


@book_figure
def quantised_images(images: ArrayLike, bits: Sequence[int] = (FULL_PRECISION, 4, 2, 1),
                     labels: Sequence | None = None) -> Figure:
    """Images as a low-precision member's first layer sees them (the original code,
    appendix section 2, book/appendix_original_code.ipynb).

    A LP MNIST/CIFAR member quantises its conv1 *input*, the image itself, to
    2^abits levels with ``quantize_activations``.  Rows are images, columns
    are precisions (32 = the untouched image).
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    fig = Figure(figsize=(1.6 * len(bits), 1.7 * len(x)), layout="constrained")
    axes = np.asarray(fig.subplots(len(x), len(bits), squeeze=False))
    for i, img in enumerate(x):
        for j, b in enumerate(bits):
            q = np.asarray(quantize.quantize_activations(img, b))
            ax = axes[i, j]
            ax.imshow(q.squeeze(), cmap="gray" if q.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if b == FULL_PRECISION else f"a{b}: {2 ** b} levels", fontsize=9)
            if j == 0 and labels is not None:
                ax.set_ylabel(str(labels[i]))
    return fig
