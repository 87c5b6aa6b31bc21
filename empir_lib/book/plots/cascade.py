"""Figures of the worst-case suite: which attack broke which images, robust accuracy against the budget, its cost.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .style import book_figure

# The first stage of the cascade is the clean prediction; robust images come last.
STAGE_COLOURS = {"clean": "tab:gray", "apgd-ce": "tab:blue", "apgd-dlr": "tab:cyan", "apgd-ce-sum": "tab:purple",
                 "pgd-margin": "tab:olive", "transfer-fp": "tab:brown", "square": "tab:pink", "cw-l2": "tab:red",
                 "robust": "tab:green"}
# For the stages without a colour of their own (member-<i>, ...), in order: none of them is in STAGE_COLOURS.
SPARE_COLOURS = ("tab:orange", "gold", "teal", "navy", "orchid", "darkkhaki", "lightcoral", "black")


def stage_colours(stages: list[str]) -> dict[str, str]:
    """A distinct colour per stage: its own where it has one, else the next spare one (cycling)."""
    spare = iter([c for _ in range(len(stages)) for c in SPARE_COLOURS])
    return {s: STAGE_COLOURS[s] if s in STAGE_COLOURS else next(spare) for s in stages}


@book_figure
def cascade_bars(rows: dict[str, dict], title: str = "") -> Figure:
    """One horizontal bar per evaluation, split by the stage that first broke each image.

    ``rows`` maps a label (e.g. ``'EMPIR, L-inf 0.3'``) to the per-stage counts
    of a suite results file (its ``broken_by``: ``{'clean': k, 'apgd-ce': k,
    ..., 'robust': k}``).  Shares are of all n images; the green tail is the
    robust accuracy.  Stages that broke nothing in any row are left out of
    the legend.
    """
    labels = list(rows)
    stages: list[str] = []
    for counts in rows.values():
        stages += [s for s in counts if s not in stages]
    stages = [s for s in stages if s != "robust"] + ["robust"]
    fig = Figure(figsize=(8.5, 0.7 * len(labels) + 1.6), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(labels))
    colours = stage_colours(stages)
    for s in stages:
        share = np.array([100 * rows[r].get(s, 0) / max(sum(rows[r].values()), 1) for r in labels])
        colour = colours[s]
        ax.barh(labels, share, left=left, color=colour, label=s if share.any() else None)
        for i, v in enumerate(share):
            if v >= 4:
                ax.text(left[i] + v / 2, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white")
        left += share
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("share of test images (%), by the stage that first broke them")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(labels) < 4 else -0.12), ncol=5, fontsize=8,
              frameon=False)
    if title:
        ax.set_title(title)
    return fig


@book_figure
def robust_vs_budget(curves: dict[str, np.ndarray], budgets: Sequence[float] = (), xlabel: str = "L2 budget",
                     xmax: float | None = None) -> Figure:
    """Robust accuracy against the perturbation budget, from each image's minimal adversarial norm.

    ``curves`` maps a label to per-image minimal norms (0 for an image
    misclassified before any attack, ``inf`` where the attack found
    nothing).  Robust accuracy at budget ``b`` is the share of images whose
    minimal norm exceeds ``b``; dashed lines mark the ``budgets`` a results
    table reports.
    """
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    finite = [d[np.isfinite(d)] for d in curves.values()]
    top = xmax or max([float(f.max()) for f in finite if len(f)] + [1.0]) * 1.05
    grid = np.linspace(0, top, 400)
    for label, d in curves.items():
        d = np.asarray(d)
        ax.plot(grid, [100 * np.mean(d > b) for b in grid], label=f"{label} (n = {len(d)})")
    for b in budgets:
        ax.axvline(b, color="k", ls="--", lw=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("robust accuracy (%)")
    ax.legend(fontsize=8)
    return fig


@book_figure
def job_time_bars(times: dict[str, dict]) -> Figure:
    """Per dataset: the suite's job time on EMPIR (its FP-baseline jobs stacked after) beside the old adaptive jobs.

    ``times`` maps a dataset to :func:`empir_lib.studies.worstcase.job_times`' dict
    (seconds: ``suite_s``, ``baseline_s``, ``old_adaptive_s``).  The like-for-
    like comparison is the solid EMPIR bar against the old one: the old
    protocol had no baseline jobs.
    """
    labels = list(times)
    fig = Figure(figsize=(7.5, 0.9 * len(labels) + 1.4), layout="constrained")
    ax = fig.subplots()
    pos = np.arange(len(labels))
    suite_s = np.array([times[d]["suite_s"] for d in labels]) / 60
    base_s = np.array([times[d]["baseline_s"] for d in labels]) / 60
    old_s = np.array([times[d]["old_adaptive_s"] for d in labels]) / 60
    ax.barh(pos - 0.2, suite_s, 0.38, color="tab:blue", label="worst-case suite, EMPIR jobs")
    ax.barh(pos - 0.2, base_s, 0.38, left=suite_s, color="tab:blue", alpha=0.3, hatch="//",
            label="worst-case suite, FP-baseline jobs (no old counterpart)")
    ax.barh(pos + 0.2, old_s, 0.38, color="tab:gray", label="old adaptive selection and rows (EMPIR)")
    for i in range(len(labels)):
        ax.text(suite_s[i], pos[i] - 0.2, f" {suite_s[i]:.0f}", va="center", fontsize=8)
        ax.text(old_s[i], pos[i] + 0.2, f" {old_s[i]:.0f}", va="center", fontsize=8)
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    ax.set_xlabel("job time (minutes, from timing.json)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3 if len(labels) < 4 else -0.15), ncol=1, fontsize=8,
              frameon=False)
    return fig


def _step_label(step: str) -> str:
    """A tick label: the suite, its new stages, round r (``r<r>``: 2^r times the budget) or late stages."""
    if step[:1] == "r" and step[1:].isdigit():
        return f"{2 ** int(step[1:])}x"
    return {"suite": "suite", "stages": "+ new\nstages", "late": "+ late\nstages"}[step]


def _step_order(curves: dict[str, dict]) -> list[str]:
    """The x axis: the suite, new stages, every round up to the last any row ran, then late stages if any ran."""
    seen = {s for c in curves.values() for s in c["steps"]}
    last = max((int(s[1:]) for s in seen if s[:1] == "r" and s[1:].isdigit()), default=0)
    return ["suite", "stages", *(f"r{r}" for r in range(1, last + 1)), *(["late"] if "late" in seen else [])]


_MARKERS = "o^vD"  # a row's marker, by its place in the colour cycle (squares mark late stages)


@book_figure
def settling_lines(curves: dict[str, dict]) -> Figure:
    """Each suite row's robust images after the suite, its new stages, each re-check round (2^r x budget) and
    late stages (run after a converged round).

    ``curves`` maps a label to ``steps`` (``suite``, ``stages``, ``r<r>``,
    ``late``, in that order), ``share`` (% of what the suite alone left),
    ``robust`` (images) and ``converged``.  A solid line stopped moving; a
    dashed one did not (or was never re-checked), so its last point is an
    upper bound.  Late stages are a square, joined to the last round by a
    dotted jump.
    """
    order = _step_order(curves)
    fig = Figure(figsize=(7.5, 5.6), layout="constrained")
    ax = fig.subplots()
    for i, (label, c) in enumerate(curves.items()):
        x = [order.index(s) for s in c["steps"]]
        done = c["converged"] is True
        # Late stages ran after the last round, not at the rounds between: a dotted jump, not a line through them.
        k = len(x) - 1 if c["steps"][-1] == "late" else len(x)
        # The colour cycle has ten colours: past ten rows the marker changes, so no two rows look alike.
        line, = ax.plot(x[:k], c["share"][:k], marker=_MARKERS[i // 10 % len(_MARKERS)], ls="-" if done else "--",
                        label=f"{label}: {c['robust'][0]} -> {c['robust'][-1]}"
                        + {True: "", False: " (still moving)", None: " (not re-checked)"}[c["converged"]])
        if k < len(x):
            ax.plot(x[k - 1:], c["share"][k - 1:], ls=":", color=line.get_color())
            ax.plot(x[-1:], c["share"][-1:], marker="s", ls="", color=line.get_color())
        ax.annotate(f"{c['robust'][-1]}", (x[-1], c["share"][-1]), xytext=(4, 0), textcoords="offset points",
                    fontsize=8, color=line.get_color(), va="center")
    ax.set_xticks(range(len(order)), [_step_label(s) for s in order])
    ax.set_xlim(-0.3, len(order) - 0.5)
    ax.set_ylim(0, 105)
    ax.set_xlabel("evaluation (round $r$: $2^r$ times the suite's budget, a new seed)")
    ax.set_ylabel("robust images, % of the suite's")
    # Below the axes: inside, a dozen rows' legend hid the lines that fall furthest.
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    return fig
