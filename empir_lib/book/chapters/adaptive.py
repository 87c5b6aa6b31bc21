"""Chapter 8's answers at the L2 budget, read from the worst-case suite's files.

:mod:`empir_lib.studies.worstcase` writes and reads the suite's results
files; here its figures are set side by side for the chapter:

* :func:`minimal_versus_suite` -- robust accuracy at the L2 budget from the
  minimal L2 alone (:func:`empir_lib.studies.worstcase.minimal_l2`) against
  the whole suite's, on the same images;
* :func:`l2_answer` -- does EMPIR keep more images than its FP member at the
  L2 budget?  Paired per image on each row's strongest evaluation, with the
  exact McNemar test (:mod:`empir_lib.studies.suite_checks`);
* :func:`transfer_lines` -- the images only one member's attack broke,
  attacked again at the ensemble level (:mod:`empir_lib.studies.transfer_answer`).

A missing file gives a dash and the command that writes it.
"""
from __future__ import annotations

import numpy as np

from ...attack import diagnostics, outcomes, suite
from ...core import tables
from ...core import threats as threat_models
from ...studies import results, suite_checks, transfer_answer
from ...studies.worstcase import FOLDER, ROW_LABELS, minimal_l2
from .committed import Root


def minimal_versus_suite(dataset: str, root: Root = None) -> str:
    """One sentence: robust accuracy at the L2 budget from the minimal L2 alone, against the whole suite's.

    A minimal L2 is what *this* attack found, an upper bound on each image's
    true minimal perturbation; where the suite leaves fewer images robust at
    the budget, the minimal-L2 figure alone would overstate the robustness.
    Both are counted on the same images (the first ones both cover), the
    suite's from its strongest evaluation (new stages, re-check rounds).
    """
    found = minimal_l2(dataset, root)
    evals = suite_checks.evaluations(dataset, f"{FOLDER}/empir-l2", root)
    if found is None or not evals:
        return f"{dataset}: {tables.DASH} (run `empir reproduce {dataset} --only {FOLDER}/`)"
    d, attack = found
    budget = suite.threat(dataset, "l2")["eps"]
    name, record = evals[-1]
    robust = outcomes.load(results.results_dir(dataset, root) / f"{name}.json", record)["broken_by"] == \
        outcomes.ROBUST
    n = min(len(d), len(robust))
    return (f"{dataset}, L2 budget {budget:g}, first {n:,} images: the {attack}'s minimal L2 alone leaves "
            f"{100 * np.mean(d[:n] > budget):.1f}% robust; the whole suite ({name.removeprefix(FOLDER + '/')}) "
            f"leaves {100 * np.mean(robust[:n]):.1f}%.")


def l2_answer(dataset: str, root: Root = None) -> str:
    """Does EMPIR keep more images than its FP member at the L2 budget?  Per image, on the same images.

    Reads each row's strongest evaluation (``suite_checks.evaluations``) with
    :func:`empir_lib.studies.suite_checks.where_from`:
    how many images only one row keeps, which stage broke them in the other,
    the exact McNemar test on those discordant images, and whether each row
    has stopped moving.
    """
    found = [suite_checks.evaluations(dataset, f"{FOLDER}/{row}-l2", root) for row in ("empir", "baseline")]
    if not all(found):
        return f"{dataset}: {tables.DASH} (run `empir reproduce {dataset} --only {FOLDER}/`)"
    w = suite_checks.strongest_pair(dataset, *found, root)
    n = w["n"]
    p = outcomes.mcnemar_p(w["only_first"], w["only_second"])
    top = max(w["only_first_broken_in_second_by"].items(), key=lambda kv: kv[1], default=("none", 0))
    moving = []
    for row, evals in zip(("empir", "baseline"), found):
        if len(evals) == 1:  # the suite alone: neither new stages nor a re-check
            moving.append(f"{ROW_LABELS[row]} has not met the suite's new stages (APGD-T, Square-L2) yet")
        rc = suite_checks.recheck_of(evals)
        if rc is None:
            moving.append(f"{ROW_LABELS[row]} is not re-checked yet")
        elif not rc["converged"]:
            moving.append(f"{ROW_LABELS[row]} still moved {rc['change_points']:.1f} points when re-checked")
    unsettled = [ROW_LABELS[row] for row, evals in zip(("empir", "baseline"), found)
                 if not suite_checks.converged(evals)]  # the rule the cards use (late stages, nothing robust)
    bound = "both figures are upper bounds" if len(unsettled) == 2 else f"{''.join(unsettled)}'s is an upper bound"
    verdict = ("a paired difference beyond chance" if p < 0.05 else "no paired difference beyond chance")
    where = f"first {n:,}" if n < min(evals[0][1]["n"] for evals in found) else f"{n:,}"  # as the suite's lines
    return (f"{dataset}, L2 {suite.threat(dataset, 'l2')['eps']:g}, {where} images: EMPIR keeps "
            f"{w['robust_first']}, its FP member {w['robust_second']}; {w['both']} survive both, "
            f"{w['only_first']} only EMPIR (its FP member lost most of them to {top[0]}: {top[1]}), "
            f"{w['only_second']} only the FP member. Exact McNemar "
            f"{'p < 0.001' if p < 0.001 else f'p = {p:.3f}'}: {verdict}. "
            + ("; ".join(moving) + f", so {bound}." if moving else "Both rows have converged."))


def transfer_lines(dataset: str, root: Root = None) -> list[str]:
    """One sentence per row whose strongest evaluation the per-image transfer check flags: asked again or not.

    The flagged images, attacked again at the ensemble level with more budget
    (:mod:`empir_lib.studies.transfer_answer`), either fall (the flag is
    answered: no sign of masking) or stay (it stays open).
    """
    out = []
    for row, label in ROW_LABELS.items():
        for t, threat in suite.threats(dataset).items():
            name = f"{FOLDER}/{row}-{t}"
            evals = suite_checks.evaluations(dataset, name, root)
            tc = transfer_answer.check(evals)
            if not tc.get("flag"):
                continue
            eps = threat_models.eps_text(threat["norm"], threat["eps"])
            head = f"{dataset}, {label}, {threat_models.label(t)} {eps}: {tc['images']} images broken only by one " \
                   "member"
            ask = transfer_answer.read(dataset, name, root, evals)
            if ask is None:
                out.append(f"{head}; not asked again yet (scripts/transfer_answer.py {dataset} {row} {t}).")
                continue
            verdict = "the flag is answered" if ask["answered"] else "the flag stays open"
            out.append(f"{head}; {transfer_answer.sentence(ask)}: {verdict} (the check flags more than "
                       f"{100 * diagnostics.TRANSFER_SHARE:.1f}%).")
    return out
