"""Table 2's other defences for chapter 10: the full table, the training costs, a verdict, a figure, a live check.

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
the part before ``_`` is the paper's row key (``fgsm-at_eps0.1`` is our extra
row, trained at Table 1's eps beside the paper's 0.3).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import ArrayLike

from ...attack import attacks, surrogates
from ...core import defences, paper, settings
from ...core.errors import EmpirError, check_choice
from ...nets import zoo
from ...studies import results
from .. import plots
from .committed import Root, counts
from .table2 import COLUMNS, cells, gain

DASH = plots.DASH
DATASETS = tuple(paper.TABLE2_DEFENCES)  # the datasets the paper compares defences on
FOLDER = "defences"
THREAT = "linf-table1"  # the suite's threat model for every row: L-inf at Table 1's eps
# The paper's rows in its own order; our "_eps0.1" rows come after them.
PAPER_ORDER = ("distillation", "igr", "fgsm-at", "empir-fgsm-at", "pgd-at")
NAMES = {"baseline": "baseline FP", "empir": "EMPIR", "distillation": "defensive distillation",
         "igr": "input gradient regularisation", "fgsm-at": "FGSM adversarial training",
         "empir-fgsm-at": "EMPIR of FGSM-trained members", "pgd-at": "PGD adversarial training"}
PARAM_TEXT = {"distillation": "T = {temperature:.3g}", "igr": "\u03bb = {lam:.3g}", "fgsm-at": "\u03b5 = {eps:.3g}",
              "pgd-at": "\u03b5 = {eps:.3g}, {steps} steps"}
LINF_ATTACKS = ("fgsm", "bim", "pgd")


# --- the rows -----------------------------------------------------------------------------------


def row_key(row: str) -> str:
    """The paper's row key of one of our rows: 'fgsm-at_eps0.1' -> 'fgsm-at'."""
    return row.split("_", 1)[0]


def defence_rows(dataset: str) -> list[str]:
    """The dataset's defence rows in the paper's order, each of our extra ``_eps`` rows after the paper's."""
    rows = list(settings.get(dataset).defence_row_ids())
    for r in rows:
        if row_key(r) not in PAPER_ORDER:
            raise EmpirError(f"defence row {r!r} of {dataset} has no place in Table 2 ({', '.join(PAPER_ORDER)}).")
    return sorted(rows, key=lambda r: ("_" in r, PAPER_ORDER.index(row_key(r)), r))


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


def _spec(dataset: str, row: str) -> tuple:
    return dict(settings.get(dataset).defence_rows)[row][-1]  # the FP member comes last


def label(dataset: str, row: str) -> str:
    """A row's name with its training setting: 'FGSM adversarial training (\u03b5 = 0.3)'."""
    if row in ("baseline", "empir"):
        return NAMES[row]
    return f"{NAMES[row_key(row)]} ({_setting(dataset, row)})"


def _setting(dataset: str, row: str) -> str:
    """A defence row's training setting: 'T = 100', 'ε = 0.1, 7 steps', 'ε = 8/255, 7 steps'."""
    _, _, _, defence, params = _spec(dataset, row)[:5]
    params = defences.check(defence, params)
    text = PARAM_TEXT[defence].format(**params)
    if "eps" in params and float(params["eps"] * 255).is_integer():  # 8/255 reads better than 0.0314
        text = text.replace(f"{params['eps']:.3g}", f"{round(params['eps'] * 255)}/255", 1)
    return text


def paper_row(dataset: str, row: str) -> dict | None:
    """The paper's numbers for a row (%), or None where the paper has no such row (our ``_eps`` rows)."""
    check_choice(dataset, DATASETS, "dataset")
    if row in ("baseline", "empir"):
        return paper.TABLE2[dataset][row]
    return None if "_" in row else paper.TABLE2_DEFENCES[dataset].get(row)


def paper_protocol_stem(row: str) -> str:
    """The results-file stem of a row under the paper protocol (``<stem>-<attack>``)."""
    return f"table2/{row}-paper" if row in ("baseline", "empir") else f"{FOLDER}/{row}-paper"


def suite_name(row: str, threat: str = THREAT) -> str:
    """The results file of a row's worst-case suite at Table 1's L-inf eps (or another of the suite's threats)."""
    return f"suite/{row}-{threat}" if row in ("baseline", "empir") else f"{FOLDER}/{row}-suite-{threat}"


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
    """Our row under the adaptive protocol: the worst-case suite's file, or None while it is missing.

    Returns ``{robust, clean (%), n, ci95 (% pair), flags, zero_gradient_share}``.
    """
    path = results.results_dir(dataset, root) / f"{suite_name(row, threat)}.json"
    if not path.is_file():
        return None
    r = results.read_result(path)
    diag = r.get("diagnostics") or {}
    return {"robust": 100 * r["robust_accuracy"], "clean": 100 * r["clean_accuracy"], "n": r["n"],
            "ci95": tuple(100 * v for v in r.get("robust_ci95", (np.nan, np.nan))),
            "flags": list(diag.get("flags", [])),
            "zero_gradient_share": diag.get("values", {}).get("zero_gradient_share")}


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


# --- (a) the full Table 2 -----------------------------------------------------------------------


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
    the suite's diagnostics; ``one_answer``: :func:`one_answer`.
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
                    "one_answer": one_answer(dataset, row, root)})
    return out


def gains_table(dataset: str, root: Root = None) -> str:
    """:func:`gains` as Markdown: which gains over the baseline survive the worst-case suite."""
    rows = [{"row": g["label"], "paper": plots.percent_cell(g["paper"], True),
             "ours": plots.percent_cell(g["paper_protocol"], True), "adaptive": plots.percent_cell(g["adaptive"], True),
             "verdict": survives(g), "flags": DASH if g["flags"] is None else "; ".join(g["flags"]) or "none"}
            for g in gains(dataset, root)]
    return plots.markdown_table(rows, ["row", "paper", "ours", "adaptive", "verdict", "flags"],
                                ["row", "average gain, *paper*", "average gain, ours (paper protocol)",
                                 "robust gain, ours (worst-case suite)", "survives?", "suite's diagnostic flags"])


SURVIVES_POINTS = 1.0  # a robust gain below one point is within the noise of a 1,000-image evaluation


def survives(g: dict) -> str:
    """'yes', 'no' or 'not yet measured': is the row's robust gain over the baseline at least one point?

    A constant classifier (:func:`one_answer`) keeps its one class's images
    under any attack, so its "gain" is no robustness: 'no (constant classifier)'.
    """
    if g["adaptive"] is None:
        return "not yet measured"
    if (g.get("one_answer") or {}).get("constant"):
        return "no (constant classifier)"
    return "yes" if g["adaptive"] >= SURVIVES_POINTS else "no"


SIGN_GAP = 20.0  # points: a gap this large between two estimates of the same robustness is no noise
FGSM_TRAINED = ("fgsm-at", "empir-fgsm-at")
ITERATIVE_SLACK = 1.0  # points: BIM or PGD above FGSM by more than this is no sampling noise on 10,000 images


def warning_signs(dataset: str, keys: Sequence[str] = FGSM_TRAINED, root: Root = None) -> list[str]:
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


# --- (b) training ---------------------------------------------------------------------------------


def _hardware(entry: dict) -> str:
    hw = entry.get("hardware") or {}
    gpus = ", ".join(hw.get("gpus", [])) or "no GPU"
    return f"{hw.get('cores', '?')} cores ({hw.get('cpu', '?')}), {gpus}"


def _same_machine(a: dict, b: dict) -> bool:
    # The platform string names the kernel build, which changes between VMs of the same kind.
    keys = ("cores", "cpu", "gpus")
    return all((a.get("hardware") or {}).get(k) == (b.get("hardware") or {}).get(k) for k in keys)


def training_rows(dataset: str, zoo_dir: str | os.PathLike | None = None) -> list[dict]:
    """Each defended member of the dataset, after the plain members they are compared with, from the manifest.

    Each row: ``member``, ``defence``, ``params``, ``epochs``, ``accuracy`` (%,
    full test set), ``seconds``, ``hardware``, and ``epoch_ratio``: its time per
    epoch over the plain member of the same precision and seed (None when
    either is missing or they were trained on different hardware).
    """
    s, have = settings.get(dataset), zoo.members(dataset, zoo_dir)
    plain = {}
    for w, a, seed, *_ in s.defended:
        plain.setdefault(settings.member_id(dataset, w, a, seed), None)
    out = []
    for mid in plain:
        e = have.get(mid)
        out.append({"member": mid, "defence": "none", "params": "", "epochs": e and e["epochs"],
                    "accuracy": e and 100 * e["test_accuracy"], "seconds": e and e["train_time_s"],
                    "hardware": e and _hardware(e), "epoch_ratio": None, "plain": True})
    for spec in s.defended:
        w, a, seed, defence, params = spec[:5]
        mid, e = settings.defended_id(dataset, spec), have.get(settings.defended_id(dataset, spec))
        ref = have.get(settings.member_id(dataset, w, a, seed))
        ratio = None
        if e and ref and _same_machine(e, ref) and e["epochs"] and ref["epochs"]:
            ratio = (e["train_time_s"] / e["epochs"]) / (ref["train_time_s"] / ref["epochs"])
        full = defences.check(defence, params)
        out.append({"member": mid, "defence": defence,
                    "params": ", ".join(f"{k}={v:.3g}" for k, v in full.items()),
                    "epochs": e and e["epochs"], "accuracy": e and 100 * e["test_accuracy"],
                    "seconds": e and e["train_time_s"], "hardware": e and _hardware(e), "epoch_ratio": ratio,
                    "plain": False})
    return out


def training_table(dataset: str, zoo_dir: str | os.PathLike | None = None) -> str:
    """:func:`training_rows` as Markdown, with a line naming the command that trains any missing member."""
    rows, absent = [], {True: [], False: []}
    for r in training_rows(dataset, zoo_dir):
        there = r["accuracy"] is not None
        if not there:
            absent[r["plain"]].append(r["member"])
        ratio = DASH if r["epoch_ratio"] is None else f"{r['epoch_ratio']:.1f}\u00d7"
        rows.append({"member": f"`{r['member']}`", "defence": r["defence"], "params": r["params"] or DASH,
                     "epochs": r["epochs"] if there else DASH, "accuracy": plots.percent_cell(r["accuracy"]),
                     "minutes": f"{r['seconds'] / 60:,.1f}" if there else DASH, "ratio": "" if r["plain"] else ratio,
                     "hardware": r["hardware"] if there else DASH})
    md = plots.markdown_table(rows, ["member", "defence", "params", "epochs", "accuracy", "minutes", "ratio",
                                     "hardware"],
                              ["member", "defence", "parameters", "epochs", "clean accuracy, % (full test set)",
                               "training time, min", "time per epoch vs plain member", "hardware"])
    notes = [plots.missing_line(f"plain {dataset} member(s)", absent[True], f"empir zoo build --dataset {dataset}"),
             plots.missing_line(f"defended {dataset} member(s)", absent[False],
                                f"empir zoo build --dataset {dataset} --defended")]
    return "\n\n".join(p for p in (md, *notes) if p)


# --- (c) the paper's headline against PGD adversarial training ----------------------------------


CLAIM = "EMPIR achieves a higher adversarial accuracy than PGD based adversarial training (CIFAR-10)"


def _compare(empir_value: float | None, pgd_value: float | None, measure: str, protocol: str,
             missing_names: list[str], ci: tuple | None = None) -> dict:
    measured = empir_value is not None and pgd_value is not None
    out = {"protocol": protocol, "measure": measure, "empir": empir_value, "pgd_at": pgd_value,
           "difference": empir_value - pgd_value if measured else None,
           "holds": (empir_value > pgd_value) if measured else None,
           "status": "measured" if measured else "not yet measured", "missing": missing_names, "separated": None}
    if measured and ci is not None:
        (e_lo, e_hi), (p_lo, p_hi) = ci
        out["separated"] = e_lo > p_hi or p_lo > e_hi  # 95% intervals apart
    return out


def pgd_verdict(dataset: str = "cifar10", root: Root = None) -> dict:
    """The paper's claim that EMPIR beats PGD adversarial training, checked under both protocols.

    For each PGD-AT row of ``dataset`` (the paper's eps 0.3, and ours at 0.1
    and 8/255): EMPIR's average adversarial accuracy against the row's under
    the paper protocol, and the worst-case suite's robust accuracy under the
    adaptive one, at Table 1's eps and at each of the dataset's other L-inf
    budgets (8/255 for CIFAR-10).  Each comparison says ``holds`` (EMPIR higher: True/False), or None
    with ``status`` 'not yet measured' and the ``missing`` files.  ``separated``
    says whether the suite's 95% intervals are apart.  Nothing is decided here
    that the files do not say.
    """
    rows = [r for r in defence_rows(dataset) if row_key(r) == "pgd-at"]
    if not rows:
        raise EmpirError(f"{dataset} has no PGD adversarial training row; the paper compares it on cifar10.")
    p_e, p_p = paper_row(dataset, "empir"), paper_row(dataset, "pgd-at")
    out = {"dataset": dataset, "claim": CLAIM,
           "paper": None if p_p is None else {"empir": p_e["average"], "pgd_at": p_p["average"],
                                             "difference": p_e["average"] - p_p["average"],
                                             "holds": p_e["average"] > p_p["average"]},
           "rows": {}}
    e_o, e_a = ours(dataset, "empir", root), adaptive(dataset, "empir", root)
    for row in rows:
        o, a = ours(dataset, row, root), adaptive(dataset, row, root)
        paper_cmp = _compare(e_o["average"], o["average"], "average adversarial accuracy (CW, FGSM, BIM, PGD)",
                             "paper protocol", e_o["missing"] + o["missing"])
        comparisons = [paper_cmp]
        for threat, eps_text in [(THREAT, "Table 1 eps"), *_other_linf(dataset)]:
            e_t = e_a if threat == THREAT else adaptive(dataset, "empir", root, threat)
            a = adaptive(dataset, row, root, threat)
            gone = [suite_name(r, threat) for r, x in (("empir", e_t), (row, a)) if x is None]
            comparisons.append(_compare(None if e_t is None else e_t["robust"], None if a is None else a["robust"],
                                        f"worst-case suite robust accuracy (L-inf, {eps_text})", "adaptive protocol",
                                        gone, None if e_t is None or a is None else (e_t["ci95"], a["ci95"])))
        out["rows"][row] = {"label": label(dataset, row), "comparisons": comparisons,
                            "one_answer": one_answer(dataset, row, root)}
    return out


CONSTANT_SHARE = 0.95  # a network answering one class for this share of the images is flagged as constant


def one_answer(dataset: str, row: str, root: Root = None) -> dict | None:
    """The class a row's network gives most often under the paper protocol, and its share of the test images.

    Read from the confusion matrices (true class by predicted class) of the
    row's paper-protocol files, taking the attack whose top class has the
    smallest share (a network that answers one class under every attack is
    one that answers it always).  Returns ``{'class', 'share', 'attack',
    'constant'}``, ``constant`` when the share is at least
    :data:`CONSTANT_SHARE`; None while no file with a confusion matrix exists.
    A constant classifier keeps about the images of its one class under any
    attack, so its robust accuracy is the class's share of the test set
    (10% on CIFAR-10), and it says nothing about robustness.
    """
    best = None
    for attack in results.ATTACK_COLUMNS:
        r = results.find(dataset, f"{paper_protocol_stem(row)}-{attack}", root)
        if r is None or "confusion" not in r:
            continue
        counts = np.asarray(r["confusion"]).sum(axis=0)
        share = float(counts.max() / counts.sum())
        if best is None or share < best["share"]:
            k, names = int(counts.argmax()), settings.get(dataset).class_names
            best = {"class": names[k] if names else str(k), "share": share, "attack": attack}
    if best is not None:
        best["constant"] = best["share"] >= CONSTANT_SHARE
    return best


def _other_linf(dataset: str) -> list[tuple[str, str]]:
    """The suite's L-inf threats besides Table 1's (8/255 for CIFAR-10), as (name, text): PGD-AT rows meet them too."""
    return [(f"linf-{round(e * 255)}-255", f"{round(e * 255)}/255") for e in settings.get(dataset).suite_linf]


def verdict_lines(verdict: dict) -> list[str]:
    """The verdict as sentences, one per comparison, each from the numbers it holds."""
    lines = [f"Claim (paper, section 5.3): {verdict['claim']}."]
    p = verdict["paper"]
    if p is not None:
        lines.append(f"Paper: EMPIR {p['empir']:.2f}% against PGD-AT {p['pgd_at']:.2f}% average adversarial "
                     f"accuracy ({p['difference']:+.2f} points).")
    for row in verdict["rows"].values():
        for c in row["comparisons"]:
            head = f"Ours, {c['protocol']}, EMPIR vs {row['label']}:"
            if c["status"] != "measured":
                lines.append(f"{head} not yet measured (missing e.g. {c['missing'][0]}).")
                continue
            word = "holds" if c["holds"] else "does not hold"
            extra = ""
            if c["separated"] is not None:
                extra = "; the 95% intervals are apart" if c["separated"] else "; the 95% intervals overlap"
            lines.append(f"{head} {c['empir']:.2f}% against {c['pgd_at']:.2f}% {c['measure']} "
                         f"({c['difference']:+.2f} points): the claim {word}{extra}.")
        one = row.get("one_answer")
        if one and one["constant"]:
            lines.append(f"Note: {row['label']} answers '{one['class']}' for {100 * one['share']:.1f}% of the "
                         f"test images (under the paper protocol's {one['attack'].upper()}, the attack where that "
                         "share is lowest): it is a constant classifier, so its accuracy under any attack is that "
                         "class's share of the test set, not robustness.")
    return lines


# --- (d) the figure ------------------------------------------------------------------------------


SHORT = {"baseline": "baseline\nFP", "empir": "EMPIR", "distillation": "distill.", "igr": "IGR",
         "fgsm-at": "FGSM-AT", "empir-fgsm-at": "EMPIR\n(FGSM-AT)", "pgd-at": "PGD-AT"}


def short_label(dataset: str, row: str) -> str:
    """A row's tick label: 'FGSM-AT', or for our extra rows its setting too: 'FGSM-AT\n\u03b5 = 0.1'."""
    key = row_key(row)
    if "_" not in row:
        return SHORT[key]
    return SHORT[key] + "\n" + _setting(dataset, row).split(",")[0]


def figure(datasets: Sequence[str] = DATASETS, root: Root = None) -> Figure:
    """Per dataset, per row: the paper's average (hatched), ours under the paper protocol, and the suite's robust.

    Each bar is labelled with its value; a missing value has no bar, only a
    dash at the foot of its slot.
    """
    series = (("average adversarial, *paper*", "tab:gray", True), ("average adversarial, ours (paper protocol)",
              plots.ROW_COLOURS["empir-paper"], False),
              ("robust, ours (worst-case suite)", plots.ROW_COLOURS["empir-adaptive"], False))
    fig = Figure(figsize=(11, 3.6 * len(datasets)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(datasets), 1))
    for ax, ds in zip(axes, datasets):
        rows = all_rows(ds)
        values = []
        for row in rows:
            p, a = paper_row(ds, row), adaptive(ds, row, root)
            values.append((None if p is None else p["average"], ours(ds, row, root)["average"],
                           None if a is None else a["robust"]))
        xs, width = np.arange(len(rows)), 0.27
        for i, (_, colour, hatched) in enumerate(series):
            for x, v in zip(xs + (i - 1) * width, (vals[i] for vals in values)):
                if v is None:
                    ax.text(x, 1.0, "\u2013", ha="center", va="bottom", color=colour, fontsize=9)
                    continue
                style = (dict(facecolor="none", edgecolor=colour, hatch="///") if hatched else dict(color=colour))
                # Labelled, so that a measured 0% is told apart from a missing value (a dash).
                ax.bar_label(ax.bar(x, v, width * 0.95, **style), [f"{v:.0f}"], fontsize=6, color=colour)
        ax.set_xticks(xs, [short_label(ds, r) for r in rows], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("accuracy, %")
        ax.set_title(f"{ds}: Table 2's rows", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles = [Patch(facecolor="none", edgecolor=c, hatch="///", label=n.replace("*", "")) if h
               else Patch(color=c, label=n) for n, c, h in series]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncols=3)
    return fig


# --- the live computation: gradient masking -------------------------------------------------------


def _load_member(dataset: str, member: str, zoo_dir: str | os.PathLike | None) -> tuple:
    have = zoo.members(dataset, zoo_dir)
    if member not in have:
        tag = settings.defence_tag(member)
        cmd = f"empir zoo build --dataset {dataset}" + (" --defended" if tag else "")
        raise EmpirError(f"{member} is not in the zoo yet; '{cmd}' trains it.")
    return zoo.load(member, zoo_dir), have[member]


def _input_gradient(model: object, x: tf.Tensor, y: tf.Tensor, loss: object) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(loss(model(x, training=False), y))
    return tape.gradient(value, x)


def gradient_masking(dataset: str, members: Sequence[str], x: ArrayLike, y: ArrayLike, eps: float | None = None,
                     zoo_dir: str | os.PathLike | None = None) -> list[dict]:
    """Signs of gradient masking per member, measured on ``x`` (float32, as TensorFlow computes them).

    For each member: ``accuracy`` (clean, %); ``saturated``: % of images
    whose top softmax probability is exactly 1 in float32; ``gap``: the median
    gap between the top two logits; ``zero_ce``: % of images whose input
    gradient of the cross-entropy is exactly zero in every pixel (the softmax
    minus the one-hot label underflows, which can happen only on an image the
    member classifies correctly: Carlini & Wagner 2016 on defensive
    distillation); ``zero_margin``: the same for Carlini & Wagner's margin
    ``max_{j != y} z_j - z_y``; ``fgsm_ce`` and ``fgsm_margin``: accuracy (%)
    after one FGSM step of ``eps`` (default: Table 1's) along the sign of each
    loss's gradient.  A member not in the zoo raises an EmpirError naming the
    command that trains it.
    """
    eps = attacks.preset(dataset, "fgsm")["eps"] if eps is None else float(eps)
    x = tf.constant(np.asarray(x, np.float32))
    y_np = np.asarray(y).reshape(-1).astype(np.int32)
    if len(y_np) != x.shape[0] or len(y_np) == 0:
        raise EmpirError(f"x holds {x.shape[0]} images and y {len(y_np)} labels; give one label per image.")
    y_t = tf.constant(y_np)
    out = []
    for member in members:
        model, entry = _load_member(dataset, member, zoo_dir)
        logits = model(x, training=False)
        top2 = tf.math.top_k(logits, 2).values.numpy()
        row = {"member": member, "defence": entry.get("defence", "none"), "n": len(y_np),
               "accuracy": 100 * float(np.mean(np.argmax(logits, -1) == y_np)),
               "saturated": 100 * float(np.mean(tf.reduce_max(tf.nn.softmax(logits), -1).numpy() == 1.0)),
               "gap": float(np.median(top2[:, 0] - top2[:, 1]))}
        for name, loss in (("ce", surrogates.cross_entropy), ("margin", surrogates.margin)):
            g = _input_gradient(model, x, y_t, loss)
            row[f"zero_{name}"] = 100 * float(np.mean(~np.any(g.numpy().reshape(len(y_np), -1) != 0, axis=1)))
            adv = tf.clip_by_value(x + eps * tf.sign(g), *attacks.CLIP)
            row[f"fgsm_{name}"] = 100 * float(np.mean(np.argmax(model(adv, training=False), -1) == y_np))
        row["eps"] = eps
        out.append(row)
    return out


def masking_table(rows: Sequence[dict]) -> str:
    """:func:`gradient_masking`'s rows as Markdown."""
    cells_ = [{"member": f"`{r['member']}`", "defence": r["defence"], "accuracy": f"{r['accuracy']:.1f}",
               "saturated": f"{r['saturated']:.1f}", "gap": f"{r['gap']:,.1f}", "zero_ce": f"{r['zero_ce']:.1f}",
               "zero_margin": f"{r['zero_margin']:.1f}", "fgsm_ce": f"{r['fgsm_ce']:.1f}",
               "fgsm_margin": f"{r['fgsm_margin']:.1f}"} for r in rows]
    eps = rows[0]["eps"] if rows else float("nan")
    n = rows[0]["n"] if rows else 0
    return plots.markdown_table(
        cells_, ["member", "defence", "accuracy", "saturated", "gap", "zero_ce", "zero_margin", "fgsm_ce",
                 "fgsm_margin"],
        ["member", "defence", "clean accuracy, %", "softmax saturated, % of images", "median top-two logit gap",
         "zero CE gradient, %", "zero margin gradient, %", f"FGSM \u03b5={eps:g} on CE, accuracy %",
         f"FGSM \u03b5={eps:g} on the margin, accuracy %"]) + f"\n\nOn {n} images of the embedded sample."


def masking_summary(rows: Sequence[dict]) -> list[str]:
    """:func:`gradient_masking`'s rows as one sentence each, every number from the measurement."""
    return [f"{r['member']}: clean {r['accuracy']:.1f}%; CE gradient exactly zero on {r['zero_ce']:.1f}% of the "
            f"images (softmax saturated on {r['saturated']:.1f}%); one FGSM step leaves {r['fgsm_ce']:.1f}% "
            f"accuracy on the cross-entropy and {r['fgsm_margin']:.1f}% on the margin." for r in rows]
