"""Table 2 for a chapter: our rows beside the paper's, their differences and the gains.

``results.table2`` reads our three rows (baseline, EMPIR under the paper
protocol, EMPIR under the adaptive protocol) from the committed files;
``results.paper_table2`` holds the paper's.  The functions here lay them out;
every cell is in %, a dash where a file is missing.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ...core import tables
from ...studies import evaluate, paper_labels, results
from .. import plots
from .committed import Root, counts, missing_note, table2_missing

COLUMNS = ("clean", "cw", "fgsm", "bim", "pgd", "average")
HEADERS = ["", "clean", "CW", "FGSM", "BIM", "PGD", "average", "images (n)"]
# How a dataset is named in a sentence or a label.
LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "tiny-imagenet": "Tiny ImageNet", "imagenet": "ImageNet"}
BASE, PAPER_ROW, ADAPTIVE = results.ROWS  # "baseline (FP)", "EMPIR, paper protocol", "EMPIR, adaptive protocol"


def gain(row: dict, base: dict) -> dict:
    """``row - base`` column by column (None where either is missing)."""
    return {c: None if row[c] is None or base[c] is None else row[c] - base[c] for c in COLUMNS}


def cells(values: dict, signed: bool = False) -> dict:
    """The six Table 2 columns as table cells in %."""
    return {c: plots.percent_cell(values[c], signed) for c in COLUMNS}


def _table(rows) -> str:
    return plots.markdown_table(rows, ["", *COLUMNS, "n"], HEADERS)


def _with_note(dataset, table, root) -> str:
    note = missing_note(dataset, table2_missing(dataset, root))
    return "\n\n".join(p for p in (f"**{dataset}** (accuracy in %)", table, note) if p)


def comparison(dataset: str, root: Root = None) -> str:
    """Our rows, the paper's, and the differences (chapter 7), as Markdown."""
    ours, paper = results.table2(dataset, root), results.paper_table2(dataset)
    rows = []
    for row, key in ((BASE, "baseline"), (PAPER_ROW, "empir"), (ADAPTIVE, None)):
        o = ours[row]
        rows.append({"": f"**{row}**, ours", **cells(o), "n": counts(o["n"])})
        if key is None:
            continue  # the paper has no adaptive row
        p = paper[key]
        rows.append({"": f"{row.split(',')[0]}, *paper*", **cells(p), "n": "10,000"})
        rows.append({"": "difference (ours \u2212 paper)", "n": "", **cells(gain(o, p), True)})
    return _with_note(dataset, _table(rows), root)


def protocols(dataset: str, root: Root = None) -> str:
    """Our three rows, the drop from the paper protocol to the adaptive one, and the objectives used (chapter 8)."""
    t = results.table2(dataset, root)
    rows = [{"": f"**{row}**", **cells(t[row]), "n": counts(t[row]["n"])} for row in results.ROWS]
    drop = gain(t[PAPER_ROW], t[ADAPTIVE])
    rows.append({"": "drop, paper \u2212 adaptive protocol", **cells(drop, True), "clean": "", "n": ""})
    present = set(results.names(dataset, "table2/", root))
    used = {a: f"`{results.load(dataset, f'table2/empir-adaptive-{a}', root)['objective']}`"
            if f"table2/empir-adaptive-{a}" in present else tables.DASH for a in results.ATTACK_COLUMNS}
    rows.append({"": "adaptive objective used", "clean": "", "average": "", "n": "", **used})
    return _with_note(dataset, _table(rows), root)


def beside_paper(dataset: str, paper_dataset: str, root: Root = None) -> str:
    """The paper's rows for ``paper_dataset`` and its gain, then ours and our gains (chapter 9)."""
    ours, paper = results.table2(dataset, root), results.paper_table2(paper_dataset)
    where = f"paper ({LABELS.get(paper_dataset, paper_dataset)})"
    rows = [{"": f"baseline (FP), *{where}*", **cells(paper["baseline"]), "n": "50,000"},
            {"": f"EMPIR, *{where}*", **cells(paper["empir"]), "n": "50,000"},
            {"": "*paper's* gain, EMPIR \u2212 baseline", **cells(gain(paper["empir"], paper["baseline"]), True),
             "n": ""}]
    for row in results.ROWS:
        label = f"**{row}**, ours ({LABELS.get(dataset, dataset)})"
        rows.append({"": label, **cells(ours[row]), "n": counts(ours[row]["n"])})
        if row != BASE:
            rows.append({"": f"our gain, {row.split(', ')[1]} \u2212 baseline",
                         **cells(gain(ours[row], ours[BASE]), True), "n": ""})
    note = missing_note(dataset, table2_missing(dataset, root), f"{dataset} Table 2 results files")
    return "\n\n".join(p for p in (_table(rows), note) if p)


def bars(dataset: str, paper_dataset: str | None = None, root: Root = None) -> list[dict]:
    """The bars of one ``plots.table2_bars`` panel: the paper's rows (hatched) and our three."""
    ours, paper = results.table2(dataset, root), results.paper_table2(paper_dataset or dataset)
    where = "" if paper_dataset is None else f" ({LABELS.get(paper_dataset, paper_dataset)})"
    colours = plots.ROW_COLOURS
    return [
        {"label": f"baseline FP, paper{where}", "values": paper["baseline"], "colour": colours["baseline"],
         "paper": True},
        {"label": f"EMPIR, paper{where}", "values": paper["empir"], "colour": colours["empir-paper"], "paper": True},
        {"label": "baseline FP, ours", "values": ours[BASE], "colour": colours["baseline"]},
        {"label": "EMPIR, paper protocol, ours", "values": ours[PAPER_ROW], "colour": colours["empir-paper"]},
        {"label": "EMPIR, adaptive protocol, ours", "values": ours[ADAPTIVE], "colour": colours["empir-adaptive"]},
    ]


def versus(difference: float) -> str:
    """'9.15 points above' or '4.75 points below'."""
    return f"{abs(difference):.2f} points {'above' if difference >= 0 else 'below'}"


def gain_summary(dataset: str, paper_dataset: str | None = None, root: Root = None) -> str:
    """One sentence: EMPIR's average gain over the baseline under both protocols, beside the paper's.

    Until the paper-protocol averages exist, one line per attack column that is complete.
    """
    t = results.table2(dataset, root)
    paper = results.paper_table2(paper_dataset or dataset)
    paper_gain = paper["empir"]["average"] - paper["baseline"]["average"]
    base, emp, ada = (t[r]["average"] for r in results.ROWS)
    on = f" on {LABELS.get(paper_dataset, paper_dataset)}" if paper_dataset else ""
    if base is None or emp is None:
        lines = [f"{dataset}: the paper-protocol rows are not complete yet (empir reproduce {dataset}); "
                 f"the paper reports a gain of {paper_gain:+.2f} points{on}."]
        for c in results.ATTACK_COLUMNS:
            b, e, a = t[BASE][c], t[PAPER_ROW][c], t[ADAPTIVE][c]
            if b is not None and e is not None:
                lines.append(f"{c.upper()}: EMPIR {e - b:+.2f} points over the baseline under the paper protocol"
                             + ("" if a is None else f", {a - b:+.2f} under the adaptive protocol")
                             + f" (paper: {paper['empir'][c] - paper['baseline'][c]:+.2f}).")
        return "\n".join(lines)
    line = (f"{dataset}: EMPIR's average adversarial accuracy is {versus(emp - base)} the baseline's "
            f"under the paper protocol (the paper reports {paper_gain:+.2f} points{on})")
    if ada is not None:
        line += f", and {versus(ada - base)} under the adaptive protocol"
    worse = [c.upper() for c in results.ATTACK_COLUMNS if t[PAPER_ROW][c] is not None and t[BASE][c] is not None
             and t[PAPER_ROW][c] <= t[BASE][c]]
    return line + ".\n" + (f"Under the paper protocol EMPIR is not above the baseline under {', '.join(worse)}."
                            if worse else "Under the paper protocol EMPIR is above the baseline under every attack.")


def surviving_share(dataset: str, root: Root = None) -> str:
    """The three averages, and which share of the paper protocol's gain survives the adaptive one (chapter 8)."""
    t = results.table2(dataset, root)
    base, emp, ada = (t[r]["average"] for r in results.ROWS)
    if None in (base, emp, ada):
        return f"{dataset}: the three averages are not all available yet (empir reproduce {dataset})."
    line = (f"{dataset}: average adversarial accuracy {base:.2f} (baseline), {emp:.2f} (EMPIR, paper protocol), "
            f"{ada:.2f} (EMPIR, adaptive protocol)")
    if emp > base:  # the share is only meaningful when the paper protocol shows a gain
        line += f": {(ada - base) / (emp - base):.0%} of the paper protocol's gain over the baseline survives"
    return line + "."


def gains_across(pairs: Iterable[tuple[str, str]], root: Root = None) -> str:
    """Clean and average-adversarial gains over the baseline, the paper's and ours, one row per dataset.

    ``pairs``: (our dataset, the paper's dataset it stands for), e.g. ``("tiny-imagenet", "imagenet")``.
    """
    rows = []
    for ds, paper_ds in pairs:
        t, p = results.table2(ds, root), results.paper_table2(paper_ds)
        g_paper = gain(p["empir"], p["baseline"])
        g_ours, g_ada = gain(t[PAPER_ROW], t[BASE]), gain(t[ADAPTIVE], t[BASE])
        rows.append({"data": f"{paper_ds} / {ds}" if ds != paper_ds else ds,
                     "p_clean": plots.percent_cell(g_paper["clean"], True),
                     "o_clean": plots.percent_cell(g_ours["clean"], True),
                     "p_avg": plots.percent_cell(g_paper["average"], True),
                     "o_avg": plots.percent_cell(g_ours["average"], True),
                     "a_avg": plots.percent_cell(g_ada["average"], True)})
    return plots.markdown_table(
        rows, ["data", "p_clean", "o_clean", "p_avg", "o_avg", "a_avg"],
        ["data (paper / ours)", "clean, *paper*", "clean, ours", "average adversarial, *paper*",
         "average adversarial, ours (paper protocol)", "average adversarial, ours (adaptive protocol)"])


def bim_versus_fgsm(dataset: str, root: Root = None) -> list[str]:
    """For each EMPIR row: BIM against FGSM, flagged when the iterative attack is the weaker one."""
    t, lines = results.table2(dataset, root), []
    for row in (PAPER_ROW, ADAPTIVE):
        c = t[row]
        if c["bim"] is None or c["fgsm"] is None:
            lines.append(f"{dataset}, {row}: not available yet")
        else:
            lines.append(f"{dataset}, {row}: BIM {c['bim']:.2f} vs FGSM {c['fgsm']:.2f}"
                         + ("  <- iterative weaker than one step" if c["bim"] > c["fgsm"] else ""))
    return lines


def live_check(runs: Iterable[tuple], x: np.ndarray, y: np.ndarray, dataset: str,
               attacks: Iterable[str] = ("fgsm", "pgd"), root: Root = None) -> tuple[str, dict]:
    """Recompute a few Table 2 cells live on the sample, beside the committed files' values.

    ``runs``: ``(row, ensemble, protocol)`` triples, ``row`` one of ``results.ROWS``.
    Returns the Markdown table and ``{(row, attack): evaluate result}``.
    """
    table, live, rows = results.table2(dataset, root), {}, []
    for row, ens, protocol in runs:
        for attack in attacks:
            r = evaluate.adversarial_accuracy(ens, attack, x, y, protocol, dataset=dataset, progress=False)
            live[row, attack] = r
            rows.append({"row": row, "attack": attack.upper(), "objective": f"`{r['objective']}`",
                         "live": f"{100 * r['adversarial_accuracy']:.1f}", "n_live": r["n"],
                         "full": plots.percent_cell(table[row][attack]), "n_full": counts(table[row]["n"]),
                         "time": f"{r['wall_time_s']:.1f}"})
    md = plots.markdown_table(
        rows, ["row", "attack", "objective", "live", "n_live", "full", "n_full", "time"],
        ["row", "attack", "objective differentiated", "live accuracy, %", "images", "results file, %", "images",
         "live time, s"])
    return md, live


def label_shares(dataset: str, root: Root = None) -> str:
    """Table 2's label column: the share of each paper-protocol accuracy that is clean mistakes moved to their label.

    The paper protocol attacks the class the model predicts on the clean
    image.  On an image the model gets wrong, pushing away from that wrong
    class can land on the true one, and the image then counts as robust.
    Read from ``labels/paper-protocol.json``
    (:func:`empir_lib.studies.paper_labels.column`): exact where the files pin
    it, else the range the aggregates allow.
    """
    col = paper_labels.column(dataset, root)
    rows = [{"row": name, **{a: shares.get(a, tables.DASH) for a in results.ATTACK_COLUMNS}}
            for name, shares in col.items()]
    return plots.markdown_table(rows, ["row", *results.ATTACK_COLUMNS],
                                ["row", *(f"{a.upper()}: share of the accuracy" for a in results.ATTACK_COLUMNS)])
