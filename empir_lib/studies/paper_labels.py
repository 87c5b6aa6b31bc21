"""The paper protocol's labels, quantified: how much of its adversarial accuracy is mistakes "corrected".

The paper protocol (the original code, appendix section 5) attacks each
image with the model's own clean **prediction** as its label, and scores the
result against the **true** label.  On an image the model already gets wrong,
the attack pushes the prediction *away* from a wrong class, and sometimes onto
the true one: that image then counts as adversarially correct although it
was never correct.  For a row of Table 2 the adversarial accuracy ``A``
splits into

* ``kept``: images right before the attack and still right after it, and
* ``moved``: images wrong before the attack that it moved onto their true label.

:func:`split` gives ``moved`` and its share ``moved / A`` of a paper-protocol
results file.  The files keep only aggregates, which bound it:
``A - unchanged <= moved <= min(A, wrong)`` (``unchanged`` the images whose
prediction the attack left alone, ``1 - attack_success_rate``; ``wrong`` the
clean mistakes); the two meet when every prediction changed
(``attack_success_rate`` 1.0: then ``moved = A`` exactly).  Where they do
not meet, :func:`rerun_wrong` re-attacks only the clean mistakes, with the
row's own attack, parameters and seed, and counts those landing on the true
label: exact for FGSM and BIM (deterministic, image by image); for PGD (its
random start is drawn per batch) and CW (its search stops early per batch)
an independent draw, so :func:`row` uses a re-run only when it falls inside
the file's bounds, and otherwise reports the bounds.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..core.errors import EmpirError
from ..nets import ensemble
from . import evaluate, results

ROW_STEMS = ("baseline-paper", "empir-paper")


def split(record: dict) -> dict:
    """Bounds on ``moved`` (images) and its share of the adversarial accuracy, from a results file's aggregates."""
    if record.get("protocol") != "paper":
        raise EmpirError(f"{record.get('protocol')!r} is not the paper protocol: its labels are the true ones.")
    n = record["n"]
    adv = round(record["adversarial_accuracy"] * n)
    unchanged = round((1 - record["attack_success_rate"]) * n)
    wrong = round((1 - record["clean_accuracy"]) * n)
    lo, hi = max(adv - unchanged, 0), min(adv, wrong)
    return {"n": n, "adversarial_correct": adv, "unchanged": unchanged, "clean_wrong": wrong,
            "moved_lo": lo, "moved_hi": hi, "share_lo": lo / adv if adv else 0.0,
            "share_hi": hi / adv if adv else 0.0, "exact": lo == hi}


def rerun_wrong(record: dict, ens: ensemble.Ensemble, x: np.ndarray, y: np.ndarray, progress: bool = True) -> dict:
    """Re-attack the row's clean mistakes among ``(x, y)`` (its first ``n`` test images) and count ``moved``.

    Refuses images that are not the row's: the clean accuracy on them must
    be the file's.
    """
    n = record["n"]
    x, y = np.asarray(x)[:n], np.asarray(y).reshape(-1)[:n].astype(np.int64)
    if len(y) != n:
        raise EmpirError(f"the row was evaluated on {n} images; {len(y)} given.")
    pred = ensemble.predict(ens, x)
    if abs(float(np.mean(pred == y)) - record["clean_accuracy"]) > 0.5 / n:
        raise EmpirError("these images or this ensemble are not the row's: the clean accuracy differs from the "
                         f"file's {record['clean_accuracy']}.")
    wrong = np.flatnonzero(pred != y)
    if not len(wrong):
        return {"moved": 0, "clean_wrong": 0, "wall_time_s": 0.0}
    res = evaluate.adversarial_accuracy(ens, record["attack"], x[wrong], y[wrong], "paper", record["objective"],
                                        record["params"], seed=record["seed"], batch_size=record["batch_size"],
                                        progress=progress)
    moved = int(np.sum(res["adv_pred"] == y[wrong]))
    return {"moved": moved, "clean_wrong": int(len(wrong)), "wall_time_s": res["wall_time_s"]}


def row(record: dict, rerun: dict | None = None) -> dict:
    """One row's numbers: ``moved`` and its share, exact from the aggregates, or from a re-run, or as bounds."""
    s = split(record)
    out = {"adversarial_accuracy": record["adversarial_accuracy"], **s}
    if s["exact"]:
        out.update(moved=s["moved_lo"], share=s["share_lo"], method="aggregates (bounds meet)")
    elif rerun is not None:
        adv = s["adversarial_correct"]
        within = bool(s["moved_lo"] <= rerun["moved"] <= s["moved_hi"])
        out.update(rerun=dict(rerun), rerun_within_bounds=within)
        if within:
            out.update(moved=rerun["moved"], share=rerun["moved"] / adv if adv else 0.0,
                       method=f"re-run on the {rerun['clean_wrong']} clean mistakes")
        else:  # not the committed run's images' fate (PGD's random start, CW's batches): the bounds stand
            out.update(moved=None, share=None, method=f"bounds only (a re-run on the {rerun['clean_wrong']} "
                       "clean mistakes, an independent draw, fell outside them)")
    else:
        out.update(moved=None, share=None, method="bounds only")
    return out


def column(dataset: str, root: str | os.PathLike | None = None) -> dict:
    """Table 2's column from ``labels/paper-protocol.json``: per row and attack, ``moved``'s share as text.

    ``{'baseline (FP)': {'pgd': '100%', ...}, 'EMPIR, paper protocol': {...}}``;
    a share the aggregates only bound is shown as its range, e.g. ``'49.2%-100.0%'``.
    """
    path = results.results_dir(dataset, root) / "labels" / "paper-protocol.json"
    if not path.is_file():
        raise EmpirError(f"{path} is missing; write it with 'scripts/attack_stages.py {dataset} labels'.")
    rows = json.loads(path.read_text())["rows"]
    out: dict = {}
    for name, r in rows.items():
        stem, _, attack = name.split("/", 1)[1].rpartition("-")
        label = {v: k for k, v in results.ROWS.items()}[stem]
        text = (f"{r['share']:.1%}" if r.get("share") is not None
                else f"{r['share_lo']:.1%}-{r['share_hi']:.1%}")
        out.setdefault(label, {})[attack] = text
    return out
