"""Chapter 10's full Table 2 (paper section 5.3): ours beside the paper's, gains over the baseline, warning signs."""
from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from ...attack import attacks
from ...core.tables import DASH
from ...studies.cards import one_answer
from .. import plots
from ..plots.defences import figure as draw_figure
from .committed import Root, counts
from .defence_rows import (
    DATASETS,
    adaptive,
    all_rows,
    defence_rows,
    label,
    lowest_linf,
    missing_notes,
    ours,
    paper_row,
    recipe_text,
    row_key,
    short_label,
)
from .table2 import COLUMNS, cells, gain

HEADERS = ["", "clean", "CW", "FGSM", "BIM", "PGD", "average", "images (n)",
           "worst-case suite, robust", "suite images"]


def table(dataset: str, root: Root = None) -> str:
    """The full Table 2 for ``dataset`` as Markdown: per row the paper's numbers, ours, their difference.

    Our line has the paper protocol's six columns and, in the last two, the
    worst-case suite's robust accuracy at Table 1's L-inf eps (adaptive
    protocol).  The paper's line shows there its lowest L-inf column (FGSM,
    BIM, PGD), so the difference line compares our worst case with the
    paper's own best estimate of robustness in the same ball.
    """
    rows = []
    for row in all_rows(dataset):
        o, a, p = ours(dataset, row, root), adaptive(dataset, row, root), paper_row(dataset, row)
        suite = None if a is None else a["robust"]
        rows.append({"": f"**{label(dataset, row)}**, ours", **cells(o), "n": counts(o["n"]),
                     "suite": plots.percent_cell(suite), "suite_n": DASH if a is None else f"{a['n']:,}"})
        if p is None:
            continue
        low = lowest_linf(p)
        rows.append({"": "*paper*", **cells(p), "n": "10,000", "suite": f"*{low:.2f}* (lowest L-inf column)",
                     "suite_n": ""})
        diff = None if suite is None else suite - low
        rows.append({"": "difference (ours \u2212 paper)", **cells(gain(o, p), True), "n": "",
                     "suite": plots.percent_cell(diff, True), "suite_n": ""})
    md = plots.markdown_table(rows, ["", *COLUMNS, "n", "suite", "suite_n"], HEADERS)
    return "\n\n".join([f"**{dataset}** (accuracy in %; suite: L-inf at Table 1's "
                        f"\u03b5 = {attacks.preset(dataset, 'pgd')['eps']:g})", md, *missing_notes(dataset, root)])


def gains(dataset: str, root: Root = None) -> list[dict]:
    """Each row's gain over the FP baseline under both protocols, in points (None where not measured).

    ``paper``: the paper's average gain; ``paper_protocol``: ours, average
    adversarial accuracy; ``adaptive``: the suite's robust accuracy; ``flags``:
    the suite's diagnostics still open, ``answered``: those its stronger
    evaluations answered; ``one_answer``: :func:`one_answer`.
    """
    base_o, base_a = ours(dataset, "baseline", root), adaptive(dataset, "baseline", root)
    base_p = paper_row(dataset, "baseline")
    out = []
    for row in all_rows(dataset)[1:]:
        o, a, p = ours(dataset, row, root), adaptive(dataset, row, root), paper_row(dataset, row)
        out.append({"row": row, "label": label(dataset, row),
                    "paper": None if p is None else p["average"] - base_p["average"],
                    "paper_protocol": gain(o, base_o)["average"],
                    "adaptive": None if a is None or base_a is None else a["robust"] - base_a["robust"],
                    "flags": None if a is None else a["flags"],
                    "answered": [] if a is None else a["answered"],
                    "one_answer": one_answer(dataset, row, root)})
    return out


def gains_table(dataset: str, root: Root = None) -> str:
    """:func:`gains` as Markdown: which gains over the baseline survive the worst-case suite."""
    rows = [{"row": g["label"], "recipe": recipe_text(dataset, g["row"]), "paper": plots.percent_cell(g["paper"], True),
             "ours": plots.percent_cell(g["paper_protocol"], True), "adaptive": plots.percent_cell(g["adaptive"], True),
             "verdict": survives(g), "flags": flag_cell(g)}
            for g in gains(dataset, root)]
    return plots.markdown_table(rows, ["row", "recipe", "paper", "ours", "adaptive", "verdict", "flags"],
                                ["row", "training recipe", "average gain, *paper*",
                                 "average gain, ours (paper protocol)", "robust gain, ours (worst-case suite)",
                                 "survives?", "suite's diagnostic flags"])


SURVIVES_POINTS = 1.0  # a robust gain below one point is within the noise of a 1,000-image evaluation


def survives(g: dict) -> str:
    """Does the row's robust gain over the baseline survive the worst-case suite?

    'yes' (at least one point), 'no', or 'not yet measured'.  A constant
    classifier (:func:`one_answer`) keeps its one class's images under any
    attack: it is no defence, so its row is 'invalid', never compared.  A gain
    the suite's diagnostics flag is 'unverified' until a stronger suite clears
    the flag (chapter 8): a flag the row's new stages and converged re-check
    answered no longer holds it back.
    """
    if g["adaptive"] is None:
        return "not yet measured"
    if (g.get("one_answer") or {}).get("constant"):
        return "invalid: a constant classifier, not a defence"
    if g["adaptive"] < SURVIVES_POINTS:
        return "no"
    if g.get("flags"):
        return f"unverified (flagged: {'; '.join(g['flags'])})"
    return "yes (its flag answered by the stronger suite)" if g.get("answered") else "yes"


def flag_cell(g: dict) -> str:
    """A row's diagnostic flags as a table cell: the open ones, then those answered, marked so."""
    if g["flags"] is None:
        return DASH
    cells = [*g["flags"], *(f"{f} (answered: new stages, converged re-check)" for f in g.get("answered", []))]
    return "; ".join(cells) or "none"


SIGN_GAP = 20.0  # points: a gap this large between two estimates of the same robustness is no noise


FGSM_TRAINED = ("fgsm-at", "empir-fgsm-at")


ITERATIVE_SLACK = 1.0  # points: BIM or PGD above FGSM by more than this is no sampling noise on 10,000 images


def training_warning_signs(dataset: str, keys: Sequence[str] = FGSM_TRAINED, root: Root = None) -> list[str]:
    """For each row of the given paper row keys measured so far: the known signs of a false robustness.

    * label leaking (Kurakin et al. 2017): accuracy under FGSM above the clean accuracy;
    * the one-step attack failing where the iterative ones succeed (catastrophic
      overfitting, Wong et al. 2020, or gradient masking): FGSM at least
      ``SIGN_GAP`` points above the lower of BIM and PGD at the same eps;
    * an iterative attack (BIM, PGD) leaving more than ``ITERATIVE_SLACK``
      points above one FGSM step in the same ball: it cannot be stronger, so it is stuck;
    * the paper protocol far from the worst case: its lowest L-inf column at
      least ``SIGN_GAP`` points above the worst-case suite's robust accuracy
      in the same ball.

    Each line gives the numbers it judges by.
    """
    lines = []
    for row in defence_rows(dataset):
        if row_key(row) not in keys:
            continue
        o, a = ours(dataset, row, root), adaptive(dataset, row, root)
        head = f"{dataset}, {label(dataset, row)}:"
        if o["fgsm"] is None or o["clean"] is None:
            lines.append(f"{head} not yet measured.")
            continue
        parts = [f"clean {o['clean']:.2f}%, FGSM {o['fgsm']:.2f}%"]
        if o["fgsm"] > o["clean"]:
            parts.append("FGSM above clean: label leaking's signature")
        iterative = [o[k] for k in ("bim", "pgd") if o[k] is not None]
        if iterative:
            low = min(iterative)
            parts.append(f"lowest of BIM and PGD {low:.2f}%")
            if o["fgsm"] - low >= SIGN_GAP:
                parts.append("the one-step attack fails where the iterative one succeeds: the signature of "
                             "catastrophic overfitting or gradient masking")
            if max(iterative) - o["fgsm"] > ITERATIVE_SLACK:
                parts.append("an iterative attack leaves more images than one FGSM step: it is stuck, a sign "
                             "of gradient masking")
        if a is not None:
            parts.append(f"worst-case suite {a['robust']:.2f}%")
            low = lowest_linf(o)
            if low is not None and low - a["robust"] >= SIGN_GAP:
                parts.append(f"the paper protocol's best L-inf attack leaves {low - a['robust']:.2f} points more "
                             "than the suite: its attacks were fooled")
        lines.append(f"{head} " + "; ".join(parts) + ".")
    return lines


def figure_panels(datasets: Sequence[str] = DATASETS, root: Root = None) -> list[dict]:
    """Per dataset, per row: (the paper's average, ours (paper protocol), the suite's robust), and tick labels."""
    panels = []
    for ds in datasets:
        values = []
        for row in all_rows(ds):
            p, a = paper_row(ds, row), adaptive(ds, row, root)
            values.append((None if p is None else p["average"], ours(ds, row, root)["average"],
                           None if a is None else a["robust"]))
        panels.append({"dataset": ds, "labels": [short_label(ds, r) for r in all_rows(ds)], "values": values})
    return panels


def figure(datasets: Sequence[str] = DATASETS, root: Root = None) -> Figure:
    """Chapter 10's figure (:func:`empir_lib.book.plots.defences.figure`) from the committed results."""
    return draw_figure(figure_panels(datasets, root))
