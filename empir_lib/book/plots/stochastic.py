"""Chapter 11's figures for the stochastic ensemble: the robust expected accuracy against S and N, and the
lottery of the "any of Q queries" rule (data from :mod:`empir_lib.book.chapters.stochastic`)."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .style import book_figure


def _empty(ax) -> None:
    ax.text(0.5, 0.5, "not measured yet", ha="center", va="center", transform=ax.transAxes)


@book_figure
def convergence_curve(conv: dict | None) -> Figure:
    """Robust expected accuracy (%) against S, one line per N, with 95% intervals; the setting chosen circled."""
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    if conv is None:
        _empty(ax)
        return fig
    # One line per N; or, for a run that doubled S and N together, one line with N written at each point.
    groups = ([("S and N doubled together", conv["points"])] if conv.get("together") else
              [(f"N = {n} iterations", [p for p in conv["points"] if p["n_iter"] == n])
               for n in sorted({p["n_iter"] for p in conv["points"]})])
    for k, (label, pts) in enumerate(groups):
        pts = sorted(pts, key=lambda p: p["samples"])
        s = np.array([p["samples"] for p in pts])
        v = np.array([p["value"] for p in pts])
        err = [v - np.array([p["lo"] for p in pts]), np.array([p["hi"] for p in pts]) - v]
        ax.errorbar(s * (1 + 0.04 * k), v, yerr=err, marker="os"[k % 2], capsize=3, color=f"C{k}", label=label)
        if conv.get("together"):
            for p in pts:
                ax.annotate(f"N = {p['n_iter']}", (p["samples"], p["value"]), textcoords="offset points",
                            xytext=(6, 6), fontsize=7)
    c = conv["chosen"]
    at = next(p for p in conv["points"] if (p["samples"], p["n_iter"]) == (c["samples"], c["n_iter"]))
    ax.plot([at["samples"]], [at["value"]], "o", ms=13, mfc="none", mec="black",
            label=f"{'converged' if c['converged'] else 'largest measured'}: S = {c['samples']}, N = {c['n_iter']}")
    ax.axhline(conv["clean"]["value"], color="gray", ls=":", lw=1, label="clean expected accuracy")
    s_all = sorted({p["samples"] for p in conv["points"]})
    ax.set_xscale("log", base=2)
    ax.set_xticks(s_all, [str(v) for v in s_all])
    ax.set_xlabel("S, EOT samples per gradient")
    ax.set_ylabel("robust expected accuracy, %")
    ax.set_title(conv.get("title") or f"EOT APGD-CE, {conv['n']} images, R = {conv['draws']} draws per point",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


@book_figure
def lottery_curve(lot: dict | None) -> Figure:
    """The share (%) of images right on all of Q queries against Q, at the attack's points and at the clean
    images (the control), beside the two expected accuracies, which do not depend on Q."""
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    if lot is None:
        _empty(ax)
        return fig
    q = lot["queries"]
    ax.plot(q, lot["control"], "o-", color="tab:gray", label="any-query rule, clean images (noise-only control)")
    ax.plot(q, lot["attack"], "s-", color="tab:red", label="any-query rule, at the attack's points")
    ax.axhline(lot["expected_clean"], color="tab:gray", ls="--", lw=1, label="expected accuracy, clean")
    ax.axhline(lot["expected_attack"], color="tab:red", ls="--", lw=1, label="expected accuracy, attacked")
    ax.set_xscale("log")
    ax.set_xticks(q, [str(v) for v in q])
    ax.set_xlabel("Q, queries of the deployed defence per image")
    ax.set_ylabel("images, %")
    ax.set_ylim(-3, 103)
    ax.set_title(f"{lot['n']} images", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig
