"""Exercise checks, chapter 1: the zoo."""
from __future__ import annotations

import os

from ...core import settings
from ...core.settings import FULL_PRECISION
from ...nets import zoo
from .verdict import points_verdict, verdict


def best_lowprecision_member(dataset: str = "mnist", zoo_dir: str | os.PathLike | None = None) -> tuple[str, float]:
    """(zoo id, clean full-test accuracy) of the most accurate low-precision member."""
    lp = {k: v for k, v in zoo.members(dataset, zoo_dir).items()
          if not settings.is_full_precision(v["wbits"], v["abits"])}
    best = max(lp, key=lambda k: lp[k]["test_accuracy"])
    return best, lp[best]["test_accuracy"]


def check_best_member(answer: str, dataset: str = "mnist", zoo_dir: str | os.PathLike | None = None) -> bool:
    """Check the zoo id of the most accurate low-precision member (ties all count)."""
    entries = zoo.members(dataset, zoo_dir)
    _, acc = best_lowprecision_member(dataset, zoo_dir)
    if answer not in entries:
        return verdict(False, f"{answer!r} is not a {dataset} zoo member; ids look like "
                               f"'{dataset}-a4w2-s1'.")
    e = entries[answer]
    if settings.is_full_precision(e["wbits"], e["abits"]):
        return verdict(False, f"{answer} is full precision; the question asks for a low-precision member.")
    if e["test_accuracy"] < acc:
        return verdict(False, f"{answer} reaches {e['test_accuracy']:.2%}; another low-precision "
                               f"member does better.")
    return verdict(True, f"correct: {answer} reaches {acc:.2%} clean accuracy on the full test set.")


def accuracy_gap(dataset: str, wbits: int, abits: int, seed: int = 1, zoo_dir: str | os.PathLike | None = None
                 ) -> float:
    """FP member's clean accuracy minus a LP member's, in percentage points (seed-1 members)."""
    m = zoo.members(dataset, zoo_dir)
    fp, lp = zoo.find(dataset, FULL_PRECISION, FULL_PRECISION, 1), zoo.find(dataset, wbits, abits, seed)
    return 100.0 * (m[fp]["test_accuracy"] - m[lp]["test_accuracy"])


def check_accuracy_gap(answer: object, dataset: str = "mnist", wbits: int = 1, abits: int = 1,
                       zoo_dir: str | os.PathLike | None = None) -> bool:
    """Check the accuracy a LP member loses against the FP member, in percentage points."""
    expected = accuracy_gap(dataset, wbits, abits, zoo_dir=zoo_dir)
    got, slip = points_verdict(answer, expected,
                                   f"correct: the a{abits}w{wbits} member is {expected:.2f} points below the "
                                   "FP member.", "give FP accuracy minus low-precision accuracy.")
    return slip if slip is not None else verdict(False, f"not quite: you gave {got:.2f} points.")
