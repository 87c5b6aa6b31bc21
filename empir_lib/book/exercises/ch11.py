"""Exercise checks, chapter 11: where quantisation stops helping, and the deployed decision of a random ensemble."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...nets import stochastic
from ...nets.metrics import crossover
from .verdict import call_student, first_wrong_class, verdict


def crossover_cases(seed: int = 0) -> list[tuple[list[float], list[float], list[float]]]:
    """(eps, member accuracy, FP accuracy) cases: crossings, never above, always above, overtaking, ties, random."""
    eps = [0.0, 0.05, 0.1, 0.15, 0.2]
    fp = [0.9, 0.6, 0.4, 0.2, 0.1]
    cases = [(eps, [0.8, 0.7, 0.5, 0.2, 0.05], fp),   # above, above, tie at 0.15: stops there
             (eps, [0.95, 0.5, 0.3, 0.1, 0.0], fp),   # never above (its clean accuracy is, but eps 0 does not count)
             (eps, [0.5, 0.7, 0.6, 0.3, 0.2], fp),    # above at every eps > 0: never stops
             (eps, [0.8, 0.5, 0.45, 0.3, 0.2], fp),   # below first, above from 0.1 on: overtakes, never stops
             (eps, [0.8, 0.5, 0.45, 0.1, 0.2], fp),   # below, above at 0.1, stops at 0.15
             (eps, [0.9, 0.7, 0.3, 0.5, 0.2], fp)]    # stops at 0.1, above again later: the first stop counts
    rng = np.random.default_rng(seed)
    for _ in range(30):
        e = [0.0] + sorted(rng.choice(np.arange(1, 40), 6, replace=False) / 100)
        a, b = rng.random(7).round(2), rng.random(7).round(2)
        cases.append((list(map(float, e)), a.tolist(), b.tolist()))
    return cases


def check_crossover(student_fn: Callable) -> bool:
    """Compare a student's "where it stops beating FP" with :func:`empir_lib.nets.metrics.crossover`'s stop.

    ``student_fn(eps, member, fp)`` takes three equal-length lists (eps in
    increasing order starting at 0, the member's and the FP member's accuracy
    at each) and returns the first eps at which the member is no longer more
    accurate than the FP member, after having been more accurate at some
    smaller eps > 0; None when that never happens.
    """
    cases = crossover_cases()
    for eps, member, fp in cases:
        c = crossover(eps, member, fp)
        expected = c["stop"]
        got, error = call_student(student_fn, list(eps), list(member), list(fp))
        if error:
            return verdict(False, error)
        if expected is None and got is None:
            continue
        if expected is None or got is None or abs(float(got) - expected) > 1e-12:
            hint = ""
            if c["status"] == "overtakes" and got is not None:
                hint = " the member starts below FP and then overtakes it: it never stops beating FP."
            elif c["status"] == "never" and got is not None:
                hint = " the member is never more accurate than FP at an eps > 0 (eps 0 is the clean image)."
            elif expected is not None and got is not None and float(got) > expected:
                hint = " a tie counts as no longer beating the FP member."
            return verdict(False, f"eps {eps}, member {member}, FP {fp}: you return {got}, "
                                  f"the member stops beating FP at {expected}.{hint}")
    return verdict(True, f"correct: your answer matches the library's on {len(cases)} pairs of curves.")


def majority_cases(seed: int = 0) -> list[np.ndarray]:
    """Draws x images of classes, with ties common (few draws, few classes)."""
    rng = np.random.default_rng(seed)
    cases = [np.array([[1, 2, 0], [1, 3, 0], [2, 3, 1]]), np.array([[4], [2]]), np.array([[0, 5, 5, 5]])]
    cases += [rng.integers(0, k, (d, 25)) for d in (2, 3, 4, 5, 8) for k in (2, 3, 10)]
    return cases


def check_majority(student_fn: Callable) -> bool:
    """Compare a student's majority decision with :func:`empir_lib.nets.stochastic.majority`.

    ``student_fn(preds)`` takes an int array (draws, images) of the deployed
    class at each stochastic draw and returns the most frequent class per
    image, a tie going to the smaller class.
    """
    cases = majority_cases()
    for preds in cases:
        expected = stochastic.majority(preds)
        got, i, problem = first_wrong_class(student_fn, (preds.copy(),), expected)
        if problem:
            return verdict(False, problem)
        if i is not None:
            return verdict(False, f"draws {preds[:, i].tolist()}: you return {got[i]}, the majority (ties to the "
                                  f"smaller class) is {expected[i]}.")
    return verdict(True, f"correct: your majority matches the library's on {sum(c.shape[1] for c in cases)} images.")


def flip_share_cases() -> list[tuple[int, float]]:
    """(bits, eps) pairs: each precision below, at and above its bin width 1 / (2^k - 1)."""
    return [(k, e) for k in (1, 2, 3, 4) for e in (0.0, 0.01, 0.05, 0.1, 1 / (2 ** k - 1), 0.2, 0.4, 0.6)]


def check_flip_share(student_fn: Callable) -> bool:
    """Compare a student's ``flip_share(bits, eps)`` with the share of k-bit codes a move of eps changes.

    For a value uniform inside an interior bin of a k-bit quantiser (paper
    Eq. 5), the boundary ahead is uniform between 0 and the bin width
    ``w = 1 / (2^k - 1)`` away, so a move of eps changes the code with
    probability ``min(1, eps (2^k - 1))`` (chapter 11, "The mechanism").
    """
    cases = flip_share_cases()
    for bits, eps in cases:
        expected = min(1.0, eps * (2 ** bits - 1))
        got, error = call_student(student_fn, bits, eps)
        if error:
            return verdict(False, error)
        try:
            value = float(got)
        except (TypeError, ValueError):
            return verdict(False, f"flip_share({bits}, {eps:g}) should return one number; it returned {got!r}.")
        if not np.isfinite(value) or abs(value - expected) > 1e-9:
            hint = ""
            if abs(value - eps * 2 ** bits) < 1e-9:
                hint = " a k-bit quantiser has 2^k levels but 2^k - 1 bins between them."
            elif value > 1:
                hint = " a share cannot exceed 1: past one bin width every code changes."
            return verdict(False, f"flip_share({bits}, {eps:g}) = {value:g}, but the share is {expected:g}.{hint}")
    return verdict(True, f"correct on {len(cases)} (bits, eps) pairs.")
