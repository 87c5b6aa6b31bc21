"""Table 2's rows for chapter 10: which rows there are, their members and labels, and their results files.

The paper's Table 2 (section 5.3) sets EMPIR beside defensive distillation,
input gradient regularisation (IGR), FGSM and PGD adversarial training, and
EMPIR built from FGSM-adversarially-trained members.  ``empir reproduce
<dataset>`` writes each such row under ``data/results/<dataset>/defences/``:
``<row>-paper-<attack>`` (the paper protocol's four attacks) and
``<row>-suite-linf-table1`` (the worst-case suite at Table 1's L-inf eps, the
adaptive protocol).  The baseline and EMPIR rows are chapter 7's
(``table2/``) and chapter 8's (``suite/``).  Every function takes ``root``
(default ``data/results``) so tests can point it elsewhere; a missing file is
a dash and a note naming the command that writes it.

Rows are named by :meth:`empir_lib.core.settings.DatasetSettings.defence_row_ids`;
the part before ``_`` is the row key (``fgsm-at_eps0.1`` is our extra row,
trained at Table 1's eps beside the paper's 0.3): a registered defence
(:data:`empir_lib.core.defences.REGISTRY`), or ``empir-<defence>``, EMPIR of
members trained with it.  Labels and the paper's order come from the registry.
"""
from __future__ import annotations

import os

import numpy as np

from ...core import paper, settings, threats
from ...core.errors import EmpirError, check_choice
from ...nets import zoo
from ...studies import results, suite_checks
from .. import plots
from .committed import Root

DATASETS = tuple(paper.TABLE2_DEFENCES)  # the datasets the paper compares defences on


FOLDER = results.DEFENCES_FOLDER


THREAT = threats.TABLE1  # the suite's threat model for every row: L-inf at Table 1's eps


LINF_ATTACKS = ("fgsm", "bim", "pgd")


# A row's key, defence, setting and label have one owner, empir_lib.core.settings (the cards name rows too).
row_key, row_defence, label, setting = settings.row_key, settings.row_defence, settings.row_label, settings.row_setting


def paper_order(key: str) -> tuple[int, bool]:
    """Where a row key stands in the paper's Table 2: its defence's place, EMPIR of it just after."""
    record, empir_of = row_defence(key)
    if record.paper_order is None:
        raise EmpirError(f"defence {record.name!r} has no place in Table 2 (its registry record has no paper_order).")
    return record.paper_order, empir_of


def defence_rows(dataset: str) -> list[str]:
    """The dataset's defence rows in the paper's order, each of our extra ``_eps`` rows after the paper's."""
    rows = list(settings.get(dataset).defence_row_ids())
    return sorted(rows, key=lambda r: ("_" in r, paper_order(row_key(r)), r))


def all_rows(dataset: str) -> list[str]:
    """Table 2's rows for ``dataset``: the FP baseline, EMPIR, then :func:`defence_rows`."""
    return ["baseline", "empir", *defence_rows(dataset)]


def row_members(dataset: str, row: str) -> list[str]:
    """The zoo ids of a row's members (the baseline's FP member, EMPIR's three, a defence row's)."""
    s = settings.get(dataset)
    if row == "baseline":
        return [s.empir_fp]
    if row == "empir":
        return s.empir_ids
    ids = s.defence_row_ids()
    if row not in ids:
        raise EmpirError(f"{dataset} has no Table 2 row {row!r}; its rows: {', '.join(all_rows(dataset))}.")
    return ids[row]






def paper_row(dataset: str, row: str) -> dict | None:
    """The paper's numbers for a row (%), or None where the paper has no such row (our ``_eps`` rows)."""
    check_choice(dataset, DATASETS, "dataset")
    if row in ("baseline", "empir"):
        return paper.TABLE2[dataset][row]
    return None if "_" in row else paper.TABLE2_DEFENCES[dataset].get(row)


paper_protocol_stem = results.paper_protocol_stem


def suite_name(row: str, threat: str = THREAT) -> str:
    """The results file of a row's worst-case suite at Table 1's L-inf eps (or another of the suite's threats)."""
    return results.suite_name(row, threat)


def ours(dataset: str, row: str, root: Root = None) -> dict:
    """Our row under the paper protocol, in %: {clean, cw, fgsm, bim, pgd, average, n, missing}.

    A cell whose file is missing is None (and then so is the average);
    ``missing`` names the files.  ``clean`` is read from the files present.
    """
    stem, base = paper_protocol_stem(row), results.results_dir(dataset, root)
    out: dict = {"clean": None, "n": set(), "missing": []}
    for a in results.ATTACK_COLUMNS:
        path = base / f"{stem}-{a}.json"
        if path.is_file():
            r = results.read_result(path)
            out[a], out["clean"] = 100 * r["adversarial_accuracy"], 100 * r["clean_accuracy"]
            out["n"].add(r["n"])
        else:
            out[a] = None
            out["missing"].append(f"{stem}-{a}")
    vals = [out[a] for a in results.ATTACK_COLUMNS]
    out["average"] = None if None in vals else float(np.mean(vals))
    out["n"] = sorted(out["n"])
    return out


def adaptive(dataset: str, row: str, root: Root = None, threat: str = THREAT) -> dict | None:
    """Our row under the adaptive protocol, at its strongest evaluation, or None while the suite's file is missing.

    The robust accuracy (and its 95% interval) is the one the row's card
    quotes: its re-check or new stages when it has them
    (:func:`empir_lib.studies.suite_checks.evaluations`), on their images.
    Clean accuracy and the diagnostics are the suite file's; ``flags`` are
    those still open, ``answered`` those the row's stronger evaluations
    answered (:func:`~empir_lib.studies.suite_checks.settled_flags`).  Returns
    ``{robust, clean (%), n, ci95 (% pair), flags, answered, zero_gradient_share, converged}``.
    """
    evals = suite_checks.evaluations(dataset, suite_name(row, threat), root)
    if not evals:
        return None
    r, last = evals[0][1], evals[-1][1]
    recheck = suite_checks.recheck_of(evals)
    diag = r.get("diagnostics") or {}
    flags, answered = suite_checks.settled_flags(list(diag.get("flags", [])), evals)
    return {"robust": 100 * last["robust_accuracy"], "clean": 100 * r["clean_accuracy"], "n": last["n"],
            "ci95": tuple(100 * v for v in last.get("robust_ci95", (np.nan, np.nan))),
            "flags": flags, "answered": answered,
            "zero_gradient_share": diag.get("values", {}).get("zero_gradient_share"),
            "converged": None if recheck is None else bool(recheck["converged"])}


def lowest_linf(values: dict) -> float | None:
    """The lowest of the L-inf columns (FGSM, BIM, PGD): a row's best estimate of robustness in that ball."""
    vals = [values.get(a) for a in LINF_ATTACKS]
    return None if None in vals else min(vals)


def missing(dataset: str, root: Root = None) -> dict[str, list[str]]:
    """The files Table 2 still lacks: ``{"table2": [...], "defences": [...], "zoo": [member ids]}``."""
    have = zoo.members(dataset)
    out: dict[str, list[str]] = {"table2": [], "defences": [], "zoo": []}
    for row in all_rows(dataset):
        names = ours(dataset, row, root)["missing"]
        if adaptive(dataset, row, root) is None:
            names.append(suite_name(row))
        out["table2" if row in ("baseline", "empir") else "defences"] += names
        out["zoo"] += [m for m in row_members(dataset, row) if m not in have and m not in out["zoo"]]
    return out


def missing_notes(dataset: str, root: Root = None) -> list[str]:
    """One line per kind of thing missing, each naming the command that makes it."""
    m = missing(dataset, root)
    lines = [plots.missing_line(f"{dataset} results file(s) of the baseline and EMPIR rows", m["table2"],
                                f"empir reproduce {dataset}"),
             plots.missing_line(f"{dataset} results file(s) of the defence rows", m["defences"],
                                f"empir reproduce {dataset} --only {FOLDER}/"),
             plots.missing_line(f"{dataset} defended member(s), which their rows wait for,", m["zoo"],
                                f"empir zoo build --dataset {dataset} --defended")]
    return [line for line in lines if line]


def rows_table(dataset: str, zoo_dir: str | os.PathLike | None = None) -> str:
    """Table 2's rows for ``dataset``: the results-file name, the row, whether the paper has it, its members."""
    have = zoo.members(dataset, zoo_dir)
    rows = [{"row": f"`{r}`", "label": label(dataset, r), "paper": "yes" if paper_row(dataset, r) else "no (ours)",
             "members": ", ".join(f"`{m}`" + ("" if m in have else " (not trained yet)")
                                  for m in row_members(dataset, r))}
            for r in all_rows(dataset)]
    return plots.markdown_table(rows, ["row", "label", "paper", "members"],
                                ["row (file name)", "defence", "in the paper's Table 2", "members (zoo ids)"])


def short_label(dataset: str, row: str) -> str:
    """A row's tick label: 'FGSM-AT', or for our extra rows its setting too: 'FGSM-AT\n\u03b5 = 0.1'."""
    if row in ("baseline", "empir"):
        return {"baseline": "baseline\nFP", "empir": "EMPIR"}[row]
    record, empir_of = row_defence(row_key(row))
    text = f"EMPIR\n({record.short})" if empir_of else record.short
    return text if "_" not in row else text + "\n" + setting(dataset, row).split(",")[0]


def recipe_text(dataset: str, row: str, zoo_dir: str | os.PathLike | None = None) -> str:
    """How a row's members were trained: their epochs (from the manifest) and the recipe's label smoothing."""
    have = zoo.members(dataset, zoo_dir)
    epochs = [have[m]["epochs"] if m in have else None for m in row_members(dataset, row)]
    if None in epochs:
        return "not trained yet"
    shown = str(epochs[0]) if len(set(epochs)) == 1 else ", ".join(map(str, epochs))
    smoothing = settings.get(dataset).recipe.get("label_smoothing", 0.0)
    return f"{shown} epochs" + (f", label smoothing {smoothing:g}" if smoothing else "")
