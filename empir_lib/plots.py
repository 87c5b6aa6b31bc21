"""Figures for the chapters: small functions, each returning one figure.

Every figure function returns a :class:`matplotlib.figure.Figure` and never
calls ``plt.show()``: a notebook displays the returned figure, a script can
``fig.savefig(...)`` it, and tests can inspect it.  Numbers are computed by
the library modules (``quantize``, ``zoo``, ...), never here; this module
only draws.  Figures are created with :class:`matplotlib.figure.Figure`
directly, not through ``pyplot``, so building many of them leaks no global
state.  Every annotated grid (precision grids, member counts, overheads,
confusion matrices) is drawn by one function, :func:`heatmap`.  Markdown
tables are :mod:`empir_lib.tables`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch
from numpy.typing import ArrayLike

from . import quantize
from .errors import FULL_PRECISION, EmpirError
from .tables import DASH, markdown_table, missing_line, percent_cell

# The table helpers, under the names the chapters import them from here.
__all__ = ["DASH", "markdown_table", "missing_line", "percent_cell"]

BITS_COLOURS = {1: "tab:red", 2: "tab:orange", 3: "tab:olive", 4: "tab:green", 8: "tab:blue"}


def _colour(bits: int) -> str:
    return BITS_COLOURS.get(bits, "tab:gray")


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
        ax.plot(x, np.asarray(fn(x, k)), color=_colour(k), lw=1.8, label=f"k = {k}")
    sym = "a" if kind == "activations" else "w"
    ax.set_xlabel(f"input {sym}")
    ax.set_ylabel(f"quantised {sym}$_k$")
    ax.set_title(f"DoReFa {kind} quantiser (Eq. 5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def forward_and_gradient(x: ArrayLike, y: ArrayLike, grad: ArrayLike, bits: int) -> Figure:
    """The forward pass of a quantiser beside the gradient the STE lets through.

    ``y`` and ``grad`` are computed by the caller (a ``tf.GradientTape`` over
    ``quantize_activations``): this function only draws them, so the figure
    shows what TensorFlow really returned.
    """
    fig = Figure(figsize=(8, 3), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(x, y, color=_colour(bits), lw=1.8)
    ax1.set_title(f"forward: a$_{{{bits}}}$ = quantize$_{{{bits}}}$(clip(a, 0, 1))")
    ax2.plot(x, grad, color="black", lw=1.8)
    ax2.set_title("backward: d a$_k$ / d a (straight-through)")
    ax2.set_ylim(-0.1, 1.2)
    for ax in (ax1, ax2):
        ax.set_xlabel("a")
        ax.grid(alpha=0.3)
    return fig


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
    bars = ax2.bar(lv, counts, width=width, color=_colour(wbits))
    # a level with a handful of weights is invisible as a bar: print the counts
    ax2.bar_label(bars, [str(c) for c in counts], fontsize=7)
    ax2.set_xticks(lv, [f"{v:+.2f}" for v in lv], fontsize=8, rotation=45 if len(lv) > 4 else 0)
    ax2.set_title(f"after {wbits}-bit DoReFa quantisation")
    ax2.set_xlabel("w$_k$")
    if title:
        fig.suptitle(title)
    return fig


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


def _in_percent(values: dict, rows: Sequence, cols: Sequence) -> np.ndarray:
    """``{(row, col): fraction}`` as an array in %, NaN where a cell is absent."""
    arr = np.full((len(rows), len(cols)), np.nan)
    for (r, c), v in values.items():
        if r in rows and c in cols and v is not None:
            arr[rows.index(r), cols.index(c)] = 100 * v
    return arr


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
    im = heatmap(ax, _in_percent(acc, bits, bits), bits, bits, fontsize=9)
    ax.set_xlabel("weight bits (wbits)")
    ax.set_ylabel("activation bits (abits)")
    fp_text = f"FP member {100 * fp:.1f}%" if fp is not None else "no FP member"
    ax.set_title(f"{dataset}: clean accuracy, % ({fp_text})", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


# --- chapter 2: adversarial examples -------------------------------------------------------


def _image(ax: Axes, img: ArrayLike, **kw: object) -> None:
    img = np.asarray(img).squeeze()
    ax.imshow(img, cmap=kw.pop("cmap", "gray" if img.ndim == 2 else None), **kw)
    ax.set_xticks([])
    ax.set_yticks([])


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
            _image(ax, imgs[j], vmin=0, vmax=1)
            ax.set_title(f"pred {pred[j]}", fontsize=8, color="black" if pred[j] == truth[j] else "tab:red")
            if j == 0:
                ax.set_ylabel(name.upper() if name != "clean" else "clean", fontsize=9)
    return fig


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
            _image(axes[i, j], d, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[i, 0].set_ylabel(name.upper(), fontsize=9)
        fig.colorbar(axes[i, -1].images[0], ax=axes[i, :].tolist(), shrink=0.9, aspect=8)
    return fig


# --- chapter 6: hardware overheads (Eq. 6) ------------------------------------------------------


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


# --- chapters 4 and 5: low-precision members and ensembling (Figures 1, 3 and 4) -------------


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
        im = heatmap(ax, _in_percent(by_cell, list(bits), list(bits)), list(bits), list(bits), title)
        fig.colorbar(im, ax=ax, shrink=0.8, label="%")
        ax.set_xlabel("weight bits (wbits)")
        ax.set_ylabel("activation bits (abits)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


TRADEOFF_STYLE = {"lp": dict(marker="o", color="tab:blue", label="individual low-precision member"),
                  "fp": dict(marker="s", color="black", label="full-precision member (baseline)"),
                  "empir": dict(marker="D", color="tab:red", label="EMPIR ensemble", s=70)}


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
        im = heatmap(ax, _in_percent(values, list(counts), list(counts)), list(counts), list(counts), title,
                     notes=(notes or {}).get(title))
        fig.colorbar(im, ax=ax, shrink=0.8, label="%")
        ax.set_xlabel("low-precision members (N)")
        ax.set_ylabel("full-precision members (M)")
    return fig


# --- chapters 7 and 8: the result tables, Figure 5 and the two protocols ---------------------


TABLE2_COLUMNS = ("clean", "cw", "fgsm", "bim", "pgd", "average")
ROW_COLOURS = {"baseline": "tab:gray", "empir-paper": "tab:red", "empir-adaptive": "tab:blue"}


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


# --- chapter 9: ImageNet scale ------------------------------------------------------------------


def overhead_bars(panels: dict, reference: float | None = None, reference_label: str = "") -> Figure:
    """Ensemble overheads as grouped bars, one panel per quantity (e.g. storage, time).

    ``panels`` maps a panel title to ``{ensemble label: {estimate label: value}}``,
    values in multiples of one FP model (computed by :mod:`empir_lib.overhead`).
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
