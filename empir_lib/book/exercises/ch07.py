"""Exercise checks, chapter 7: the result tables."""
from __future__ import annotations

import math
import os
from collections.abc import Callable

from ...studies import results
from .verdict import call_for_number, fraction_verdict, points_verdict, verdict


def average_gain(dataset: str = "mnist", root: str | os.PathLike | None = None) -> float | None:
    """Our EMPIR (paper protocol) average adversarial accuracy minus our baseline's, in points.

    Read from the Table 2 results files (``results.table2``); ``None`` while
    any of the eight files is missing.
    """
    t = results.table2(dataset, root)
    hi, lo = t["EMPIR, paper protocol"]["average"], t["baseline (FP)"]["average"]
    return None if hi is None or lo is None else hi - lo


def check_average_gain(answer: object, dataset: str = "mnist", root: str | os.PathLike | None = None) -> bool:
    """Check the gain in average adversarial accuracy (EMPIR paper protocol minus baseline), in points."""
    expected = average_gain(dataset, root)
    if expected is None:
        return verdict(False, f"the {dataset} Table 2 results are not all there yet, so there is nothing to "
                               f"check against; produce them with 'empir reproduce {dataset} --only table2/'.")
    got, slip = points_verdict(answer, expected,
                                   f"correct: on {dataset}, EMPIR's average adversarial accuracy is "
                                   f"{expected:.2f} points above the baseline's (paper protocol).",
                                   "give EMPIR's average minus the baseline's.")
    if slip is not None:
        return slip
    paper = results.paper_table2(dataset)
    if math.isclose(got, paper["empir"]["average"] - paper["baseline"]["average"], abs_tol=0.01):
        return verdict(False, "that is the paper's gain; the question asks for ours, from results.table2.")
    return verdict(False, f"not quite: you gave {got:.2f} points. The average is the mean of the four "
                           "attack columns (CW, FGSM, BIM, PGD), not including the clean column.")


HALFWIDTH_CASES = ((0.5, 100), (0.15, 200), (0.7341, 10000), (0.9873, 1000), (0.02, 500), (0.0, 500))


def binomial_halfwidth(p: float, n: int) -> float:
    """Half-width of the normal-approximation 95% interval of an accuracy p measured on n images."""
    return 1.96 * math.sqrt(p * (1 - p) / n)


def check_halfwidth(student_fn: Callable) -> bool:
    """Check ``student_fn(p, n)`` -> the 95% half-width 1.96 sqrt(p (1 - p) / n), as a fraction."""
    for p, n in HALFWIDTH_CASES:
        expected = binomial_halfwidth(p, n)
        got, error = call_for_number(student_fn, p, n)
        if error:
            return verdict(False, error)
        if math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-9):
            continue
        se = math.sqrt(p * (1 - p) / n)
        if math.isclose(got, se, rel_tol=1e-3):
            return verdict(False, f"p={p}, n={n}: that is the standard error; a 95% interval is 1.96 of them "
                                   "on each side.")
        if math.isclose(got, 100 * expected, rel_tol=1e-3):
            return verdict(False, "that looks like percentage points; return a fraction, like p.")
        if math.isclose(got, 1.96 * p * (1 - p) / n, rel_tol=1e-3):
            return verdict(False, f"p={p}, n={n}: take the square root of the variance p (1 - p) / n.")
        return verdict(False, f"p={p}, n={n}: you return {got:.5g}, expected {expected:.5g}.")
    return verdict(True, "correct: e.g. 200 images at 15% give \u00b1"
                          f"{100 * binomial_halfwidth(0.15, 200):.1f} points, 10,000 images at 73% give "
                          f"\u00b1{100 * binomial_halfwidth(0.7341, 10000):.1f}.")


def label_leak(dataset: str = "cifar10", name: str = "table2/baseline-paper-pgd",
               root: str | os.PathLike | None = None) -> dict:
    """What a paper-protocol attack did to a row: clean and adversarial accuracy, predictions changed.

    Read from the results file (``results.load``): ``changed`` is its
    ``attack_success_rate``, the share of images whose predicted class the
    attack changed, and ``labels`` what the attack was given as labels.
    """
    r = results.load(dataset, name, root)
    return {"clean": r["clean_accuracy"], "adversarial": r["adversarial_accuracy"],
            "changed": r["attack_success_rate"], "labels": r.get("labels"), "n": r["n"]}


def fixed_share(leak: dict) -> float | None:
    """The share of the clean mistakes that are right after an attack which changed every prediction.

    The paper protocol labels each image with the model's own clean
    prediction (appendix, section 0), so on an image the model gets wrong the
    attack pushes *away from the wrong class*, sometimes onto the true one.
    When every prediction changed, every image correct after the attack was
    wrong before it.  Otherwise the file alone cannot tell (it keeps no
    per-image record): None.
    """
    return leak["adversarial"] / (1 - leak["clean"]) if leak["changed"] == 1 and leak["clean"] < 1 else None


def check_fixed_share(answer: object, dataset: str = "cifar10", name: str = "table2/baseline-paper-pgd",
                      root: str | os.PathLike | None = None) -> bool:
    """Check the share of a model's clean mistakes that a paper-protocol attack turned into right answers."""
    leak = label_leak(dataset, name, root)
    expected = fixed_share(leak)
    if expected is None:
        return verdict(False, f"{dataset}/{name} did not change every prediction, so its file alone cannot "
                              "answer this; ask about a row whose attack_success_rate is 1.")
    got, slip = fraction_verdict(answer, expected,
                                 f"correct: {100 * expected:.1f}% of the images the network got wrong are right "
                                 "after the attack. Maximising the loss of a wrong label moves the image away "
                                 "from that label, and often onto the true class: an attack aimed at the "
                                 "model's own predictions can raise accuracy, so it must be given the true "
                                 "labels.")
    if slip is not None:
        return slip
    if math.isclose(got, leak["adversarial"], abs_tol=1e-3):
        return verdict(False, "that is the accuracy over all images; which images can be correct after an "
                              "attack that changed every prediction?")
    if math.isclose(got, leak["adversarial"] / leak["clean"], abs_tol=1e-3):
        return verdict(False, "an image that was right before the attack is wrong after it (its prediction "
                              "changed); divide by the images that were wrong before.")
    return verdict(False, f"not quite: you gave {got:.4g}. Every prediction changed: which images were "
                          "right before, and which can be right after?")
